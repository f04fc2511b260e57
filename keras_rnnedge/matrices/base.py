"""The contract of a matrix family: one way to parameterize a weight matrix ``W`` (rows × cols).

A cell computes ``x @ W`` for each of its matrices (``kernel``: inputs × gates·units,
``recurrent_kernel``: units × gates·units). How ``W`` is stored is the matrix's *structure*: a
family (dense, low rank, Kronecker product, tensor train, ...) and its parameters. A structure
exposes a handful of verbs and nothing else leaks out of it:

* :meth:`MatrixStructure.resolve`: validate against the matrix's shape and fill in what was left
  automatic (factor shapes, modes), giving a *resolved* structure;
* :meth:`~MatrixStructure.weight_shapes`: the Keras weights (``{base}`` for a dense matrix,
  ``{base}_u``/``{base}_v``, ``{base}_factor_<i>``, ``{base}_core_<i>``);
* :meth:`~MatrixStructure.initializers`: one initializer per weight;
* :meth:`~MatrixStructure.matmul`: ``x @ W`` from the weight tensors (jit-compatible, and made
  of ops that the TFLite converter lowers to builtins TFLite Micro has);
* :meth:`~MatrixStructure.to_dense` / :meth:`~MatrixStructure.from_dense`: NumPy fold and fit;
* :meth:`~MatrixStructure.cost`: parameters and multiply-accumulates per vector product.

Structures are small immutable values that serialize to a dict (``{"family": "kronecker",
"factors": ...}``); cells take one per matrix (``kernel_structure=``, ``recurrent_structure=``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from keras_rnnedge._compat import keras, np, tf

__all__ = ["CompactMatrix", "MatrixCost", "MatrixStructure", "Stage", "check_int_list",
           "check_positive", "fresh", "gathered_matmul", "glorot_entries", "run_stages"]


def gathered_matmul(x, params, index: np.ndarray, sign: np.ndarray | None):
    """``x @ W`` with ``W[i, j] = sign[i, j] * params.flat[index[i, j]]`` (the compact
    families in Keras: a gather of constants, which the TFLite converter folds into a dense
    matrix)."""
    w = tf.gather(tf.reshape(params, [-1]), tf.constant(index, tf.int32))
    if sign is not None:
        w = w * tf.constant(sign, w.dtype)
    return tf.matmul(x, w)


class CompactMatrix:
    """A stage matrix that the C reads in a compact form: every entry is a signed copy of one
    of a few parameters, ``W[i, j] = sign[i, j] * params[index[i, j]]`` (block-circulant,
    Toeplitz, hashed), so flash holds ``params`` and a row kernel finds the entries.

    A family whose stage is compact returns ``Stage(matrix, compact=...)`` with ``matrix`` the
    expanded ``m × n`` matrix (what the oracle multiplies) and the subclass declaring:

    * ``params``: the 1-D parameter vector (float64 in a :class:`Stage`, integers once quantized:
      :meth:`with_params`);
    * :meth:`index_sign`: the ``(index, sign)`` arrays of the ``m × n`` matrix;
    * :meth:`c_kernel` / :meth:`c_call`: the C row kernel, bit for bit the oracle's
      ``sat32`` accumulation over the inputs in increasing order.
    """

    params: np.ndarray

    def index_sign(self) -> tuple[np.ndarray, np.ndarray]:
        """``(index, sign)``, each ``m × n`` (int64, and ±1)."""
        raise NotImplementedError

    def with_params(self, params: np.ndarray) -> CompactMatrix:
        return dataclasses.replace(self, params=np.asarray(params))

    def expand(self, params: np.ndarray | None = None) -> np.ndarray:
        """The ``m × n`` matrix of ``params`` (default: this one's)."""
        index, sign = self.index_sign()
        p = np.asarray(self.params if params is None else params)
        return sign * p[index]

    def c_kernel(self, bits: int, mode: str, dense_kernel: str) -> tuple[str, str]:
        """``(function name, C definition)`` of the row kernel for ``int<bits>_t`` parameters
        (``mode``: ``sat`` or ``nosat``); ``dense_kernel`` names the dense row kernel of that
        mode, ``int32_t f(const int<bits>_t *w, uint16_t n, const int16_t *x)`` (reading
        ``w`` with ``RE_RD_I<bits>``), which a family may call on contiguous runs. An empty
        definition means the dense kernel itself."""
        raise NotImplementedError

    def c_call(self, fn: str, array: str, row: str, x: str) -> str:
        """A C expression: row ``row`` (of the transposed ``n × m`` matrix, a C expression)
        times the int16 vector ``x``, with the parameters in ``array``."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a structured product, as the integer oracle and the C compute it.

    Every family's ``x @ W`` is a chain of stages (dense: one; low rank: two; Kronecker and
    tensor train: one per factor or core). A stage maps a vector ``v`` of ``blocks * m``
    values to one of ``blocks * n`` values with the small matrix ``matrix`` (``m × n``),
    applied to each contiguous block of ``v``; output column ``j = p * inner + a`` of block
    ``b`` goes to position ``(p * blocks + b) * inner + a`` (``inner = 1``: the block's outputs
    are interleaved, the transpose that brings the next factor's mode to the end):

        w[(j // inner) * blocks * inner + b * inner + j % inner] = Σ_i v[b * m + i] matrix[i, j]

    Attributes:
        matrix: (m, n) float64.
        blocks: how many blocks the input holds.
        inner: the size of the innermost output index (a TT rank; 1 otherwise).
        source: the index (in :meth:`MatrixStructure.weight_names` order) of the weight the
            stage's matrix is made from.
        compact: how the C stores and reads ``matrix`` when it is not a plain array
            (:class:`CompactMatrix`, with ``blocks == inner == 1``); ``None``: dense or CSR.
    """

    matrix: np.ndarray
    blocks: int = 1
    inner: int = 1
    source: int = 0
    compact: CompactMatrix | None = None

    def scaled(self, factor) -> Stage:
        """The stage with its matrix's rows multiplied by ``factor`` (a scalar, or one value
        per row for a plain stage reading the whole input)."""
        factor = np.asarray(factor, np.float64)
        if factor.ndim and (self.blocks > 1 or self.compact is not None):
            raise ValueError("a per-row scale only folds into a plain dense stage")
        matrix = factor[:, None] * self.matrix if factor.ndim else factor * self.matrix
        compact = (None if self.compact is None
                   else self.compact.with_params(factor * self.compact.params))
        return dataclasses.replace(self, matrix=matrix, compact=compact)

    @property
    def plain(self) -> bool:
        """A single dense matrix over the whole input (a per-row scale folds into it)."""
        return self.blocks == 1 and self.compact is None

    def apply(self, v: np.ndarray) -> np.ndarray:
        """The stage on float vectors ``v`` (..., blocks * m) (the reference of the integer
        and C implementations)."""
        m, n = self.matrix.shape
        lead = v.shape[:-1]
        y = v.reshape(*lead, self.blocks, m) @ self.matrix          # (..., blocks, n)
        y = y.reshape(*lead, self.blocks, n // self.inner, self.inner)
        return np.swapaxes(y, -3, -2).reshape(*lead, self.blocks * n)


def run_stages(stages: Sequence[Stage], x: np.ndarray) -> np.ndarray:
    """``x @ W`` through the stages, in float."""
    for stage in stages:
        x = stage.apply(x)
    return x


@dataclasses.dataclass(frozen=True)
class MatrixCost:
    """What one matrix costs.

    Attributes:
        params: scalars stored.
        macs: multiply-accumulates of one product ``x @ W`` for one vector ``x``.
    """

    params: int
    macs: int


class MatrixStructure:
    """Base class of the matrix families (see the module docstring).

    Subclasses are frozen dataclasses registered with
    :func:`keras_rnnedge.matrices.register_family`; ``family`` is the registry key.
    """

    family: ClassVar[str] = ""
    #: The TFLite model holds this family's matrix as one dense matrix: there is no builtin for
    #: its structure (a gather of shared values, which the converter folds), so the lowering
    #: folds it and reports it; the C keeps the structure.
    tflite_dense: ClassVar[bool] = False
    #: Weight-name suffixes the family uses (regular expression alternatives), for the pruning
    #: and QAT look-ups that map a base name (``"kernel"``) to its factors.
    suffix_pattern: ClassVar[str] = ""

    # -- what every family implements ---------------------------------------------------------
    def resolve(self, rows: int, cols: int, argument: str) -> MatrixStructure:
        """This structure with every automatic choice made for a ``rows × cols`` matrix.

        Raises:
            ValueError: the structure cannot represent such a matrix (naming ``argument``, the
                value and the valid choices).
        """
        raise NotImplementedError

    def weight_names(self, base: str) -> tuple[str, ...]:
        """Keras weight names of matrix ``base``, in the order :meth:`matmul` takes them (known
        before the shape is: automatic choices never change how many weights there are)."""
        raise NotImplementedError

    def weight_shapes(self, base: str, rows: int, cols: int) -> dict[str, tuple[int, ...]]:
        """Keras weight name → shape (a resolved structure), in :meth:`weight_names` order."""
        raise NotImplementedError

    def initializers(self, initializer, rows: int, cols: int) -> list:
        """One Keras initializer per weight; ``initializer`` is the cell's for this matrix."""
        raise NotImplementedError

    def matmul(self, x, weights: Sequence) -> Any:
        """``x @ W`` for ``x`` of shape (batch, rows), from the weight tensors."""
        raise NotImplementedError

    def matmul_columns(self, x, weights: Sequence, start: int, stop: int) -> Any:
        """``(x @ W)[:, start:stop]``; families whose last factor holds whole columns (dense,
        low rank) compute only those."""
        return self.matmul(x, weights)[:, start:stop]

    def to_dense(self, weights: Sequence[np.ndarray]) -> np.ndarray:
        """The (rows, cols) matrix the weights represent (float64)."""
        raise NotImplementedError

    def from_dense(self, matrix: np.ndarray) -> list[np.ndarray]:
        """Weights of this (resolved) structure that approximate ``matrix`` best (in the
        Frobenius norm, where the family has a closed form; see each family)."""
        raise NotImplementedError

    def cost(self, rows: int, cols: int) -> MatrixCost:
        raise NotImplementedError

    def level_macs(self, rows: int, cols: int, active_rows: int, active_cols: int,
                   read_cols: int) -> int:
        """MACs of the ``read_cols`` outputs of ``x @ M`` (``M`` ``rows x cols``) that a step
        reads (its gate blocks) when only the first ``active_rows`` inputs can be non-zero and
        only ``active_cols`` of those outputs are needed (a flexible cell below its top level).
        The default claims no saving from the level: the share ``read_cols / cols`` of the whole
        product; a family whose product skips inactive rows or columns says so."""
        return self.cost(rows, cols).macs * read_cols // cols

    def stages(self, weights: Sequence[np.ndarray]) -> list[Stage]:
        """The product as a chain of :class:`Stage` (what the integer path quantizes and the
        C computes), from the weights in :meth:`weight_names` order."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """``{"family": ..., <parameters>}``; :func:`keras_rnnedge.matrices.get_structure`
        reads it back."""
        out: dict[str, Any] = {"family": self.family}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            out[field.name] = _plain(value)
        return out

    @property
    def is_dense(self) -> bool:
        return False

    def describe(self) -> str:
        """A short label for tables (``"kronecker (2x4)⊗(2x5)"``)."""
        return self.family


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def check_positive(value, argument: str, what: str = "a positive integer") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value <= 0:
        raise ValueError(f"Received an invalid value for argument {argument}, expected {what}, "
                         f"got {value!r}.")
    return int(value)


def check_int_list(value, argument: str, length: int | None = None) -> tuple[int, ...]:
    """A non-empty sequence of positive integers (optionally of a given length)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"Received an invalid value for argument {argument}, expected a list "
                         f"of positive integers, got {value!r}.")
    out = tuple(check_positive(v, argument, "a list of positive integers") for v in value)
    if length is not None and len(out) != length:
        raise ValueError(f"Received an invalid value for argument {argument}, expected "
                         f"{length} values, got {len(out)}: {value!r}.")
    return out


def check_shape(shape) -> tuple[int, int] | None:
    """The ``shape`` field of a family that records its matrix's shape when resolved."""
    if shape is None:
        return None
    if (isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                       for v in shape)):
        raise ValueError(f"Received an invalid value for argument shape: {shape!r}; expected "
                         "None (set when the matrix is built) or (rows, cols).")
    return (int(shape[0]), int(shape[1]))


def check_resolved_shape(structure, rows: int, cols: int, argument: str) -> None:
    """A structure resolved for another shape cannot be reused for this matrix."""
    if structure.shape not in (None, (rows, cols)):
        raise ValueError(f"Received an invalid value for argument {argument}: "
                         f"{structure.get_config()} (resolved for a "
                         f"{structure.shape[0]}x{structure.shape[1]} matrix), expected one for "
                         f"the {rows}x{cols} matrix; leave shape unset.")


def divisor_splits(n: int, parts: int) -> list[tuple[int, ...]]:
    """Every ordered way to write ``n`` as a product of ``parts`` positive integers."""
    if parts == 1:
        return [(n,)]
    out = []
    for d in range(1, n + 1):
        if n % d == 0:
            out += [(d, *rest) for rest in divisor_splits(n // d, parts - 1)]
    return out


def glorot_entries(fan_in: float, fan_out: float):
    """Uniform entries with the Glorot limit ``sqrt(6 / (fan_in + fan_out))``: for a family
    whose every matrix entry is one parameter (block-circulant, Toeplitz, hashed, groups)."""
    limit = (6.0 / (fan_in + fan_out)) ** 0.5
    return keras.initializers.RandomUniform(-limit, limit)


def fresh(initializer):
    """A new instance of ``initializer``: Keras warns when one unseeded instance is reused."""
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer
