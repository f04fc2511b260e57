"""Integer model: a trained recurrent + Dense model in fixed point, and its NumPy oracle.

Recurrent layers: ``RNN(FastGRNNCell)``, ``RNN(FastRNNCell)``, ``LSTM``/``RNN(LowRankLSTMCell)``,
``GRU``/``RNN(LowRankGRUCell)`` (``reset_after`` True or False) and ``SimpleRNN``
(:data:`SUPPORTED_LAYERS`). :func:`quantize_model` reads a trained model (``plan_model``:
recurrent layers, then a Dense head) and derives an :class:`IntModel`, whose
:meth:`IntModel.step` and :meth:`IntModel.predict` are THE ORACLE of the generated C code
(:mod:`keras_rnnedge.converters.c.cgen`): NumPy ``int64`` arithmetic with an explicit saturation
wherever the C code saturates, so the two agree bit for bit.

Arithmetic (``Q = frac_bits``, default 15; ``ONE = 2**Q``)
---------------------------------------------------------
Number formats. A value ``v`` in format ``Qf`` is the integer ``round(v * 2**f)``.

* Weights: per tensor ``int8`` or ``int16`` (``weight_bits``) with a power-of-two scale: the
  largest ``f`` in ``[0, 30]`` with ``round(max|w| * 2**f) <= 2**(bits-1) - 1`` and, while
  ``f > 0``, ``sum_j round(|w_ij| * 2**f) <= 65535`` for every output ``i`` (:data:`ROW_L1_MAX`:
  then no ``int16`` input can saturate the ``int32`` accumulator of ``matvec``; with ``int16``
  weights a saturated row would lose far more than the low bits that the rescaling after the
  product drops anyway). A tensor that needs ``f < 0`` (``max|w| > 127.5`` for int8) or holds
  NaN/Inf is refused (``ValueError``).
  Matrices are stored transposed (one row per output). A matrix is stored as CSR (values; column
  indices ``uint8`` when it has at most 256 columns, else ``uint16``; ``uint16`` row pointers)
  when that takes fewer bytes than the dense array. Low-rank factors stay factored.
* Biases: ``int32`` in the format of the sum they are added to (``Q`` for the cells).
* Inputs: per feature, ``x_q = sat16(round((x - offset) * scale))`` with ``offset`` the centre
  and ``scale = ONE / half_range`` of the feature's range in the representative data (all of
  it; per feature the ``minmax``, ``percentile`` or ``mse`` estimator of
  :func:`~keras_rnnedge.converters.quality.choose_range` with the smallest 16-bit quantization
  error, recorded in :attr:`IntModel.input_estimators`), so the calibrated range maps onto
  ``[-1, 1]`` in ``Q``. ``offset`` and the range are folded into the first layer's input matrix
  (``W' = diag(half_range) W``) and biases (``b' = b + offset @ W``). The formats below are
  calibrated by the float forward pass over full-length windows of a seeded sample of
  ``calibration_size`` sequences drawn across the representative data.
  A leading ``Normalization`` layer (:class:`~keras_rnnedge.converters.lowering.Standardization`,
  ``x' = (x - m) k``) is applied to the representative data first (ranges and formats are those
  of ``x'``, which the recurrent layers read), then composed into the input quantization:
  with ``x_q = (x' - o') s'`` calibrated on ``x'``, ``offset = m + o' / k`` and
  ``scale = k s'``, so :attr:`IntModel.input_offset`/``input_scale``, the oracle and the C
  take the raw ``x`` at no run-time cost.
* Recurrent state: the vectors of the cell's declared layout
  (:class:`~keras_rnnedge.cells.step.StateVector`: ``h`` first, an LSTM's ``c`` after it),
  ``int16``, each in ``Q`` unless the declaration marks it *calibrated* (its values may exceed 1:
  the FastGRNN/FastRNN state, which adds the weighted candidate to ``z h``; the LSTM cell state
  ``c``, which sums ``i * g`` over time; the state of a ``relu`` SimpleRNN). A calibrated
  vector's format is ``min(Q, max_frac, f_cal)``, ``f_cal`` from the float forward pass like
  the intermediate vectors below (a factor 2 of headroom over the largest value seen;
  ``max_frac`` 12 for the LSTM ``c``, so ``|c| < 8`` always fits; ``cell_frac_bits`` overrides
  it). The output ``h`` of a last layer without a Dense head stays in ``Q`` (it is the scores):
  beyond 1 it saturates, listed as an approximation. Whatever reads a state vector reads it in
  its format: the next layer's input product, the head, and the scalars the declaration
  stores "like" a state vector (FastGRNN's ``zeta``, ``nu``: so every product of its update
  is in the state's format).
* Intermediate vectors (the rank-``r`` product of a low-rank factor, hidden Dense outputs):
  ``int16`` in a format ``f`` calibrated from the representative data (the largest ``f <= 15``
  with ``2 * max|v| * 2**f <= 32767``: a factor 2 of headroom).
* Scores: ``int32`` in ``Q`` (``predict(...) / 2**Q`` are the head's pre-softmax outputs).

Primitives (identical in C and here):

* ``sat32(v)``/``sat16(v)``: clip to the ``int32``/``int16`` range.
* ``rshift(v, s)`` (``s >= 1``): ``(v >> s) + ((v >> (s - 1)) & 1)``, i.e.
  ``floor(v / 2**s + 1/2)`` (round half up) without the overflow of ``v + 2**(s-1)``;
  arithmetic shifts of negative values (what gcc, clang and avr-gcc do).
  ``shift(v, s)`` is ``rshift`` for ``s > 0``, ``v`` for ``s == 0`` and ``sat32(v * 2**-s)``
  for ``s < 0``.
* ``matvec(W, x)``: for each output ``i``, ``acc = 0``; for each input ``j`` in increasing order
  (stored non-zeros only, for CSR) ``acc = sat32(acc + W[i, j] * x[j])``. The product of an
  ``int16`` weight and an ``int16`` input fits ``int32``; adding zeros changes nothing, so dense
  and CSR storage give the same result.
* ``linear(M, x, xf -> yf)``: full rank ``shift(matvec(W, x), wf + xf - yf)``; low rank
  ``t = sat16(shift(matvec(Wu, x), wfu + xf - tf))``, then ``shift(matvec(Wv, t), wfv + tf - yf)``.

Activations, on an ``int32`` ``v`` in ``Qf`` (``one = 2**f``), results in ``Qf``:

* ``quantized_tanh``: ``clip(v, -one, one)`` (exact).
* ``tanh`` and ``sigmoid`` (``f <= 15``) share one table ``T`` (:data:`TANH_TABLE`, 193
  ``uint16`` values: ``tanh`` in ``Q16`` every ``1/32`` on ``[0, 6]``, each knot lifted by half
  the chord error of its segments) read by ``tanh_q16(v, g)`` = ``|tanh(v / 2**g)|`` in ``Q16``
  (``0 <= g <= 16``): ``65536`` if ``|v| >= 6 * 2**g``, else with ``a = |v| << (16 - g)``
  (``Q16``, ``< 6 * 2**16``), ``i = a >> 11``, ``r = a & 2047``:
  ``T[i] + rshift((T[i + 1] - T[i]) * r, 11)`` (one ``16 x 16 -> 32`` product below ``2**22``).
  ``tanh = ±rshift(tanh_q16(v, f), 16 - f)`` (the sign of ``v``: exactly odd) and, as
  ``sigmoid(x) = (1 + tanh(x / 2)) / 2``, ``p = rshift(65536 + tanh_q16(v, f + 1), 17 - f)``,
  ``sigmoid = p`` for ``v >= 0``, ``one - p`` below (exactly ``sigmoid(-x) = 1 - sigmoid(x)``).
  Both are monotonic and saturate at ``±one`` (``0``/``one``); over every ``int32`` input the
  error in ``Q15`` is below :data:`TANH_MAX_ERROR` (7.5e-5; the table alone 4.7e-5, plus
  roundings) and :data:`SIGMOID_MAX_ERROR` (4.5e-5); in ``Qf`` add about ``2**-(f + 1)``.
  No division, no 64-bit arithmetic; the substitutions are listed in
  :attr:`IntModel.approximations`.
* ``quantized_sigmoid``: ``rshift(clip(v, -one, one) + one, 1)`` = ``clip((x + 1) / 2, 0, 1)``
  (exact up to the rounding of the last bit).
* ``hard_sigmoid`` (Keras': ``clip(0.2 x + 0.5, 0, 1)``): with ``lim = (5 one) >> 1``,
  ``clip(rshift(clip(v, -lim, lim) * 13107, 16) + one / 2, 0, one)`` (``13107 / 2**16`` is 0.2
  to ``2**-16``; the product stays below ``2**30``): exact up to the last bit.
* ``relu`` ``max(v, 0)`` (Dense, SimpleRNN); ``linear`` (Dense); ``softmax`` (last Dense layer
  only: omitted, the scores are the logits; the argmax is unchanged).
* ``saturating_relu`` ``clip(v, 0, one)``: ``relu`` as a FastGRNN/FastRNN ``activation`` (the
  candidate), clipped at 1 so that it stays in the range every product of the update was sized
  for; exact where the candidate is at most 1, listed in :attr:`IntModel.approximations` when
  the representative data take it above 1 (larger values saturate at 1).

Each cell declares the activations it allows per role (:class:`~keras_rnnedge.cells.step.CellStep`
``activations``): FastGRNN/FastRNN the bounded ones and ``relu`` as ``activation`` (computed as
``saturating_relu``); LSTM/GRU ``activation`` the bounded ones, ``recurrent_activation`` only the
``[0, 1]``-valued ``sigmoid``/``hard_sigmoid``/``quantized_sigmoid``; SimpleRNN the bounded ones
and ``relu``. Anything else is refused with a ``ValueError`` naming it.

The step of a recurrent layer is its cell's declared step
(:mod:`keras_rnnedge.cells.step`), interpreted operation by operation (:meth:`IntRecurrent.step`):
a matrix product is ``linear(M, v, vf -> Q)`` (its rows of one gate); a bias is ``int32`` in
``Q``; ``add``/``sub`` are ``sat32``; ``mul(a, b)`` is ``sat32(shift(a * b, fa + fb - f))``
(``a * b`` in ``int64``; ``f`` the declared format, else ``fa + fb - Q``); ``act`` is the
activation in the format of its argument; ``rescale`` is ``shift`` to the declared format;
``sat16``/``vector`` saturate to ``int16``; each new state vector is rescaled to its format
and saturated to ``int16``. For example the FastGRNN step (``Qh`` the state's format)::

    a  = sat32(linear(W, x, xf -> Q) + linear(U, h, Qh -> Q))
    z  = sigma(sat32(a + b_z)),   c = phi(sat32(a + b_h))               # both in [0|-ONE, ONE]
    k  = rshift(zeta_q * (ONE - z), Q)                     # zeta_q = round(sig(zeta) 2**Qh)
    h' = sat16(sat32(sat32(rshift(k * c, Q) + rshift(nu_q * c, Q)) + rshift(z * h, Q)))

and the LSTM's (``c`` in ``Qcf``)::

    a  = sat32(sat32(linear(W, x, xf -> Q) + linear(U, h, Q -> Q)) + b)   # per gate i, f, g, o
    c' = sat16(sat32(rshift(f * c, Q) + rshift(i * g, 2 Q - cf)))          # Qcf
    h' = sat16(rshift(o * shift(phi_cf(c'), cf - Q), Q))                   # phi in Qcf, to Q

The generated C computes the same integers; where interval arithmetic over these values proves
that a ``sat32`` cannot act or that a product fits ``int32``, it skips the saturation or the
64-bit product (GRU's ``r * (h U_h + b)``, an ``int32`` pre-activation times a gate, is formed
in ``int64``). Dense
layer (input in ``Qxf``, output in ``Qyf``; ``yf = Q`` for the last)::

    y = act(sat32(linear(W, x, xf -> yf) + b));  hidden layers: y = sat16(y)

Example:
    >>> im = quantize_model(model, x_train[:256], weight_bits=8)   # doctest: +SKIP
    >>> scores = im.run(x_test)                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.cells.base import activation_name
from keras_rnnedge.cells.step import (
    ACTIVATION_TABLE,
    BOUNDED_ACTIVATIONS,
    FAST_ACTIVATIONS,
    LSTM_CELL_FRAC,
    Node,
    StateVector,
    StepGraph,
    step_of,
)
from keras_rnnedge.converters.lowering import plan_model, strip_wrappers
from keras_rnnedge.matrices import LowRank
from keras_rnnedge.matrices.base import Stage
from keras_rnnedge.summary import csr_bytes

__all__ = [
    "LSTM_CELL_FRAC",
    "SUPPORTED_LAYERS",
    "IntDense",
    "IntLinear",
    "IntStage",
    "IntMatrix",
    "IntModel",
    "IntRecurrent",
    "quantize_input",
    "quantize_model",
]

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_WEIGHT_FRAC = 30
#: Largest ``sum_j |W[i, j]|`` of a quantized matrix row (unless its scale is already 1): times
#: ``2**15`` (any ``int16`` input) it stays below ``2**31``.
ROW_L1_MAX = 2**16 - 1

#: ``round(0.2 * 2**16)``: the slope of Keras' ``hard_sigmoid`` (``clip(0.2 x + 0.5, 0, 1)``).
HARD_SIGMOID_SLOPE = 13107
#: The tanh table has a knot every ``2**-TANH_STEP_BITS`` on ``[0, TANH_LIMIT]``.
TANH_STEP_BITS = 5
TANH_LIMIT = 6
#: Bounds of ``|activate(v, name, 15) / 2**15 - f(v / 2**15)|`` over every ``int32`` ``v``
#: (``f`` = ``tanh`` or the logistic function), measured in the tests.
TANH_MAX_ERROR = 7.5e-5
SIGMOID_MAX_ERROR = 4.5e-5

#: What :func:`quantize_model` accepts.
SUPPORTED_LAYERS = ("RNN(FastGRNNCell)", "RNN(FastRNNCell)", "RNN(LowRankLSTMCell)",
                    "RNN(LowRankGRUCell)", "LSTM", "GRU", "SimpleRNN", "RNN(LSTMCell)",
                    "RNN(GRUCell)", "RNN(SimpleRNNCell)", "Dense", "Activation", "Dropout",
                    "InputLayer", "Normalization (first layer, axis=-1)")
#: Activations of FastGRNN/FastRNN cells (``activation``/``recurrent_activation``).
CELL_ACTIVATIONS = FAST_ACTIVATIONS
#: FastGRNN/FastRNN ``activation`` (the candidate): also ``relu``, clipped at 1 in integers.
CANDIDATE_ACTIVATIONS = CELL_ACTIVATIONS + ("relu",)
#: Candidate/cell activations (``activation``) of LSTM/GRU: bounded in ``[-1, 1]``.
LSTM_GRU_ACTIVATIONS = BOUNDED_ACTIVATIONS
#: Activations of SimpleRNN (``relu``: the state's format is calibrated).
SIMPLE_RNN_ACTIVATIONS = LSTM_GRU_ACTIVATIONS + ("relu",)
#: Activations of Dense layers (``softmax`` only on the last one).
DENSE_ACTIVATIONS = CELL_ACTIVATIONS + ("relu", "linear", "softmax")
_EXACT = {"quantized_tanh", "quantized_sigmoid", "hard_sigmoid", "relu", "linear"}
_APPROX = {"tanh": f"193-knot Q16 table, linear interpolation (max error {TANH_MAX_ERROR:.1e} "
                   "in Q15)",
           "sigmoid": f"(1 + tanh(x / 2)) / 2 on the tanh table (max error "
                      f"{SIGMOID_MAX_ERROR:.1e} in Q15)"}
_LAYER_TYPES = (keras.layers.RNN, keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
# -- integer primitives (the C runtime does exactly this) --------------------------------------

def sat32(v):
    return np.clip(v, INT32_MIN, INT32_MAX)


def sat16(v):
    return np.clip(v, INT16_MIN, INT16_MAX)


def rshift(v, s: int):
    """Round-half-up right shift by ``s >= 1`` without overflow."""
    v = np.asarray(v, np.int64)
    return (v >> s) + ((v >> (s - 1)) & 1)


def shift(v, s: int):
    """``rshift`` for ``s > 0``; saturating multiplication by ``2**-s`` for ``s < 0``."""
    v = np.asarray(v, np.int64)
    if s > 0:
        return rshift(v, s)
    if s == 0:
        return v
    return sat32(v * (1 << -s))


def matvec(w, x):
    """``sat32`` accumulation of ``w[i, j] * x[..., j]`` over ``j`` in increasing order.

    ``x`` is one vector or a batch ``(..., inputs)``. When ``sum_j |w[i, j]| * max|x|`` fits
    ``int32`` for every row, no partial sum can saturate and the result is the exact ``int64``
    product (the same integers, computed at once); otherwise the columns are accumulated one by
    one with the saturation, skipping all-zero columns (adding zero changes nothing).
    """
    w = np.asarray(w, np.int64)
    x = np.asarray(x, np.int64)
    if x.size == 0 or w.size == 0:
        return np.zeros(x.shape[:-1] + (w.shape[0],), np.int64)
    peak = int(np.max(np.abs(x)))
    if int(np.max(np.abs(w).sum(axis=1))) * peak <= INT32_MAX:
        return x @ w.T
    acc = np.zeros(x.shape[:-1] + (w.shape[0],), np.int64)
    for j in np.flatnonzero(np.any(w != 0, axis=0)):
        acc = sat32(acc + w[:, j] * x[..., j, None])
    return acc


def _tanh_table() -> np.ndarray:
    """``tanh`` at ``x_j = j / 2**TANH_STEP_BITS``, ``j = 0..TANH_LIMIT * 2**TANH_STEP_BITS``, in
    ``Q16``: each knot but the first is lifted by half the chord errors of its two segments
    (``tanh`` is concave on ``x > 0``, so a chord lies below it by at most
    ``tanh(m) - chord(m)`` where ``tanh'(m)`` is the chord's slope), which halves the error of
    the linear interpolation (to 4.7e-5); then rounded, made non-decreasing, at most 65535."""
    h = 2.0**-TANH_STEP_BITS
    n = TANH_LIMIT << TANH_STEP_BITS
    x = [j * h for j in range(n + 1)]
    y = [math.tanh(v) for v in x]
    err = []
    for j in range(n):
        slope = (y[j + 1] - y[j]) / h
        m = math.atanh(math.sqrt(1.0 - slope))
        err.append(math.tanh(m) - (y[j] + slope * (m - x[j])))
    lift = [0.0] + [(err[j - 1] + err[j]) / 4.0 for j in range(1, n)] + [err[-1] / 2.0]
    q = np.round((np.array(y) + np.array(lift)) * 65536.0)
    return np.minimum(np.maximum.accumulate(q), 65535).astype(np.int64)


#: ``uint16`` knots of ``tanh`` in ``Q16`` (see :func:`_tanh_table`); the C runtime's table.
TANH_TABLE = _tanh_table()


def tanh_q16(v, frac: int):
    """``|tanh(v / 2**frac)|`` in ``Q16`` (``0..65536``) for ``0 <= frac <= 16``: ``65536``
    where ``|v| >= TANH_LIMIT 2**frac``; else, with ``a = |v| * 2**(16 - frac)`` (``Q16``),
    ``i = a >> 11``, ``r = a & 2047``: ``T[i] + rshift((T[i + 1] - T[i]) * r, 11)``."""
    v = np.asarray(v, np.int64)
    lim = TANH_LIMIT << frac
    a = np.abs(np.clip(v, -lim, lim)) << (16 - frac)
    step = 16 - TANH_STEP_BITS
    i = np.minimum(a >> step, len(TANH_TABLE) - 2)
    t0 = TANH_TABLE[i]
    y = t0 + rshift((TANH_TABLE[i + 1] - t0) * (a & ((1 << step) - 1)), step)
    return np.where(np.abs(v) >= lim, 65536, y)


def activate(v, name: str, frac: int):
    """An activation in ``Q{frac}`` (see the module docstring)."""
    one = 1 << frac
    v = np.asarray(v, np.int64)
    if name == "quantized_tanh":
        return np.clip(v, -one, one)
    if name == "tanh":
        y = rshift(tanh_q16(v, frac), 16 - frac)
        return np.where(v < 0, -y, y)
    if name == "quantized_sigmoid":
        return rshift(np.clip(v, -one, one) + one, 1)
    if name == "sigmoid":
        p = rshift(65536 + tanh_q16(v, frac + 1), 17 - frac)
        return np.where(v < 0, one - p, p)
    if name == "hard_sigmoid":
        lim = (5 * one) >> 1
        return np.clip(rshift(np.clip(v, -lim, lim) * HARD_SIGMOID_SLOPE, 16) + one // 2, 0, one)
    if name == "relu":
        return np.maximum(v, 0)
    if name == "saturating_relu":
        return np.clip(v, 0, one)
    return v  # linear; softmax on the last layer (omitted)


def quantize_input(x, offset, scale) -> np.ndarray:
    """``sat16(round_half_away((x - offset) * scale))`` in float32 (NaN -> 0), as the C code
    (``<id>_quantize_input``, the sketch) computes it; ``int64`` values."""
    v = (np.asarray(x, np.float32) - np.asarray(offset, np.float32)) * np.asarray(scale,
                                                                                 np.float32)
    v = np.where(np.isnan(v), np.float32(0), v)
    v = np.clip(v, np.float32(INT16_MIN), np.float32(INT16_MAX))
    v = np.where(v >= 0, v + np.float32(0.5), v - np.float32(0.5)).astype(np.float32)
    return np.trunc(v).astype(np.int64)


# -- the integer model --------------------------------------------------------------------------

@dataclasses.dataclass
class IntMatrix:
    """One quantized matrix, transposed: ``values[i, j]`` multiplies input ``j`` for output ``i``.

    Attributes:
        name: ``layer/weight`` (``rnn/kernel_u``...).
        values: the integer values, shape ``(outputs, inputs)``.
        frac: the scale is ``2**-frac``.
        bits: 8 or 16.
        float_range: ``(min, max)`` of the float weights quantized.
        compact: the integer parameters ``values`` expands from, when the C stores the matrix
            in a family's compact form (:class:`keras_rnnedge.matrices.base.CompactMatrix`).
    """

    name: str
    values: np.ndarray
    frac: int
    bits: int
    float_range: tuple[float, float]
    compact: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.values))

    @property
    def col_bits(self) -> int:
        return 8 if self.shape[1] <= 256 else 16

    def dense_bytes(self) -> int:
        return self.values.size * self.bits // 8

    def csr_bytes(self) -> int | None:
        """Bytes as CSR (:func:`keras_rnnedge.summary.csr_bytes`, the one rule the summary,
        this and the float C share); ``None`` when ``uint16`` indices cannot hold it."""
        rows, cols = self.shape
        return csr_bytes((cols, rows), self.nnz, self.bits // 8)

    @property
    def sparse(self) -> bool:
        """Stored as CSR: smaller than dense, and the indices fit ``uint16`` (never for a
        compact matrix)."""
        if self.compact is not None:
            return False
        size = self.csr_bytes()
        return size is not None and size < self.dense_bytes()

    @property
    def nbytes(self) -> int:
        if self.compact is not None:
            return int(np.size(self.compact.params)) * self.bits // 8
        return self.csr_bytes() if self.sparse else self.dense_bytes()

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(values, column indices, row pointers)`` of the non-zeros, rows in order."""
        rows, cols = np.nonzero(self.values)
        ptr = np.zeros(self.shape[0] + 1, np.int64)
        np.add.at(ptr, rows + 1, 1)
        return self.values[rows, cols], cols, np.cumsum(ptr)


@dataclasses.dataclass
class IntStage:
    """One stage of a structured product, quantized (the float form and its index arithmetic:
    :class:`keras_rnnedge.matrices.base.Stage`): ``matrix`` (``n × m``, transposed) applied to
    each of ``blocks`` contiguous blocks of the input, output column ``j`` of block ``b`` going
    to ``(j // inner) * blocks * inner + b * inner + j % inner``."""

    matrix: IntMatrix
    blocks: int = 1
    inner: int = 1

    @property
    def out_size(self) -> int:
        return self.blocks * self.matrix.shape[0]

    def apply(self, v):
        """``matvec`` of every block (``int32``, saturating), outputs interleaved."""
        n, m = self.matrix.shape
        lead = np.shape(v)[:-1]
        y = matvec(self.matrix.values, np.reshape(v, (*lead, self.blocks, m)))
        y = y.reshape(*lead, self.blocks, n // self.inner, self.inner)
        return np.swapaxes(y, -3, -2).reshape(*lead, self.blocks * n)


class IntLinear:
    """``x @ W`` as a chain of :class:`IntStage` (one for a dense matrix, two for a low-rank
    one, one per factor or core for Kronecker and tensor-train matrices).

    Each stage but the last writes an ``int16`` intermediate vector in its format
    (``mid_fracs``); the last one's ``int32`` result is shifted to the output format::

        v = x;  for each stage but the last:  v = sat16(shift(stage(v), wf + vf - mid_frac))
        y = shift(last(v), wf + vf - y_frac)

    ``IntLinear(u)`` is a dense matrix and ``IntLinear(u, v, mid_frac)`` a low-rank one
    (``mid_frac`` the format of the rank-``r`` intermediate ``x @ W_u``);
    :meth:`chain` makes any other.
    """

    def __init__(self, u: IntMatrix, v: IntMatrix | None = None, mid_frac: int | None = None):
        stages = [IntStage(u)] + ([] if v is None else [IntStage(v)])
        self._set(stages, [] if v is None else [mid_frac])

    @classmethod
    def chain(cls, stages: list[IntStage], mid_fracs: list[int]) -> IntLinear:
        """A product of any family: its stages and the formats of the intermediates."""
        out = cls.__new__(cls)
        out._set(list(stages), list(mid_fracs))
        return out

    def _set(self, stages: list[IntStage], mid_fracs: list[int]) -> None:
        if not stages or len(mid_fracs) != len(stages) - 1:
            raise ValueError(f"expected one intermediate format per stage but the last, got "
                             f"{len(stages)} stages and {len(mid_fracs)} formats")
        self.stages: tuple[IntStage, ...] = tuple(stages)
        self.mid_fracs: tuple[int, ...] = tuple(mid_fracs)

    def __repr__(self) -> str:
        return (f"IntLinear({[s.matrix.name for s in self.stages]}, mid_fracs="
                f"{list(self.mid_fracs)})")

    @property
    def u(self) -> IntMatrix:
        """The first stage's matrix (the whole matrix when dense)."""
        return self.stages[0].matrix

    @property
    def v(self) -> IntMatrix | None:
        """The second factor of a low-rank matrix (``None`` for a dense one)."""
        return self.stages[1].matrix if len(self.stages) == 2 else None

    @property
    def mid_frac(self) -> int | None:
        return self.mid_fracs[0] if self.mid_fracs else None

    def matrices(self) -> list[IntMatrix]:
        return [s.matrix for s in self.stages]

    def apply(self, x, x_frac: int, y_frac: int, rows: slice | None = None):
        """``linear(M, x, x_frac -> y_frac)``; ``rows`` selects outputs (GRU's ``U_zr``/``U_h``)."""
        v, frac = x, x_frac
        for stage, mid in zip(self.stages[:-1], self.mid_fracs):
            v = sat16(shift(stage.apply(v), stage.matrix.frac + frac - mid))
            frac = mid
        last = self.stages[-1]
        s = last.matrix.frac + frac - y_frac
        if last.blocks == 1 and last.inner == 1:
            rows = slice(None) if rows is None else rows
            return shift(matvec(last.matrix.values[rows], v), s)
        y = shift(last.apply(v), s)
        return y if rows is None else y[..., rows]

    @property
    def mid_size(self) -> int:
        """``int16`` values of all intermediates."""
        return sum(s.out_size for s in self.stages[:-1])


@dataclasses.dataclass
class IntRecurrent:
    """One recurrent layer in integers: its cell's declared step
    (:class:`~keras_rnnedge.cells.step.CellStep`) with quantized constants and formats.

    Attributes:
        name: the Keras layer's name.
        kind: the step's name (``"fastgrnn"``, ``"lstm"``...; for reports and comments).
        graph: the step's equations (:class:`~keras_rnnedge.cells.step.StepGraph`).
        units: gate width (the cell's ``units``).
        input_dim: inputs per step.
        in_frac: the format of the layer input.
        frac: ``Q``, the format of matrix products, biases and gates.
        matrices: matrix name (``kernel``, ``recurrent_kernel``) → its integer product.
        biases: ``int32`` in ``Q``, by the names of the declaration.
        scalars: constants by name, in the format the declaration gives them.
        activations: role (``activation``, ``recurrent_activation``) → activation name.
        formats: state vector name → its format (``Q`` unless the declaration calibrates it);
            also the format of each calibrated ``vector`` node, by the node's name.
        levels: a flexible cell's active units per level (``None``: not flexible). At level
            ``l`` the per-unit state vectors are zeroed beyond ``levels[l]`` before the step,
            and the new per-unit state vectors and per-unit ``vector`` nodes after they are
            computed (:mod:`keras_rnnedge.flexible`).
    """

    name: str
    kind: str
    graph: StepGraph
    units: int
    input_dim: int
    in_frac: int
    frac: int
    matrices: dict[str, IntLinear]
    biases: dict[str, np.ndarray]
    scalars: dict[str, int]
    activations: dict[str, str]
    formats: dict[str, int]
    levels: tuple[int, ...] | None = None

    def __post_init__(self):
        self.node_fracs = step_formats(self.graph, self.frac, self.formats, self.in_frac,
                                       self.name)

    @property
    def kernel(self) -> IntLinear:
        return self.matrices["kernel"]

    @property
    def recurrent(self) -> IntLinear:
        return self.matrices["recurrent_kernel"]

    @property
    def activation(self) -> str | None:
        return self.activations.get("activation")

    @property
    def recurrent_activation(self) -> str | None:
        return self.activations.get("recurrent_activation")

    @property
    def state(self) -> tuple[StateVector, ...]:
        """The declared state layout (``h`` first)."""
        return self.graph.state

    @property
    def output_size(self) -> int:
        """Values of the layer's output ``h`` (the first state vector)."""
        return self.graph.state[0].size

    @property
    def state_size(self) -> int:
        """``int16`` values of state: every vector of the layout, in order."""
        return sum(s.size for s in self.graph.state)

    def out_frac(self, frac: int | None = None) -> int:
        """The format of ``h`` (the layer's output)."""
        return self.formats["h"]

    def act_name(self, node: Node) -> str:
        """The integer activation of an ``act`` node (a clipped ReLU is ``saturating_relu``)."""
        name = self.activations[node.key]
        return "saturating_relu" if node.clip and name == "relu" else name

    def split_state(self, state) -> dict[str, np.ndarray]:
        out, at = {}, 0
        for vector in self.graph.state:
            out[vector.name] = state[..., at:at + vector.size]
            at += vector.size
        return out

    def unit_mask(self, level) -> np.ndarray | None:
        """``(..., units)`` booleans of the active units at ``level`` (an int or an array of
        one level per batch row; clipped to the levels), ``None`` at the top level."""
        if self.levels is None or level is None:
            return None
        index = np.clip(np.asarray(level, np.int64), 0, len(self.levels) - 1)
        active = np.asarray(self.levels)[index]
        return np.arange(self.units) < active[..., None]

    def step(self, x, state, frac: int | None = None, level=None):
        """The new state (the layout's vectors, concatenated) from input ``x`` (``Q{in_frac}``)
        at ``level`` (a flexible cell; ``None``: the top level).

        ``x`` and ``state`` (and ``level``) may carry leading batch dimensions (the same
        arithmetic per row)."""
        q, fr = self.frac, self.node_fracs
        mask = self.unit_mask(level)
        states = self.split_state(np.asarray(state, np.int64))
        if mask is not None:
            per_unit = {v.name for v in self.graph.state if v.per_unit}
            states = {k: np.where(mask, v, 0) if k in per_unit else v for k, v in states.items()}
        vals: dict[int, np.ndarray] = {}
        products: dict[tuple, np.ndarray] = {}
        for node in self.graph.nodes:
            op, a = node.op, [vals[arg.index] for arg in node.args]
            if op == "input":
                v = np.asarray(x, np.int64)
            elif op == "state":
                v = states[node.key]
            elif op == "product":
                src = node.args[0]
                key = (node.key, src.index)
                if key not in products:
                    products[key] = self.matrices[node.key].apply(a[0], fr[src.index], q)
                w = node.width
                v = products[key][..., node.gate * w:(node.gate + 1) * w]
            elif op == "bias":
                w = node.width
                v = self.biases[node.key][node.gate * w:(node.gate + 1) * w]
            elif op == "scalar":
                v = np.int64(self.scalars[node.key])
            elif op == "one":
                v = np.int64(1 << q)
            elif op == "add":
                v = sat32(a[0] + a[1])
            elif op == "sub":
                v = sat32(a[0] - a[1])
            elif op == "mul":
                v = sat32(shift(a[0] * a[1], fr[node.args[0].index] + fr[node.args[1].index]
                                - fr[node.index]))
            elif op == "act":
                v = activate(a[0], self.act_name(node), fr[node.index])
            elif op == "rescale" or (op == "vector" and node.calibrated):
                v = shift(a[0], fr[node.args[0].index] - fr[node.index])
                v = sat16(v) if op == "vector" else v
            else:  # sat16, vector
                v = sat16(a[0])
            if mask is not None and op == "vector" and node.per_unit:
                v = np.where(mask, v, 0)
            vals[node.index] = v
        batch = np.asarray(state).shape[:-1]
        new = []
        for vector in self.graph.state:
            out = self.graph.outputs[vector.name]
            v = sat16(shift(vals[out.index], fr[out.index] - self.formats[vector.name]))
            v = np.broadcast_to(v, batch + (vector.size,))
            if mask is not None and vector.per_unit:
                v = np.where(mask, v, 0)
            new.append(v)
        return np.concatenate(new, axis=-1)


def step_formats(graph: StepGraph, q: int, formats: dict[str, int], in_frac: int,
                 layer: str = "") -> dict[int, int]:
    """The format of every node of ``graph`` (see :mod:`keras_rnnedge.cells.step`).

    Raises:
        ValueError: an ``add``/``sub`` of two formats (the declaration must ``rescale`` one).
    """
    fr: dict[int, int] = {}
    for node in graph.nodes:
        a = [fr[arg.index] for arg in node.args]
        like = formats[node.like] if node.like is not None else None
        if node.op == "input":
            f = in_frac
        elif node.op == "state":
            f = formats[node.key]
        elif node.op in ("product", "bias", "one"):
            f = q
        elif node.op == "scalar":
            f = q if like is None else like
        elif node.op in ("add", "sub"):
            if a[0] != a[1]:
                raise ValueError(f"Layer {layer!r}: the step adds values in Q{a[0]} and "
                                 f"Q{a[1]} ({node!r}); its declaration must rescale one of them.")
            f = a[0]
        elif node.op == "mul":
            f = a[0] + a[1] - q if like is None else like
        elif node.op == "rescale":
            f = q if like is None else like
        elif node.op == "vector" and node.calibrated:
            f = formats[node.name]
        else:  # act, sat16, vector
            f = a[0]
        fr[node.index] = f
    return fr


def float_forward(graph: StepGraph, matrices: dict[str, np.ndarray], chains: dict[str, list],
                  biases: dict[str, np.ndarray], scalars: dict[str, float],
                  activations: dict[str, str], x: np.ndarray,
                  unit_mask: np.ndarray | None = None):
    """The float step of ``graph`` over sequences ``x`` ``(N, T, F)`` with the true activations
    (the calibration pass): the outputs ``h`` ``(N, T, H)``, the peak ``|.|`` of every node,
    and per matrix the peak of each intermediate of its float stages (``chains``).
    ``unit_mask`` ``(N, T, units)``: a flexible cell's active units at every step (its
    per-unit state vectors and vectors zeroed beyond them, as the oracle does)."""
    state = {s.name: np.zeros((x.shape[0], s.size)) for s in graph.state}
    peaks = np.zeros(len(graph.nodes))
    chain_peaks = {m: [0.0] * (len(stages) - 1) for m, stages in chains.items()}
    outputs = []
    for t in range(x.shape[1]):
        vals: dict[int, np.ndarray] = {}
        products: dict[tuple, np.ndarray] = {}
        for node in graph.nodes:
            op, a = node.op, [vals[arg.index] for arg in node.args]
            if op == "input":
                v = x[:, t]
            elif op == "state":
                v = state[node.key]
            elif op == "product":
                key = (node.key, node.args[0].index)
                if key not in products:
                    products[key] = a[0] @ matrices[node.key]
                    chain_peaks[node.key] = [max(p, c) for p, c in zip(
                        chain_peaks[node.key], _chain_peaks(chains[node.key], a[0]))]
                w = node.width
                v = products[key][:, node.gate * w:(node.gate + 1) * w]
            elif op == "bias":
                w = node.width
                v = biases[node.key][node.gate * w:(node.gate + 1) * w]
            elif op == "scalar":
                v = np.float64(scalars[node.key])
            elif op == "one":
                v = np.float64(1.0)
            elif op == "add":
                v = a[0] + a[1]
            elif op == "sub":
                v = a[0] - a[1]
            elif op == "mul":
                v = a[0] * a[1]
            elif op == "act":
                v = _FLOAT_ACT[activations[node.key]](a[0])
            else:  # rescale, sat16, vector: the identity in float
                v = a[0]
                if unit_mask is not None and op == "vector" and node.per_unit:
                    v = np.where(unit_mask[:, t], v, 0.0)
            vals[node.index] = v
            peaks[node.index] = max(peaks[node.index], float(np.max(np.abs(v))) if np.size(v)
                                    else 0.0)
        state = {s.name: np.broadcast_to(vals[graph.outputs[s.name].index],
                                         (x.shape[0], s.size)) for s in graph.state}
        if unit_mask is not None:
            state = {s.name: np.where(unit_mask[:, t], v, 0.0) if s.per_unit else v
                     for s, v in zip(graph.state, state.values())}
        outputs.append(state["h"])
    return np.stack(outputs, axis=1), peaks, chain_peaks


@dataclasses.dataclass
class IntDense:
    """One Dense layer: ``act(sat32(linear(W, x, in_frac -> out_frac) + bias))``."""

    name: str
    kernel: IntLinear
    bias: np.ndarray
    activation: str
    in_frac: int
    out_frac: int
    last: bool

    def apply(self, x):
        y = sat32(self.kernel.apply(x, self.in_frac, self.out_frac) + self.bias)
        y = activate(y, self.activation, self.out_frac)
        return y if self.last else sat16(y)


@dataclasses.dataclass
class IntModel:
    """A model in integer arithmetic (see the module docstring); its methods are the oracle.

    Attributes:
        name: the Keras model's name.
        features: input features per step.
        num_outputs: scores per prediction.
        frac_bits: ``Q``, the format of states and scores.
        weight_bits: 8 or 16.
        input_offset, input_scale: ``x_q = sat16(round((x - offset) * scale))`` (float32) of
            the raw input (a leading ``Normalization`` composed in).
        recurrent: the recurrent layers, in order.
        head: the Dense layers, in order.
        approximations: activations replaced by an integer approximation (``tanh``/``sigmoid``:
            the table of :func:`tanh_q16`), and a ``relu`` output state clipped to ``Q``.
        input_estimators: per feature, the range estimator that set its input scaling.
    """

    name: str
    features: int
    num_outputs: int
    frac_bits: int
    weight_bits: int
    input_offset: np.ndarray
    input_scale: np.ndarray
    recurrent: list[IntRecurrent]
    head: list[IntDense]
    approximations: list[str]
    input_estimators: tuple[str, ...] = ()

    @property
    def state_sizes(self) -> list[int]:
        """Sizes of each recurrent layer's output ``h`` (the C struct's ``h<n>``)."""
        return [layer.output_size for layer in self.recurrent]

    @property
    def state_layout(self) -> list[tuple[tuple[str, int], ...]]:
        """Per recurrent layer, its declared state vectors ``(name, size)`` in order (``h``
        first): the C struct's ``<name><n>`` fields and the oracle's state vector."""
        return [tuple((v.name, v.size) for v in layer.state) for layer in self.recurrent]

    @property
    def state_elements(self) -> int:
        """``int16`` values of the whole state."""
        return sum(layer.state_size for layer in self.recurrent)

    def initial_state(self, batch: tuple[int, ...] = ()) -> list[np.ndarray]:
        """Zeros: per layer its state vectors concatenated in the declared order (``h``
        first), shape ``batch + (size,)``."""
        return [np.zeros(tuple(batch) + (layer.state_size,), np.int64)
                for layer in self.recurrent]

    def quantize_input(self, x) -> np.ndarray:
        """``sat16(round_half_away((x - offset) * scale))`` in float32 (NaN -> 0), as in C."""
        return quantize_input(x, self.input_offset, self.input_scale)

    @property
    def num_levels(self) -> int | None:
        """The number of levels of a flexible model (``None``: not flexible): every flexible
        layer runs the same level index at a step."""
        counts = {len(layer.levels) for layer in self.recurrent if layer.levels is not None}
        if not counts:
            return None
        if len(counts) > 1:
            raise ValueError(f"Model {self.name!r} has flexible layers with different numbers "
                             f"of levels {sorted(counts)}; one level index drives them all.")
        return counts.pop()

    def step(self, state: list[np.ndarray], x_q, level=None) -> list[np.ndarray]:
        """One time step: the new state, one ``int16``-valued vector per recurrent layer (``h``;
        ``h`` then ``c`` for an LSTM, as in the C state struct). ``state`` and ``x_q`` may carry
        leading batch dimensions: each row is stepped with the same arithmetic. ``level``: the
        level of a flexible model (an int, or one per batch row; ``None``: the top level)."""
        x = np.asarray(x_q, np.int64)
        new = []
        for layer, s in zip(self.recurrent, state):
            s = layer.step(x, s, self.frac_bits, level)
            new.append(s)
            x = s[..., :layer.output_size]
        return new

    def predict(self, state: list[np.ndarray]) -> np.ndarray:
        """The head on the last layer's output ``h``: ``int32``-valued scores in ``Q`` (batched
        like ``state``)."""
        y = np.asarray(state[-1], np.int64)[..., :self.recurrent[-1].output_size]
        for layer in self.head:
            y = layer.apply(y)
        return y

    def run(self, x, batch_size: int = 1024, levels=None) -> np.ndarray:
        """Scores (``int64``, in ``Q``) of float sequences ``(T, F)`` or ``(N, T, F)``.

        Up to ``batch_size`` sequences are stepped together (:meth:`step` on a batch): each
        sequence's scores are those of stepping it alone. ``levels``: a flexible model's level
        of every step, ``(T,)`` or ``(N, T)`` integers (``None``: the top level)."""
        x = np.asarray(x, np.float32)
        if x.ndim not in (2, 3) or x.shape[-1] != self.features:
            raise ValueError(f"Expected sequences of shape (T, {self.features}) or (N, T, "
                             f"{self.features}), but got {x.shape}.")
        if levels is not None:
            if self.num_levels is None:
                raise ValueError(f"Model {self.name!r} is not flexible (no cell with levels=); "
                                 "run it without levels.")
            levels = np.asarray(levels)
            if levels.shape not in ((x.shape[-2],), x.shape[:-1]):
                raise ValueError(f"Expected levels of shape ({x.shape[-2]},) or "
                                 f"{x.shape[:-1]} (one level per step), but got "
                                 f"{levels.shape}.")
            levels = np.broadcast_to(levels, x.shape[:-1]).astype(np.int64)
            if levels.min(initial=0) < 0 or levels.max(initial=0) >= self.num_levels:
                raise ValueError(f"Expected levels in [0, {self.num_levels - 1}], but got "
                                 f"values in [{levels.min()}, {levels.max()}].")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Expected batch_size to be a positive integer, but got "
                             f"{batch_size!r}.")
        single = x.ndim == 2
        batch = x[None] if single else x
        lv = None if levels is None else (levels[None] if single else levels)
        scores = []
        for start in range(0, len(batch), batch_size):
            x_q = self.quantize_input(batch[start:start + batch_size])
            state = self.initial_state(x_q.shape[:1])
            for t in range(x_q.shape[1]):
                state = self.step(state, x_q[:, t],
                                  None if lv is None else lv[start:start + batch_size, t])
            scores.append(self.predict(state))
        out = (np.concatenate(scores) if scores
               else np.zeros((0, self.num_outputs), np.int64))
        return out[0] if single else out

    def dequantize(self, scores) -> np.ndarray:
        return np.asarray(scores, np.float64) / (1 << self.frac_bits)

    def weight_bytes(self) -> int:
        """Bytes of constant data: matrices as stored, int32 biases and scalars."""
        total = 0
        for layer in self.recurrent:
            total += sum(m.nbytes for m in layer.kernel.matrices() + layer.recurrent.matrices())
            total += 4 * (sum(b.size for b in layer.biases.values()) + len(layer.scalars))
        for layer in self.head:
            total += sum(m.nbytes for m in layer.kernel.matrices()) + 4 * layer.bias.size
        return total


# -- quantization -----------------------------------------------------------------------------

def _unsupported(layer, why: str) -> ValueError:
    return ValueError(f"Cannot quantize layer {layer.name!r} ({type(layer).__name__}): {why}. "
                      f"Supported: {', '.join(SUPPORTED_LAYERS)}.")


def _weight_frac(values: np.ndarray, bits: int, name: str, factor: float = 1.0) -> int:
    """The format of ``values * factor`` (``factor``: a state scale folded into the weight)."""
    values = values * factor
    if not np.all(np.isfinite(values)):
        raise ValueError(f"Weight {name!r} has NaN or Inf values; retrain or restore a good "
                         "checkpoint.")
    limit = 2 ** (bits - 1) - 1
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    if peak == 0.0:
        return MAX_WEIGHT_FRAC
    frac = min(MAX_WEIGHT_FRAC, math.floor(math.log2(limit / peak)))
    while frac >= 0 and round(peak * 2.0**frac) > limit:
        frac -= 1
    while frac < MAX_WEIGHT_FRAC and round(peak * 2.0 ** (frac + 1)) <= limit:
        frac += 1
    if frac < 0:
        folded = (f" (times {factor:g}, the scale of the recurrent state it reads: its "
                  f"magnitude exceeds 1)" if factor != 1.0 else "")
        raise ValueError(
            f"Weight {name!r} has range [{float(values.min()) / factor:.6g}, "
            f"{float(values.max()) / factor:.6g}]{folded}: int{bits} with a power-of-two scale "
            f"holds magnitudes up to {limit} (scale 1). Use weight_bits=16, or retrain with "
            f"weight regularization.")
    return frac


def _matrix(values: np.ndarray, bits: int, name: str, factor: float = 1.0,
            compact=None) -> IntMatrix:
    """``values * factor`` quantized (``factor``: a state scale folded into the weight);
    ``compact`` (:class:`~keras_rnnedge.matrices.base.CompactMatrix`): ``values`` is its
    expansion, and its parameters are quantized with the same scale."""
    frac = _weight_frac(np.asarray(values, np.float64), bits, name, factor)
    values = np.asarray(values, np.float64) * factor
    rows = np.abs(values.T)
    while frac > 0 and rows.size and np.round(rows * 2.0**frac).sum(axis=1).max() > ROW_L1_MAX:
        frac -= 1
    q = np.round(values.T * 2.0**frac).astype(np.int64)
    if compact is not None:
        params = np.round(np.asarray(compact.params, np.float64) * factor * 2.0**frac)
        compact = compact.with_params(params.astype(np.int64))
        if not np.array_equal(compact.expand().T, q):  # rounding is odd-symmetric: never
            raise RuntimeError(f"internal error: the compact form of {name} does not expand to "
                               "its quantized matrix; please report it")
    return IntMatrix(name=name, values=q, frac=frac, bits=bits,
                     float_range=(float(values.min()), float(values.max())), compact=compact)


def _bias(values: np.ndarray, frac: int, name: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"Weight {name!r} has NaN or Inf values.")
    q = np.round(values * 2.0**frac)
    if np.any(np.abs(q) > INT32_MAX):
        raise ValueError(f"Weight {name!r} has range [{values.min():.6g}, {values.max():.6g}], "
                         f"beyond int32 in Q{frac}.")
    return q.astype(np.int64)


def _scalar(value: float, graph: StepGraph, key: str, formats: dict[str, int], q: int,
            name: str) -> int:
    """Scalar ``key`` of a step, in the format its ``scalar`` node declares."""
    node = next((n for n in graph.nodes if n.op == "scalar" and n.key == key), None)
    frac = q if node is None or node.like is None else formats[node.like]
    if not math.isfinite(value):
        raise ValueError(f"Weight {name!r} is {value}; retrain or restore a good checkpoint.")
    return int(round(value * 2**frac))


def _act_frac(peak: float) -> int:
    """Largest ``f <= 15`` with ``2 * peak * 2**f <= 32767`` (a factor 2 of headroom)."""
    if peak <= 0.0 or not np.isfinite(peak):
        return 15
    return int(max(0, min(15, math.floor(math.log2(INT16_MAX / (2.0 * peak))))))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


_FLOAT_ACT = {name: a.fn for name, a in ACTIVATION_TABLE.items()}


def _weights(cell) -> dict[str, np.ndarray]:
    """The cell's weights by name; a matrix of a family other than dense and low rank is also
    folded to dense under its base name (what the float C stores)."""
    w = {v.name.split("/")[-1].split(":")[0]: np.asarray(v.numpy(), np.float64)
         for v in cell.weights}
    for base, structure in getattr(cell, "structures", {}).items():
        if not (structure.is_dense or isinstance(structure, LowRank)):
            w[base] = structure.to_dense([w[n] for n in structure.weight_names(base)])
    return w


def _dense(w: dict[str, np.ndarray], base: str) -> np.ndarray:
    """Matrix ``base`` as one array (a low-rank one multiplied out)."""
    return w[base] if base in w else w[f"{base}_u"] @ w[f"{base}_v"]


def _float_stages(cell, w: dict[str, np.ndarray], base: str) -> tuple[list, list[str]]:
    """The product with matrix ``base`` as float stages
    (:meth:`keras_rnnedge.matrices.MatrixStructure.stages`) and the weight name of each; a
    stock cell's matrices are dense."""
    structure = getattr(cell, "structures", {}).get(base)
    if structure is None:
        return [Stage(w[base])], [base]
    names = structure.weight_names(base)
    stages = structure.stages([w[n] for n in names])
    return stages, [names[st.source] for st in stages]


def _chain_peaks(stages, v) -> list[float]:
    """max |.| of each intermediate (every stage output but the last) for float inputs ``v``."""
    peaks = []
    for stage in stages[:-1]:
        v = stage.apply(v)
        peaks.append(float(np.max(np.abs(v))) if v.size else 0.0)
    return peaks


def _act(layer, value, allowed, argument) -> str:
    name = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
    if name not in allowed:
        raise _unsupported(layer, f"{argument} {name!r} has no integer implementation (supported: "
                           f"{', '.join(allowed)})")
    return name


def _act_name(fn) -> str:
    """The name of a cell's activation (registry name, or the function's ``__name__``)."""
    try:
        return activation_name(fn)
    except ValueError:
        return fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))


def head_layers(plan) -> list[tuple]:
    """The head of ``plan`` (:func:`~keras_rnnedge.converters.lowering.plan_model`) as
    ``(Dense layer, activation name)`` pairs: an ``Activation`` layer sets the activation of the
    linear ``Dense`` before it, ``Dropout`` is skipped, ``softmax`` only on the last.

    Raises:
        ValueError: another head layer, or an activation without an implementation (named).
    """
    dense: list[list] = []
    for layer in plan.head:
        if isinstance(layer, keras.layers.Dense):
            dense.append([layer, _act(layer, layer.activation, DENSE_ACTIVATIONS, "activation")])
        elif isinstance(layer, keras.layers.Activation):
            act = _act(layer, layer.activation, DENSE_ACTIVATIONS, "activation")
            if not dense or dense[-1][1] != "linear":
                raise _unsupported(layer, "an Activation layer must follow a Dense layer with "
                                   "a linear activation")
            dense[-1][1] = act
        elif not isinstance(layer, keras.layers.Dropout):
            raise _unsupported(layer, "no C implementation for this head layer")
    for index, (layer, act) in enumerate(dense):
        if act == "softmax" and index != len(dense) - 1:
            raise _unsupported(layer, "softmax is supported only on the last layer")
    return [(layer, act) for layer, act in dense]


def _dense_weights(layer) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel, bias)`` of a Dense layer in float64 (zeros without a bias)."""
    kernel, *rest = layer.get_weights()
    bias = rest[0] if rest else np.zeros(kernel.shape[1])
    return np.asarray(kernel, np.float64), np.asarray(bias, np.float64)


def quantize_model(model: keras.Model, representative_data, *, weight_bits: int = 8,
                   frac_bits: int = 15, cell_frac_bits: int | None = None,
                   calibration_size: int | None = None, calibration_seed: int = 0) -> IntModel:
    """Derive the integer model of a trained recurrent + Dense model.

    Args:
        model: a trained tf_keras model: an optional leading ``Normalization(axis=-1)``,
            recurrent layers of :data:`SUPPORTED_LAYERS`
            (``RNN(FastGRNNCell|FastRNNCell|LowRankLSTMCell|LowRankGRUCell)``, ``LSTM``, ``GRU``,
            ``SimpleRNN``; stacked ones returning sequences), then ``Dense``/``Activation``/
            ``Dropout`` layers. Pruning and QAT wrappers are stripped.
        representative_data: raw float inputs ``(N, T, F)`` (what the Keras model takes): the
            per-feature ranges (of the standardised inputs, after a ``Normalization``) set the
            input scaling, and the float forward pass the formats of intermediate vectors.
        weight_bits: 8 or 16.
        frac_bits: ``Q``, fractional bits of the ``int16`` state and of the scores (1..15).
        cell_frac_bits: fractional bits of the LSTM cell state ``c`` (``int16``), in
            ``[0, frac_bits]``; ``None`` calibrates it (see the module docstring).
        calibration_size: sequences sampled (seeded, across the whole array) for the float
            forward pass that sets the formats; ``None`` uses every sequence. The input ranges
            are always measured on all of ``representative_data``.
        calibration_seed: seed of that sample.

    Returns:
        The :class:`IntModel` (a :class:`~.switching.SwitchingIntModel` for a model with a
        :class:`~keras_rnnedge.flexible.SwitchingCell`).

    Raises:
        ValueError: an unsupported layer, cell or activation (named), a weight whose range
            cannot be represented at ``weight_bits`` (named, with its range), bad options.
    """
    from keras_rnnedge.converters.c import switching

    if isinstance(model, keras.Model) and switching.switching_layer(model) is not None:
        return switching.quantize_switching(
            model, representative_data, weight_bits=weight_bits, frac_bits=frac_bits,
            cell_frac_bits=cell_frac_bits, calibration_size=calibration_size,
            calibration_seed=calibration_seed)
    if weight_bits not in (8, 16):
        raise ValueError(f"Expected weight_bits to be 8 or 16, but got {weight_bits!r}.")
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, int) or not 1 <= frac_bits <= 15:
        raise ValueError(f"Expected frac_bits to be an integer in [1, 15], but got "
                         f"{frac_bits!r}.")
    if cell_frac_bits is not None and (isinstance(cell_frac_bits, bool)
                                       or not isinstance(cell_frac_bits, int)
                                       or not 0 <= cell_frac_bits <= frac_bits):
        raise ValueError(f"Expected cell_frac_bits to be None or an integer in [0, frac_bits="
                         f"{frac_bits}], but got {cell_frac_bits!r}.")
    data = np.asarray(representative_data, np.float64)
    model = strip_wrappers(model)
    plan = plan_model(model)
    if data.ndim != 3 or data.shape[-1] != plan.features or data.shape[0] == 0:
        raise ValueError(f"Expected representative_data of shape (N, T, {plan.features}), but "
                         f"got {data.shape}.")
    standardization = plan.standardization
    if standardization is not None:  # calibrate on what the recurrent layers read
        data = standardization.apply(data)
    for layer in plan.recurrent:
        cell = getattr(layer, "cell", None)
        if not isinstance(layer, _LAYER_TYPES) or step_of(cell) is None:
            raise _unsupported(layer, f"no integer implementation for "
                               f"{type(cell).__name__ if cell is not None else 'this layer'}")
    q = frac_bits
    approximations: list[str] = []

    from keras_rnnedge.converters.quality import calibration_sample, choose_range

    ranges = [choose_range(data[..., j], bits=16, include_zero=False)
              for j in range(data.shape[-1])]
    lo = np.array([r[0] for r in ranges])
    hi = np.array([r[1] for r in ranges])
    offset = (lo + hi) / 2.0
    half = np.where(hi > lo, (hi - lo) / 2.0, 1.0)
    first = plan.recurrent[0].cell
    first_stage = _float_stages(first, _weights(first), "kernel")[0][0]  # (W_u for low rank)
    if not first_stage.plain:
        # a per-feature scale folds into the input matrix only when its first stage is a plain
        # matrix reading the whole input (dense, low rank); a Kronecker/TT kernel reads it in
        # blocks and a compact one (circulant...) shares entries across rows: one scale
        half = np.full_like(half, half.max())
    input_scale = 2.0**q / half
    input_offset = offset
    if standardization is not None:
        # x' = (x - m) k and x_q = (x' - o') s' compose to x_q = (x - (m + o' / k)) (k s'): the
        # raw input is quantized in one step (k > 0 always), the C kernels are unchanged
        input_offset = standardization.offset + offset / standardization.scale
        input_scale = standardization.scale * input_scale
    input_scale = input_scale.astype(np.float32)
    input_offset = input_offset.astype(np.float32)

    if calibration_size is not None:
        data = calibration_sample(data, calibration_size, calibration_seed)
    x_float = data.reshape(-1, data.shape[1], data.shape[2])  # float forward for calibration
    in_frac = q
    recurrent: list[IntRecurrent] = []
    for index, layer in enumerate(plan.recurrent):
        cell = layer.cell
        declared = step_of(cell)
        graph = declared.graph(cell)
        w = _weights(cell)
        chains = {base: _float_stages(cell, w, base) for base in declared.matrices(cell)}
        dense = {base: _dense(w, base) for base in declared.matrices(cell)}
        acts = {role: _act(layer, _act_name(getattr(cell, role)), allowed, role)
                for role, allowed in declared.activations.items()}
        last_no_head = index == len(plan.recurrent) - 1 and not plan.head
        for role, name in acts.items():
            if name in _APPROX:
                approximations.append(f"{layer.name}/{role}: {name} -> {_APPROX[name]}")
        declared_biases = declared.biases(cell, w)
        biases = {k: v for k, (v, _) in declared_biases.items()}
        # fold the input scaling of the first layer into the matrices reading the input and
        # into the biases added to their products
        if index == 0:
            for base in {p.key for p in graph.products() if p.args[0].op == "input"}:
                shift_in = offset @ dense[base]
                for k, (_, folds) in declared_biases.items():
                    if folds:
                        biases[k] = biases[k] + shift_in
                dense[base] = half[:, None] * dense[base]
                stage0 = chains[base][0][0]
                chains[base][0][0] = stage0.scaled(half if stage0.plain else half[0])
            x_in = (x_float - offset) / half
        else:
            x_in = x_float
        scalars = declared.scalars(cell, w)
        unit_mask = None
        if getattr(cell, "levels", None) is not None:  # calibrate over every level, switching
            from keras_rnnedge.flexible import random_schedules

            schedule = random_schedules(x_in.shape[0], x_in.shape[1], len(cell.levels),
                                        seed=calibration_seed)
            unit_mask = (np.arange(int(cell.units))
                         < np.asarray(cell.levels)[schedule][..., None])
        x_float, peaks, chain_peaks = float_forward(
            graph, dense, {b: c[0] for b, c in chains.items()}, biases, scalars, acts, x_in,
            unit_mask)
        for node in graph.nodes:
            if node.op == "act" and node.clip and acts[node.key] == "relu":
                if peaks[node.index] > 1.0:
                    approximations.append(
                        f"{layer.name}/{node.key}: relu -> clip(x, 0, 1) (max "
                        f"{peaks[node.index]:.3g} on the representative data; larger values "
                        "saturate at 1)")
        formats = {}
        for vector in graph.state:
            peak = peaks[graph.outputs[vector.name].index]
            if not vector.calibrated:
                formats[vector.name] = q
            elif vector.name == "h" and last_no_head:  # the output state is the scores, in Q
                formats[vector.name] = q
                if peak >= 1.0:
                    approximations.append(
                        f"{layer.name}: state clipped to [-1, 1) (max |h| {peak:.3g} on the "
                        f"representative data; the output state is in Q{q})")
            elif vector.name == "c" and cell_frac_bits is not None:
                formats[vector.name] = cell_frac_bits
            else:
                formats[vector.name] = min(q, vector.max_frac if vector.max_frac is not None
                                           else q, _act_frac(peak))
        for node in graph.calibrated_vectors():  # (a gate's ReLU hidden layer)
            formats[node.name] = min(q, _act_frac(peaks[node.index]))

        def linear(base, chains=chains, chain_peaks=chain_peaks, layer=layer):
            stages, names = chains[base]
            int_stages = [IntStage(_matrix(st.matrix, weight_bits, f"{layer.name}/{name}",
                                           compact=st.compact),
                                   blocks=st.blocks, inner=st.inner)
                          for st, name in zip(stages, names)]
            return IntLinear.chain(int_stages, [_act_frac(p) for p in chain_peaks[base]])

        recurrent.append(IntRecurrent(
            name=layer.name, kind=declared.name, graph=graph, units=int(cell.units),
            input_dim=int(dense["kernel"].shape[0]), in_frac=in_frac, frac=q,
            matrices={base: linear(base) for base in declared.matrices(cell)},
            biases={k: _bias(v, q, f"{layer.name}/{k}") for k, v in biases.items()},
            scalars={k: _scalar(v, graph, k, formats, q, f"{layer.name}/{k}")
                     for k, v in scalars.items()},
            activations=acts, formats=formats, levels=getattr(cell, "levels", None)))
        in_frac = recurrent[-1].out_frac()

    dense = [(layer, *_dense_weights(layer), act) for layer, act in head_layers(plan)]
    head: list[IntDense] = []
    y_float = x_float[:, -1]
    for index, (layer, kernel, bias, act) in enumerate(dense):
        last = index == len(dense) - 1
        pre = y_float @ kernel + bias
        out_frac = q if last else _act_frac(float(np.max(np.abs(pre))))
        if act in _APPROX:
            approximations.append(f"{layer.name}/activation: {act} -> {_APPROX[act]}")
        head.append(IntDense(
            name=layer.name, kernel=IntLinear(_matrix(kernel, weight_bits, f"{layer.name}/kernel")),
            bias=_bias(bias, out_frac, f"{layer.name}/bias"), activation=act, in_frac=in_frac,
            out_frac=out_frac, last=last))
        y_float = _FLOAT_ACT[act](pre)
        in_frac = out_frac
    num_outputs = head[-1].kernel.u.shape[0] if head else recurrent[-1].output_size
    return IntModel(name=plan.name, features=plan.features, num_outputs=num_outputs,
                    frac_bits=q, weight_bits=weight_bits, input_offset=input_offset,
                    input_scale=input_scale, recurrent=recurrent, head=head,
                    approximations=approximations,
                    input_estimators=tuple(r[2] for r in ranges))
