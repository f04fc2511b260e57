"""Pruned weights stored compressed for TFLite Micro's DECODE operator
(converters.tflite.compression, ``convert(..., compression="prune")``).

The encoding is lossless, so every comparison here is exact: the compressed flatbuffer in
TFLite Micro against the uncompressed one, LSB for LSB. The format itself is pinned against the
installed tflite_micro (its DECODE kernel and its Python DCM writer), so an upgrade that changes
it fails here first.
"""

from __future__ import annotations

import json
import types
import warnings

import numpy as np
import pytest

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells import FastGRNNCell, LowRankLSTMCell
from keras_rnnedge.converters import (
    ConversionError,
    StageCheckError,
    convert,
    load_result,
    lowering,
    to_tflite,
)
from keras_rnnedge.converters.quality import DeploymentQualityWarning
from keras_rnnedge.converters.tflite import compression, pipeline
from keras_rnnedge.converters.tflite.compression import (
    DCM_BYTES,
    DECODE_CUSTOM_CODE,
    DECODE_OVERHEAD_BYTES,
    CompressionWarning,
    compress_pruned,
    prune_decode,
    prune_encode,
)
from keras_rnnedge.micro_targets.audit import TFLM_CUSTOM_OPS, audit, list_ops, weight_storage
from keras_rnnedge.micro_targets.emulate import emulate, emulate_against, open_runtime
from keras_rnnedge.optimize import HardThresholding

T, F, H, CLASSES = 8, 3, 32, 3
PINNED = ("The installed tflite_micro no longer decodes the pruning format as "
          "converters/tflite/compression.py writes it (tflite-micro kernels/decode.cc, "
          "decode_state_prune.cc): re-read the decoder and update the encoder.")


def _toy_data(n: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.normal(0, 0.3, (n, T, F)).astype("float32")
    x[np.arange(n), :, y] += 1.0  # the class is the channel with the offset
    return x, y


@pytest.fixture(scope="module")
def trained():
    """FastGRNN(32) trained a little on a separable toy task, W and U hard-thresholded to 25 %
    non-zeros (the recurrent kernel, 32 x 32, is what compression pays for)."""
    keras.utils.set_random_seed(0)
    x, y = _toy_data()
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(H), name="rnn"),
                              keras.layers.Dense(CLASSES)], name="pruned-fastgrnn")
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=4, batch_size=16, verbose=0,
              callbacks=[HardThresholding(0.25, dense_epochs=1, iht_epochs=2)])
    return model, x, y


@pytest.fixture(scope="module")
def results(trained):
    """The same model converted for the Nano 33 BLE without and with compression."""
    model, x, y = trained
    options = dict(target="nano33ble", quantization="int8", representative_data=x,
                   validation_data=(x[:48], y[:48]), progress=False)
    return convert(model, **options), convert(model, compression="prune", **options)


# -- the format, pinned against the installed tflite_micro -----------------------------------------

def test_golden_encoding():
    """One bit per element, row-major, most significant bit first; the 16-byte DCM (type 2,
    version 1, pruning version 1 at byte 4); then the non-zeros in element order."""
    values = np.array([[3, 0, 0, -1, 0, 0, 0, 0, 7]], np.int8)
    encoded, ancillary = prune_encode(values)
    assert encoded == bytes([0b10010000, 0b10000000])
    assert ancillary == bytes([2, 1, 0, 0, 1] + [0] * 11) + bytes([3, 0xFF, 7])
    np.testing.assert_array_equal(prune_decode(encoded, ancillary, values.shape, np.int8), values)
    # per channel (dimension 0), a zero point per row: the mask marks values != the zero point
    values = np.array([[5, 5, 1], [-2, 0, -2]], np.int8)
    encoded, ancillary = prune_encode(values, zero_points=[5, -2], axis=0)
    assert encoded == bytes([0b00101000]) and ancillary[DCM_BYTES:] == bytes([1, 0])
    np.testing.assert_array_equal(
        prune_decode(encoded, ancillary, values.shape, np.int8, [5, -2], 0), values)


def test_header_matches_tflite_micros_own_writer():
    from tflite_micro.tensorflow.lite.micro.compression import decode, decode_insert

    _, ancillary = prune_encode(np.zeros((2, 2), np.int8))
    dcm = decode.DecodeCommonMetadata(decode.DecodeType.PRUNING, version=1,
                                      user_data=bytes([compression.PRUNE_VERSION]))
    assert ancillary[:DCM_BYTES] == dcm.to_bytes(), PINNED
    assert decode_insert.DECODE_CUSTOM_OP_NAME == DECODE_CUSTOM_CODE, PINNED
    assert TFLM_CUSTOM_OPS[DECODE_CUSTOM_CODE] == "AddDecode"


def _dense_flatbuffer(kernel: np.ndarray, *, per_channel: bool) -> bytes:
    """Dense(kernel) alone, full int8: a FULLY_CONNECTED with weights kernel.T."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((kernel.shape[0],), batch_size=1)
    dense = keras.layers.Dense(kernel.shape[1])
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([kernel, np.linspace(-0.2, 0.2, kernel.shape[1]).astype("float32")])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    converter.representative_dataset = lambda: (
        [rng.normal(size=(1, kernel.shape[0])).astype("float32")] for _ in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return converter.convert()


def _tflm_outputs(flatbuffer: bytes, inputs: np.ndarray) -> np.ndarray:
    runner = open_runtime(flatbuffer, "tflm")
    outs = []
    for row in inputs:
        runner.set(0, row[None])
        runner.invoke()
        outs.append(runner.get(0).reshape(-1))
    return np.stack(outs)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_tflite_micro_decodes_what_we_encode(per_channel):
    """A FULLY_CONNECTED whose 5 x 13 weights (65 elements: the mask ends mid-byte) have a
    first-only, a last-only, an alternating, a full and a random row: TFLite Micro's DECODE
    must give exactly the uncompressed model's outputs, per-channel (the converter's default
    for Dense) and per-tensor."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.4, 1.0, (5, 13)) * rng.choice([-1, 1], (5, 13))
    mask = np.zeros((5, 13), bool)
    mask[0, 0] = mask[1, -1] = True
    mask[2, ::2] = True
    mask[3] = True
    mask[4] = rng.random(13) < 0.3
    mask[4, 6] = True
    kernel = (weights * mask).T.astype("float32")  # Dense kernel (in, out) = weights.T
    dense = _dense_flatbuffer(kernel, per_channel=per_channel)
    packed = compress_pruned(dense, min_saving=0, only_if_smaller=False)
    (tensor,) = packed.report.tensors
    assert tensor.encoded and tensor.shape == (5, 13) and tensor.nonzeros == int(mask.sum())
    assert list_ops(packed.flatbuffer)[0] == "CUSTOM:" + DECODE_CUSTOM_CODE
    inputs = rng.integers(-128, 128, (40, 13)).astype(np.int8)
    np.testing.assert_array_equal(_tflm_outputs(packed.flatbuffer, inputs),
                                  _tflm_outputs(dense, inputs), err_msg=PINNED)


def test_batch_matmul_operands_with_zero_points():
    """Tensor-train factors become BATCH_MATMUL constants with per-tensor zero points other
    than 0 (a pruned 0 quantizes to the zero point): encoded, they decode exactly."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    structure = {"family": "tensor_train", "ranks": 4, "num_cores": 2}
    model = keras.Sequential([keras.Input((6, F)),
                              keras.layers.RNN(FastGRNNCell(H, recurrent_structure=structure),
                                               name="rnn"),
                              keras.layers.Dense(CLASSES)])
    for w in model.weights:
        if "core" in w.name:
            w.assign(rng.normal(0, 0.5, w.shape) * (rng.random(w.shape) < 0.3))
    lowered = lowering.lower(model, "step")
    x = rng.normal(size=(32, 6, F)).astype("float32")
    tfl = to_tflite(lowered, "int8", x)
    packed = compress_pruned(tfl.flatbuffer, min_saving=0, only_if_smaller=False)
    cores = [t for t in packed.report.tensors if t.op == "BATCH_MATMUL"]
    assert len(cores) == 2 and all(t.encoded for t in cores)
    converted = types.SimpleNamespace(flatbuffer=packed.flatbuffer, inputs=tfl.inputs,
                                      outputs=tfl.outputs, mode="step",
                                      state_sizes=lowered.state_sizes)
    _, diff = emulate_against(converted, tfl.flatbuffer, x, runtime="tflm", progress=False)
    assert diff == 0, PINNED


def test_decode_overhead_constant():
    """DECODE_OVERHEAD_BYTES, the flatbuffer bytes one DECODE adds besides the encoded data,
    re-measured: the size of the rewritten file against the original written again by the
    same packer, less what the encodings save, shared among the DECODE operators (the first
    one also adds the operator code)."""
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((40,), batch_size=1)
    h = inputs
    for units in (48, 40, 48):  # three pruned 40 x 48 matrices
        layer = keras.layers.Dense(units)
        h = layer(h)
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * (rng.random(kernel.shape) < 0.25), bias])
    model = keras.Model(inputs, h)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.normal(size=(1, 40)).astype("float32")] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dense = converter.convert()
    packed = compress_pruned(dense, min_saving=0, only_if_smaller=False)
    encoded = packed.report.encoded
    assert len(encoded) >= 3
    rewritten = len(compression._serialize(
        schema, schema.ModelT.InitFromPackedBuf(bytearray(dense), 0), set()))
    saved = sum(t.dense_bytes - t.compressed_bytes for t in encoded)
    per_decode = (len(packed.flatbuffer) - rewritten + saved) / len(encoded)
    # the constant stands for the measured cost, give or take the operator code's share (48
    # bytes once) and the 16-byte alignment of the two buffers (0 to 30 bytes)
    assert DECODE_OVERHEAD_BYTES - 32 <= per_decode <= DECODE_OVERHEAD_BYTES + 48, per_decode


def test_compress_pruned_rejects_bad_input():
    with pytest.raises(compression.CompressionError, match="Expected a TFLite flatbuffer"):
        compress_pruned(b"not a model")
    with pytest.raises(compression.CompressionError, match="min_saving"):
        compress_pruned(b"\x1c\x00\x00\x00TFL3" + bytes(24), min_saving=-1)


# -- convert(..., compression="prune") -------------------------------------------------------------

def _recurrent_kernel_saving(model) -> int:
    """Bytes the 32 x 32 recurrent kernel saves as a bit mask plus its non-zeros (from the
    Keras weights: an oracle independent of the flatbuffer)."""
    u = model.get_layer("rnn").cell.recurrent_kernel.numpy()
    return u.size - (u.size // 8 + DCM_BYTES + int(np.count_nonzero(u)))


@pytest.mark.slow
def test_compressed_flatbuffer_is_smaller(trained, results):
    model, _, _ = trained
    dense, packed = results
    assert packed.compression is not None and dense.compression is None
    assert packed.compression.method == "prune"
    recurrent = [t for t in packed.compression.tensors if t.shape == (H, H)]
    assert len(recurrent) == 1 and recurrent[0].encoded
    assert recurrent[0].density == pytest.approx(0.25, abs=0.02)
    # At least what the recurrent kernel saves, less one DECODE (and its 48-byte operator
    # code), less 3 % for writing the flatbuffer again with Python's packer (measured 1-2.5 %).
    expected = (_recurrent_kernel_saving(model) - DECODE_OVERHEAD_BYTES - 48
                - 0.03 * len(dense.flatbuffer))
    assert expected > 150  # the test says something
    assert len(dense.flatbuffer) - len(packed.flatbuffer) >= expected
    assert packed.compression.dense_flatbuffer_bytes == len(dense.flatbuffer)
    assert packed.compression.flatbuffer_bytes == len(packed.flatbuffer)
    assert packed.audit.model_bytes == len(packed.flatbuffer)


@pytest.mark.slow
def test_compressed_model_runs_identically_in_tflite_micro(trained, results):
    model, x, _ = trained
    dense, packed = results
    assert packed.checks["tflm compressed vs uncompressed"] == 0
    a = emulate(dense, x, runtime="tflm", progress=False)
    b = emulate(packed, x, runtime="tflm", progress=False)
    np.testing.assert_array_equal(b.raw_outputs, a.raw_outputs)  # lossless: every window
    # so the agreement with Keras is exactly the uncompressed model's
    assert packed.quality.to_dict() == dense.quality.to_dict()
    assert packed.quality.passed
    keras_pred = model.predict(x, verbose=0).argmax(-1)
    assert np.mean(b.predictions() == keras_pred) == np.mean(a.predictions() == keras_pred)


@pytest.mark.slow
def test_audit_accepts_decode_and_measures_the_arena(results):
    dense, packed = results
    report = packed.audit
    assert report.fits and "CUSTOM:TFLM_DECODE" in report.ops
    assert report.resolver_methods[report.ops.index("CUSTOM:TFLM_DECODE")] == "AddDecode"
    # the arena holds the decoded weights: more than the uncompressed model's
    assert report.arena_bytes > dense.audit.arena_bytes
    assert packed.compression.arena_bytes == report.arena_bytes
    assert packed.compression.dense_arena_bytes == dense.audit.arena_bytes
    assert emulate(packed, dense_windows(), runtime="tflm",
                   progress=False).arena_bytes == report.arena_bytes
    weights = {w.shape: w for w in report.weights}
    assert weights[(H, H)].encoding == "prune"
    assert weights[(H, H)].dense_bytes == H * H
    assert weights[(H, H)].stored_bytes == next(
        t.compressed_bytes for t in packed.compression.tensors if t.shape == (H, H))
    text = report.to_text()
    assert "weights: " in text and "stored (prune)" in text and f"{H * H:,} B dense" in text
    assert "weights: " not in dense.audit.to_text()  # nothing compressed: no weight lines
    assert all(w.encoding == "dense" for w in weight_storage(dense.flatbuffer))
    # audit() of the file alone (no conversion result) finds the same
    again = audit(packed.flatbuffer, "nano33ble", arena_bytes=report.arena_bytes)
    assert again.weights == report.weights


def dense_windows() -> np.ndarray:
    return _toy_data(8, seed=3)[0]


@pytest.mark.slow
def test_sketch_registers_decode(results):
    _, packed = results
    ino = packed.files["arduino/pruned_fastgrnn/pruned_fastgrnn.ino"]
    methods = packed.audit.resolver_methods
    assert "  resolver.AddDecode();" in ino
    assert f"static tflite::MicroMutableOpResolver<{len(methods)}> resolver;" in ino
    assert "AddDecode" in packed.files["platformio/src/main.cpp"]
    readme = packed.files["arduino/pruned_fastgrnn/README.md"]
    assert "## Compressed weights (TFLM_DECODE)" in readme and "AddDecode" in readme
    dense, _ = results
    assert "AddDecode" not in dense.files["arduino/pruned_fastgrnn/pruned_fastgrnn.ino"]
    assert "Compressed weights" not in dense.files["arduino/pruned_fastgrnn/README.md"]


@pytest.mark.slow
def test_report_save_and_load(results, tmp_path):
    _, packed = results
    text = packed.report()
    assert "compression    prune: " in text and "tflm compressed vs uncompressed" in text
    out = packed.save(tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["compression"]["method"] == "prune"
    assert manifest["compression"]["flatbuffer_bytes"] == len(packed.flatbuffer)
    assert (out / "model.tflite").read_bytes() == packed.flatbuffer
    assert "compression    prune" in (out / "REPORT.txt").read_text()
    loaded = load_result(out)
    assert loaded.compression == packed.compression
    x = dense_windows()
    np.testing.assert_array_equal(emulate(loaded, x, runtime="tflm", progress=False).raw_outputs,
                                  emulate(packed, x, runtime="tflm", progress=False).raw_outputs)
    with pytest.raises(ValueError, match=r"LiteRT .*cannot run '.*model\.tflite'.*TFLM_DECODE"):
        emulate(loaded, x, runtime="litert", progress=False)
    dense, _ = results
    assert json.loads(json.dumps(dense.manifest()))["compression"] is None


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "litert-optimized"])
def test_litert_refuses_a_compressed_model(results, runtime):
    _, packed = results
    with pytest.raises(ValueError, match=r"TFLM_DECODE.*compression='prune'.*runtime='tflm'"):
        emulate(packed, dense_windows(), runtime=runtime, progress=False)
    with pytest.raises(ValueError, match="runtime='tflm'"):
        open_runtime(packed.flatbuffer, runtime)


@pytest.mark.parametrize("quantization", ["float32", "float16", "dynamic"])
def test_compression_needs_int8_weights(trained, quantization):
    model, x, _ = trained
    with pytest.raises(ConversionError, match=rf"needs quantization='int8' or 'int16x8', but "
                                              rf"got quantization='{quantization}'"):
        convert(model, target="host", quantization=quantization, representative_data=x,
                compression="prune", progress=False)


def test_compression_option_is_checked(trained):
    model, x, _ = trained
    with pytest.raises(ConversionError, match=r"compression to be None or one of 'prune', but "
                                              r"got 'lut'"):
        convert(model, target="host", quantization="int8", representative_data=x,
                compression="lut", progress=False)


def _corrupting(monkeypatch):
    """Make convert() store one wrong value in the first encoded weight (past the self-check)."""
    from ai_edge_litert import schema_py_generated as schema

    real = compression.compress_pruned

    def corrupt(flatbuffer, **kwargs):
        packed = real(flatbuffer, **kwargs)
        model = schema.ModelT.InitFromPackedBuf(bytearray(packed.flatbuffer), 0)
        sg = model.subgraphs[0]
        codes = [c.customCode for c in model.operatorCodes]
        decode = next(op for op in sg.operators
                      if codes[op.opcodeIndex] in (DECODE_CUSTOM_CODE,
                                                   DECODE_CUSTOM_CODE.encode()))
        buffer = model.buffers[sg.tensors[decode.inputs[1]].buffer]
        data = np.array(buffer.data, np.uint8)
        data[DCM_BYTES] = (int(data[DCM_BYTES]) + 64) % 256
        buffer.data = data
        return compression.CompressedModel(compression._serialize(schema, model, set()),
                                           packed.report)

    monkeypatch.setattr(pipeline, "compress_pruned", corrupt)


@pytest.mark.slow
def test_a_compressed_model_that_differs_fails_the_check(trained, monkeypatch):
    model, x, _ = trained
    _corrupting(monkeypatch)
    options = dict(target="host", quantization="int8", representative_data=x[:32],
                   compression="prune", progress=False)
    with pytest.raises(StageCheckError, match="compressed weights.*differs from the "
                                              "uncompressed one"):
        convert(model, **options)
    with pytest.warns(DeploymentQualityWarning, match="differs from the uncompressed one"):
        result = convert(model, checks="warn", **options)
    assert result.checks["tflm compressed vs uncompressed"] > 0


@pytest.mark.slow
def test_nothing_worth_compressing_warns_and_keeps_the_flatbuffer():
    keras.utils.set_random_seed(0)
    x, _ = _toy_data(32)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(8), name="rnn"),
                              keras.layers.Dense(CLASSES)])
    options = dict(target="host", quantization="int8", representative_data=x, checks="warn",
                   progress=False)  # an untrained model: its int8 agreement is not the point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeploymentQualityWarning)
        with pytest.warns(CompressionWarning, match="stored no weight compressed"):
            packed = convert(model, compression="prune", **options)
        dense = convert(model, **options)
    assert not packed.compression.encoded
    assert "CUSTOM:TFLM_DECODE" not in list_ops(packed.flatbuffer)
    assert packed.flatbuffer == dense.flatbuffer


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["int8", "int16x8"])
def test_low_rank_lstm_compresses_losslessly(quantization):
    """LowRankLSTM with weights zeroed directly to ~25 %, int8 and int16x8 (int8 weights)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, _ = _toy_data(32)
    model = keras.Sequential([keras.Input((T, F)),
                              keras.layers.RNN(LowRankLSTMCell(H, recurrent_rank=16), name="rnn"),
                              keras.layers.Dense(CLASSES)])
    for w in model.weights:
        if w.shape.rank == 2:
            w.assign(w.numpy() * (rng.random(w.shape) < 0.25))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeploymentQualityWarning)
        result = convert(model, target="host", quantization=quantization, representative_data=x,
                         compression="prune", checks="warn", progress=False)
    assert len(result.compression.encoded) >= 2
    assert result.checks["tflm compressed vs uncompressed"] == 0
    assert result.compression.flatbuffer_bytes < result.compression.dense_flatbuffer_bytes
