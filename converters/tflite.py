"""TFLite stage: a lowered model → flatbuffer bytes, with the I/O map a caller needs.

Quantization options:

* ``"float32"``: no quantization.
* ``"float16"``: float16 weights, float32 compute (dequantized at load).
* ``"dynamic"``: int8 weights, float activations (dynamic-range quantization).
* ``"int8"``: full integer, int8 input and output tensors (needs representative data).
* ``"int16x8"``: int16 activations, int8 weights (needs representative data).

In step mode the calibration data are the float model's own states, rolled out over the
representative sequences. The state input and the state output are calibrated separately and get
slightly different int8 scales (the output has seen one more step): the caller re-quantizes the
state between steps (:meth:`TensorInfo.requantize`; the emulator and the generated sketch do).
"""

from __future__ import annotations

import dataclasses

from keras_rnnedge._compat import np, tf
from keras_rnnedge.converters.lowering import ConversionError, LoweredModel

__all__ = ["QUANTIZATIONS", "TensorInfo", "TFLiteModel", "to_tflite"]

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
_NEEDS_DATA = ("int8", "int16x8")
#: Representative sequences used for calibration (at most).
MAX_CALIBRATION_SEQUENCES = 64


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of the flatbuffer, by its name in the lowered model.

    Attributes:
        name: ``x``, ``y``, ``state_<i>`` or ``state_<i>_out``.
        position: its position in the subgraph's inputs (outputs), as interpreters index them.
        shape: the tensor shape.
        dtype: numpy dtype name (``int8``, ``float32``...).
        scale, zero_point: int8/int16 quantization (``0.0``/``0`` for float tensors).
    """

    name: str
    position: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values → this tensor's dtype (round to nearest, saturate)."""
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
        raise ConversionError("representative_data contains NaN or Inf values.")
    return x[:MAX_CALIBRATION_SEQUENCES]


def _step_samples(lowered: LoweredModel, x: np.ndarray):
    """Calibration samples of a step model: every (x_t, state) of the float roll-out."""
    model = lowered.model
    n_states = len(lowered.state_sizes)

    @tf.function
    def step(inputs):
        return model(inputs)

    for seq in x:
        states = [np.zeros((1, s), np.float32) for s in lowered.state_sizes]
        for t in range(seq.shape[0]):
            sample = {"x": seq[t:t + 1], **{f"state_{i}": states[i] for i in range(n_states)}}
            yield sample
            outs = step([sample["x"], *states])
            states = [o.numpy() for o in outs[1:]]


def to_tflite(lowered: LoweredModel, quantization: str = "float32",
              representative_data=None) -> TFLiteModel:
    """Convert a lowered model to a TFLite flatbuffer.

    Args:
        lowered: from :func:`~keras_rnnedge.converters.lowering.lower`.
        quantization: one of :data:`QUANTIZATIONS`.
        representative_data: input sequences ``(N, T, F)`` for ``int8``/``int16x8``.

    Returns:
        The :class:`TFLiteModel`.
    """
    check_quantization(quantization, representative_data)
    converter = tf.lite.TFLiteConverter.from_keras_model(lowered.model)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization in _NEEDS_DATA:
        x = _check_data(representative_data, lowered)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if lowered.mode == "step":
            converter.representative_dataset = lambda: _step_samples(lowered, x)
        else:
            converter.representative_dataset = lambda: ({"x": seq[None]} for seq in x)
        if quantization == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter's own errors are long MLIR dumps
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"The TFLite converter failed on the {lowered.mode} model "
                              f"({quantization}): {first}") from exc
    inputs, outputs = io_map(flatbuffer)
    return TFLiteModel(flatbuffer=flatbuffer, quantization=quantization, inputs=inputs,
                       outputs=outputs)


def io_map(flatbuffer: bytes) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Names, positions, shapes and quantization of a converted model's inputs and outputs."""
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
    return result[0], result[1]
