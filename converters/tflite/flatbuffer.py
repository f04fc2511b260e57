"""TFLite stage: a lowered model → flatbuffer bytes, with the I/O map a caller needs.

Quantization options:

* ``"float32"``: no quantization.
* ``"float16"``: float16 weights, float32 compute (dequantized at load).
* ``"dynamic"``: int8 weights, float activations (dynamic-range quantization).
* ``"int8"``: full integer, int8 input and output tensors (needs representative data).
* ``"int16x8"``: int16 activations, int8 weights (needs representative data).

Calibration (``int8``/``int16x8``) uses a seeded sample of ``calibration_size`` sequences
drawn across the whole representative array
(:func:`~keras_rnnedge.converters.quality.calibration_sample`), never its first rows. In step
mode the calibration data are the float model's own states, rolled out over the full length of
each sampled sequence. With ``int8``, the ranges of the model input ``x`` (measured on the
whole representative array) and of each recurrent state are then set by the range estimator
with the smallest quantization error (:func:`~keras_rnnedge.converters.quality.choose_range`;
for a state only ``minmax`` or ``percentile``, :data:`STATE_ESTIMATORS`),
and each state input shares one range with its state output: the state the model writes is the
state it reads, so nothing is re-quantized between steps. A model trained with quantization-aware
training keeps the ranges QAT trained for what it fake-quantized (:func:`qat_ranges`: the model
input ``x`` and the output ``y``); the state inside the time loop, which QAT does not
fake-quantize, is calibrated as above. With ``int16x8`` the state input and
output are calibrated separately and may get slightly different scales: the caller
re-quantizes the state between steps (:meth:`TensorInfo.requantize`; the emulator and the
generated sketch do).

A model whose input is standardised (a leading ``Normalization``) and lowered with
``standardize="caller"`` (the pipeline does so for ``int8`` and ``int16x8``: one input scale
cannot resolve raw features of different ranges) takes standardised features: the flatbuffer
records the per-feature offset and scale in its metadata (:data:`STANDARDIZATION_METADATA`),
:func:`io_map` reads them back into the input's :class:`TensorInfo`, whose :meth:`quantize`
standardises raw values before quantizing them, and the generated sketch does the same.
"""

from __future__ import annotations

import dataclasses
import warnings

from keras_rnnedge._compat import np, tf
from keras_rnnedge.converters.lowering import ConversionError, LoweredModel, Standardization
from keras_rnnedge.converters.tflite.compression import CompressionReport
from keras_rnnedge.optimize.recurrent import is_quantize_input, is_quantize_wrapper

__all__ = ["CALIBRATION_SEQUENCES", "QUANTIZATIONS", "STANDARDIZATION_METADATA", "TensorInfo",
           "TFLiteModel", "WEIGHT_SCALES", "check_weight_scales", "qat_ranges",
           "read_standardization", "strip_strings", "to_tflite", "with_standardization"]

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
_NEEDS_DATA = ("int8", "int16x8")
#: How int8 weights are scaled: ``"per-channel"`` (one scale per output channel, the TFLite
#: converter's default) or ``"per-tensor"`` (one scale per weight: no per-channel scales and
#: zero points in the flatbuffer, no per-channel multipliers in TFLite Micro's arena).
WEIGHT_SCALES = ("per-channel", "per-tensor")
#: Representative sequences sampled for calibration by default (``calibration_size``).
CALIBRATION_SEQUENCES = 128
#: Range estimators for a recurrent state: not ``mse``, whose clipping of the extremes is fed
#: back into every following step (an error the per-tensor measure does not see).
STATE_ESTIMATORS = ("minmax", "percentile")
#: Name of the flatbuffer metadata entry holding the input standardisation the caller applies
#: (JSON ``{"offset": [...], "scale": [...]}``, one value per feature).
STANDARDIZATION_METADATA = "keras_rnnedge.input_standardization"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of the flatbuffer, by its name in the lowered model.

    Attributes:
        name: ``x``, ``y``, ``state_<i>`` or ``state_<i>_out``.
        position: its position in the subgraph's inputs (outputs), as interpreters index them.
        shape: the tensor shape.
        dtype: numpy dtype name (``int8``, ``float32``...).
        scale, zero_point: int8/int16 quantization (``0.0``/``0`` for float tensors).
        standardization: for the input ``x`` of a model that takes standardised features,
            the per-feature :class:`~keras_rnnedge.converters.lowering.Standardization` that
            :meth:`quantize` applies to raw values first (``None``: the values go in as given).
    """

    name: str
    position: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    standardization: Standardization | None = None

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def to_dict(self) -> dict:
        """JSON-ready fields (:meth:`from_dict` reads them back)."""
        out = dataclasses.asdict(dataclasses.replace(self, standardization=None))
        out["shape"] = list(self.shape)
        if self.standardization is not None:
            out["standardization"] = {"offset": self.standardization.offset.tolist(),
                                      "scale": self.standardization.scale.tolist()}
        return out

    @classmethod
    def from_dict(cls, values: dict) -> TensorInfo:
        std = values.get("standardization")
        return cls(**{**values, "shape": tuple(values["shape"]),
                      "standardization": None if std is None else Standardization(
                          offset=std["offset"], scale=std["scale"])})

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values → this tensor's dtype (standardised first when the tensor has a
        :attr:`standardization`; round to nearest, saturate)."""
        if self.standardization is not None:
            values = self.standardization.apply(values)
        if not self.quantized:
            return np.asarray(values, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(values, np.float64) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def requantize(self, values: np.ndarray, source: TensorInfo) -> np.ndarray:
        """Values quantized as ``source`` (e.g. a state output) → this tensor's quantization."""
        if not (self.quantized and source.quantized):
            return self.quantize(source.dequantize(values))
        if (self.scale, self.zero_point) == (source.scale, source.zero_point):
            return np.asarray(values, dtype=self.dtype)
        return self.quantize(source.dequantize(values))

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.asarray(values, np.float32)
        return ((np.asarray(values, np.int64) - self.zero_point) * self.scale).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TFLiteModel:
    """Flatbuffer bytes and the map of its inputs and outputs."""

    flatbuffer: bytes
    quantization: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    #: tensor name → ``{"range": [low, high], "estimator": ...}`` of the ranges set from the
    #: calibration data (``x`` and the states of an int8 model).
    calibration: dict = dataclasses.field(default_factory=dict)
    #: What :func:`~keras_rnnedge.converters.tflite.compression.compress_pruned` did to
    #: ``flatbuffer`` (``None``: not compressed). A flatbuffer with encoded weights runs in
    #: TFLite Micro only.
    compression: CompressionReport | None = None
    #: One of :data:`WEIGHT_SCALES` (how int8 weights are scaled; moot for float weights).
    weight_scales: str = "per-channel"

    def input(self, name: str) -> TensorInfo:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorInfo:
        return next(t for t in self.outputs if t.name == name)


def check_quantization(quantization: str, representative_data) -> None:
    if quantization not in QUANTIZATIONS:
        raise ConversionError(f"Expected quantization to be one of "
                              f"{', '.join(map(repr, QUANTIZATIONS))}, but got {quantization!r}.")
    if quantization in _NEEDS_DATA and representative_data is None:
        raise ConversionError(
            f"quantization={quantization!r} needs representative_data: an array of input "
            "sequences (N, timesteps, features), e.g. a few hundred training windows, to "
            "calibrate activation ranges. Pass representative_data=x_train[:256], or choose "
            "quantization='float32' / 'dynamic'.")


def check_weight_scales(weight_scales: str, quantization: str) -> None:
    """Refuse an unknown ``weight_scales``, or ``"per-tensor"`` for a model with float
    weights."""
    if weight_scales not in WEIGHT_SCALES:
        raise ConversionError(f"Expected weight_scales to be one of "
                              f"{', '.join(map(repr, WEIGHT_SCALES))}, but got "
                              f"{weight_scales!r}.")
    if weight_scales == "per-tensor" and quantization not in ("dynamic",) + _NEEDS_DATA:
        raise ConversionError(f"weight_scales='per-tensor' scales int8 weights, but "
                              f"quantization={quantization!r} keeps float weights: use "
                              "quantization='int8' (or 'int16x8', 'dynamic'), or leave "
                              "weight_scales at 'per-channel'.")


def _check_data(data, lowered: LoweredModel) -> np.ndarray:
    x = np.asarray(data, dtype=np.float32)
    if x.ndim != 3 or x.shape[-1] != lowered.features or len(x) == 0:
        raise ConversionError(
            f"representative_data has shape {x.shape}; expected (N, timesteps, "
            f"{lowered.features}) with N >= 1.")
    if lowered.timesteps is not None and x.shape[1] != lowered.timesteps:
        raise ConversionError(f"representative_data has {x.shape[1]} time steps; the "
                              f"{lowered.mode} model takes {lowered.timesteps}.")
    if not np.all(np.isfinite(x)):
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ConversionError(f"representative_data contains {bad} NaN or Inf values; clean "
                              "the data (calibration ranges would be meaningless).")
    return x


def _step_samples(lowered: LoweredModel, x: np.ndarray, record: list | None = None):
    """Calibration samples of a step model: every (x_t, state) of the float roll-out over the
    full length of each sequence; the states reached are appended to ``record`` (one list per
    state) when given. A flexible model's sequences run random level schedules with switches
    (seeded), so that the ranges cover every level."""
    from keras_rnnedge.flexible import random_schedules

    model = lowered.model
    n_states = len(lowered.state_sizes)
    levels = (None if lowered.num_levels is None else
              random_schedules(len(x), x.shape[1], lowered.num_levels, seed=0))

    @tf.function
    def step(inputs):
        return model(inputs)

    for k, seq in enumerate(x):
        states = [np.zeros((1, s), np.float32) for s in lowered.state_sizes]
        for t in range(seq.shape[0]):
            sample = {"x": seq[t:t + 1], **{f"state_{i}": states[i] for i in range(n_states)}}
            if levels is not None:
                sample["level"] = np.array([[levels[k, t]]], np.int32)
            yield sample
            outs = step([sample[name] for name in lowered.inputs])
            states = [o.numpy() for o in outs[1:]]
            if record is not None:
                for i, s in enumerate(states):
                    record[i].append(s)


def _set_ranges(calibrated: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    """The calibrated flatbuffer with the recorded min/max of the named signature tensors
    (``x``, ``state_<i>``, ``state_<i>_out``) replaced by ``ranges``."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    subgraph = model.subgraphs[0]
    signature = model.signatureDefs[0]
    by_name = {(t.name.decode() if isinstance(t.name, bytes) else t.name): t.tensorIndex
               for t in list(signature.inputs) + list(signature.outputs)}
    for name, (lo, hi) in ranges.items():
        tensor = subgraph.tensors[by_name[name]]
        if tensor.quantization is None or tensor.quantization.min is None:
            continue
        tensor.quantization.min = np.array([lo], np.float32)
        tensor.quantization.max = np.array([hi], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def qat_ranges(model) -> dict[str, tuple[float, float]]:
    """The activation ranges a QAT model trained, by the step model's tensor name: ``x`` (the
    input quantizer) and ``y`` (the output quantizer of the last Dense layer); empty for a model
    without QAT wrappers, and without the ranges that are not finite and non-empty."""
    ranges: dict[str, tuple[float, float]] = {}
    layers = [layer for layer in model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
    for layer in layers:
        values = {w.name.split("/")[-1].split(":")[0]: float(np.asarray(w.numpy()).reshape(-1)[0])
                  for w in layer.weights if w.name.split(":")[0].endswith(("_min", "_max"))}
        if is_quantize_input(layer) and "x" not in ranges:
            pair = (values.get("quantize_layer_min"), values.get("quantize_layer_max"))
            if None in pair:
                pair = next(((values[k], values[k[:-3] + "max"]) for k in values
                             if k.endswith("_min") and k[:-3] + "max" in values), (None, None))
            ranges["x"] = pair
        elif is_quantize_wrapper(layer) and "post_activation_min" in values:
            ranges["y"] = (values["post_activation_min"], values["post_activation_max"])
    return {k: (lo, hi) for k, (lo, hi) in ranges.items()
            if lo is not None and hi is not None and np.isfinite([lo, hi]).all() and hi > lo}


def _int8_calibrated(converter, lowered: LoweredModel, x_all: np.ndarray,
                     sample: np.ndarray, trained: dict | None = None,
                     per_channel: bool = True) -> tuple[bytes, dict]:
    """Full-int8 flatbuffer: the converter's calibration, then the ranges of ``x`` (on the
    whole representative array) and of each state (its input and output sharing one range,
    on the roll-out states) chosen by :func:`~keras_rnnedge.converters.quality.choose_range`."""
    from tensorflow.lite.python import convert as tf_convert

    from keras_rnnedge.converters.quality import choose_range
    from keras_rnnedge.progress import iterate

    record: list[list] = [[] for _ in lowered.state_sizes]
    if lowered.mode == "step":
        converter.representative_dataset = lambda: iterate(  # a bar inside convert()'s
            _step_samples(lowered, sample, record), "calibrating", sample.size // sample.shape[-1],
            unit="step")
    else:
        converter.representative_dataset = lambda: iterate(
            ({"x": seq[None]} for seq in sample), "calibrating", len(sample), unit="window")
    converter._experimental_calibrate_only = True
    with warnings.catch_warnings():  # TensorFlow's own: its calibrator builds the deprecated
        # tf.lite.Interpreter, and the ranges of x and the state are set below, not by stats
        warnings.filterwarnings("ignore", r"\s*Warning: tf\.lite\.Interpreter is deprecated")
        warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
        calibrated = converter.convert()
    chosen = {}
    lo, hi, how = choose_range(x_all)
    chosen["x"] = {"range": [lo, hi], "estimator": how}
    for i, values in enumerate(record):
        if values:
            lo, hi, how = choose_range(np.concatenate(values), estimators=STATE_ESTIMATORS)
            for name in (f"state_{i}", f"state_{i}_out"):
                chosen[name] = {"range": [lo, hi], "estimator": how}
    for name, (lo, hi) in (trained or {}).items():
        chosen[name] = {"range": [float(lo), float(hi)], "estimator": "qat"}
    calibrated = _set_ranges(calibrated, {k: tuple(v["range"]) for k, v in chosen.items()})
    flatbuffer = tf_convert.mlir_quantize(calibrated, fully_quantize=True,
                                          input_data_type=tf.int8, output_data_type=tf.int8,
                                          disable_per_channel=not per_channel)
    return flatbuffer, chosen


def to_tflite(lowered: LoweredModel, quantization: str = "float32",
              representative_data=None, *, calibration_size: int | None = None,
              calibration_seed: int = 0, trained_ranges: dict | None = None,
              weight_scales: str = "per-channel") -> TFLiteModel:
    """Convert a lowered model to a TFLite flatbuffer.

    Args:
        lowered: from :func:`~keras_rnnedge.converters.lowering.lower`.
        quantization: one of :data:`QUANTIZATIONS`.
        representative_data: input sequences ``(N, T, F)`` for ``int8``/``int16x8``; pass the
            whole training set: ``calibration_size`` of them are sampled across it.
        calibration_size: sequences sampled for calibration (default
            :data:`CALIBRATION_SEQUENCES`).
        calibration_seed: seed of the sample.
        trained_ranges: ranges that replace the calibrated ones in an ``int8`` model, by
            tensor name (``x``, ``y``; :func:`qat_ranges` of a QAT model).
        weight_scales: one of :data:`WEIGHT_SCALES`, for the int8 weights of ``dynamic``,
            ``int8`` and ``int16x8``.

    Returns:
        The :class:`TFLiteModel`.
    """
    from keras_rnnedge.converters.quality import calibration_sample

    check_quantization(quantization, representative_data)
    check_weight_scales(weight_scales, quantization)
    per_channel = weight_scales == "per-channel"
    converter = tf.lite.TFLiteConverter.from_keras_model(lowered.model)
    converter._experimental_disable_per_channel = not per_channel
    chosen: dict = {}
    flatbuffer = None
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization in _NEEDS_DATA:
        x_all = lowered.prepare(_check_data(representative_data, lowered))
        x = calibration_sample(x_all, calibration_size or CALIBRATION_SEQUENCES,
                               calibration_seed)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if lowered.mode == "step":
            converter.representative_dataset = lambda: _step_samples(lowered, x)
        else:
            converter.representative_dataset = lambda: ({"x": seq[None]} for seq in x)
        if quantization == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            try:
                flatbuffer, chosen = _int8_calibrated(converter, lowered, x_all, x,
                                                      trained_ranges, per_channel)
            except Exception as exc:  # the converter's own errors are long MLIR dumps
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConversionError(f"The TFLite converter failed on the {lowered.mode} "
                                      f"model ({quantization}): {first}") from exc
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
    try:
        if flatbuffer is None:
            flatbuffer = converter.convert()
    except Exception as exc:  # the converter's own errors are long MLIR dumps
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"The TFLite converter failed on the {lowered.mode} model "
                              f"({quantization}): {first}") from exc
    if lowered.standardized_input:
        flatbuffer = with_standardization(flatbuffer, lowered.standardization)
    inputs, outputs = io_map(flatbuffer)
    return TFLiteModel(flatbuffer=flatbuffer, quantization=quantization, inputs=inputs,
                       outputs=outputs, calibration=chosen, weight_scales=weight_scales)


def with_standardization(flatbuffer: bytes, standardization: Standardization) -> bytes:
    """``flatbuffer`` with ``standardization`` recorded as the input standardisation its caller
    applies (metadata :data:`STANDARDIZATION_METADATA`: the offsets then the scales, float64
    little-endian; interpreters ignore it)."""
    from keras_rnnedge.converters.tflite.compression import _schema, _serialize

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.concatenate(
        [standardization.offset, standardization.scale]).astype("<f8").tobytes(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = STANDARDIZATION_METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or [])
                      if m.name not in (STANDARDIZATION_METADATA,
                                        STANDARDIZATION_METADATA.encode())] + [entry]
    return _serialize(schema, model, set())


#: Metadata entries :func:`strip_strings` drops: written by the TFLite converter, read by no
#: interpreter that runs the model.
CONVERTER_METADATA = ("CONVERSION_METADATA", "min_runtime_version")


def strip_strings(flatbuffer: bytes) -> bytes:
    """``flatbuffer`` without the strings no interpreter needs to run it: tensor and subgraph
    names, the model description and the converter's own metadata
    (:data:`CONVERTER_METADATA`). Kept: the signature (the names of the inputs and outputs),
    custom operator codes (``TFLM_DECODE``) and the other metadata (the input
    standardisation). The same model, bit for bit in its arithmetic, in fewer bytes of flash.
    """
    from keras_rnnedge.converters.tflite.compression import _schema, _serialize

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    model.description = None
    for subgraph in model.subgraphs or []:
        subgraph.name = None
        for tensor in subgraph.tensors or []:
            tensor.name = None
    kept = []
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name in CONVERTER_METADATA:
            model.buffers[entry.buffer].data = None
        else:
            kept.append(entry)
    model.metadata = kept or None
    return _serialize(schema, model, set())


def read_standardization(flatbuffer: bytes) -> Standardization | None:
    """The input standardisation a flatbuffer's caller applies (:func:`with_standardization`),
    or ``None``.

    Raises:
        ValueError: the metadata entry is there but unreadable or inconsistent.
    """
    from keras_rnnedge.converters.tflite.compression import _schema

    schema = _schema()
    model = schema.Model.GetRootAs(bytearray(flatbuffer), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != STANDARDIZATION_METADATA.encode():
            continue
        raw = model.Buffers(entry.Buffer()).DataAsNumpy()
        size = 0 if isinstance(raw, int) else len(raw)  # DataAsNumpy() gives 0 when empty
        if size == 0 or size % 16:
            raise ValueError(f"The flatbuffer's metadata {STANDARDIZATION_METADATA!r} holds "
                             f"{size} bytes; expected 16 per input feature (offset and scale, "
                             "float64): the file is damaged: convert the model again.")
        values = np.frombuffer(bytes(raw), "<f8")
        std = Standardization(offset=values[:size // 16], scale=values[size // 16:])
        if not (np.all(np.isfinite(std.offset)) and np.all(np.isfinite(std.scale))
                and np.all(std.scale > 0)):
            raise ValueError(f"The flatbuffer's metadata {STANDARDIZATION_METADATA!r} holds "
                             "non-finite or non-positive values; the file is damaged: convert "
                             "the model again.")
        return std
    return None


def io_map(flatbuffer: bytes) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Names, positions, shapes and quantization of a converted model's inputs and outputs
    (the input ``x`` with the standardisation the flatbuffer records, if any)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner()
    result = []
    for by_name, ordered in ((runner.get_input_details(), interpreter.get_input_details()),
                             (runner.get_output_details(), interpreter.get_output_details())):
        position = {d["index"]: i for i, d in enumerate(ordered)}
        infos = []
        for name, detail in by_name.items():
            scale, zero_point = detail["quantization"]
            infos.append(TensorInfo(name=name, position=position[detail["index"]],
                                    shape=tuple(int(s) for s in detail["shape"]),
                                    dtype=np.dtype(detail["dtype"]).name, scale=float(scale),
                                    zero_point=int(zero_point)))
        result.append(tuple(sorted(infos, key=lambda t: t.position)))
    std = read_standardization(flatbuffer)
    if std is not None:
        x = next((t for t in result[0] if t.name == "x"), None)
        if x is None or x.shape[-1] != std.offset.size:
            raise ValueError(f"The flatbuffer records an input standardisation of "
                             f"{std.offset.size} features, but its input x is "
                             f"{None if x is None else list(x.shape)}; the file is damaged: "
                             "convert the model again.")
        result[0] = tuple(dataclasses.replace(t, standardization=std) if t.name == "x" else t
                          for t in result[0])
    return result[0], result[1]
