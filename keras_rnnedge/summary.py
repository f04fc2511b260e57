"""Size and cost of a model, layer by layer: parameters, bytes, MACs and recurrent-state RAM.

:func:`summary` builds weight → layer → model profiles, as ``larq.models.summary`` does, for the
figures that decide whether a recurrent model fits a microcontroller.

Counting rules (these are the definitions the numbers follow; tests check them by hand):

* **Parameters** are the scalars of the layer's own weights. tfmot wrappers are seen through:
  for ``PruneLowMagnitude`` the wrapped layer's weights count, not the ``mask``, ``threshold``
  and ``pruning_step`` variables; for ``QuantizeWrapper`` / ``QuantizeAnnotate`` (QAT) only the
  real weights count, not the quantizers' ``*_min`` / ``*_max`` / ``optimizer_step`` variables;
  tfmot's input ``QuantizeLayer`` has no parameters. Nested models are expanded, their layers
  named ``outer/inner``. A ``Normalization`` layer's ``count`` (how many samples ``adapt``
  saw; no inference reads it) is bookkeeping like tfmot's step counters and is not counted; its
  ``mean`` and ``variance`` are, also when they were passed as arguments (constants, not
  weights: the exports store them either way).
* **Non-zero** parameters count ``weight * mask`` for weights under a pruning wrapper (what
  ``strip_pruning`` deploys once the mask is applied) and the weight itself otherwise.
* **Tensor kinds.** A *matrix* is a weight that is multiplied: one a QAT wrapper quantizes as a
  weight; for a :class:`~keras_rnnedge.cells.CompressedCell`, exactly the weights its class lists
  in ``quantizable_weights``; for other layers, a weight of rank ≥ 2 whose name does not
  contain ``bias``. Everything else (biases, the scalars ζ, ν, α, β, normalisation vectors such
  as a ``Normalization`` layer's per-feature ``mean`` and ``variance``) is a *bias*.
* **Bytes at float32**: 4 bytes per value. **Bytes at int8**: 1 byte per value of a matrix,
  4 bytes per value of a bias or scalar (int32, as TFLite stores biases). Quantization scales
  and zero points are not counted.
* **Sparse storage.** Each matrix is stored as whichever is smaller (ties: dense), separately for
  float32 and int8: dense, ``size * b`` bytes, or CSR (:func:`csr_bytes`), with the matrix read
  as ``R = shape[-1]`` rows (output units, the ``(out, in)`` layout TFLite and the C runtime
  use) of ``C = size / R`` columns: per non-zero its value (``b`` bytes) and a column index
  (``i = 1`` byte, ``uint8``, when ``C <= 256``, else ``i = 2``, ``uint16``), plus ``R + 1``
  ``uint16`` row pointers, i.e. ``nnz * (b + i) + 2 * (R + 1)`` bytes. CSR is only possible
  when ``C <= 65536`` and ``nnz <= 65535`` (``uint16`` limits). Biases are always dense.
* **MACs per step** (recurrent layers): multiply-accumulates of the matrix products of one time
  step: ``cell.compression_stats().macs_per_step`` for a ``CompressedCell``,
  ``H (F + H)`` for ``SimpleRNN``, ``3 H (F + H)`` for ``GRU`` (either ``reset_after``),
  ``4 H (F + H)`` for ``LSTM``; summed over the cells of ``StackedRNNCells`` and both
  directions of ``Bidirectional``. MACs are those of the dense (or factored) products; a
  matrix stored as CSR would need one per non-zero instead.
* **MACs per inference** (every layer): for one input sample, i.e. a whole sequence for a
  recurrent layer (``T`` × MACs per step, ``T`` the static number of time steps); ``kernel
  size × positions`` for ``Dense`` (positions: the static dimensions between batch and
  features, 1 after an RNN that returns its last output) and convolutions; 0 for layers
  without weights, embeddings and normalisation layers (no matrix product); unknown (``None``,
  shown ``?``) otherwise or when a dimension is not static.
* **Recurrent-state RAM**: the state elements carried between steps (``H`` for
  SimpleRNN/GRU/FastGRNN, ``2H`` for LSTM), × 4 bytes at float32 and × 1 byte at int8. The
  model's *peak* is the sum over recurrent layers: executed step by step (streaming, as on a
  microcontroller) all of them are live at once; for layer-by-layer execution it is an upper
  bound.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from collections.abc import Callable
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.cells.base import CompressedCell
from keras_rnnedge.optimize.recurrent import is_quantize_input

__all__ = [
    "INDEX_BYTES",
    "LayerRecord",
    "MatrixRecord",
    "ModelSummary",
    "SummaryTotals",
    "TensorRecord",
    "csr_bytes",
    "summary",
]

#: Bytes of one CSR column index or row pointer (``uint16``).
INDEX_BYTES = 2  # uint16 row pointers, and column indices of matrices wider than 256
_INDEX_LIMIT = 2 ** (8 * INDEX_BYTES)  # 65536 distinct index values
_SMALL_INDEX_LIMIT = 256  # up to 256 columns a uint8 column index suffices
_F32_BYTES = 4
_INT8_BYTES = 1
_BIAS_INT8_BYTES = 4  # biases and scalars stay int32 in an int8 model

_STOCK_CELL_GATES = (
    (keras.layers.LSTMCell, 4),
    (keras.layers.GRUCell, 3),
    (keras.layers.SimpleRNNCell, 1),
)
_CONV_LAYERS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
_TRANSPOSED_CONV_LAYERS = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_NO_MATMUL_LAYERS = (
    keras.layers.Embedding,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Normalization,
)


def csr_bytes(shape: tuple[int, ...], nonzero: int, value_bytes: int) -> int | None:
    """Bytes of a matrix stored as CSR, or ``None`` when the ``uint16`` indices cannot hold it.

    The matrix is read as ``R = shape[-1]`` rows of ``C = size / R`` columns. Storage: per
    non-zero its value (``value_bytes``) and a column index (``uint8`` when ``C <= 256``, else
    ``uint16``), plus ``R + 1`` ``uint16`` row pointers:
    ``nonzero * (value_bytes + index_bytes) + 2 * (R + 1)``.

    Example:
        >>> csr_bytes((16, 4), nonzero=6, value_bytes=1)  # 6 * (1 + 1) + 2 * (4 + 1)
        22
        >>> csr_bytes((300, 4), nonzero=6, value_bytes=1)  # 6 * (1 + 2) + 2 * (4 + 1)
        28
    """
    size = math.prod(shape)
    if not shape or size == 0:
        return None
    rows = shape[-1]
    cols = size // rows
    if cols > _INDEX_LIMIT or nonzero > _INDEX_LIMIT - 1:
        return None
    index_bytes = 1 if cols <= _SMALL_INDEX_LIMIT else INDEX_BYTES
    return nonzero * (value_bytes + index_bytes) + INDEX_BYTES * (rows + 1)


# -- records ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """One weight tensor.

    Attributes:
        name: the variable's name (without ``:0``).
        shape: its shape.
        kind: ``"matrix"`` (int8 at 1 byte, may be stored sparse) or ``"bias"`` (biases and
            scalars: int32 at 4 bytes, always dense).
        params: number of scalars.
        nonzero_params: number of non-zero scalars (after the pruning mask, if any).
        bytes_f32, bytes_int8: storage at float32 / int8, the smaller of dense and CSR.
        sparse_f32, sparse_int8: whether that storage is CSR.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    params: int
    nonzero_params: int
    bytes_f32: int
    bytes_int8: int
    sparse_f32: bool
    sparse_int8: bool


@dataclasses.dataclass(frozen=True)
class MatrixRecord:
    """One weight matrix of a keras_rnnedge cell, as its family stores it.

    Attributes:
        name: ``layer/kernel``, ``layer/recurrent_kernel``.
        family: the family's description (``"low rank 5"``, ``"kronecker 3x8⊗3x10"``...).
        shape: (rows, cols) of the matrix it represents.
        params: scalars stored (all weights of the matrix).
        dense_params: ``rows * cols``.
        macs: multiply-accumulates of one product with one vector.
    """

    name: str
    family: str
    shape: tuple[int, int]
    params: int
    dense_params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class LayerRecord:
    """One layer of the model (a nested model's layers get a record each).

    Attributes:
        name: the layer's name, ``outer/inner`` inside a nested model.
        class_name: the class, with wrappers and the RNN cell spelled out, e.g.
            ``PruneLowMagnitude(RNN(FastGRNNCell))``.
        params, nonzero_params, bytes_f32, bytes_int8: sums over :attr:`tensors`.
        recurrent: whether the layer carries state between time steps.
        macs_per_step: MACs of one time step (recurrent layers; ``None`` otherwise or if the
            cell is not one whose cost is known).
        macs_per_inference: MACs for one input sample (``None`` if unknown).
        state_elements: recurrent state scalars (0 for other layers; ``None`` if the cell's
            ``state_size`` is not static).
        state_bytes_f32, state_bytes_int8: recurrent-state RAM, 4 and 1 bytes per element.
        tensors: the layer's weights, one :class:`TensorRecord` each.
        matrices: for keras_rnnedge cells, one :class:`MatrixRecord` per weight matrix (its
            family and what it costs); empty for other layers.
    """

    name: str
    class_name: str
    params: int
    nonzero_params: int
    bytes_f32: int
    bytes_int8: int
    recurrent: bool
    macs_per_step: int | None
    macs_per_inference: int | None
    state_elements: int | None
    state_bytes_f32: int | None
    state_bytes_int8: int | None
    tensors: tuple[TensorRecord, ...]
    matrices: tuple[MatrixRecord, ...] = ()

    @property
    def sparse_tensors_f32(self) -> tuple[str, ...]:
        """Names of the tensors stored as CSR at float32."""
        return tuple(t.name for t in self.tensors if t.sparse_f32)

    @property
    def sparse_tensors_int8(self) -> tuple[str, ...]:
        """Names of the tensors stored as CSR at int8."""
        return tuple(t.name for t in self.tensors if t.sparse_int8)


@dataclasses.dataclass(frozen=True)
class SummaryTotals:
    """Whole-model figures.

    Attributes:
        params, nonzero_params, bytes_f32, bytes_int8: sums over the layers.
        macs_per_step: MACs of one time step of all recurrent layers (``None`` if one is
            unknown).
        macs_per_inference: MACs for one input sample (``None`` if one layer's is unknown).
        peak_state_elements, peak_state_bytes_f32, peak_state_bytes_int8: recurrent state
            live at once when the model runs step by step: the sum over recurrent layers
            (``None`` if one layer's state size is unknown).
    """

    params: int
    nonzero_params: int
    bytes_f32: int
    bytes_int8: int
    macs_per_step: int | None
    macs_per_inference: int | None
    peak_state_elements: int | None
    peak_state_bytes_f32: int | None
    peak_state_bytes_int8: int | None


_COLUMNS = (  # header, alignment
    ("Layer", "<"),
    ("Class", "<"),
    ("Params", ">"),
    ("Non-zero", ">"),
    ("Bytes f32", ">"),
    ("Bytes int8", ">"),
    ("MACs/step", ">"),
    ("MACs/inference", ">"),
    ("State f32", ">"),
    ("State int8", ">"),
)

_NOTES = (
    "Bytes: weights at float32 (4 B each) and int8 (1 B per matrix value, 4 B per bias or "
    "scalar as int32; quantization scales not counted).",
    "*: at least one matrix stored sparse as CSR (value + uint8/uint16 column index per "
    "non-zero, uint16 row pointers) because that is smaller than dense.",
    "MACs/step: multiply-accumulates of one time step of a recurrent layer (matrix products only).",
    "MACs/inference: multiply-accumulates for one input sample (the whole sequence); ? = unknown.",
    "State: recurrent-state RAM in bytes (elements x 4 at float32, x 1 at int8); the total is "
    "the peak when all recurrent layers run step by step.",
)


#: The columns of the compact table (:meth:`ModelSummary.to_text` with ``wide=False``, what
#: ``rnnedge summary`` prints without ``--wide``): fits 100 columns for usual layer names.
_COMPACT = ("Layer", "Class", "Params", "Non-zero", "Bytes int8", "MACs/step", "State int8")

_COMPACT_NOTES = (
    "Bytes int8: weights at int8 (1 B per matrix value, 4 B per bias or scalar as int32; "
    "quantization scales not counted); *: a matrix stored sparse (CSR) because that is smaller.",
    "MACs/step: multiply-accumulates of one time step (matrix products only). State int8: "
    "recurrent-state RAM in bytes at int8 (peak over the layers in the total row).",
    "--wide (to_text(wide=True)) adds float32 bytes and state, and MACs per inference.",
)


def _fmt_int(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What :func:`summary` returns: per-layer records, totals and renderings.

    Attributes:
        name: the model's name.
        layers: one :class:`LayerRecord` per layer (input layers omitted).
        totals: the :class:`SummaryTotals`.
    """

    name: str
    layers: list[LayerRecord]
    totals: SummaryTotals

    def _rows(self) -> tuple[list[str], list[list[str]], list[str]]:
        """Header, body and total rows as strings (shared by text and Markdown)."""
        any_recurrent = any(layer.recurrent for layer in self.layers)

        def byte_cell(value: int, sparse: bool) -> str:
            # A trailing space keeps the digits aligned with the starred (sparse) entries.
            return f"{value:,}" + ("*" if sparse else " ")

        def layer_row(r: LayerRecord) -> list[str]:
            dash = not r.recurrent
            return [
                r.name,
                r.class_name,
                f"{r.params:,}",
                f"{r.nonzero_params:,}",
                byte_cell(r.bytes_f32, bool(r.sparse_tensors_f32)),
                byte_cell(r.bytes_int8, bool(r.sparse_tensors_int8)),
                "-" if dash else _fmt_int(r.macs_per_step),
                _fmt_int(r.macs_per_inference),
                "-" if dash else _fmt_int(r.state_bytes_f32),
                "-" if dash else _fmt_int(r.state_bytes_int8),
            ]

        t = self.totals
        dash = not any_recurrent
        total = [
            "Total",
            "",
            f"{t.params:,}",
            f"{t.nonzero_params:,}",
            byte_cell(t.bytes_f32, False),
            byte_cell(t.bytes_int8, False),
            "-" if dash else _fmt_int(t.macs_per_step),
            _fmt_int(t.macs_per_inference),
            "-" if dash else _fmt_int(t.peak_state_bytes_f32),
            "-" if dash else _fmt_int(t.peak_state_bytes_int8),
        ]
        return [c[0] for c in _COLUMNS], [layer_row(r) for r in self.layers], total

    def to_text(self, *, wide: bool = True) -> str:
        """The table as fixed-width text (deterministic: fit for snapshot tests).

        Args:
            wide: every column (the default); ``False``: the compact table (parameters,
                non-zeros, int8 bytes, MACs per step, int8 state RAM) that fits 100 columns
                for usual layer names, with its notes wrapped to 100 columns.
        """
        headers, body, total = self._rows()
        keep = range(len(headers)) if wide else [headers.index(h) for h in _COMPACT]
        headers, total = [headers[i] for i in keep], [total[i] for i in keep]
        body = [[row[i] for i in keep] for row in body]
        widths = [max(len(row[i]) for row in [headers, *body, total]) for i in range(len(headers))]
        aligns = [_COLUMNS[i][1] for i in keep]

        def line(row):
            return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(row, aligns, widths)).rstrip()

        rule_width = sum(widths) + 2 * (len(widths) - 1)
        lines = [f'Model: "{self.name}"', "=" * rule_width, line(headers), "-" * rule_width]
        lines += [line(row) for row in body]
        lines += ["-" * rule_width, line(total), "=" * rule_width]
        matrices = [m for r in self.layers for m in r.matrices]
        if matrices:
            lines.append("Matrices (family: params of rows x cols, MACs per product):")
            width = max(len(m.name) for m in matrices)
            lines += [f"  {m.name:<{width}}  {m.family}: {m.params:,} of {m.shape[0]}x"
                      f"{m.shape[1]} = {m.dense_params:,}, {m.macs:,} MACs" for m in matrices]
        if wide:
            lines += list(_NOTES)
        else:
            lines += [part for note in _COMPACT_NOTES
                      for part in textwrap.wrap(note, 100, subsequent_indent="  ")]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The table as GitHub-flavoured Markdown, notes below it."""
        headers, body, total = self._rows()
        aligns = [":--" if c[1] == "<" else "--:" for c in _COLUMNS]

        def line(row):
            return "| " + " | ".join(v.strip().replace("*", r"\*") or " " for v in row) + " |"

        lines = [f"**Model `{self.name}`**", "", line(headers), "| " + " | ".join(aligns) + " |"]
        lines += [line(row) for row in body]
        lines.append(
            "| " + " | ".join(f"**{v.strip()}**" if v.strip() else " " for v in total) + " |"
        )
        lines.append("")
        lines += [f"- {note}".replace("- *:", r"- \*:") for note in _NOTES]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable): ``{"name", "layers": [...], "totals": {...}}``."""
        return {
            "name": self.name,
            "layers": [
                {
                    **dataclasses.asdict(layer),
                    "tensors": [
                        {**dataclasses.asdict(t), "shape": list(t.shape)} for t in layer.tensors
                    ],
                    "matrices": [
                        {**dataclasses.asdict(m), "shape": list(m.shape)} for m in layer.matrices
                    ],
                }
                for layer in self.layers
            ],
            "totals": dataclasses.asdict(self.totals),
        }

    def to_json(self, **kwargs) -> str:
        """:meth:`to_dict` as JSON (``kwargs`` go to :func:`json.dumps`, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)


# -- analysis --------------------------------------------------------------------------------


def _unwrap(layer) -> tuple[list, Any]:
    """Strip tfmot (and ``TimeDistributed``) wrappers: ``(wrappers outermost first, core)``.

    ``Bidirectional`` is kept as the core: its two directions are separate layers.
    """
    wrappers = []
    while isinstance(layer, keras.layers.Wrapper) and not isinstance(
        layer, keras.layers.Bidirectional
    ):
        wrappers.append(layer)
        layer = layer.layer
    return wrappers, layer


def _cells(cell) -> list:
    if isinstance(cell, keras.layers.StackedRNNCells):
        return [c for inner in cell.cells for c in _cells(inner)]
    return [cell]


def _rnn_layers(core) -> list:
    """The ``keras.layers.RNN`` instances making up ``core`` (two for ``Bidirectional``)."""
    if isinstance(core, keras.layers.Bidirectional):
        return [core.forward_layer, core.backward_layer]
    if isinstance(core, keras.layers.RNN):
        return [core]
    return []


def _describe(layer, wrappers, core) -> str:
    def rnn_name(rnn) -> str:
        cls = type(rnn).__name__
        if type(rnn) is not keras.layers.RNN:  # LSTM, GRU, SimpleRNN, ...: the class says it
            return cls
        cell = rnn.cell
        if isinstance(cell, keras.layers.StackedRNNCells):
            inner = ", ".join(type(c).__name__ for c in _cells(cell))
            return f"{cls}(StackedRNNCells[{inner}])"
        return f"{cls}({type(cell).__name__})"

    if isinstance(core, keras.layers.Bidirectional):
        text = f"{type(core).__name__}({rnn_name(core.forward_layer)})"
    elif isinstance(core, keras.layers.RNN):
        text = rnn_name(core)
    else:
        text = type(core).__name__
    for wrapper in reversed(wrappers):
        text = f"{type(wrapper).__name__}({text})"
    return text


def _state_elements(state_size) -> int | None:
    if isinstance(state_size, (list, tuple)):
        parts = [_state_elements(s) for s in state_size]
        return None if None in parts else sum(parts)
    if hasattr(state_size, "as_list"):  # TensorShape
        dims = state_size.as_list()
        return None if None in dims else math.prod(dims)
    return int(state_size)


def _cell_cost(cell) -> tuple[int | None, int | None]:
    """``(macs_per_step, state_elements)`` of one cell; ``None`` where unknown."""
    if isinstance(cell, CompressedCell):
        stats = cell.compression_stats()
        return stats.macs_per_step, stats.state_size
    for cls, gates in _STOCK_CELL_GATES:
        if isinstance(cell, cls):
            features, units = int(cell.kernel.shape[0]), int(cell.units)
            return gates * units * (features + units), _state_elements(cell.state_size)
    try:
        return None, _state_elements(cell.state_size)
    except (TypeError, ValueError, AttributeError):
        return None, None


def _shape(layer, attribute: str) -> tuple | None:
    """A layer's static ``input_shape`` / ``output_shape`` (first one if several)."""
    try:
        shape = getattr(layer, attribute)
    except (AttributeError, RuntimeError, ValueError):
        return None
    if isinstance(shape, list):
        shape = shape[0] if shape else None
    if shape is None or (shape and isinstance(shape[0], (tuple, list))):
        return None
    return tuple(shape)


def _positions(shape: tuple | None) -> int | None:
    """Product of the dimensions between batch and features (``None`` if one is unknown)."""
    if shape is None or len(shape) < 2:
        return None
    inner = shape[1:-1]
    return None if any(d is None for d in inner) else math.prod(inner)


def _compressed_cell_kinds(core) -> dict[int, bool]:
    """For weights owned by a ``CompressedCell``: ``id(variable) -> is a matrix``."""
    owners = (
        [core]
        if isinstance(core, CompressedCell)
        else [cell for rnn in _rnn_layers(core) for cell in _cells(rnn.cell)]
    )
    table = {}
    for cell in owners:
        if isinstance(cell, CompressedCell):
            quantizable = set(cell.quantizable_weights)
            for weight in cell.weights:
                table[id(weight)] = _short_name(weight) in quantizable
    return table


def _short_name(variable) -> str:
    return variable.name.split(":")[0].split("/")[-1]


def _tensor_record(name: str, value, mask, is_matrix: bool) -> TensorRecord:
    shape = tuple(int(d) for d in value.shape)
    params = int(value.size)
    effective = value * mask if mask is not None else value
    nonzero = int(np.count_nonzero(effective))
    if not is_matrix:
        return TensorRecord(
            name,
            shape,
            "bias",
            params,
            nonzero,
            params * _F32_BYTES,
            params * _BIAS_INT8_BYTES,
            False,
            False,
        )

    def stored(value_bytes: int) -> tuple[int, bool]:
        dense = params * value_bytes
        sparse = csr_bytes(shape, nonzero, value_bytes)
        return (sparse, True) if sparse is not None and sparse < dense else (dense, False)

    f32, sparse_f32 = stored(_F32_BYTES)
    int8, sparse_int8 = stored(_INT8_BYTES)
    return TensorRecord(
        name,
        shape,
        "matrix",
        params,
        nonzero,
        f32,
        int8,
        sparse_f32,
        sparse_int8,
    )


def _normalization_constants(core) -> list[TensorRecord]:
    """A ``Normalization`` built from ``mean=``/``variance=`` arguments holds them as constants,
    not weights: the same per-feature vectors as an adapted one's, counted the same way."""
    if (not isinstance(core, keras.layers.Normalization) or core.input_mean is None
            or not core.built):
        return []
    return [_tensor_record(f"{core.name}/{name}", np.asarray(getattr(core, name)).reshape(-1),
                           None, False) for name in ("mean", "variance")]


def _real_variables(layer, wrappers, core) -> tuple[list, set[int]]:
    """The layer's parameters, in Keras' weight order, and the ids of the QAT-quantized ones.

    A QAT wrapper replaces the quantized weights of the wrapped layer by tensors (``setattr``),
    which drops them from that layer's ``weights``; the wrapper keeps them in ``_weight_vars``
    next to its quantizer variables, which are not parameters.
    """
    if is_quantize_input(core):
        return [], set()
    quantized = {
        id(w): w for wrapper in wrappers for w, *_quantizer in getattr(wrapper, "_weight_vars", ())
    }
    real = {id(v): v for v in core.weights}
    real.update(quantized)
    ordered, seen = [], set()
    for variable in [*layer.weights, *real.values()]:
        if id(variable) in real and id(variable) not in seen:
            ordered.append(variable)
            seen.add(id(variable))
    if isinstance(core, keras.layers.Normalization):  # adapt's sample counter: bookkeeping
        ordered = [v for v in ordered if _short_name(v) != "count"]
    return ordered, set(quantized)


def _layer_record(name: str, layer) -> LayerRecord:
    wrappers, core = _unwrap(layer)
    variables, quantized = _real_variables(layer, wrappers, core)
    masks = {}
    for wrapper in wrappers:
        for weight, mask, _threshold in getattr(wrapper, "pruning_vars", ()):
            masks[id(weight)] = mask
    mask_ids = [id(v) for v in variables if id(v) in masks]
    values = keras.backend.batch_get_value(variables + [masks[i] for i in mask_ids])
    mask_values = dict(zip(mask_ids, values[len(variables) :]))
    owned = _compressed_cell_kinds(core)
    tensors = []
    for variable, value in zip(variables, values):
        value = np.asarray(value)
        if id(variable) in quantized:  # QAT quantizes it as a weight: int8
            is_matrix = True
        elif id(variable) in owned:
            is_matrix = owned[id(variable)]
        else:
            is_matrix = value.ndim >= 2 and "bias" not in _short_name(variable)
        tensors.append(_tensor_record(variable.name.split(":")[0], value,
                                      mask_values.get(id(variable)), is_matrix))
    tensors += _normalization_constants(core)

    rnns = _rnn_layers(core)
    recurrent = bool(rnns)
    macs_per_step = None
    state = 0
    kernels = sum(t.params for t in tensors if t.kind == "matrix")
    if recurrent:
        costs = [_cell_cost(cell) for rnn in rnns for cell in _cells(rnn.cell)]
        macs = [c[0] for c in costs]
        states = [c[1] for c in costs]
        macs_per_step = None if None in macs else sum(macs)
        state = None if None in states else sum(states)
        input_shape = _shape(layer, "input_shape")
        steps = input_shape[1] if input_shape is not None and len(input_shape) >= 3 else None
        macs_per_inference = (
            None if macs_per_step is None or steps is None else (macs_per_step * steps)
        )
    elif not tensors or isinstance(core, _NO_MATMUL_LAYERS) or is_quantize_input(core):
        macs_per_inference = 0
    elif isinstance(core, keras.layers.Dense):
        positions = _positions(_shape(layer, "input_shape"))
        macs_per_inference = None if positions is None else kernels * positions
    elif isinstance(core, _CONV_LAYERS) and not isinstance(core, _TRANSPOSED_CONV_LAYERS):
        positions = _positions(_shape(layer, "output_shape"))
        macs_per_inference = None if positions is None else kernels * positions
    else:
        macs_per_inference = None

    return LayerRecord(
        name=name,
        class_name=_describe(layer, wrappers, core),
        params=sum(t.params for t in tensors),
        nonzero_params=sum(t.nonzero_params for t in tensors),
        bytes_f32=sum(t.bytes_f32 for t in tensors),
        bytes_int8=sum(t.bytes_int8 for t in tensors),
        recurrent=recurrent,
        macs_per_step=macs_per_step,
        macs_per_inference=macs_per_inference,
        state_elements=state,
        state_bytes_f32=None if state is None else state * _F32_BYTES,
        state_bytes_int8=None if state is None else state * _INT8_BYTES,
        tensors=tuple(tensors),
        matrices=_matrix_records(name, rnns),
    )


def _matrix_records(name: str, rnns) -> tuple[MatrixRecord, ...]:
    out = []
    for rnn in rnns:
        for cell in _cells(rnn.cell):
            if not isinstance(cell, CompressedCell) or not cell.built:
                continue
            for base, structure in cell.structures.items():
                rows, cols = cell.matrix_shapes[base]
                cost = structure.cost(rows, cols)
                out.append(MatrixRecord(name=f"{name}/{base}", family=structure.describe(),
                                        shape=(rows, cols), params=cost.params,
                                        dense_params=rows * cols, macs=cost.macs))
    return tuple(out)


def _layers(model, prefix: str = ""):
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            yield from _layers(layer, f"{prefix}{layer.name}/")
        else:
            yield f"{prefix}{layer.name}", layer


def _sum_or_none(values) -> int | None:
    values = list(values)
    return None if None in values else sum(values)


def summary(model, *, print_fn: Callable[[str], Any] | None = None) -> ModelSummary:
    """Parameters, bytes at float32 and int8, MACs and recurrent-state RAM of a built model.

    The counting rules (wrappers, sparse storage, int8 biases, MACs, state) are those in this
    module's docstring.

    Args:
        model: a built ``keras.Model`` (Sequential, functional or subclassed), possibly with
            tfmot pruning or quantization wrappers and nested models.
        print_fn: if given, called once with :meth:`ModelSummary.to_text` (e.g. ``print``).

    Returns:
        A :class:`ModelSummary` with ``.layers``, ``.totals``, ``.to_text()``,
        ``.to_markdown()`` and ``.to_dict()``.

    Raises:
        TypeError: if ``model`` is not a tf_keras ``Model``.
        ValueError: if the model is not built.

    Example:
        >>> from keras_rnnedge import keras
        >>> from keras_rnnedge.cells import FastGRNNCell
        >>> from keras_rnnedge.summary import summary
        >>> model = keras.Sequential([keras.Input((10, 3)),
        ...                           keras.layers.RNN(FastGRNNCell(8, u_rank=4)),
        ...                           keras.layers.Dense(2)])
        >>> s = summary(model)
        >>> s.totals.params, s.layers[0].macs_per_step, s.totals.peak_state_bytes_int8
        (124, 88, 8)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"summary() expects a tf_keras Model (keras_rnnedge.keras.Model), but got "
            f"{type(model).__module__}.{type(model).__qualname__}. Keras 3 models are not "
            "supported: build the model with `from keras_rnnedge import keras`."
        )
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: summary() needs its weights. Call the model on "
            "data, call model.build(input_shape), or start it with keras.Input(shape=...)."
        )
    records = [_layer_record(name, layer) for name, layer in _layers(model)]
    recurrent = [r for r in records if r.recurrent]
    peak_state = _sum_or_none(r.state_elements for r in recurrent)
    totals = SummaryTotals(
        params=sum(r.params for r in records),
        nonzero_params=sum(r.nonzero_params for r in records),
        bytes_f32=sum(r.bytes_f32 for r in records),
        bytes_int8=sum(r.bytes_int8 for r in records),
        macs_per_step=_sum_or_none(r.macs_per_step for r in recurrent),
        macs_per_inference=_sum_or_none(r.macs_per_inference for r in records),
        peak_state_elements=peak_state,
        peak_state_bytes_f32=None if peak_state is None else peak_state * _F32_BYTES,
        peak_state_bytes_int8=None if peak_state is None else peak_state * _INT8_BYTES,
    )
    result = ModelSummary(name=model.name, layers=records, totals=totals)
    if print_fn is not None:
        print_fn(result.to_text())
    return result
