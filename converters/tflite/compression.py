"""Compressed storage of pruned weights for TensorFlow Lite Micro (its DECODE operator).

A pruned weight matrix (hard thresholding, grow-and-prune, tfmot pruning: exact zeros) is stored
dense in an int8 flatbuffer. TensorFlow Lite Micro can store it compressed instead: a custom
operator ``TFLM_DECODE`` placed right before the weight's consumer decodes it at run time into
an arena tensor of the original shape, type and quantization. :func:`compress_pruned` rewrites
an int8 (or int16x8) flatbuffer that way with the *pruning* decode type, which keeps one bit
per element (stored or zero) plus the stored values: ``ceil(n / 8) + nnz + 16`` bytes instead
of ``n``. It is lossless: the decoded matrix is the int8 matrix, element for element, so the
compressed model computes exactly what the uncompressed one does
(:func:`~keras_rnnedge.converters.tflite.pipeline.convert` checks this in TFLite Micro).

What it costs: the decoded matrix lives in the arena (RAM) while its consumer runs, so the
arena grows by about the largest decoded weight; each DECODE adds about
:data:`DECODE_OVERHEAD_BYTES` of flatbuffer (an operator, two tensors, a buffer); and each
invoke decodes the weights again (a pass over ``n`` bits). LiteRT has no ``TFLM_DECODE``
kernel: a compressed flatbuffer runs in TFLite Micro only, and the firmware registers the
operator with ``MicroMutableOpResolver::AddDecode()``, which TFLite Micro has had since
October 2025 (tflite-micro commit d96fe663d, "Support for DECODE operator (#3132)"); the
Arduino library ``Arduino_TensorFlowLite`` (tflite-micro-arduino-examples, last synced in
December 2023) predates it.

The format, as TFLite Micro reads it (tflite-micro ``tensorflow/lite/micro/kernels/``:
``decode.cc``, ``decode_state.h``, ``decode_state_prune.h``/``.cc``; and
``tensorflow/lite/micro/compression/decode.py``, the DECODE Common Metadata of the TFLM DECODE
operator design, revised May 20, 2025):

* The DECODE operator (custom code ``TFLM_DECODE``) has inputs in pairs ``(encoded,
  ancillary)``, both constant, and one output per pair (``decode.cc``: ``num_inputs ==
  num_outputs * 2``, ``IsConstantTensor``). The output is the tensor as it was: same shape,
  type and quantization, no buffer (the arena holds it).
* The ancillary tensor (UINT8) starts with the 16-byte DECODE Common Metadata: byte 0 the decode
  type (2 = pruning, ``DecodeState::kDcmTypePrune``), byte 1 the DCM version (1), bytes 2-3
  reserved, bytes 4-15 for the decode type: the pruning decoder requires byte 4 = 1 (its own
  version, ``DecodeStatePrune::kDcmVersionOffset``). The stored values follow, in the tensor's
  own type, in element order (``value_table_ = &ancillary_data[kDcmSizeInBytes]``).
* The encoded tensor (UINT8) holds one bit per element of the decoded tensor in row-major
  order, most significant bit first within each byte (``shift = ~index & 0b111``): 1 takes the
  next stored value, 0 writes the zero point.
* Zero points come from the decoded tensor's quantization: per tensor, or per channel along
  dimension 0 (or along the last dimension when there is more than one channel); any other
  quantized dimension is refused (``unsupported quantization axis``). Symmetric int8 weights,
  per tensor or per channel (the converter's default for Dense), have zero points 0.

Which tensors are rewritten (:func:`compress_pruned`): constant int8 tensors read only as the
weights of ``FULLY_CONNECTED`` (input 1) or as an operand of ``BATCH_MATMUL`` (the tensor-train
and tensor-ring factors), not shared with another tensor, and whose encoding saves more than
``min_saving`` bytes (by default :data:`DECODE_OVERHEAD_BYTES`, what one DECODE adds to the
flatbuffer, so that every rewrite makes the file smaller). The others stay dense; the
:class:`CompressionReport` says why.

Example:
    >>> compressed = compress_pruned(int8_flatbuffer)            # doctest: +SKIP
    >>> print(compressed.report.to_text())                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    "COMPRESSIONS",
    "DCM_BYTES",
    "DECODE_CUSTOM_CODE",
    "DECODE_OVERHEAD_BYTES",
    "DECODE_TYPE_PRUNE",
    "CompressedModel",
    "CompressionError",
    "CompressionReport",
    "CompressionWarning",
    "WeightTensor",
    "compress_pruned",
    "prune_decode",
    "prune_encode",
]

#: The ``compression`` options of :func:`~keras_rnnedge.converters.tflite.pipeline.convert`.
COMPRESSIONS = ("prune",)
#: Custom code under which TFLite Micro registers its DECODE kernel
#: (``MicroMutableOpResolver::AddDecode``: ``AddCustom("TFLM_DECODE", ...)``).
DECODE_CUSTOM_CODE = "TFLM_DECODE"
#: Size of the DECODE Common Metadata that starts every ancillary tensor.
DCM_BYTES = 16
#: DCM byte 0 of the pruning decoder (``DecodeState::kDcmTypePrune``).
DECODE_TYPE_PRUNE = 2
#: DCM byte 1: the DCM version TFLite Micro accepts (``decode.cc``: ``Version != 1`` fails).
DCM_VERSION = 1
#: DCM byte 4 for the pruning decoder: its own format version (``DecodeStatePrune::Setup``).
PRUNE_VERSION = 1
_PRUNE_VERSION_OFFSET = 4
#: Flatbuffer bytes one DECODE adds besides the encoded data, measured on int8 step models
#: (tests/test_tflite_compression.py re-measures it): the operator with its input and output
#: vectors (40), the decoded tensor without its quantization, which moves to it from the
#: encoded one (64), the ancillary tensor (56), the ancillary buffer's table and the 16-byte
#: alignment of both buffers (16 on average); the first DECODE also adds the operator code
#: (48 bytes more).
DECODE_OVERHEAD_BYTES = 176
#: Buffer data alignment in the flatbuffer (the TFLite schema's ``force_align: 16``).
_BUFFER_ALIGNMENT = 16
#: Operand positions that hold weights, by operator.
_WEIGHT_INPUTS = {"FULLY_CONNECTED": (1,), "BATCH_MATMUL": (0, 1)}


class CompressionError(ValueError):
    """The flatbuffer cannot be compressed (not a TFLite model, or a bug found by the
    self-check); the message says which."""


class CompressionWarning(UserWarning):
    """Compression was asked for, but no weight tensor was worth storing compressed."""


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


# -- the pruning format ----------------------------------------------------------------------------

def _zero_points(shape: tuple[int, ...], zero_points, axis: int) -> np.ndarray:
    """The zero point of every element of a tensor of ``shape`` (broadcast along ``axis``)."""
    zp = np.asarray(zero_points if zero_points is not None and len(zero_points) else [0],
                    np.int64).reshape(-1)
    if zp.size == 1:
        return np.full(shape, zp[0], np.int64)
    view = [1] * len(shape)
    view[axis] = zp.size
    return np.broadcast_to(zp.reshape(view), shape)


def prune_encode(values: np.ndarray, zero_points=None, axis: int = 0) -> tuple[bytes, bytes]:
    """``(encoded, ancillary)`` of the pruning decode type for an integer tensor.

    Args:
        values: the tensor (int8 weights), in its shape.
        zero_points: its quantization's zero points (one, or one per channel along ``axis``);
            ``None``: 0.
        axis: the quantized dimension.

    Returns:
        ``encoded``: one bit per element, row-major, most significant bit first (1: a stored
        value, 0: the zero point); ``ancillary``: the 16-byte DCM header, then the stored
        values in the tensor's dtype, in element order.
    """
    values = np.asarray(values)
    keep = (values.astype(np.int64) != _zero_points(values.shape, zero_points, axis)).reshape(-1)
    encoded = np.packbits(keep, bitorder="big").tobytes()
    header = bytearray(DCM_BYTES)
    header[0], header[1] = DECODE_TYPE_PRUNE, DCM_VERSION
    header[_PRUNE_VERSION_OFFSET] = PRUNE_VERSION
    stored = np.ascontiguousarray(values.reshape(-1)[keep]).astype(values.dtype.newbyteorder("<"))
    return encoded, bytes(header) + stored.tobytes()


def prune_decode(encoded: bytes, ancillary: bytes, shape, dtype, zero_points=None,
                 axis: int = 0) -> np.ndarray:
    """The tensor TFLite Micro's pruning decoder makes from ``encoded`` and ``ancillary``: the
    inverse of :func:`prune_encode`, written from ``decode_state_prune.cc``.

    Raises:
        CompressionError: a header TFLite Micro would refuse, or data of the wrong size.
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype).newbyteorder("<")
    header = bytes(ancillary[:DCM_BYTES])
    if len(header) < DCM_BYTES or header[0] != DECODE_TYPE_PRUNE or header[1] != DCM_VERSION \
            or header[_PRUNE_VERSION_OFFSET] != PRUNE_VERSION:
        raise CompressionError(f"Not a pruning DECODE header (version {DCM_VERSION}, pruning "
                               f"version {PRUNE_VERSION}): {header.hex()}.")
    n = math.prod(shape)
    keep = np.unpackbits(np.frombuffer(bytes(encoded), np.uint8), bitorder="big")
    if keep.size < n or keep.size >= n + 8:
        raise CompressionError(f"The encoded tensor has {len(encoded)} bytes; {n} elements "
                               f"need {-(-n // 8)}.")
    keep = keep[:n].astype(bool)
    stored = np.frombuffer(bytes(ancillary[DCM_BYTES:]), dtype)
    if stored.size != int(np.count_nonzero(keep)):
        raise CompressionError(f"The ancillary tensor holds {stored.size} values for "
                               f"{int(np.count_nonzero(keep))} set bits.")
    out = _zero_points(shape, zero_points, axis).astype(dtype).reshape(-1)
    out[keep] = stored
    return out.reshape(shape)


def _compressed_bytes(n: int, nonzeros: int, itemsize: int = 1) -> int:
    return -(-n // 8) + DCM_BYTES + nonzeros * itemsize


# -- the report ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WeightTensor:
    """One weight tensor the rewrite looked at.

    Attributes:
        name: the tensor's name in the flatbuffer.
        op: the operator that reads it (``FULLY_CONNECTED``, ``BATCH_MATMUL``).
        shape: its shape.
        nonzeros: elements other than the zero point.
        dense_bytes: bytes stored dense.
        compressed_bytes: bytes of the pruning encoding (bit mask + 16-byte header + non-zeros).
        encoded: whether the flatbuffer stores it compressed.
        reason: why it stays dense (empty when ``encoded``).
    """

    name: str
    op: str
    shape: tuple[int, ...]
    nonzeros: int
    dense_bytes: int
    compressed_bytes: int
    encoded: bool
    reason: str = ""

    @property
    def stored_bytes(self) -> int:
        return self.compressed_bytes if self.encoded else self.dense_bytes

    @property
    def density(self) -> float:
        n = math.prod(self.shape)
        return self.nonzeros / n if n else 0.0


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """What :func:`compress_pruned` did.

    Attributes:
        method: ``"prune"``.
        tensors: every weight tensor looked at, in flatbuffer order.
        dense_flatbuffer_bytes: the flatbuffer before.
        flatbuffer_bytes: the flatbuffer after.
        min_saving: the least saving (bytes) for which a tensor was encoded.
        arena_bytes, dense_arena_bytes: the TFLite Micro arena of the flatbuffer after and
            before, when measured (:func:`~keras_rnnedge.converters.tflite.pipeline.convert`
            does): the decoded weights live in the arena.
    """

    method: str
    tensors: tuple[WeightTensor, ...]
    dense_flatbuffer_bytes: int
    flatbuffer_bytes: int
    min_saving: int
    arena_bytes: int | None = None
    dense_arena_bytes: int | None = None

    @property
    def encoded(self) -> tuple[WeightTensor, ...]:
        return tuple(t for t in self.tensors if t.encoded)

    def to_text(self) -> str:
        """One summary line, then one line per weight tensor."""
        enc = self.encoded
        dense = sum(t.dense_bytes for t in self.tensors)
        stored = sum(t.stored_bytes for t in self.tensors)
        arena = ("" if self.arena_bytes is None or self.dense_arena_bytes is None else
                 f"; arena {self.dense_arena_bytes:,} -> {self.arena_bytes:,} B")
        lines = [f"{self.method}: {len(enc)} of {len(self.tensors)} weight tensors stored "
                 f"compressed (TFLM_DECODE); weights {dense:,} B dense -> {stored:,} B stored; "
                 f"flatbuffer {self.dense_flatbuffer_bytes:,} -> {self.flatbuffer_bytes:,} B"
                 f"{arena}"]
        for t in self.tensors:
            what = (f"{t.compressed_bytes:,} B compressed" if t.encoded else
                    f"kept dense ({t.reason})")
            lines.append(f"  {t.name or '?'} {t.op} {list(t.shape)} density {t.density:.0%}: "
                         f"{t.dense_bytes:,} B dense, {what}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"method": self.method, "dense_flatbuffer_bytes": self.dense_flatbuffer_bytes,
                "flatbuffer_bytes": self.flatbuffer_bytes, "min_saving": self.min_saving,
                "arena_bytes": self.arena_bytes, "dense_arena_bytes": self.dense_arena_bytes,
                "tensors": [{**dataclasses.asdict(t), "shape": list(t.shape)}
                            for t in self.tensors]}

    @classmethod
    def from_dict(cls, data: dict) -> CompressionReport:
        tensors = tuple(WeightTensor(**{**t, "shape": tuple(t["shape"])}) for t in data["tensors"])
        arenas = [None if data.get(k) is None else int(data[k])
                  for k in ("arena_bytes", "dense_arena_bytes")]
        return cls(method=data["method"], tensors=tensors,
                   dense_flatbuffer_bytes=int(data["dense_flatbuffer_bytes"]),
                   flatbuffer_bytes=int(data["flatbuffer_bytes"]),
                   min_saving=int(data["min_saving"]), arena_bytes=arenas[0],
                   dense_arena_bytes=arenas[1])


@dataclasses.dataclass(frozen=True)
class CompressedModel:
    """The rewritten flatbuffer and its :class:`CompressionReport` (``flatbuffer`` is the input
    unchanged when no tensor was worth encoding)."""

    flatbuffer: bytes
    report: CompressionReport


# -- the rewrite -----------------------------------------------------------------------------------

def _op_names(schema, model) -> list[str]:
    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_") and isinstance(code, int)}
    out = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode
            out.append("CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else
                                    str(custom or "")))
        else:
            out.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return out


def _name(tensor) -> str:
    name = tensor.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _quantization(tensor) -> tuple[np.ndarray | None, int, int]:
    """``(zero_points, axis, channels)`` of a tensor's quantization."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, 0, 1
    zp = None if q.zeroPoint is None else np.asarray(q.zeroPoint, np.int64)
    return zp, int(q.quantizedDimension or 0), len(q.scale)


def _axis_refusal(tensor) -> str | None:
    """Why TFLite Micro's pruning decoder would refuse the tensor's quantization, or None."""
    zp, axis, channels = _quantization(tensor)
    rank = len(tensor.shape)
    if axis == 0 or (channels > 1 and axis == rank - 1):
        if channels > 1 and (axis >= rank or tensor.shape[axis] != channels):
            return f"{channels} channels along dimension {axis} of shape {list(tensor.shape)}"
        if zp is None or zp.size not in (1, channels):
            return f"{0 if zp is None else zp.size} zero points for {channels} scales"
        return None
    return f"quantized along dimension {axis}, which the decoder does not support"


def _candidates(schema, model, names: list[str], g: int, uses: dict[int, int]):
    """``{tensor index: (op name, reason or None, consumers)}`` of subgraph ``g``'s constant
    weight operands; ``consumers`` lists the operator indices reading each."""
    sg = model.subgraphs[g]
    readers: dict[int, list[tuple[int, int]]] = {}
    for i, op in enumerate(sg.operators):
        for pos, t in enumerate(op.inputs if op.inputs is not None else ()):
            if t >= 0:
                readers.setdefault(int(t), []).append((i, pos))
    io = {int(t) for t in list(sg.inputs if sg.inputs is not None else ())
          + list(sg.outputs if sg.outputs is not None else ())}
    found = {}
    for t, reads in readers.items():
        tensor = sg.tensors[t]
        buffer = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
        if buffer is None or buffer.data is None or len(buffer.data) == 0:
            continue  # not a constant
        weight_ops = [names[sg.operators[i].opcodeIndex] for i, pos in reads
                      if pos in _WEIGHT_INPUTS.get(names[sg.operators[i].opcodeIndex], ())]
        if not weight_ops or tensor.type != schema.TensorType.INT8:
            continue  # not an int8 weight
        others = sorted({names[sg.operators[i].opcodeIndex] for i, pos in reads
                         if pos not in _WEIGHT_INPUTS.get(names[sg.operators[i].opcodeIndex],
                                                          ())})
        n = math.prod(int(s) for s in tensor.shape)
        if others:
            reason = f"also read by {', '.join(others)}"
        elif t in io:
            reason = "a subgraph input or output"
        elif uses.get(tensor.buffer, 0) > 1:
            reason = "its data is shared with another tensor"
        elif tensor.sparsity is not None:
            reason = "already stored sparse"
        elif len(buffer.data) != n:
            reason = f"{len(buffer.data)} bytes of data for {n} elements"
        else:
            reason = _axis_refusal(tensor)
        found[t] = (weight_ops[0], reason, sorted({i for i, _ in reads}))
    return found


def _decode_opcode(schema, model, names: list[str]) -> int:
    key = "CUSTOM:" + DECODE_CUSTOM_CODE
    if key in names:
        return names.index(key)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = DECODE_CUSTOM_CODE
    code.version = 1
    model.operatorCodes.append(code)
    names.append(key)
    return len(model.operatorCodes) - 1


def _empty_buffer_index(schema, model) -> int:
    """A buffer without data for the decoded (arena) tensors: TFLite keeps buffer 0 empty."""
    first = model.buffers[0] if model.buffers else None
    if first is not None and (first.data is None or len(first.data) == 0):
        return 0
    model.buffers.append(schema.BufferT())
    return len(model.buffers) - 1


def compress_pruned(flatbuffer: bytes, *, min_saving: int = DECODE_OVERHEAD_BYTES,
                    only_if_smaller: bool = True) -> CompressedModel:
    """Store the pruned int8 weights of ``flatbuffer`` with TFLite Micro's pruning decoder.

    Each constant int8 weight of a ``FULLY_CONNECTED`` (input 1) or ``BATCH_MATMUL`` (either
    operand) whose pruning encoding (``ceil(n / 8) + 16 + nnz`` bytes) is more than
    ``min_saving`` bytes per operator reading it smaller than its ``n`` dense bytes becomes an
    encoded tensor (the bit mask) and an ancillary tensor (header and non-zeros), and a
    ``TFLM_DECODE`` operator before each operator that reads it decodes it into a new arena
    tensor with the original shape, type and quantization. Every encoding is decoded again
    with :func:`prune_decode` and compared with the original values before the flatbuffer is
    returned. Writing the flatbuffer again (Python's flatbuffers packer) makes it 1 to 3 %
    larger than the converter's own writer does; when the encodings save less than that, the
    input is returned unchanged (unless
    ``only_if_smaller=False``).

    Args:
        flatbuffer: an int8 or int16x8 TFLite flatbuffer.
        min_saving: least bytes an encoding must save, per operator that reads the tensor, to
            be used (default :data:`DECODE_OVERHEAD_BYTES`: what a DECODE adds to the
            flatbuffer).
        only_if_smaller: return ``flatbuffer`` unchanged when the rewritten one is not
            smaller (``False``: the rewrite whatever its size, e.g. to test the format).

    Returns:
        A :class:`CompressedModel`. Its ``flatbuffer`` is the input unchanged when no weight
        was worth encoding (``report.encoded`` is empty).

    Raises:
        CompressionError: ``flatbuffer`` is not a TFLite model, or an encoding does not decode
            to the original values (a bug: please report it).
    """
    data = bytes(flatbuffer)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise CompressionError(f"Expected a TFLite flatbuffer ('TFL3' at bytes 4-8), but got "
                               f"{len(data)} bytes starting with {data[:8]!r}.")
    if isinstance(min_saving, bool) or not isinstance(min_saving, (int, np.integer)) \
            or min_saving < 0:
        raise CompressionError(f"Expected min_saving to be an integer >= 0, but got "
                               f"{min_saving!r}.")
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = _op_names(schema, model)
    uses: dict[int, int] = {}
    for sg in model.subgraphs:
        for tensor in sg.tensors:
            uses[tensor.buffer] = uses.get(tensor.buffer, 0) + 1
    reports: list[WeightTensor] = []
    plan: list[tuple[int, dict[int, list[int]]]] = []
    for g, sg in enumerate(model.subgraphs):
        chosen: dict[int, list[int]] = {}
        for t, (op, reason, consumers) in _candidates(schema, model, names, g, uses).items():
            tensor = sg.tensors[t]
            values = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.int8)
            zp, axis, _ = _quantization(tensor)
            shape = tuple(int(s) for s in tensor.shape)
            if values.size == math.prod(shape) and _axis_refusal(tensor) is None:
                nonzeros = int(np.count_nonzero(values.reshape(shape).astype(np.int64)
                                                != _zero_points(shape, zp, axis)))
            else:
                nonzeros = int(np.count_nonzero(values))
            dense, packed = values.size, _compressed_bytes(values.size, nonzeros)
            cost = min_saving * len(consumers)  # one DECODE per operator that reads it
            if reason is None and dense - packed <= cost:
                decodes = f"{len(consumers)} DECODE operators add" if len(consumers) > 1 else \
                    "a DECODE adds"
                reason = (f"the encoding saves {dense - packed:,} B, no more than the "
                          f"{cost:,} B {decodes}" if dense > packed else
                          f"the encoding ({packed:,} B) is no smaller")
            reports.append(WeightTensor(name=_name(tensor), op=op, shape=shape,
                                        nonzeros=nonzeros, dense_bytes=dense,
                                        compressed_bytes=packed, encoded=reason is None,
                                        reason=reason or ""))
            if reason is None:
                chosen[t] = consumers
        plan.append((g, chosen))
    if not any(chosen for _, chosen in plan):
        return CompressedModel(data, CompressionReport("prune", tuple(reports), len(data),
                                                       len(data), int(min_saving)))
    decode_code = _decode_opcode(schema, model, names)
    empty = _empty_buffer_index(schema, model)
    aligned: set[int] = set()
    for g, chosen in plan:
        if chosen:
            aligned |= _rewrite_subgraph(schema, model, model.subgraphs[g], chosen, decode_code,
                                         empty)
    out = _serialize(schema, model, aligned)
    if only_if_smaller and len(out) >= len(data):  # saved less than writing the file costs
        kept = tuple(dataclasses.replace(
            t, encoded=False, reason=f"the rewritten flatbuffer ({len(out):,} B) would be no "
            f"smaller than the original ({len(data):,} B)") if t.encoded else t
            for t in reports)
        return CompressedModel(data, CompressionReport("prune", kept, len(data), len(data),
                                                       int(min_saving)))
    _self_check(data, out)
    report = CompressionReport("prune", tuple(reports), len(data), len(out), int(min_saving))
    return CompressedModel(out, report)


def _rewrite_subgraph(schema, model, sg, chosen: dict[int, list[int]], decode_code: int,
                      empty: int) -> set[int]:
    """Encode the tensors ``chosen`` (index → consumer operators) of ``sg`` in place and insert
    one DECODE before each consumer (a DECODE output lives until the next operator only, as
    TFLite Micro's alternate decompression memory requires); returns the indices of the
    buffers that hold encoded and ancillary data."""
    buffers: set[int] = set()
    ancillary_of: dict[int, int] = {}
    originals: dict[int, object] = {}
    for t in chosen:
        tensor = sg.tensors[t]
        shape = tuple(int(s) for s in tensor.shape)
        values = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.int8).reshape(shape)
        zp, axis, _ = _quantization(tensor)
        encoded, ancillary = prune_encode(values, zp, axis)
        # the decoded tensor's template: the tensor as it was, without data
        decoded = schema.TensorT()
        decoded.shape, decoded.type = list(shape), tensor.type  # no name: the encoded has it
        decoded.quantization, decoded.buffer = tensor.quantization, empty
        decoded.shapeSignature, decoded.hasRank = tensor.shapeSignature, tensor.hasRank
        originals[t] = decoded
        # the encoded tensor keeps the index, the name and the buffer; it reads as raw bytes
        tensor.type, tensor.shape, tensor.shapeSignature = schema.TensorType.UINT8, \
            [len(encoded)], None
        tensor.quantization, tensor.hasRank = None, True
        model.buffers[tensor.buffer].data = np.frombuffer(encoded, np.uint8).copy()
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(ancillary, np.uint8).copy()
        model.buffers.append(buffer)
        buffers |= {tensor.buffer, len(model.buffers) - 1}
        extra = schema.TensorT()
        extra.shape, extra.type, extra.buffer = [len(ancillary)], schema.TensorType.UINT8, \
            len(model.buffers) - 1
        extra.hasRank = True
        sg.tensors.append(extra)
        ancillary_of[t] = len(sg.tensors) - 1
    consumers = sorted({i for ops in chosen.values() for i in ops}, reverse=True)
    for i in consumers:  # from the last, so that insertions keep the earlier indices
        op = sg.operators[i]
        decoded_of: dict[int, int] = {}
        for pos, t in enumerate(op.inputs):
            if t in chosen and i in chosen[t]:
                if t not in decoded_of:
                    sg.tensors.append(_copy_into(schema.TensorT(), originals[t]))
                    decoded_of[t] = len(sg.tensors) - 1
                op.inputs[pos] = decoded_of[t]
        decode = schema.OperatorT()
        decode.opcodeIndex = decode_code
        decode.inputs = [x for t in decoded_of for x in (t, ancillary_of[t])]
        decode.outputs = list(decoded_of.values())
        sg.operators.insert(i, decode)
    return buffers


def _serialize(schema, model, aligned: set[int]) -> bytes:
    """Pack ``model``; the data of the buffers in ``aligned`` starts at a multiple of 16 bytes.

    The DECODE buffers are aligned as the DECODE design asks (its 16-byte header keeps the
    ancillary data 128-bit aligned for optimized decoders); the other buffers keep the
    alignment the TFLite converter gives them (4 bytes: the data follows the vector's
    length), which TFLite Micro's kernels read as they are.
    """
    import flatbuffers

    class AlignedBuffer(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 - the flatbuffers object API's name
            data = None
            if self.data is not None and len(self.data):
                raw = np.ascontiguousarray(self.data, np.uint8)
                builder.Prep(_BUFFER_ALIGNMENT, raw.size)  # the data starts 16-aligned
                data = builder.CreateNumpyVector(raw)
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    buffers = model.buffers
    try:
        model.buffers = [_copy_into(AlignedBuffer(), b) if i in aligned else b
                         for i, b in enumerate(buffers)]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
    finally:
        model.buffers = buffers


def _copy_into(target, source):
    for key, value in vars(source).items():
        setattr(target, key, value)
    return target


def _self_check(original: bytes, compressed: bytes) -> None:
    """Decode every DECODE input pair of ``compressed`` with :func:`prune_decode` and compare it
    with the tensor of ``original`` it replaced (the same index in the same subgraph)."""
    schema = _schema()
    before = schema.ModelT.InitFromPackedBuf(bytearray(original), 0)
    after = schema.ModelT.InitFromPackedBuf(bytearray(compressed), 0)
    names = _op_names(schema, after)
    for g, sg in enumerate(after.subgraphs):
        for op in sg.operators:
            if names[op.opcodeIndex] != "CUSTOM:" + DECODE_CUSTOM_CODE:
                continue
            for k, out in enumerate(op.outputs):
                enc, anc = int(op.inputs[2 * k]), int(op.inputs[2 * k + 1])
                was = before.subgraphs[g].tensors[enc]
                decoded = sg.tensors[out]
                zp, axis, _ = _quantization(decoded)
                got = prune_decode(bytes(after.buffers[sg.tensors[enc].buffer].data),
                                   bytes(after.buffers[sg.tensors[anc].buffer].data),
                                   decoded.shape, np.int8, zp, axis)
                want = np.frombuffer(bytes(before.buffers[was.buffer].data),
                                     np.int8).reshape(got.shape)
                if not np.array_equal(got, want) or list(decoded.shape) != list(was.shape):
                    raise CompressionError(
                        f"The pruning encoding of tensor {_name(was)!r} (subgraph {g}) does not "
                        "decode to its values; this is a bug in keras_rnnedge's compression, "
                        "please report it with the model.")
