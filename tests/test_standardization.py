"""A leading ``keras.layers.Normalization`` travels with the model into every export.

The Keras model takes raw feature vectors and standardises them (``(x - mean) /
max(sqrt(variance), eps)``); so must the float TFLite models (SUB and MUL after ``x``), the
caller of the int8 TFLite models (the emulator and the sketch, with the constants the flatbuffer
records), the float C (a local buffer at the start of ``<id>_step``) and the
integer C (the standardisation composed into its per-feature input quantization). The raw
features differ by orders of magnitude in scale and offset (feature ``j`` has standard deviation
``10**(j - 2)``), so an export that forgot the standardisation would be far off.

Oracles: the Keras model itself (float exports; int8 within the INT8_STANDARDIZED_*
tolerances of tests/tolerances.py; integer C within those of tests/test_intmodel.py), the
integer model's NumPy oracle (the integer C, bit for bit), and the same integer model derived
from a twin model without the Normalization on standardised data (the composition of the input
quantization).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell, LowRankLSTMCell
from keras_rnnedge.converters import ConversionError, convert, convert_c, lower, without_masking
from keras_rnnedge.converters.c.intmodel import quantize_model
from keras_rnnedge.converters.lowering import (
    Standardization,
    plan_model,
    strip_wrappers,
    supported_layers,
)
from keras_rnnedge.micro_targets.crun import run_c
from keras_rnnedge.micro_targets.emulate import emulate
from keras_rnnedge.optimize import quantize_model as qat_model
from keras_rnnedge.summary import summary
from tests import tolerances
from tests.test_cgen_float import ATOL as FLOAT_C_ATOL
from tests.test_intmodel import APPROX_INT8_AGREEMENT

T, F, H, C = 6, 5, 8, 3
#: Raw features: standard deviations 0.01 ... 100 and offsets far from them.
WIDE_SCALE = 10.0 ** (np.arange(F) - 2)
WIDE_OFFSET = np.array([0.0, 5.0, -30.0, 200.0, 1000.0])
#: Raw features one int8 scale can hold (TFLite quantizes its input x per tensor): standard
#: deviations within a factor 4, offsets of a few standard deviations.
NARROW_SCALE = np.array([0.5, 1.0, 2.0, 1.5, 0.8])
NARROW_OFFSET = np.array([0.0, 3.0, -4.0, 2.0, 5.0])

#: The integer model (int16 weights, Q15 input and state, table tanh/sigmoid) against Keras, as
#: a fraction of the largest score: weight and state rounding over 6 steps, the FastGRNN state in
#: Q12 and a low-rank intermediate in its calibrated format. Measured 2.6e-3 (low-rank FastGRNN),
#: 2.2e-3 (low-rank LSTM), 4.5e-4 (Kronecker FastGRNN); an export without the standardisation is
#: off by the scores' own magnitude.
INT16_SCORE_RTOL = 5e-3
#: The same integer model fed raw inputs through the composed quantization, or standardised
#: inputs through the plain one: the two float32 roundings differ by 1 LSB on 0.6 % of the int16
#: inputs; such a difference can flip the rounding of a state element, which the recurrence and
#: the head carry to the scores: measured up to 36 LSB of Q15 (1.1e-3) on 6 % of the low-rank
#: FastGRNN's windows, 6 LSB on the other models'.
COMPOSED_INPUT_ATOL = 2e-3

CELLS = {
    "fastgrnn_lowrank": lambda: FastGRNNCell(H, w_rank=2, u_rank=4),
    # the first matrix is not a plain one: the input range is one scale (intmodel), the
    # standardisation still per feature
    "fastgrnn_kronecker": lambda: FastGRNNCell(H, kernel_structure="kronecker"),
    "lowrank_lstm": lambda: LowRankLSTMCell(H, rank=2, recurrent_rank=4),
}


def raw(n: int, seed: int, scale=WIDE_SCALE, offset=WIDE_OFFSET) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, T, F)) * scale + offset).astype(np.float32)


def build(cell: str, data: np.ndarray, seed: int = 2) -> keras.Model:
    """``Input → Normalization (adapted on data) → RNN(cell) → Dense``, with random weights of
    a trained model's size (N(0, 0.6)) so that every feature moves the outputs."""
    keras.utils.set_random_seed(seed)
    norm = keras.layers.Normalization(axis=-1, name="norm")
    norm.adapt(data.reshape(-1, F))
    model = keras.Sequential([keras.Input((T, F)), norm,
                              keras.layers.RNN(CELLS[cell](), name="rnn"),
                              keras.layers.Dense(C, name="head")], name=f"std_{cell}")
    rng = np.random.default_rng(seed)
    for layer in model.layers[1:]:
        layer.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return model


@functools.cache
def case(cell: str = "fastgrnn_lowrank", narrow: bool = False):
    """(model, representative data, test windows); cached: models are reused, not modified."""
    scale, offset = (NARROW_SCALE, NARROW_OFFSET) if narrow else (WIDE_SCALE, WIDE_OFFSET)
    data = raw(256, 0, scale, offset)
    return build(cell, data), data, raw(48, 5, scale, offset)


def test_plan_reads_the_normalization_as_keras_computes_it():
    model, data, _ = case()
    std = plan_model(model).standardization
    norm = model.get_layer("norm")
    mean, variance, _count = norm.get_weights()
    np.testing.assert_array_equal(std.offset, mean.astype(np.float64))
    denominator = np.maximum(np.sqrt(variance), np.float32(keras.backend.epsilon()))  # float32
    np.testing.assert_array_equal(std.scale, 1.0 / denominator.astype(np.float64))
    # against the layer itself (float32 division vs float64 multiplication by the reciprocal)
    np.testing.assert_allclose(std.apply(data[:4]), norm(data[:4]).numpy(), rtol=1e-6,
                               atol=1e-6)
    assert std.offset.dtype == std.scale.dtype == np.float64 and not std.offset.flags.writeable
    assert "Normalization (first layer, axis=-1)" in supported_layers()
    # a model rebuilt from the same layers (without_masking) and one without a Normalization
    assert np.array_equal(plan_model(without_masking(model)).standardization.offset, std.offset)
    plain = keras.Sequential([keras.Input((T, F)), keras.layers.GRU(4), keras.layers.Dense(2)])
    assert plan_model(plain).standardization is None


def test_constructor_mean_and_variance_are_read_too():
    """``Normalization(mean=..., variance=...)`` holds constants, not weights."""
    model = keras.Sequential([keras.Input((T, F)),
                              keras.layers.Normalization(mean=[1.0, 2, 3, 4, 5],
                                                         variance=[4.0, 1, 0, 9, 16]),
                              keras.layers.GRU(4), keras.layers.Dense(2)])
    std = plan_model(model).standardization
    np.testing.assert_array_equal(std.offset, [1, 2, 3, 4, 5])
    eps = np.float32(keras.backend.epsilon())  # a zero variance divides by epsilon, as Keras
    np.testing.assert_allclose(std.scale, [0.5, 1.0, 1.0 / eps, 1.0 / 3, 0.25], rtol=1e-7)


@pytest.mark.parametrize("mode", ["step", "unrolled"])
def test_float_tflite_takes_raw_inputs(mode):
    model, data, x = case()
    result = convert(model, target="host", quantization="float32", mode=mode,
                     representative_data=data, progress=False)
    want = model.predict(x, verbose=0)
    got = emulate(result, x, runtime="litert").outputs
    np.testing.assert_allclose(got, want, atol=tolerances.FLOAT_TFLITE_ATOL, rtol=0)
    layers = [layer.name for layer in result.lowered.model.layers]
    assert "standardize" in layers


def test_fused_lstm_takes_raw_inputs_in_tflite_micro():
    data = raw(64, 0)
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(data.reshape(-1, F))
    model = keras.Sequential([keras.Input((T, F)), norm, keras.layers.LSTM(4),
                              keras.layers.Dense(2)])
    result = convert(model, target="host", quantization="float32", mode="fused",
                     representative_data=data, progress=False)
    got = emulate(result, data[:8], runtime="tflm").outputs
    np.testing.assert_allclose(got, model.predict(data[:8], verbose=0),
                               atol=tolerances.FLOAT_TFLITE_ATOL, rtol=0)


def within_input_range(result, x: np.ndarray) -> np.ndarray:
    """Raw windows whose standardised features are clipped to the int8 input's range: what the
    int8 model sees (the calibration may clip the input's outliers, by design)."""
    info = result.tflite.input("x")
    low, high = ((v - info.zero_point) * info.scale for v in (-128, 127))
    z = np.clip(info.standardization.apply(x), low, high)
    return (z / info.standardization.scale + info.standardization.offset).astype(np.float32)


def assert_tflm_int8_matches_keras(result, model, x) -> None:
    """The int8 model in TFLite Micro on raw windows against the Keras model on the same
    windows (their standardised features clipped to the int8 input's range)."""
    want = model.predict(within_input_range(result, x), verbose=0)
    got = emulate(result, x, runtime="tflm").outputs
    assert np.mean(np.argmax(got, -1) == np.argmax(want, -1)) >= tolerances.INT8_AGREEMENT
    y = next(t for t in result.outputs if t.name == "y")
    # an int8 output holds the calibrated range; a score beyond it is clipped, by design
    want = np.clip(want, (-128 - y.zero_point) * y.scale, (127 - y.zero_point) * y.scale)
    error = np.abs(got - want) / y.scale
    assert np.max(error) <= tolerances.INT8_STANDARDIZED_VS_FLOAT_MAX_LSB
    assert np.mean(error) <= tolerances.INT8_STANDARDIZED_VS_FLOAT_MEAN_LSB


def test_int8_step_model_runs_in_tflite_micro():
    """Features of comparable ranges; see
    test_int8_model_takes_features_its_caller_standardises for features of very different
    ones."""
    model, data, x = case(narrow=True)
    result = convert(model, target="host", quantization="int8", representative_data=data,
                     progress=False)
    assert_tflm_int8_matches_keras(result, model, x)


@pytest.mark.parametrize("mode", ["step", "unrolled"])
def test_int8_model_takes_features_its_caller_standardises(mode, tmp_path):
    """Raw features of standard deviations 0.01 ... 100 cannot share one int8 scale (TFLite
    quantizes activations per tensor): the int8 flatbuffer takes standardised features, records
    the per-feature constants in its metadata, and its caller (the emulator here, the sketch in
    tests/test_codegen.py) standardises before quantizing. Oracle: the Keras model on raw
    windows."""
    from keras_rnnedge.converters import load_result
    from keras_rnnedge.converters.tflite.flatbuffer import io_map, read_standardization

    model, data, x = case()
    result = convert(model, target="host", quantization="int8", mode=mode,
                     representative_data=data, progress=False)
    std = plan_model(model).standardization
    from_file = next(t for t in io_map(result.flatbuffer)[0] if t.name == "x")
    for recorded in (result.tflite.input("x").standardization,
                     read_standardization(result.flatbuffer), from_file.standardization):
        np.testing.assert_array_equal(recorded.offset, std.offset)
        np.testing.assert_array_equal(recorded.scale, std.scale)
    assert "standardize" not in [layer.name for layer in result.lowered.model.layers]
    assert_tflm_int8_matches_keras(result, model, x)
    # saved and read back (manifest.json), it runs the same
    result.save(tmp_path / "out")
    saved = load_result(tmp_path / "out")
    np.testing.assert_array_equal(
        next(t for t in saved.inputs if t.name == "x").standardization.scale, std.scale)
    np.testing.assert_array_equal(emulate(saved, x[:4], runtime="tflm").raw_outputs,
                                  emulate(result, x[:4], runtime="tflm").raw_outputs)
    # the float model keeps the standardisation in its graph: its input is the raw x
    flt = convert(model, target="host", quantization="float32", mode=mode,
                  representative_data=data, progress=False)
    assert flt.tflite.input("x").standardization is None
    assert read_standardization(flt.flatbuffer) is None


def test_damaged_standardization_metadata_is_named():
    from keras_rnnedge.converters.tflite.flatbuffer import (
        STANDARDIZATION_METADATA,
        read_standardization,
        with_standardization,
    )

    model, data, _ = case(narrow=True)
    flatbuffer = convert(model, target="host", quantization="float32", representative_data=data,
                         progress=False).flatbuffer
    bad = Standardization(offset=[0.0] * F, scale=[1.0] * F)
    marked = with_standardization(flatbuffer, bad)
    assert read_standardization(marked).scale.tolist() == [1.0] * F
    # the recorded scales are 1.0 (float64 3ff0000000000000): make one of them 0 or cut a byte
    one = np.float64(1.0).tobytes()
    zeroed = marked.replace(one * F, np.float64(0.0).tobytes() + one * (F - 1), 1)
    with pytest.raises(ValueError, match=STANDARDIZATION_METADATA + ".*non-positive.*damaged"):
        read_standardization(zeroed)
    # a buffer of the wrong length
    from ai_edge_litert import schema_py_generated as schema

    from keras_rnnedge.converters.tflite.compression import _serialize

    tree = schema.ModelT.InitFromPackedBuf(bytearray(marked), 0)
    entry = next(m for m in tree.metadata if m.name == STANDARDIZATION_METADATA.encode())
    tree.buffers[entry.buffer].data = tree.buffers[entry.buffer].data[:-1]
    with pytest.raises(ValueError, match=r"holds 79 bytes; expected 16 per input feature"):
        read_standardization(_serialize(schema, tree, set()))


def test_float_c_takes_raw_inputs():
    model, data, x = case()
    result = convert_c(model, target="host", representative_data=data, precision="float32",
                       progress=False)
    assert "xs[i] = (x[i] - RF_RD(&in_offset[i])) * RF_RD(&in_scale[i]);" in \
        result.c_sources[f"{result.name}.c"]
    got = run_c(result, result.quantize_input(x), target="host", progress=False)
    np.testing.assert_allclose(got.scores, model.predict(x, verbose=0), atol=FLOAT_C_ATOL,
                               rtol=0)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_integer_c_takes_raw_inputs(cell):
    model, data, x = case(cell)
    result = convert_c(model, target="host", representative_data=data, progress=False)
    im = result.int_model
    oracle = im.run(x)
    got = run_c(result, result.quantize_input(x), target="host", progress=False)
    np.testing.assert_array_equal(got.scores, oracle)  # the C is the oracle, bit for bit
    want = model.predict(x, verbose=0)
    # int8 weights, the table tanh/sigmoid: the agreement test_intmodel asks of any model
    assert np.mean(np.argmax(oracle, -1) == np.argmax(want, -1)) >= APPROX_INT8_AGREEMENT


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_input_quantization_composes_the_standardisation(cell):
    """The integer model of ``Normalization → RNN → Dense`` on raw data is the integer model of
    ``RNN → Dense`` on standardised data, its input quantization composed with the
    standardisation; with int16 weights it follows Keras closely."""
    model, data, x = case(cell)
    std = plan_model(model).standardization
    twin = keras.Sequential([keras.Input((T, F)), model.get_layer("rnn"),
                             model.get_layer("head")], name=model.name)
    im = quantize_model(model, data, weight_bits=16)
    ref = quantize_model(twin, std.apply(data), weight_bits=16)
    for a, b in zip(im.recurrent, ref.recurrent):
        assert [m.values.tolist() for m in a.kernel.matrices() + a.recurrent.matrices()] == \
            [m.values.tolist() for m in b.kernel.matrices() + b.recurrent.matrices()]
        assert all(np.array_equal(a.biases[k], b.biases[k]) for k in b.biases)
        assert a.formats == b.formats
    np.testing.assert_allclose(im.input_offset, std.offset + ref.input_offset / std.scale,
                               rtol=1e-6)
    np.testing.assert_allclose(im.input_scale, std.scale * ref.input_scale, rtol=1e-6)
    # raw inputs through the composed scaling land on the same int16 grid as standardised
    # inputs through the plain one, up to float32 rounding of the two computations (1 LSB)
    diff = im.quantize_input(x) - ref.quantize_input(std.apply(x))
    assert np.max(np.abs(diff)) <= 1 and np.mean(diff != 0) < 0.01
    got = im.dequantize(im.run(x))
    np.testing.assert_allclose(got, ref.dequantize(ref.run(std.apply(x))),
                               atol=COMPOSED_INPUT_ATOL, rtol=0)
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=INT16_SCORE_RTOL * np.abs(want).max(), rtol=0)


@pytest.mark.parametrize("where", ["axis_none", "invert", "after_rnn", "twice"])
def test_unsupported_normalization_is_named(where):
    data = raw(16, 0)
    rnn = keras.layers.RNN(FastGRNNCell(4), name="rnn", return_sequences=where == "after_rnn")
    if where == "axis_none":
        layers = [keras.layers.Normalization(axis=None, name="bad_norm"), rnn]
        expected = r"'bad_norm' \(Normalization, axis=None, invert=False\).*per input feature"
    elif where == "invert":
        layers = [keras.layers.Normalization(invert=True, name="bad_norm"), rnn]
        expected = r"'bad_norm' \(Normalization, axis=\(-1,\), invert=True\).*adapt it"
    elif where == "after_rnn":
        layers = [rnn, keras.layers.Normalization(name="bad_norm"),
                  keras.layers.RNN(FastGRNNCell(4), name="rnn_2")]
        expected = r"'bad_norm' .* comes after layer 'rnn'.*move the Normalization before"
    else:
        layers = [keras.layers.Normalization(name="norm"),
                  keras.layers.Normalization(name="bad_norm"), rnn]
        expected = r"'bad_norm' .* a second Normalization"
    model = keras.Sequential([keras.Input((T, F)), *layers, keras.layers.Dense(2)])
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.name != "bad_norm":
            layer.adapt(data.reshape(-1, F))
    with pytest.raises(ConversionError, match=expected):
        lower(model)
    with pytest.raises(ConversionError, match=expected):
        convert_c(model, target="host", representative_data=data, progress=False)


def test_qat_model_keeps_the_normalization_and_converts():
    model, data, x = case()
    qat = qat_model(model)
    assert isinstance(qat.layers[0], keras.layers.Normalization)  # not annotated: float
    stripped = strip_wrappers(qat)  # a copy of every layer, the Normalization's weights too
    assert isinstance(stripped.layers[1], keras.layers.Normalization)
    std, original = plan_model(stripped).standardization, plan_model(model).standardization
    np.testing.assert_array_equal(std.offset, original.offset)
    np.testing.assert_array_equal(std.scale, original.scale)
    want = stripped.predict(x, verbose=0)  # the QAT weights, float compute
    result = convert(qat, target="host", quantization="float32", representative_data=data,
                     progress=False)
    got = emulate(result, x, runtime="litert").outputs
    np.testing.assert_allclose(got, want, atol=tolerances.FLOAT_TFLITE_ATOL, rtol=0)
    c = convert_c(qat, target="host", representative_data=data, checks="warn", progress=False)
    assert np.array_equal(run_c(c, c.quantize_input(x[:4]), target="host",
                                progress=False).scores, c.int_model.run(x[:4]))


def test_summary_counts_mean_and_variance_as_per_feature_constants():
    model, _, _ = case()
    s = summary(model)
    norm = next(r for r in s.layers if r.name == "norm")
    # mean (F) and variance (F) as biases: 4 B each at float32 and at int8; not the count
    assert [t.name.split("/")[-1] for t in norm.tensors] == ["mean", "variance"]
    assert norm.params == 2 * F and {t.kind for t in norm.tensors} == {"bias"}
    assert norm.bytes_f32 == norm.bytes_int8 == 8 * F
    assert norm.macs_per_inference == 0 and s.totals.macs_per_inference is not None
    assert "norm" in s.to_text()
    # mean= and variance= arguments are constants, not weights: counted the same
    given = keras.Sequential([keras.Input((T, F)),
                              keras.layers.Normalization(mean=np.zeros(F), variance=np.ones(F),
                                                         name="given"),
                              keras.layers.GRU(4), keras.layers.Dense(2)])
    record = summary(given).layers[0]
    assert [t.name for t in record.tensors] == ["given/mean", "given/variance"]
    assert record.params == 2 * F and record.bytes_int8 == 8 * F


def test_standardization_validates_its_arrays():
    std = Standardization(offset=[1.0, 2.0], scale=[0.5, 4.0])
    np.testing.assert_array_equal(std.apply([[3.0, 3.0]]), [[1.0, 4.0]])
    with pytest.raises(ValueError, match=r"offset and scale of one shape.*\(2,\) and \(3,\)"):
        Standardization(offset=[1.0, 2.0], scale=[1.0, 1.0, 1.0])
