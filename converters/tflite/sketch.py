"""Project stage: a converted model → an Arduino sketch and a PlatformIO project (TFLite Micro).

:class:`SketchSpec` holds everything the generated code needs (plain values: no Keras, no
TensorFlow); three functions turn it into text files:

* :func:`model_io_header`: ``<id>_model_io.h``, constants only (arena size, tensor positions,
  scales and zero points, state sizes, class names, window length). Plain C++11 with no TFLite
  Micro dependency, so it also serves the standalone C runtime.
* :func:`arduino_sketch`: the sketch folder ``<id>/`` for the Arduino IDE / arduino-cli, using
  the ``Arduino_TensorFlowLite`` library (tensorflow/tflite-micro-arduino-examples).
* :func:`platformio_project`: the same program as a PlatformIO project.

The generated program streams: :c:func:`read_sample` gets one sample (by default one line of
comma-separated floats from ``Serial``), the sample is quantized with the input's scale and zero
point (round to nearest, saturate), and every ``timesteps`` samples (one window) the sketch
dequantizes the output and prints the best class and its score. Step models run one Invoke per
sample and the sketch carries the recurrent state between Invokes exactly as
``micro_targets.emulate`` does: the state output is copied into the state input when both have the
same quantization and re-quantized otherwise, and the state is zero at the start of every window.
Unrolled and fused models collect the window in their input tensor and run one Invoke per window.

The op resolver is a ``MicroMutableOpResolver<N>`` sized to exactly the model's operators. A
model with weights stored compressed (``AddDecode``: TFLite Micro's ``TFLM_DECODE``) gets a
comment at that call and a README section: the operator needs TFLite Micro from October 2025 or
later, which the ``Arduino_TensorFlowLite`` library predates.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import numpy as np

from keras_rnnedge.converters.carray import c_array, c_identifier, comment_text

__all__ = [
    "BAUD_RATE",
    "TFLM_ARDUINO_LIBRARY",
    "TFLM_ARDUINO_URL",
    "IOTensor",
    "SketchSpec",
    "arduino_sketch",
    "model_io_header",
    "platformio_project",
    "serial_sample_reader",
]

#: Name of the TFLite Micro Arduino library (its ``library.properties`` name).
TFLM_ARDUINO_LIBRARY = "Arduino_TensorFlowLite"
#: Where it comes from (it is installed from GitHub, not from the Library Manager).
TFLM_ARDUINO_URL = "https://github.com/tensorflow/tflite-micro-arduino-examples"
#: Serial speed of the generated sketch.
BAUD_RATE = 115200
#: Longest text accepted for one number on a serial input line.
_CHARS_PER_VALUE = 24
#: The resolver method of TFLite Micro's DECODE operator (weights stored compressed).
_DECODE_METHOD = "AddDecode"

# The same modes as keras_rnnedge.converters.lowering.MODES (not imported from there: this module
# stays free of TensorFlow; a test checks that the two agree).
_MODES = ("step", "unrolled", "fused")
# numpy dtype name → (C type, TfLitePtrUnion member, TfLiteType, lowest, highest).
_TYPES = {
    "float32": ("float", "f", "kTfLiteFloat32", None, None),
    "int8": ("int8_t", "int8", "kTfLiteInt8", -128, 127),
    "int16": ("int16_t", "i16", "kTfLiteInt16", -32768, 32767),
    "int32": ("int32_t", "i32", "kTfLiteInt32", None, None),
}
_RESOLVER_METHOD = re.compile(r"Add[A-Z][A-Za-z0-9]*")


# -- the spec -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IOTensor:
    """One model input or output as the generated code sees it.

    Attributes:
        name: ``x``, ``y``, ``state_<i>`` or ``state_<i>_out``.
        position: its index in the interpreter's inputs (or outputs).
        dtype: ``"float32"``, ``"int8"`` or ``"int16"``.
        scale, zero_point: the quantization (``0.0``/``0`` for a float tensor).
        shape: the tensor shape, when known.
        offset, standard_scale: for the input ``x`` of a model that takes standardised
            features, the per-feature standardisation ``(x - offset) * standard_scale`` the
            sketch applies before quantizing (empty: none).
    """

    name: str
    position: int
    dtype: str
    scale: float = 0.0
    zero_point: int = 0
    shape: tuple[int, ...] | None = None
    offset: tuple[float, ...] = ()
    standard_scale: tuple[float, ...] = ()

    def __post_init__(self):
        if self.dtype not in _TYPES:
            raise ValueError(f"Tensor {self.name!r} has dtype {self.dtype!r}; the generated code "
                             f"handles {', '.join(map(repr, _TYPES))}. Convert with "
                             "quantization 'float32', 'dynamic', 'float16', 'int8' or 'int16x8'.")
        if isinstance(self.position, bool) or not isinstance(self.position, int) \
                or self.position < 0:
            raise ValueError(f"Tensor {self.name!r}: expected position to be an integer >= 0, "
                             f"but got {self.position!r}.")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        for field in ("offset", "standard_scale"):
            object.__setattr__(self, field, tuple(float(v) for v in getattr(self, field)))
        if len(self.offset) != len(self.standard_scale) or not all(
                math.isfinite(v) for v in self.offset + self.standard_scale) or any(
                v <= 0 for v in self.standard_scale):
            raise ValueError(f"Tensor {self.name!r}: expected offset and standard_scale of one "
                             f"length, finite, with standard_scale > 0, but got {self.offset!r} "
                             f"and {self.standard_scale!r}.")
        if self.dtype in ("float32", "int32"):  # not quantized (int32: a flexible level)
            object.__setattr__(self, "scale", 0.0)
            object.__setattr__(self, "zero_point", 0)
            return
        low, high = _TYPES[self.dtype][3:]
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Tensor {self.name!r} is {self.dtype} with scale {self.scale!r}; "
                             "expected a finite scale > 0 (per-tensor quantization).")
        if not low <= self.zero_point <= high:
            raise ValueError(f"Tensor {self.name!r} is {self.dtype} with zero point "
                             f"{self.zero_point!r}, outside [{low}, {high}].")
        object.__setattr__(self, "scale", float(np.float32(self.scale)))
        object.__setattr__(self, "zero_point", int(self.zero_point))

    @property
    def quantized(self) -> bool:
        return self.dtype != "float32"

    @classmethod
    def of(cls, tensor) -> IOTensor:
        """An :class:`IOTensor` from anything with the same attributes (a ``TensorInfo``) or
        keys."""
        if isinstance(tensor, cls):
            return tensor
        get = tensor.get if isinstance(tensor, Mapping) else (
            lambda key, default=None: getattr(tensor, key, default))
        missing = [k for k in ("name", "position", "dtype") if get(k) is None]
        if missing:
            raise TypeError(f"Expected a tensor description with name, position, dtype, scale "
                            f"and zero_point (a TensorInfo), but got {tensor!r} (no "
                            f"{', '.join(missing)}).")
        shape = get("shape")
        std = get("standardization")
        offset, standard_scale = ((), ()) if std is None else (
            tuple(std.offset), tuple(std.scale))
        return cls(name=str(get("name")), position=int(get("position")),
                   dtype=np.dtype(get("dtype")).name, scale=float(get("scale", 0.0) or 0.0),
                   zero_point=int(get("zero_point", 0) or 0),
                   shape=None if shape is None else tuple(shape),
                   offset=tuple(get("offset", ()) or offset),
                   standard_scale=tuple(get("standard_scale", ()) or standard_scale))


@dataclasses.dataclass(frozen=True)
class SketchSpec:
    """Everything the generated C++ needs, as plain values.

    Attributes:
        name: the C identifier of the model (files and symbols derive from it; see
            :func:`~keras_rnnedge.converters.carray.c_identifier`).
        flatbuffer: the TFLite model bytes.
        quantization: the conversion's quantization (``"int8"``...), for comments and README.
        mode: ``"step"``, ``"unrolled"`` or ``"fused"``.
        features: input features per sample.
        timesteps: samples per window: the classification window; in step mode the number of
            Invokes per window (the state is reset after each window).
        state_sizes: length of each recurrent state (step mode; empty otherwise).
        inputs, outputs: the model's inputs and outputs (``TensorInfo`` or :class:`IOTensor`).
        resolver_methods: the ``MicroMutableOpResolver`` methods of the model's operators
            (``"AddFullyConnected"``...), one per operator; repeats are dropped.
        arena_bytes: the tensor arena, margin included.
        class_names: names printed for the classes (empty: ``class_0``, ``class_1``...).
        board_name: display name of the target board.
        fqbn: its arduino-cli fully qualified board name.
        platformio_board, platformio_platform: its PlatformIO ids.
        progmem: the board keeps constants in ``PROGMEM`` (AVR; TFLite Micro cannot run there).
        num_classes: output classes (default: from the shape of ``y``, else ``class_names``).
        model_name: the model's own name for comments (default: ``name``).
        measured_arena_bytes: the arena measured on the host before the margin, if known.
    """

    name: str
    flatbuffer: bytes
    quantization: str
    mode: str
    features: int
    timesteps: int
    inputs: tuple[IOTensor, ...]
    outputs: tuple[IOTensor, ...]
    resolver_methods: tuple[str, ...]
    arena_bytes: int
    state_sizes: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()
    board_name: str | None = None
    fqbn: str | None = None
    platformio_board: str | None = None
    platformio_platform: str | None = None
    progmem: bool = False
    num_classes: int | None = None
    model_name: str | None = None
    measured_arena_bytes: int | None = None

    def __post_init__(self):
        setattr_ = object.__setattr__
        if not isinstance(self.name, str) or c_identifier(self.name) != self.name:
            suggestion = c_identifier(self.name) if isinstance(self.name, str) else "model"
            raise ValueError(f"Expected name to be a C identifier, but got {self.name!r}; pass "
                             f"c_identifier(...) of the model name (here {suggestion!r}).")
        if self.mode not in _MODES:
            raise ValueError(f"Expected mode to be one of {', '.join(map(repr, _MODES))}, but "
                             f"got {self.mode!r}.")
        setattr_(self, "flatbuffer", bytes(self.flatbuffer))
        if not self.flatbuffer:
            raise ValueError("Received an empty flatbuffer; expected the converted model bytes.")
        for field in ("features", "timesteps", "arena_bytes"):
            _check_positive(field, getattr(self, field),
                            "the window length (samples per prediction)"
                            if field == "timesteps" else None)
        setattr_(self, "state_sizes", tuple(self.state_sizes or ()))
        for size in self.state_sizes:
            _check_positive("state_sizes", size)
        setattr_(self, "inputs", tuple(IOTensor.of(t) for t in self.inputs))
        setattr_(self, "outputs", tuple(IOTensor.of(t) for t in self.outputs))
        self._check_io()
        methods = tuple(dict.fromkeys(self.resolver_methods or ()))
        bad = [m for m in methods if not isinstance(m, str) or not _RESOLVER_METHOD.fullmatch(m)]
        if bad or not methods:
            raise ValueError(f"Expected resolver_methods to be MicroMutableOpResolver method "
                             "names like 'AddFullyConnected', but got "
                             f"{list(self.resolver_methods or ())!r}.")
        setattr_(self, "resolver_methods", methods)
        y_shape = self.output("y").shape
        num_classes = self.num_classes or (y_shape[-1] if y_shape else None) or (
            len(self.class_names) or None)
        if num_classes is None:
            raise ValueError("The number of classes is unknown: give num_classes, class_names, "
                             "or outputs with their shape (TensorInfo).")
        _check_positive("num_classes", num_classes)
        setattr_(self, "num_classes", int(num_classes))
        names = tuple(str(c) for c in (self.class_names or ()))
        if names and len(names) != self.num_classes:
            raise ValueError(f"Received {len(names)} class_names {list(names)!r} for a model with "
                             f"{self.num_classes} outputs; give one name per output.")
        setattr_(self, "class_names", names or tuple(f"class_{i}" for i in range(num_classes)))

    @property
    def flexible(self) -> bool:
        """The step model of a flexible RNN: its int32 input ``level`` sets the width of each
        step (:mod:`keras_rnnedge.flexible`)."""
        return any(t.name == "level" for t in self.inputs)

    def _check_io(self) -> None:
        if self.flexible and self.mode != "step":
            raise ValueError(f"Only a step model takes a level input; this {self.mode} model "
                             "has one.")
        expected_in = (["x"] + (["level"] if self.flexible else [])
                       + [f"state_{i}" for i in range(len(self.state_sizes))])
        expected_out = ["y"] + [f"state_{i}_out" for i in range(len(self.state_sizes))]
        if self.mode != "step" and self.state_sizes:
            raise ValueError(f"A {self.mode} model keeps its state inside; expected no "
                             f"state_sizes, but got {self.state_sizes!r}.")
        for kind, tensors, expected in (("inputs", self.inputs, expected_in),
                                        ("outputs", self.outputs, expected_out)):
            names = sorted(t.name for t in tensors)
            if names != sorted(expected):
                raise ValueError(f"Expected {kind} named {expected!r} for a {self.mode} model "
                                 f"with {len(self.state_sizes)} states, but got {names!r}.")
            positions = sorted(t.position for t in tensors)
            if positions != list(range(len(tensors))):
                raise ValueError(f"The {kind} positions {positions!r} are not "
                                 f"0..{len(tensors) - 1}.")
        x = self.input("x")
        if x.shape and x.shape[-1] != self.features:
            raise ValueError(f"Input x has shape {x.shape} but features={self.features}.")
        if x.offset and len(x.offset) != self.features:
            raise ValueError(f"Input x has a standardisation of {len(x.offset)} features but "
                             f"features={self.features}.")
        if self.mode != "step" and x.shape and len(x.shape) == 3 and x.shape[1] != self.timesteps:
            raise ValueError(f"The {self.mode} model takes windows of {x.shape[1]} samples, but "
                             f"timesteps={self.timesteps}.")
        for i, size in enumerate(self.state_sizes):
            for t in (self.input(f"state_{i}"), self.output(f"state_{i}_out")):
                if t.shape and t.shape[-1] != size:
                    raise ValueError(f"Tensor {t.name} has shape {t.shape} but state_sizes[{i}] "
                                     f"= {size}.")

    def input(self, name: str) -> IOTensor:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> IOTensor:
        return next(t for t in self.outputs if t.name == name)

    @classmethod
    def from_converted(cls, converted, *, resolver_methods, arena_bytes: int,
                       name: str | None = None, timesteps: int | None = None,
                       **options) -> SketchSpec:
        """A spec from a conversion result (anything with ``flatbuffer``, ``quantization``,
        ``mode``, ``inputs``, ``outputs`` and ``state_sizes``).

        ``timesteps`` defaults to the model's own window length (unrolled/fused); a step model
        needs it. ``options`` are the other fields (``class_names``, ``board_name``...).
        """
        inputs = tuple(IOTensor.of(t) for t in converted.inputs)
        x = next((t for t in inputs if t.name == "x"), None)
        if x is None or not x.shape:
            raise ValueError("The converted model has no input 'x' with a known shape.")
        if timesteps is None and converted.mode != "step" and len(x.shape) == 3:
            timesteps = x.shape[1]
        ident = name or c_identifier(getattr(converted, "name", None) or "model")
        return cls(name=ident, flatbuffer=converted.flatbuffer,
                   quantization=converted.quantization, mode=converted.mode,
                   features=x.shape[-1], timesteps=timesteps,
                   state_sizes=tuple(getattr(converted, "state_sizes", ()) or ()),
                   inputs=inputs, outputs=converted.outputs,
                   resolver_methods=tuple(resolver_methods), arena_bytes=arena_bytes, **options)


def _check_positive(field: str, value, what: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        hint = f" ({what})" if what else ""
        raise ValueError(f"Expected {field}{hint} to be a positive integer, but got {value!r}.")


# -- C++ text helpers ------------------------------------------------------------------------------

def _c_float(value: float) -> str:
    """A float literal that parses back to exactly the same float32."""
    text = str(np.float32(value))
    if not any(ch in text for ch in ".e"):
        text += ".0"
    return text + "f"


def _c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8; octal escapes, which never run into what follows)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~" and ch != "?":  # '?' could start a trigraph
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _fit(line: str, width: int = 100) -> list[str]:
    """``line`` (``... = f(a, b, c);``), broken after the call's first argument if too long."""
    if len(line) <= width or "(" not in line:
        return [line]
    open_at = line.index("(")
    depth = 0
    for k in range(open_at, len(line)):
        depth += {"(": 1, ")": -1}.get(line[k], 0)
        if depth == 1 and line.startswith(", ", k):
            return [line[:k + 1], " " * (open_at + 1) + line[k + 2:]]
    return [line]


def _guard(spec: SketchSpec, suffix: str) -> str:
    return f"{spec.name.upper()}_{suffix}"


def _io_namespace(spec: SketchSpec) -> str:
    return f"{spec.name}_model_io"


def _arrays(values, fmt) -> str:
    return "{" + ", ".join(fmt(v) for v in values) + "}"


def _describe(spec: SketchSpec) -> str:
    return (f'"{comment_text(spec.model_name or spec.name)}", {spec.quantization}, {spec.mode} '
            f"mode, {len(spec.flatbuffer):,} bytes")


# -- <id>_model_io.h -------------------------------------------------------------------------------

def model_io_header(spec: SketchSpec) -> str:
    """``<id>_model_io.h``: the constants that drive the model, as C++11 ``constexpr`` in the
    namespace ``<id>_model_io``. No TFLite Micro dependency: it compiles on its own."""
    x, y = spec.input("x"), spec.output("y")
    ns, guard = _io_namespace(spec), _guard(spec, "MODEL_IO_H_")
    step = spec.mode == "step"
    lines = [
        f"// How to drive the model {_describe(spec)}.",
        "// Generated by keras_rnnedge. Do not edit: regenerate from the model.",
        "",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f"namespace {ns} {{",
        "",
        f"constexpr char kModelName[] = {_c_string(spec.name)};",
        f"constexpr char kQuantization[] = {_c_string(spec.quantization)};",
        f"constexpr char kMode[] = {_c_string(spec.mode)};",
        "// true: one Invoke per sample, the caller carries the recurrent state between Invokes.",
        f"constexpr bool kStepMode = {'true' if step else 'false'};",
        "",
        "// Tensor arena: measured on the host with TFLite Micro's recording allocator, plus a",
        "// margin. Raise it if AllocateTensors() fails.",
        f"constexpr int kArenaSize = {spec.arena_bytes};",
        "",
        "// Window: predictions are made every kTimesteps samples of kFeatures values.",
        f"constexpr int kFeatures = {spec.features};",
        f"constexpr int kTimesteps = {spec.timesteps};",
        "",
        f"// Input x: {x.dtype}, " + ("one sample per Invoke." if step
                                     else "the whole window, sample after sample."),
        f"constexpr int kInputPosition = {x.position};",
        f"constexpr float kInputScale = {_c_float(x.scale)};",
        f"constexpr int kInputZeroPoint = {x.zero_point};",
        "",
    ]
    if x.offset:
        lines += [
            "// The model takes standardised features: (x[i] - kInputOffset[i]) *",
            "// kInputStandardScale[i], then quantized with kInputScale and kInputZeroPoint.",
            "constexpr bool kStandardizedInput = true;",
            f"constexpr float kInputOffset[kFeatures] = {_arrays(x.offset, _c_float)};",
            "constexpr float kInputStandardScale[kFeatures] = "
            f"{_arrays(x.standard_scale, _c_float)};",
            "",
        ]
    else:
        lines += ["// The model takes the raw features.",
                  "constexpr bool kStandardizedInput = false;", ""]
    if spec.flexible:
        lines += [
            "// Input level (int32): the flexible model's width for this step (0 = the fewest",
            "// units; a level above the top runs the top). The state carries across a switch.",
            "constexpr bool kFlexible = true;",
            f"constexpr int kLevelPosition = {spec.input('level').position};",
            "",
        ]
    else:
        lines += ["// No level input (not a flexible model).", "constexpr bool kFlexible = false;",
                  ""]
    lines += [
        f"// Output y: {y.dtype}, one score per class.",
        f"constexpr int kOutputPosition = {y.position};",
        f"constexpr float kOutputScale = {_c_float(y.scale)};",
        f"constexpr int kOutputZeroPoint = {y.zero_point};",
        f"constexpr int kNumClasses = {spec.num_classes};",
        "constexpr const char* kClassNames[kNumClasses] = "
        f"{_arrays(spec.class_names, _c_string)};",
        "",
        "// Recurrent state (step mode): input state_<i>, output state_<i>_out.",
        f"constexpr int kNumStates = {len(spec.state_sizes)};",
    ]
    if spec.state_sizes:
        ins = [spec.input(f"state_{i}") for i in range(len(spec.state_sizes))]
        outs = [spec.output(f"state_{i}_out") for i in range(len(spec.state_sizes))]
        lines += [
            f"constexpr int kStateSizes[kNumStates] = {_arrays(spec.state_sizes, str)};",
            f"constexpr int kStateInputPositions[kNumStates] = "
            f"{_arrays([t.position for t in ins], str)};",
            f"constexpr float kStateInputScales[kNumStates] = "
            f"{_arrays([t.scale for t in ins], _c_float)};",
            f"constexpr int kStateInputZeroPoints[kNumStates] = "
            f"{_arrays([t.zero_point for t in ins], str)};",
            f"constexpr int kStateOutputPositions[kNumStates] = "
            f"{_arrays([t.position for t in outs], str)};",
            f"constexpr float kStateOutputScales[kNumStates] = "
            f"{_arrays([t.scale for t in outs], _c_float)};",
            f"constexpr int kStateOutputZeroPoints[kNumStates] = "
            f"{_arrays([t.zero_point for t in outs], str)};",
        ]
    lines += ["", f"}}  // namespace {ns}", "", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def serial_sample_reader(levels: bool = False) -> list[str]:
    """C++ lines defining ``parse_sample`` and ``read_sample(float* x)``: one sample per line of
    ``io::kFeatures`` comma-separated numbers from ``Serial`` (needs ``io::kFeatures`` and
    ``kLineLength``). Shared by the TFLite Micro sketch and the standalone C sketch. With
    ``levels`` (a flexible model), a line starting with ``L`` (``L0``, ``level 2``) goes to
    ``set_level(line)``, which the sketch defines, instead of being a sample."""
    level_lines = [
        "    if (line[0] == 'L' || line[0] == 'l') {  // \"L<n>\" or \"level <n>\": switch level",
        "      set_level(line);",
        "      continue;",
        "    }",
    ] if levels else []
    declaration = ["static void set_level(const char* line);", ""] if levels else []
    return [*declaration,
        "// Parse one line of io::kFeatures comma-separated numbers into x.",
        "static bool parse_sample(const char* line, float* x) {",
        "  const char* p = line;",
        "  for (int i = 0; i < io::kFeatures; ++i) {",
        "    char* end = nullptr;",
        "    const double value = strtod(p, &end);",
        "    if (end == p) break;",
        "    x[i] = static_cast<float>(value);",
        "    p = end;",
        "    while (*p == ' ' || *p == '\\t') ++p;",
        "    if (i + 1 == io::kFeatures && *p == '\\0') return true;",
        "    if (*p != ',') break;",
        "    ++p;",
        "  }",
        '  Serial.print("Ignored a line: expected ");',
        "  Serial.print(io::kFeatures);",
        '  Serial.println(" comma-separated numbers.");',
        "  return false;",
        "}",
        "",
        "// read_sample: fill x[0..io::kFeatures-1] with one sample and return true, or return",
        "// false while no complete sample is available (loop() then returns and retries).",
        "//",
        "// This default reads one line of io::kFeatures comma-separated numbers from",
        "// Serial, e.g. \"0.12,-0.5,9.81\" (spaces allowed, \\r ignored, empty lines",
        "// skipped); it never blocks. Replace it with your sensor code: same units, order",
        "// and normalization as the training data, one call per sample at the training",
        "// sampling rate.",
        "static bool read_sample(float* x) {",
        "  static char line[kLineLength];",
        "  static int length = 0;",
        "  static bool too_long = false;",
        "  while (Serial.available() > 0) {",
        "    const int c = Serial.read();",
        "    if (c < 0 || c == '\\r') continue;",
        "    if (c != '\\n') {",
        "      if (length < kLineLength - 1) {",
        "        line[length++] = static_cast<char>(c);",
        "      } else {",
        "        too_long = true;",
        "      }",
        "      continue;",
        "    }",
        "    line[length] = '\\0';",
        "    const bool empty = length == 0;",
        "    length = 0;",
        "    if (too_long) {",
        "      too_long = false;",
        '      Serial.println("Ignored a line: too long.");',
        "      return false;",
        "    }",
        "    if (empty) continue;",
        *level_lines,
        "    return parse_sample(line, x);",
        "  }",
        "  return false;",
        "}",
        "",
    ]


# -- the program -----------------------------------------------------------------------------------

class _Program:
    """Builds the sketch's C++ for one spec, emitting only the helpers it uses."""

    def __init__(self, spec: SketchSpec):
        self.spec = spec
        self.helpers: set[str] = set()

    # expressions ---------------------------------------------------------------------------------
    def to_tensor(self, tensor: IOTensor, value: str, scale: str, zero_point: str) -> str:
        if not tensor.quantized:
            return value
        helper = f"quantize_{tensor.dtype}"
        self.helpers.add(helper)
        return f"{helper}({value}, {scale}, {zero_point})"

    @staticmethod
    def sample_value(x: IOTensor) -> str:
        """Feature ``i`` of the sample as the model takes it (standardised if it must be)."""
        if not x.offset:
            return "x[i]"
        return "(x[i] - io::kInputOffset[i]) * io::kInputStandardScale[i]"

    def from_tensor(self, tensor: IOTensor, raw: str, scale: str, zero_point: str) -> str:
        if not tensor.quantized:
            return raw
        self.helpers.add("dequantize")
        return f"dequantize({raw}, {scale}, {zero_point})"

    # pieces --------------------------------------------------------------------------------------
    def state_refs(self, i: int):
        return (self.spec.input(f"state_{i}"), self.spec.output(f"state_{i}_out"),
                f"io::kStateInputScales[{i}]", f"io::kStateInputZeroPoints[{i}]",
                f"io::kStateOutputScales[{i}]", f"io::kStateOutputZeroPoints[{i}]")

    def copy_state(self, i: int) -> list[str]:
        tin, tout, s_in, z_in, s_out, z_out = self.state_refs(i)
        src = f"state_{i}_output->data.{_TYPES[tout.dtype][1]}"
        if (tin.dtype, tin.scale, tin.zero_point) == (tout.dtype, tout.scale, tout.zero_point):
            self.helpers.add("memcpy")
            return [f"  // state_{i}_out has the quantization of state_{i}: copy it.",
                    f"  memcpy(state_{i}, {src}, sizeof(state_{i}));"]
        value = self.from_tensor(tout, f"{src}[i]", s_out, z_out)
        return [f"  // state_{i}_out and state_{i} are quantized differently: re-quantize.",
                f"  for (int i = 0; i < io::kStateSizes[{i}]; ++i) {{",
                *_fit(f"    const float value = {value};"),
                *_fit(f"    state_{i}[i] = {self.to_tensor(tin, 'value', s_in, z_in)};"),
                "  }"]

    def helper_code(self) -> list[str]:
        out = []
        for dtype in ("int8", "int16"):
            if f"quantize_{dtype}" not in self.helpers:
                continue
            ctype, _, _, low, high = _TYPES[dtype]
            out += [
                f"// float -> {dtype}: round to nearest, saturate (NaN gives {low}).",
                f"static {ctype} quantize_{dtype}(float value, float scale, int zero_point) {{",
                "  const float q = roundf(value / scale) + static_cast<float>(zero_point);",
                f"  if (!(q > {low}.0f)) return {low};",
                f"  if (q > {high}.0f) return {high};",
                f"  return static_cast<{ctype}>(q);",
                "}",
                "",
            ]
        if "dequantize" in self.helpers:
            out += [
                "static float dequantize(int value, float scale, int zero_point) {",
                "  return static_cast<float>(value - zero_point) * scale;",
                "}",
                "",
            ]
        return out

    def code(self, *, arduino_h: bool) -> str:
        spec = self.spec
        step = spec.mode == "step"
        x, y = spec.input("x"), spec.output("y")
        n_states = len(spec.state_sizes)
        x_ctype, x_member = _TYPES[x.dtype][:2]
        x_value = self.to_tensor(x, self.sample_value(x), "io::kInputScale",
                                 "io::kInputZeroPoint")

        # Bodies first: they register the helpers the preamble must define.
        if step:
            sample_code = [
                "// One time step: sample and state in, Invoke, next state out. The sketch keeps",
                "// the state in its own buffers because TFLite Micro may reuse an input tensor's",
                "// memory during Invoke.",
                "static bool run_step(const float* x) {",
                "  for (int i = 0; i < io::kFeatures; ++i) {",
                *_fit(f"    input->data.{x_member}[i] = {x_value};"),
                "  }",
            ]
            if spec.flexible:
                sample_code.append("  level_input->data.i32[0] = level;")
            for i in range(n_states):
                member = _TYPES[spec.input(f"state_{i}").dtype][1]
                self.helpers.add("memcpy")
                sample_code.append(
                    f"  memcpy(state_{i}_input->data.{member}, state_{i}, sizeof(state_{i}));")
            sample_code += [
                "  if (interpreter->Invoke() != kTfLiteOk) {",
                '    Serial.println("Invoke() failed.");',
                "    return false;",
                "  }",
            ]
            for i in range(n_states):
                sample_code += self.copy_state(i)
            sample_code += ["  return true;", "}", ""]
        else:
            verb = "Quantize" if x.quantized else "Write"
            sample_code = [
                f"// {verb} sample t into its place in the window: the input tensor is the",
                "// window buffer (every value is rewritten before the next Invoke).",
                "static void write_sample(const float* x, int t) {",
                f"  {x_ctype}* window = input->data.{x_member} + t * io::kFeatures;",
                "  for (int i = 0; i < io::kFeatures; ++i) {",
                *_fit(f"    window[i] = {x_value};"),
                "  }",
                "}",
                "",
            ]
        score = self.from_tensor(y, f"output->data.{_TYPES[y.dtype][1]}[i]", "io::kOutputScale",
                                 "io::kOutputZeroPoint")
        report_code = [
            ("// Dequantize the scores and print the best class." if y.quantized
             else "// Print the best class and its score."),
            "static void report() {",
            "  int best = 0;",
            "  float best_score = 0.0f;",
            "  for (int i = 0; i < io::kNumClasses; ++i) {",
            f"    const float score = {score};",
            "    if (i == 0 || score > best_score) {",
            "      best = i;",
            "      best_score = score;",
            "    }",
            "  }",
            "  ++window_count;",
            '  Serial.print("window ");',
            "  Serial.print(window_count);",
            '  Serial.print(": ");',
            "  Serial.print(io::kClassNames[best]);",
            '  Serial.print(" ");',
            "  Serial.println(best_score, 4);",
            "}",
            "",
        ]
        reset_code = []
        if step:
            reset_code = ["// Zero state (quantized 0.0) at the start of every window, as in "
                          "training.", "static void reset_state() {"]
            for i in range(n_states):
                tin = spec.input(f"state_{i}")
                zero = (f"static_cast<{_TYPES[tin.dtype][0]}>(io::kStateInputZeroPoints[{i}])"
                        if tin.quantized else "0.0f")
                reset_code += [f"  for (int i = 0; i < io::kStateSizes[{i}]; ++i) {{",
                               f"    state_{i}[i] = {zero};", "  }"]
            reset_code += ["}", ""]

        head = self.head(arduino_h)
        globals_ = self.globals_()
        io_code = self.read_sample_code()
        helpers = self.helper_code()
        return "\n".join(head + globals_ + helpers + io_code + self.check_code() + sample_code
                         + reset_code + report_code + self.setup_code() + self.loop_code())

    def head(self, arduino_h: bool) -> list[str]:
        spec = self.spec
        step = spec.mode == "step"
        board = f"{spec.board_name} ({spec.fqbn})" if spec.board_name and spec.fqbn else (
            spec.board_name or spec.fqbn or "any board the library supports")
        lines = [
            f"// {spec.name}: streaming classifier on TensorFlow Lite Micro, generated by "
            "keras_rnnedge.",
            "//",
            f"// Model:  {_describe(spec)}.",
            f"// Board:  {comment_text(board)}.",
            f"// Input:  one sample of {spec.features} values per line on Serial "
            f"({BAUD_RATE} baud); see read_sample().",
            f"// Output: every {spec.timesteps} samples, \"window <n>: <class> <score>\".",
            "//",
        ]
        if step:
            lines += [
                "// Step mode: one Invoke per sample. The recurrent state goes from the outputs",
                "// state_<i>_out back into the inputs state_<i> (re-quantized where their scales",
                "// differ) and is reset to zero after every window.",
            ]
        else:
            verb = "quantized into" if spec.input("x").quantized else "written to"
            lines += [
                f"// {spec.mode.capitalize()} mode: the samples of a window are {verb} the "
                "input tensor",
                "// as they arrive, and the model runs once per window.",
            ]
        lines.append("")
        if arduino_h:
            lines.append("#include <Arduino.h>")
        lines.append("#include <TensorFlowLite.h>")
        lines.append("")
        std = []
        if any(h.startswith("quantize_") for h in self.helpers):
            std.append("#include <math.h>")  # roundf
        std.append("#include <stdlib.h>")  # strtod
        if "memcpy" in self.helpers:
            std.append("#include <string.h>")
        lines += std + [
            "",
            f'#include "{spec.name}_model_data.h"',
            f'#include "{spec.name}_model_io.h"',
            '#include "tensorflow/lite/micro/micro_interpreter.h"',
            '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
            '#include "tensorflow/lite/micro/system_setup.h"',
            '#include "tensorflow/lite/schema/schema_generated.h"',
            "",
            f"namespace io = {_io_namespace(spec)};",
            "",
        ]
        return lines

    def globals_(self) -> list[str]:
        spec = self.spec
        lines = [
            f"constexpr long kBaudRate = {BAUD_RATE};",
            "// Longest accepted input line.",
            f"constexpr int kLineLength = io::kFeatures * {_CHARS_PER_VALUE} + 2;",
            "",
            "alignas(16) static uint8_t tensor_arena[io::kArenaSize];",
            "",
            "static const tflite::Model* model = nullptr;",
            "static tflite::MicroInterpreter* interpreter = nullptr;",
            "static TfLiteTensor* input = nullptr;",
            "static TfLiteTensor* output = nullptr;",
        ]
        for i in range(len(spec.state_sizes)):
            lines += [f"static TfLiteTensor* state_{i}_input = nullptr;",
                      f"static TfLiteTensor* state_{i}_output = nullptr;"]
        if spec.flexible:
            lines += [
                "static TfLiteTensor* level_input = nullptr;",
                "// The level of the next steps: starts at the top (the graph clips it); a Serial",
                "// line \"L<n>\" sets it.",
                "static int32_t level = 255;",
            ]
        for i in range(len(spec.state_sizes)):
            ctype = _TYPES[spec.input(f"state_{i}").dtype][0]
            lines.append(f"// State {i} for the next step, quantized as the input state_{i}.")
            lines.append(f"static {ctype} state_{i}[io::kStateSizes[{i}]];")
        lines += [
            "static int sample_count = 0;  // samples of the current window so far",
            "static unsigned long window_count = 0;",
            "static bool ready = false;",
            "",
        ]
        return lines

    def read_sample_code(self) -> list[str]:
        if not self.spec.flexible:
            return serial_sample_reader()
        return [
            "// \"L<n>\" (or \"level <n>\") on Serial: run the next steps at level n.",
            "static void set_level(const char* line) {",
            "  const char* p = line;",
            "  while (*p != '\\0' && (*p < '0' || *p > '9')) ++p;",
            "  char* end = nullptr;",
            "  const long value = strtol(p, &end, 10);",
            "  if (end == p || value > 255) {",
            '    Serial.println("Ignored a level: expected L0, L1, ...");',
            "    return;",
            "  }",
            "  level = static_cast<int32_t>(value);",
            '  Serial.print("level ");',
            "  Serial.println(static_cast<int>(value));",
            "}",
            "",
            *serial_sample_reader(levels=True),
        ]

    def check_code(self) -> list[str]:
        return [
            f"// Does a tensor of the interpreter match what {self.spec.name}_model_io.h says?",
            "static bool check_tensor(const TfLiteTensor* tensor, const char* name, TfLiteType "
            "type,",
            "                         size_t bytes, float scale, int zero_point) {",
            "  if (tensor != nullptr && tensor->type == type && tensor->bytes == bytes &&",
            "      tensor->params.scale == scale && tensor->params.zero_point == zero_point) {",
            "    return true;",
            "  }",
            '  Serial.print("Tensor ");',
            "  Serial.print(name);",
            f'  Serial.println(" does not match {self.spec.name}_model_io.h: regenerate the '
            'sketch.");',
            "  return false;",
            "}",
            "",
        ]

    def setup_code(self) -> list[str]:
        spec = self.spec
        step = spec.mode == "step"
        x, y = spec.input("x"), spec.output("y")
        n = len(spec.resolver_methods)
        lines = [
            "void setup() {",
            "  tflite::InitializeTarget();",
            "  Serial.begin(kBaudRate);",
            "  const unsigned long start = millis();",
            "  while (!Serial && millis() - start < 4000) {",
            "    // Wait up to 4 s for the serial monitor (boards with native USB).",
            "  }",
            "",
            f"  model = tflite::GetModel(g_{spec.name}_model_data);",
            "  if (model->version() != TFLITE_SCHEMA_VERSION) {",
            '    Serial.print("Model schema version ");',
            "    Serial.print(static_cast<unsigned long>(model->version()));",
            '    Serial.print(", but this TFLite Micro reads version ");',
            "    Serial.println(TFLITE_SCHEMA_VERSION);",
            "    return;",
            "  }",
            "",
            f"  // Exactly the operators of this model ({n}).",
            f"  static tflite::MicroMutableOpResolver<{n}> resolver;",
        ]
        for method in spec.resolver_methods:
            if method == _DECODE_METHOD:
                lines += [
                    "  // TFLM_DECODE decodes the weights stored compressed into the arena. TFLite",
                    "  // Micro has it since October 2025; the Arduino_TensorFlowLite library of",
                    "  // tflite-micro-arduino-examples (2023) does not: see README.md.",
                ]
            lines.append(f"  resolver.{method}();")
        lines += [
            "",
            "  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena,",
            "                                                     io::kArenaSize);",
            "  interpreter = &static_interpreter;",
            "  if (interpreter->AllocateTensors() != kTfLiteOk) {",
            '    Serial.print("AllocateTensors() failed: raise kArenaSize (");',
            "    Serial.print(io::kArenaSize);",
            f'    Serial.println(" bytes) in {spec.name}_model_io.h.");',
            "    return;",
            "  }",
            "",
            "  input = interpreter->input(io::kInputPosition);",
            "  output = interpreter->output(io::kOutputPosition);",
        ]
        for i in range(len(spec.state_sizes)):
            lines += [f"  state_{i}_input = interpreter->input(io::kStateInputPositions[{i}]);",
                      f"  state_{i}_output = interpreter->output(io::kStateOutputPositions[{i}]);"]
        if spec.flexible:
            lines.append("  level_input = interpreter->input(io::kLevelPosition);")

        def check(var, label, tensor, count, scale, zp):
            ctype, _, tftype = _TYPES[tensor.dtype][:3]
            return [f'      check_tensor({var}, "{label}", {tftype}, {count} * sizeof({ctype}),',
                    f"                   {scale}, {zp})"]

        x_count = "io::kFeatures" if step else "io::kTimesteps * io::kFeatures"
        checks = [check("input", "x", x, x_count, "io::kInputScale", "io::kInputZeroPoint"),
                  check("output", "y", y, "io::kNumClasses", "io::kOutputScale",
                        "io::kOutputZeroPoint")]
        for i in range(len(spec.state_sizes)):
            tin, tout, s_in, z_in, s_out, z_out = self.state_refs(i)
            checks.append(check(f"state_{i}_input", f"state_{i}", tin, f"io::kStateSizes[{i}]",
                                s_in, z_in))
            checks.append(check(f"state_{i}_output", f"state_{i}_out", tout,
                                f"io::kStateSizes[{i}]", s_out, z_out))
        if spec.flexible:
            checks.append(check("level_input", "level", spec.input("level"), "1", "0.0f", "0"))
        lines.append("  const bool tensors_match =")
        for k, c in enumerate(checks):
            lines += [c[0], c[1] + (";" if k == len(checks) - 1 else " &&")]
        lines += ["  if (!tensors_match) return;"]
        if step:
            lines.append("  reset_state();")
        lines += [
            "  ready = true;",
            f'  Serial.print("{spec.name} ready: send ");',
            "  Serial.print(io::kFeatures);",
            '  Serial.print(" comma-separated values per line; a prediction every ");',
            "  Serial.print(io::kTimesteps);",
            '  Serial.println(" lines.");',
            "}",
            "",
        ]
        return lines

    def loop_code(self) -> list[str]:
        spec = self.spec
        lines = [
            "void loop() {",
            "  if (!ready) return;",
            "  float x[io::kFeatures];",
            "  if (!read_sample(x)) return;",
        ]
        if spec.mode == "step":
            lines += [
                "  if (!run_step(x)) {",
                "    sample_count = 0;",
                "    reset_state();",
                "    return;",
                "  }",
                "  if (++sample_count < io::kTimesteps) return;",
                "  sample_count = 0;",
                "  report();",
                "  reset_state();",
                "}",
                "",
            ]
            return lines
        lines += [
            "  write_sample(x, sample_count);",
            "  if (++sample_count < io::kTimesteps) return;",
            "  sample_count = 0;",
            "  const bool ok = interpreter->Invoke() == kTfLiteOk;",
            "  if (ok) {",
            "    report();",
            "  } else {",
            '    Serial.println("Invoke() failed.");',
            "  }",
        ]
        if spec.mode == "fused":
            lines += [
                "  // The fused LSTM keeps its state in variable tensors: zero them for the next",
                "  // window.",
                "  interpreter->Reset();",
            ]
        lines += ["}", ""]
        return lines


def _check_tflm_target(spec: SketchSpec) -> None:
    if spec.progmem:
        raise ValueError(
            f"Board {spec.board_name or spec.fqbn or '?'!r} keeps constants in PROGMEM (AVR): "
            "TensorFlow Lite Micro does not run on 8-bit AVR boards, so no sketch can be "
            "generated for it. Use the standalone C runtime (micro_targets) for AVR, or pick a "
            "32-bit board.")


def sketch_code(spec: SketchSpec, *, arduino_h: bool = False) -> str:
    """The C++ program: the ``.ino`` text, or ``main.cpp`` with ``arduino_h=True``."""
    return _Program(spec).code(arduino_h=arduino_h)


# -- README ----------------------------------------------------------------------------------------

def _readme(spec: SketchSpec, *, platformio: bool) -> str:
    n = spec.features
    step = spec.mode == "step"
    board = spec.board_name or "your board"
    example = ",".join(["0.0"] * min(n, 3)) + (",..." if n > 3 else "")
    arena = f"`kArenaSize` = {spec.arena_bytes:,} bytes"
    if spec.measured_arena_bytes:
        arena += (f" ({spec.measured_arena_bytes:,} bytes measured + "
                  f"{spec.arena_bytes - spec.measured_arena_bytes:,} bytes margin)")
    if platformio:
        build = [
            "## Build and upload (PlatformIO)",
            "",
            "```",
            "pio run -t upload",
            f"pio device monitor -b {BAUD_RATE}",
            "```",
            "",
            f"`platformio.ini` targets `{spec.platformio_board}` on platform "
            f"`{spec.platformio_platform}` and pulls the TFLite Micro Arduino library "
            f"(`{TFLM_ARDUINO_LIBRARY}`) from {TFLM_ARDUINO_URL}.",
        ]
        files = ["- `src/main.cpp`: the program (read, quantize, invoke, print).",
                 f"- `src/{spec.name}_model_data.cc`, `include/{spec.name}_model_data.h`: the "
                 "model as a 16-byte aligned C array.",
                 f"- `include/{spec.name}_model_io.h`: arena size, tensor positions, scales and "
                 "zero points, class names."]
    else:
        fqbn = spec.fqbn or "<fqbn>"
        build = [
            "## Install the library",
            "",
            f"The sketch uses the TensorFlow Lite Micro Arduino library, `{TFLM_ARDUINO_LIBRARY}`"
            f" ({TFLM_ARDUINO_URL}). It is not in the Library Manager; clone it into your "
            "libraries folder:",
            "",
            "```",
            f"git clone {TFLM_ARDUINO_URL} ~/Arduino/libraries/{TFLM_ARDUINO_LIBRARY}",
            "```",
            "",
            "The library is built and tested for the Arduino Nano 33 BLE (Sense); on other "
            "boards use a TFLite Micro port for that board with the same API "
            "(`MicroInterpreter`, `MicroMutableOpResolver`).",
            "",
            "## Build and upload",
            "",
            "Open the folder in the Arduino IDE (select the board and port), or:",
            "",
            "```",
            f"arduino-cli compile --fqbn {fqbn} {spec.name}",
            f"arduino-cli upload -p /dev/ttyACM0 --fqbn {fqbn} {spec.name}",
            f"arduino-cli monitor -p /dev/ttyACM0 -c baudrate={BAUD_RATE}",
            "```",
        ]
        files = [f"- `{spec.name}.ino`: the program (read, quantize, invoke, print).",
                 f"- `{spec.name}_model_data.cpp`, `{spec.name}_model_data.h`: the model as a "
                 "16-byte aligned C array (`.cpp`: the Arduino IDE 1.x builder compiles no `.cc`).",
                 f"- `{spec.name}_model_io.h`: arena size, tensor positions, scales and zero "
                 "points, class names."]
    if _DECODE_METHOD in spec.resolver_methods:
        build += [
            "",
            "## Compressed weights (TFLM_DECODE)",
            "",
            "The model stores its pruned weights compressed (a bit mask and the non-zero "
            "values), and TensorFlow Lite Micro's DECODE operator (`resolver.AddDecode()`, "
            "custom op `TFLM_DECODE`) decodes each into the tensor arena before the operator "
            "that reads it; the arena size includes the decoded weights. DECODE came into "
            "TensorFlow Lite Micro in October 2025 (https://github.com/tensorflow/tflite-micro, "
            "commit d96fe663d); the Arduino library above was last synced from it in December "
            "2023 and has no `AddDecode()`, so the build fails with \"no member named "
            "'AddDecode'\". Build against a TensorFlow Lite Micro tree from October 2025 or "
            "later (the library's `scripts/sync_from_tflite_micro.sh` regenerates it from "
            "one), or convert without `compression` to use the library as it is.",
        ]
    how = ([f"Each sample is one `Invoke()`. The recurrent state ({len(spec.state_sizes)} "
            "tensor(s)) goes from the outputs `state_<i>_out` back into the inputs `state_<i>`, "
            "re-quantized where the two scales differ, and is reset to zero after each window, "
            "as in training."] if step else
           [f"The samples of a window are quantized straight into the model's input tensor; the "
            f"model runs once per window of {spec.timesteps} samples."])
    lines = [
        f"# {spec.name}: streaming classifier for {board}",
        "",
        f"Generated by keras_rnnedge from the model {_describe(spec)}. It runs the model with "
        "TensorFlow Lite Micro, reads samples from the serial port and prints a prediction "
        f"for every window of {spec.timesteps} samples.",
        "",
        f"- Board: {board}" + (f" (`{spec.fqbn}`)" if spec.fqbn and not platformio else ""),
        f"- Operators: {', '.join(spec.resolver_methods)} "
        f"(`MicroMutableOpResolver<{len(spec.resolver_methods)}>`)",
        f"- Classes: {', '.join(spec.class_names)}",
        "",
        "## Files",
        "",
        *files,
        "- `README.md`: this file.",
        "",
        *build,
        "",
        "## Tensor arena",
        "",
        f"{arena}, in `{spec.name}_model_io.h`. It was measured on the host with TensorFlow "
        "Lite Micro's recording allocator (the smallest arena in which `AllocateTensors()` "
        "succeeds), plus a safety margin. Host pointers are 8 bytes, so a 32-bit board needs the "
        "same or less. If `AllocateTensors()` fails, the sketch says so: raise `kArenaSize`.",
        "",
        "## Feeding samples",
        "",
        f"Open the serial port at {BAUD_RATE} baud (line ending: newline) and send one sample per "
        f"line: {n} comma-separated numbers, e.g. `{example}`, in the same units, order and "
        f"normalization as the training data. After {spec.timesteps} samples the sketch prints a "
        "prediction and starts the next window. Badly formed lines are reported and skipped.",
        "",
        *how,
        "",
        "From Python (pyserial), one window at a time:",
        "",
        "```python",
        "import serial",
        "",
        f"port = serial.Serial('/dev/ttyACM0', {BAUD_RATE}, timeout=5)",
        "port.readline()  # the 'ready' line (times out if it was sent before the port opened)",
        f"for sample in window:  # shape ({spec.timesteps}, {n})",
        "    port.write((','.join(f'{v:.6g}' for v in sample) + '\\n').encode())",
        "print(port.readline().decode().strip())",
        "```",
        "",
        "Send no faster than the board consumes samples (wait for each prediction before the "
        "next window): the serial receive buffer is small.",
        "",
        "To read a sensor instead, replace `read_sample()`: fill `x[0..kFeatures-1]` and return "
        "`true` when a sample is ready, `false` otherwise.",
        "",
        "## Expected output",
        "",
        "A line when the model is ready, then one line per window (scores illustrative):",
        "",
        "```",
        f"{spec.name} ready: send {n} comma-separated values per line; a prediction every "
        f"{spec.timesteps} lines.",
        f"window 1: {spec.class_names[0]} 0.9961",
        f"window 2: {spec.class_names[-1]} 0.8750",
        "```",
        "",
        "The score is the model's dequantized output for the best class (a probability when the "
        "model ends with a softmax).",
        "",
    ]
    return "\n".join(lines)


# -- projects -------------------------------------------------------------------------------------

def _model_files(spec: SketchSpec) -> tuple[str, str]:
    files = c_array(spec.flatbuffer, spec.name, progmem=False,
                    model_name=spec.model_name or spec.name, quantization=spec.quantization)
    return files[f"{spec.name}_model_data.h"], files[f"{spec.name}_model_data.cc"]


def arduino_sketch(spec: SketchSpec) -> dict[str, str]:
    """The Arduino sketch folder ``<id>/``: paths relative to the output folder → text.

    Files: ``<id>/<id>.ino``, ``<id>/<id>_model_data.h``, ``<id>/<id>_model_data.cpp`` (the
    ``.cc`` of :func:`~keras_rnnedge.converters.carray.c_array`, renamed because the Arduino IDE
    1.x builder compiles only ``.c``/``.cpp``/``.S``), ``<id>/<id>_model_io.h`` and
    ``<id>/README.md``.

    Raises:
        ValueError: for an AVR (``progmem``) board, where TensorFlow Lite Micro does not run.
    """
    _check_tflm_target(spec)
    header, source = _model_files(spec)
    root = spec.name
    return {
        f"{root}/{root}.ino": sketch_code(spec),
        f"{root}/{root}_model_data.h": header,
        f"{root}/{root}_model_data.cpp": source,
        f"{root}/{root}_model_io.h": model_io_header(spec),
        f"{root}/README.md": _readme(spec, platformio=False),
    }


def platformio_project(spec: SketchSpec) -> dict[str, str]:
    """A PlatformIO project: paths relative to the project folder → text.

    Files: ``platformio.ini``, ``src/main.cpp`` (the sketch plus ``#include <Arduino.h>``),
    ``src/<id>_model_data.cc``, ``include/<id>_model_data.h``, ``include/<id>_model_io.h``,
    ``README.md``.

    Raises:
        ValueError: for an AVR (``progmem``) board, or without a PlatformIO board and platform.
    """
    _check_tflm_target(spec)
    if not (spec.platformio_board and spec.platformio_platform):
        raise ValueError(
            f"Board {spec.board_name or '?'!r} has no PlatformIO board/platform "
            f"(platformio_board={spec.platformio_board!r}, "
            f"platformio_platform={spec.platformio_platform!r}); give both to make a PlatformIO "
            "project.")
    header, source = _model_files(spec)
    env = re.sub(r"[^A-Za-z0-9_-]+", "_", spec.platformio_board)
    ini = "\n".join([
        f"; PlatformIO project for {spec.name} on {comment_text(spec.board_name or env)}, "
        "generated by keras_rnnedge.",
        "; Build and upload: pio run -t upload; serial output: pio device monitor",
        "",
        f"[env:{env}]",
        f"platform = {spec.platformio_platform}",
        f"board = {spec.platformio_board}",
        "framework = arduino",
        f"monitor_speed = {BAUD_RATE}",
        "lib_deps =",
        f"    {TFLM_ARDUINO_URL}",
        "",
    ])
    return {
        "platformio.ini": ini,
        "src/main.cpp": sketch_code(spec, arduino_h=True),
        f"src/{spec.name}_model_data.cc": source,
        f"include/{spec.name}_model_data.h": header,
        f"include/{spec.name}_model_io.h": model_io_header(spec),
        "README.md": _readme(spec, platformio=True),
    }
