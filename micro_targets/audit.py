"""Flatbuffer audit: can this TFLite model run under TFLite Micro on that board, and does it fit?

:func:`list_ops` reads the operators a flatbuffer uses; :data:`TFLM_OPS` says which builtin
operators TFLite Micro implements and which ``tflite::MicroMutableOpResolver`` method registers
each; :func:`audit` puts both together with the measured arena and the board's memories::

    report = audit(flatbuffer, "nano33ble")        # raises when it does not fit
    text = report.to_text()                        # ops, arena, flash and RAM against the board
    report.resolver_methods                        # ("AddFullyConnected", "AddTanh", ...)

Memory accounting (all in bytes):

* flash needed = the flatbuffer (stored as a ``const`` array, which stays in flash on Arm and
  Xtensa) + the board's :attr:`~keras_rnnedge.micro_targets.boards.Board.tflm_runtime_flash_bytes`,
  an *estimate* of the TFLite Micro runtime and kernels. The board's own core/framework (Arduino
  Mbed OS, ESP-IDF) is not counted.
* RAM needed = the TFLite Micro arena measured on this host (:func:`~keras_rnnedge.micro_targets.
  emulate.measure_arena`, exact to 16 bytes), plus a margin (:func:`arena_with_margin`:
  +10 %, rounded up to 16 bytes, + 1 KiB), plus :data:`RAM_ALLOWANCE_BYTES` for what lives
  outside the arena. The margin covers what the host measurement cannot see: the host build
  uses the reference kernels, while a target build may use optimized kernels (CMSIS-NN,
  ESP-NN) that request scratch buffers of their own; the TFLite Micro version in the Arduino
  library or SDK may differ from the pip build's; and alignment differs between the 64-bit host
  and a 32-bit target (the host's larger pointers and structs mostly make the host figure an
  over-estimate, which the margin does not rely on). The board core's own RAM is not counted.

Weights stored compressed (``convert(..., compression="prune")``) are decoded by TFLite Micro's
``TFLM_DECODE`` custom operator (resolver method ``AddDecode``) into the arena: the measured
arena includes the decoded weights, and the flash figure counts what is stored. The report
lists the stored bytes of every weight tensor, dense against compressed
(:attr:`AuditReport.weights`, :func:`weight_storage`).
"""

from __future__ import annotations

import dataclasses

from keras_rnnedge.micro_targets.boards import BOARDS, Board, get_board
from keras_rnnedge.micro_targets.emulate import measure_arena

__all__ = [
    "ARENA_MARGIN_BYTES",
    "ARENA_MARGIN_FRACTION",
    "RAM_ALLOWANCE_BYTES",
    "RUNTIMES",
    "TFLM_CUSTOM_OPS",
    "TFLM_OPS",
    "AuditReport",
    "TargetFitError",
    "UnsupportedOpError",
    "UnsupportedTargetError",
    "WeightStorage",
    "target_refusal",
    "arena_with_margin",
    "audit",
    "list_ops",
    "resolver_methods",
    "weight_storage",
]

RUNTIMES = ("tflm",)
#: Arena margin: a fraction of the measured arena, rounded up to 16 bytes, plus fixed bytes.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_BYTES = 1024
#: RAM outside the arena: the MicroInterpreter object, the op resolver's registration table
#: (about 40 B per op on a 32-bit target) and the stack of Invoke(). A stated allowance, not a
#: measurement; the board core's own RAM (e.g. Mbed OS on the Nano 33 BLE) is extra.
RAM_ALLOWANCE_BYTES = 4096
_ARENA_ALIGNMENT = 16
_CUSTOM_PREFIX = "CUSTOM:"

# Builtin operators TFLite Micro implements → the tflite::MicroMutableOpResolver<N> method that
# registers each.
#
# Evidence. Which ops: probed on the installed tflite-micro 0.dev20261023182759 (g8f6596d). For
# every BuiltinOperator code of the schema, a model of two operators [the op, then an op no
# resolver has] was loaded in the TFLM host interpreter, whose resolver (PythonOpsResolver)
# calls every MicroMutableOpResolver Add* method. TFLM looks up every operator before it
# prepares any, so the error names the op that is missing: the probed op itself ("Didn't find
# op for builtin opcode 'X'") or, when the probed op is registered, the second one. Exactly the
# 100 ops below were found; tests/test_boards_audit.py re-runs the probe, so this table follows
# tflite-micro upgrades. Method names: tflite-micro's tensorflow/lite/micro/
# micro_mutable_op_resolver.h (``AddX`` calls ``AddBuiltin(BuiltinOperator_X, ...)``) and
# python/tflite_micro/python_ops_resolver.cc (the list of Add* calls), cross-checked one to one
# against the probed set.
#
# Absent, among others (probed): RELU_N1_TO_1 and RELU_0_TO_1 as standalone ops (fused into
# FULLY_CONNECTED they are fine), GELU, TILE, POW, REDUCE_PROD, SELECT (v1; SELECT_V2 is
# there), LSTM, RNN, UNIDIRECTIONAL_SEQUENCE_RNN, BIDIRECTIONAL_SEQUENCE_LSTM/RNN, RANGE, ONE_HOT,
# TOPK_V2, every STABLEHLO_* op.
TFLM_OPS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

# Custom operators TFLite Micro registers (by custom name) → resolver method. Probed the same
# way (custom op first, then TILE, which TFLM lacks); names and methods from
# micro_mutable_op_resolver.h. "ethos-u" is registered only in Ethos-U builds (absent here).
TFLM_CUSTOM_OPS: dict[str, str] = {
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd",
    "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    # DECODE (tensorflow/lite/micro/kernels/decode.cc): decodes weights stored compressed
    # (keras_rnnedge.converters.tflite.compression); TFLite Micro only, LiteRT has no kernel.
    "TFLM_DECODE": "AddDecode",
}


class UnsupportedOpError(ValueError):
    """The model uses operators TFLite Micro does not implement.

    Attributes:
        unsupported: the missing operators.
        ops: every operator of the model, in first-use order.
    """

    def __init__(self, message: str, unsupported: tuple[str, ...], ops: tuple[str, ...]):
        super().__init__(message)
        self.unsupported = unsupported
        self.ops = ops


class UnsupportedTargetError(ValueError):
    """The board cannot run the requested runtime (TFLite Micro on an 8-bit AVR)."""


class TargetFitError(ValueError):
    """The model does not fit the board's flash or RAM.

    Attributes:
        report: the :class:`AuditReport` with every figure.
    """

    def __init__(self, message: str, report: AuditReport):
        super().__init__(message)
        self.report = report


# -- reading the flatbuffer ------------------------------------------------------------------------

def _schema():
    # The flatbuffers-generated TFLite schema shipped with ai_edge_litert: the module is pure
    # Python over the flatbuffers package (the package's __init__ does load libLiteRt.so).
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _builtin_names(schema) -> dict[int, str]:
    return {code: name for name, code in vars(schema.BuiltinOperator).items()
            if not name.startswith("_") and isinstance(code, int)}


def list_ops(flatbuffer: bytes) -> list[str]:
    """The operators a TFLite flatbuffer uses, in order of first use, each once.

    Subgraphs are read in order (the main graph first, then e.g. WHILE bodies). Builtin ops are
    named as in the schema (``FULLY_CONNECTED``); custom ops as ``CUSTOM:<name>``.

    Raises:
        ValueError: ``flatbuffer`` is not a TFLite model.
    """
    data = bytes(flatbuffer)
    schema = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError(f'Expected a TFLite flatbuffer (file identifier "TFL3" at bytes 4-8), '
                         f"but got {len(data)} bytes starting with {data[:8]!r}.")
    model = schema.Model.GetRootAs(data, 0)
    names = _builtin_names(schema)
    custom = schema.BuiltinOperator.CUSTOM
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes >= 127 live in builtin_code; older files only fill deprecated_builtin_code
        # (the schema's own GetBuiltinCode rule).
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == custom:
            raw = code.CustomCode()
            codes.append(_CUSTOM_PREFIX + (raw.decode("utf-8", "replace") if raw else ""))
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    ops: list[str] = []
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for i in range(subgraph.OperatorsLength()):
            name = codes[subgraph.Operators(i).OpcodeIndex()]
            if name not in ops:
                ops.append(name)
    return ops


#: Operand positions that hold weights, by operator (what :func:`weight_storage` lists).
_WEIGHT_OPERANDS = {"FULLY_CONNECTED": (1,), "BATCH_MATMUL": (0, 1)}
_DECODE_OP = _CUSTOM_PREFIX + "TFLM_DECODE"
#: DECODE Common Metadata byte 0 → encoding (tflite-micro kernels/decode_state.h).
_DECODE_TYPES = {0: "lut", 1: "huffman", 2: "prune"}
_ITEM_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "INT16": 2,
               "INT8": 1, "UINT16": 2, "UINT32": 4, "BOOL": 1}


@dataclasses.dataclass(frozen=True)
class WeightStorage:
    """How one weight tensor is stored in a flatbuffer.

    Attributes:
        name: the tensor's name (of the encoded tensor when compressed).
        op: the operator that reads it (``FULLY_CONNECTED``, ``BATCH_MATMUL``).
        shape: its shape as the operator reads it.
        dense_bytes: bytes it takes stored dense.
        stored_bytes: bytes the flatbuffer holds for it (encoded and ancillary data of a
            ``TFLM_DECODE`` input pair when compressed).
        encoding: ``"dense"``, or the DECODE type (``"prune"``, ``"lut"``, ``"huffman"``).
    """

    name: str
    op: str
    shape: tuple[int, ...]
    dense_bytes: int
    stored_bytes: int
    encoding: str

    @property
    def compressed(self) -> bool:
        return self.encoding != "dense"


def weight_storage(flatbuffer: bytes) -> tuple[WeightStorage, ...]:
    """The weight operands of ``FULLY_CONNECTED`` and ``BATCH_MATMUL`` operators, constant or
    decoded by ``TFLM_DECODE``, each once, in the order the operators read them.

    Raises:
        ValueError: ``flatbuffer`` is not a TFLite model.
    """
    data = bytes(flatbuffer)
    list_ops(data)  # checks the identifier
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = _builtin_names(schema)
    types = {code: name for name, code in vars(schema.TensorType).items()
             if not name.startswith("_") and isinstance(code, int)}
    codes = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else \
            code.customCode
        codes.append(_CUSTOM_PREFIX + (custom or "") if builtin == schema.BuiltinOperator.CUSTOM
                     else names.get(builtin, f"BUILTIN_{builtin}"))

    def stored(tensor) -> int:
        buffer = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
        return 0 if buffer is None or buffer.data is None else len(buffer.data)

    def label(tensor) -> str:
        name = tensor.name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")

    found: dict[tuple[int, int], WeightStorage] = {}
    for g, sg in enumerate(model.subgraphs):
        decoded: dict[int, tuple[int, int]] = {}  # DECODE output → (encoded, ancillary)
        for op in sg.operators:
            name = codes[op.opcodeIndex]
            inputs = list(op.inputs if op.inputs is not None else ())
            if name == _DECODE_OP:
                for k, out in enumerate(op.outputs if op.outputs is not None else ()):
                    decoded[int(out)] = (int(inputs[2 * k]), int(inputs[2 * k + 1]))
                continue
            for pos in _WEIGHT_OPERANDS.get(name, ()):
                if pos >= len(inputs) or inputs[pos] < 0:
                    continue
                t = int(inputs[pos])
                tensor = sg.tensors[t]
                shape = tuple(int(v) for v in tensor.shape)
                if t in decoded:
                    enc, anc = decoded[t]
                    if (g, enc) in found:
                        continue
                    header = model.buffers[sg.tensors[anc].buffer].data
                    kind = int(header[0]) if header is not None and len(header) else -1
                    n = 1
                    for v in shape:
                        n *= v
                    found[(g, enc)] = WeightStorage(
                        name=label(sg.tensors[enc]), op=name, shape=shape,
                        dense_bytes=n * _ITEM_BYTES.get(types.get(tensor.type, ""), 1),
                        stored_bytes=stored(sg.tensors[enc]) + stored(sg.tensors[anc]),
                        encoding=_DECODE_TYPES.get(kind, f"decode type {kind}"))
                elif stored(tensor) and (g, t) not in found:
                    found[(g, t)] = WeightStorage(name=label(tensor), op=name, shape=shape,
                                                  dense_bytes=stored(tensor),
                                                  stored_bytes=stored(tensor), encoding="dense")
    return tuple(found.values())


def _method(op: str) -> str | None:
    if op.startswith(_CUSTOM_PREFIX):
        return TFLM_CUSTOM_OPS.get(op[len(_CUSTOM_PREFIX):])
    return TFLM_OPS.get(op)


def resolver_methods(ops) -> tuple[str, ...]:
    """The ``MicroMutableOpResolver`` methods that register ``ops`` (supported ones only)."""
    return tuple(m for m in map(_method, ops) if m is not None)


def arena_with_margin(arena_bytes: int) -> int:
    """``arena_bytes`` + 10 %, rounded up to 16 bytes, + 1 KiB (see the module docstring)."""
    grown = -(-int(arena_bytes) * (100 + round(100 * ARENA_MARGIN_FRACTION)) // 100)
    aligned = -(-grown // _ARENA_ALIGNMENT) * _ARENA_ALIGNMENT
    return aligned + ARENA_MARGIN_BYTES


# -- the report ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AuditReport:
    """What a model needs on a board under TFLite Micro, and what the board has.

    Attributes:
        board: the target.
        runtime: ``"tflm"``.
        ops: the model's operators in first-use order.
        resolver_methods: ``MicroMutableOpResolver`` methods for the supported ops, same order.
        unsupported_ops: operators TFLite Micro lacks.
        refusals: reasons the model cannot run at all (runtime not available on the board,
            missing ops); empty when it can.
        model_bytes: flatbuffer size.
        arena_bytes: TFLite Micro arena measured on the host (``None`` when TFLite Micro
            cannot load the model).
        arena_with_margin: the arena to allocate on the target (``None`` likewise).
        runtime_flash_bytes: the board's estimate of the TFLite Micro runtime's flash (0 when
            the catalog has none).
        ram_allowance_bytes: RAM counted outside the arena.
        flash_needed: ``model_bytes + runtime_flash_bytes``.
        ram_needed: ``arena_with_margin + ram_allowance_bytes`` (``None`` without an arena).
        flash_available, ram_available: the board's memories (``None``: no limit).
        weights: how each weight tensor is stored (:func:`weight_storage`); listed in the text
            when some are compressed (``TFLM_DECODE``).
    """

    board: Board
    runtime: str
    ops: tuple[str, ...]
    resolver_methods: tuple[str, ...]
    unsupported_ops: tuple[str, ...]
    refusals: tuple[str, ...]
    model_bytes: int
    arena_bytes: int | None
    arena_with_margin: int | None
    runtime_flash_bytes: int
    ram_allowance_bytes: int
    flash_needed: int
    ram_needed: int | None
    flash_available: int | None
    ram_available: int | None
    weights: tuple[WeightStorage, ...] = ()

    @property
    def flash_fits(self) -> bool:
        return self.flash_available is None or self.flash_needed <= self.flash_available

    @property
    def ram_fits(self) -> bool:
        """False when the arena is unknown (TFLite Micro cannot load the model)."""
        if self.ram_needed is None:
            return False
        return self.ram_available is None or self.ram_needed <= self.ram_available

    @property
    def fits(self) -> bool:
        """The model can run on the board and fits both memories."""
        return not self.refusals and self.flash_fits and self.ram_fits

    def fit_problems(self) -> list[str]:
        """One line per memory that does not fit (empty when both fit or RAM is unknown)."""
        lines = []
        if not self.flash_fits:
            runtime = (f" + TFLite Micro runtime ~{self.runtime_flash_bytes:,} B, estimated"
                       if self.board.tflm_runtime_flash_bytes else "")
            lines.append(
                f"model needs {self.flash_needed:,} B of flash (model {self.model_bytes:,} B"
                f"{runtime}) but {self.board.display_name} has {self.flash_available:,} B")
        if self.ram_needed is not None and not self.ram_fits:
            lines.append(
                f"model needs {self.ram_needed:,} B of RAM (arena {self.arena_bytes:,} B + "
                f"margin = {self.arena_with_margin:,} B, + {self.ram_allowance_bytes:,} B for "
                f"the interpreter and stack) but {self.board.display_name} has "
                f"{self.ram_available:,} B")
        return lines

    def to_text(self) -> str:
        """A human-readable summary."""
        board = self.board
        clock = f" @ {board.clock_hz / 1e6:g} MHz" if board.clock_hz else ""
        lines = [f"TFLite Micro audit for {board.display_name} ({board.key}: {board.mcu}, "
                 f"{board.core}{clock})",
                 f"ops ({len(self.ops)}): {', '.join(self.ops) or 'none'}",
                 f"resolver: tflite::MicroMutableOpResolver<{len(self.resolver_methods)}> with "
                 f"{', '.join(self.resolver_methods) or 'nothing'}"]
        if self.unsupported_ops:
            lines.append(f"unsupported ops: {', '.join(self.unsupported_ops)}")
        lines += self._weight_lines()
        runtime = (f" + runtime ~{self.runtime_flash_bytes:,} B (estimate)"
                   if self.board.tflm_runtime_flash_bytes else " (no runtime estimate)")
        lines.append(f"flash: model {self.model_bytes:,} B{runtime} = {self.flash_needed:,} B of "
                     f"{_available(self.flash_available)}  {_verdict(self.flash_fits)}")
        if self.ram_needed is None:
            lines.append("RAM: unknown (TFLite Micro cannot load the model)")
        else:
            lines.append(f"RAM: arena {self.arena_bytes:,} B (measured) + margin = "
                         f"{self.arena_with_margin:,} B + {self.ram_allowance_bytes:,} B "
                         f"allowance = {self.ram_needed:,} B of "
                         f"{_available(self.ram_available)}  {_verdict(self.ram_fits)}")
        lines.extend(f"refused: {reason}" for reason in self.refusals)
        lines.append(f"fits: {'yes' if self.fits else 'no'}")
        return "\n".join(lines)

    def _weight_lines(self) -> list[str]:
        """The stored bytes of every weight, when some are compressed (else nothing)."""
        compressed = [w for w in self.weights if w.compressed]
        if not compressed:
            return []
        dense = sum(w.dense_bytes for w in self.weights)
        stored = sum(w.stored_bytes for w in self.weights)
        lines = [f"weights: {len(compressed)} of {len(self.weights)} stored compressed "
                 f"(TFLM_DECODE): {dense:,} B dense -> {stored:,} B stored, "
                 f"{dense - stored:,} B saved; the arena holds each decoded weight while its "
                 "operator runs"]
        for w in self.weights:
            how = (f"{w.stored_bytes:,} B stored ({w.encoding})" if w.compressed else
                   "stored dense")
            lines.append(f"  {w.name or '?'} {w.op} {list(w.shape)}: {w.dense_bytes:,} B dense, "
                         f"{how}")
        return lines


def _available(value: int | None) -> str:
    return "no limit" if value is None else f"{value:,} B"


def _verdict(ok: bool) -> str:
    return "OK" if ok else "DOES NOT FIT"


# -- the audit -------------------------------------------------------------------------------------

def target_refusal(board: Board) -> str:
    return (f"The {board.display_name} ({board.key}, {board.core}) cannot run TFLite Micro, "
            f"which needs a 32-bit platform (and tens of KB of flash for its runtime). Choose "
            f"a Cortex-M board such as "
            f"{', '.join(b.key for b in BOARDS.values() if b.tflm and b.arch == 'arm')}, or "
            f"convert to standalone C, which runs on the {board.display_name}: "
            f"convert_c(model, target={board.key!r}, representative_data=...) or `rnnedge "
            f"convert MODEL --target {board.key} --format c --data DATA.npz --out DIR`.")


#: Parts of the names of ops that a recurrent loop left in the graph: another mode removes them.
_LOOP_OPS = ("WHILE", "TENSORLIST", "SEQUENCE_RNN", "SEQUENCE_LSTM")


def _ops_refusal(unsupported, ops) -> str:
    message = (f"TFLite Micro has no kernel for {', '.join(unsupported)}; the model's ops are "
               f"{', '.join(ops)}.")
    loop = [op for op in unsupported if any(part in op.upper() for part in _LOOP_OPS)]
    if loop:
        return (f"{message} {', '.join(loop)} come from a recurrent loop: convert with "
                "mode=\"step\" (one time step, no control flow, the loop in the caller), or use "
                "stock LSTM layers with mode=\"fused\" (UNIDIRECTIONAL_SEQUENCE_LSTM).")
    source = " (GELU: a 'gelu' activation)" if "GELU" in unsupported else ""
    return (f"{message} Another conversion mode keeps these ops (they do not come from the "
            f"recurrent loop): replace the layer or activation that produces them{source} with "
            "one TFLite Micro runs (activations 'relu', 'tanh', 'sigmoid', 'hard_sigmoid', "
            "'linear'), retrain or fine-tune, and convert again.")


def _boards_that_fit(report: AuditReport) -> list[str]:
    if report.ram_needed is None:
        return []
    fitting = []
    for board in BOARDS.values():
        if not board.tflm or board.arch == "host" or board.key == report.board.key:
            continue
        flash = report.model_bytes + (board.tflm_runtime_flash_bytes or 0)
        ram = report.ram_needed
        if ((board.flash_bytes is None or flash <= board.flash_bytes)
                and (board.ram_bytes is None or ram <= board.ram_bytes)):
            fitting.append(board.key)
    return fitting


def audit(flatbuffer: bytes, board: str | Board, *, runtime: str = "tflm", check: bool = True,
          arena_bytes: int | None = None) -> AuditReport:
    """Audit a TFLite flatbuffer against a board for TFLite Micro.

    Args:
        flatbuffer: the converted model.
        board: a board key or alias (see :data:`~keras_rnnedge.micro_targets.boards.BOARDS`) or
            a :class:`~keras_rnnedge.micro_targets.boards.Board`.
        runtime: ``"tflm"`` (the only runtime audited here).
        check: raise when the model cannot run or does not fit; with ``check=False`` the report
            is returned and :attr:`AuditReport.fits` tells.
        arena_bytes: the TFLite Micro arena when the caller has already measured it (e.g.
            ``EmulationResult.arena_bytes``); default: :func:`~keras_rnnedge.micro_targets.
            emulate.measure_arena` of ``flatbuffer``.

    Returns:
        The :class:`AuditReport`.

    Raises:
        UnsupportedTargetError: the board cannot run TFLite Micro (``check=True``).
        UnsupportedOpError: the model uses ops TFLite Micro lacks (``check=True``).
        TargetFitError: flash or RAM does not fit (``check=True``).
        ValueError: unknown board or runtime, or not a TFLite flatbuffer.
    """
    board = get_board(board)
    if runtime not in RUNTIMES:
        raise ValueError(f'Expected runtime to be one of {", ".join(map(repr, RUNTIMES))}, but '
                         f"got {runtime!r}. The standalone C runtime is not audited here.")
    data = bytes(flatbuffer)
    ops = tuple(list_ops(data))
    unsupported = tuple(op for op in ops if _method(op) is None)
    refusals = []
    if not board.tflm:
        refusals.append(target_refusal(board))
    if unsupported:
        refusals.append(_ops_refusal(unsupported, ops))
    if arena_bytes is not None and (isinstance(arena_bytes, bool)
                                    or not isinstance(arena_bytes, int) or arena_bytes <= 0):
        raise ValueError(f"Expected arena_bytes to be a positive integer, but got "
                         f"{arena_bytes!r}.")
    if unsupported:
        arena = None
    else:
        arena = arena_bytes if arena_bytes is not None else measure_arena(data)
    margin = None if arena is None else arena_with_margin(arena)
    runtime_flash = board.tflm_runtime_flash_bytes or 0
    report = AuditReport(
        board=board, runtime=runtime, ops=ops, resolver_methods=resolver_methods(ops),
        unsupported_ops=unsupported, refusals=tuple(refusals), model_bytes=len(data),
        arena_bytes=arena, arena_with_margin=margin, runtime_flash_bytes=runtime_flash,
        ram_allowance_bytes=RAM_ALLOWANCE_BYTES, flash_needed=len(data) + runtime_flash,
        ram_needed=None if margin is None else margin + RAM_ALLOWANCE_BYTES,
        flash_available=board.flash_bytes, ram_available=board.ram_bytes,
        weights=weight_storage(data))
    if not check:
        return report
    if not board.tflm:
        raise UnsupportedTargetError(target_refusal(board))
    if unsupported:
        raise UnsupportedOpError(_ops_refusal(unsupported, ops), unsupported, ops)
    problems = report.fit_problems()
    if problems:
        fitting = _boards_that_fit(report)
        hint = (f"Boards of the catalog it fits: {', '.join(fitting)}." if fitting else
                "No board of the catalog fits it.")
        raise TargetFitError(
            f"The model does not fit the {board.display_name} ({board.key}):\n  "
            + "\n  ".join(problems)
            + f"\nShrink it (int8 quantization, mode=\"step\", a lower rank, pruning) or choose "
              f"another board. {hint}", report)
    return report
