"""Training aids of every cell (dropout, recurrent dropout, DropConnect, zoneout): they act in
training only, serialize with the model, and disappear at conversion."""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge._compat import keras
from keras_rnnedge.cells import CELL_REGISTRY, LowRankSimpleRNNCell
from keras_rnnedge.cells.base import TRAINING_AIDS
from tests import tolerances
from tests.cell_examples import EXAMPLES

RATE = 0.4
F, T = 3, 6


def _aids_for(name: str) -> list[str]:
    """The aids a cell takes: zoneout_c needs a second state vector (the LSTMs' c)."""
    lstm = name in ("LowRankLSTMCell", "HLSTMCell", "ProjectionLSTMCell")
    return [a for a in TRAINING_AIDS if a != "zoneout_c" or lstm]


CASES = [(name, aid) for name in sorted(CELL_REGISTRY) for aid in _aids_for(name)]


def _model(name: str, **aids):
    keras.utils.set_random_seed(3)
    cell = CELL_REGISTRY[name](**EXAMPLES[name][0], **aids)
    inputs = keras.Input((T, F))
    return keras.Model(inputs, keras.layers.RNN(cell, return_sequences=True)(inputs))


def _x(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 1, (n, T, F)).astype("float32")


@pytest.mark.parametrize("name,aid", CASES)
def test_aid_acts_in_training_only(name, aid):
    """With the aid, the inference-mode cell equals the plain cell with the same weights
    exactly; in training its output differs."""
    plain, aided = _model(name), _model(name, **{aid: RATE})
    aided.set_weights(plain.get_weights())
    x = _x()
    np.testing.assert_array_equal(aided(x, training=False).numpy(), plain(x).numpy())
    assert not np.allclose(aided(x, training=True).numpy(), plain(x).numpy())


@pytest.mark.parametrize("name", sorted(CELL_REGISTRY))
def test_aids_serialize_with_the_model(name, tmp_path):
    aids = {a: 0.1 * (k + 1) for k, a in enumerate(_aids_for(name))}
    model = _model(name, **aids)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    cell = loaded.layers[1].cell
    assert {a: getattr(cell, a) for a in aids} == pytest.approx(aids)
    np.testing.assert_array_equal(loaded.predict(_x(), verbose=0), model.predict(_x(), verbose=0))


def _probe(**aids):
    """A linear Elman cell whose input matrix is the identity and recurrent matrix is zero:
    h_t = x_t (F = units), so the output shows the masks."""
    cell = LowRankSimpleRNNCell(F, activation="linear", use_bias=False, **aids)
    layer = keras.layers.RNN(cell, return_sequences=True)
    layer.build((None, T, F))
    cell.kernel.assign(np.eye(F, dtype="float32"))
    cell.recurrent_kernel.assign(np.zeros((F, F), "float32"))
    return layer


def test_dropout_mask_is_the_same_at_every_step():
    """Variational dropout: one mask per sequence, values 0 or 1 / (1 - rate)."""
    keras.utils.set_random_seed(0)
    layer = _probe(dropout=0.5)
    out = layer(np.ones((64, T, F), "float32"), training=True).numpy()
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], T, axis=1))
    assert set(np.unique(out)) == {0.0, 2.0}
    assert 0.3 < np.mean(out == 0.0) < 0.7
    # a new call draws new masks
    again = layer(np.ones((64, T, F), "float32"), training=True).numpy()
    assert not np.array_equal(out, again)


def test_recurrent_dropout_masks_the_state_the_same_at_every_step():
    """h_t = x_t + (h_{t-1} * m) U with U = I: with x_0 = 1 and x_t = 0 after, h_t = m^t
    (element-wise), the same mask m at every step."""
    keras.utils.set_random_seed(1)
    layer = _probe(recurrent_dropout=0.5)
    layer.cell.recurrent_kernel.assign(np.eye(F, dtype="float32"))
    x = np.zeros((64, T, F), "float32")
    x[:, 0] = 1.0
    out = layer(x, training=True).numpy()
    m = out[:, 1]  # h_1 = h_0 * m = m
    assert set(np.unique(m)) <= {0.0, 2.0}
    for t in range(1, T):
        np.testing.assert_allclose(out[:, t], m ** t)


def test_recurrent_weight_dropout_drops_weights_once_per_sequence():
    """DropConnect on U = I: h_t = x_t + h_{t-1} (I * M); with x_0 = 1, x_t = 0 after:
    h_t = diag(M)^t, the same weight mask at every step."""
    keras.utils.set_random_seed(2)
    layer = _probe(recurrent_weight_dropout=0.5)
    layer.cell.recurrent_kernel.assign(np.eye(F, dtype="float32"))
    x = np.zeros((4, T, F), "float32")
    x[:, 0] = 1.0
    out = layer(x, training=True).numpy()
    d = out[0, 1]
    assert set(np.unique(d)) <= {0.0, 2.0}
    for t in range(1, T):
        np.testing.assert_allclose(out[:, t], np.broadcast_to(d ** t, (4, F)))


def test_zoneout_keeps_the_previous_state_with_its_rate():
    """h_t = x_t with x_t = t + 1: a zoned-out unit keeps h_{t-1}; about rate of them do."""
    keras.utils.set_random_seed(4)
    layer = _probe(zoneout_h=0.3)
    x = np.broadcast_to(np.arange(1, T + 1, dtype="float32")[None, :, None], (256, T, F))
    out = layer(np.array(x), training=True).numpy()
    previous = np.concatenate([np.zeros((256, 1, F), "float32"), out[:, :-1]], axis=1)
    kept = out == previous
    assert np.all(kept | (out == x))
    assert 0.25 < kept[:, 1:].mean() < 0.35


def test_bad_rates_are_refused_with_the_argument_named():
    for bad in (-0.1, 1.0, "0.2", True, float("nan")):
        with pytest.raises(ValueError, match="recurrent_dropout"):
            LowRankSimpleRNNCell(4, recurrent_dropout=bad)
    with pytest.raises(ValueError, match="zoneout_c"):
        layer = keras.layers.RNN(LowRankSimpleRNNCell(4, zoneout_c=0.2))
        layer(np.zeros((1, 2, 3), "float32"), training=True)


@pytest.mark.slow
def test_converted_model_equals_the_inference_mode_model_with_aids():
    """A FastGRNN and an LSTM with every aid, trained a few steps (the aids active), then
    converted to a float step TFLite model: its outputs equal the Keras model's predict, in
    LiteRT and in TensorFlow Lite Micro (which has no random ops: the aids left no trace)."""
    from keras_rnnedge.converters.tflite.pipeline import convert
    from keras_rnnedge.micro_targets.emulate import emulate

    for name in ("FastGRNNCell", "LowRankLSTMCell"):
        aids = {a: 0.2 for a in _aids_for(name)}
        keras.utils.set_random_seed(5)
        cell = CELL_REGISTRY[name](**EXAMPLES[name][1], **aids)
        inputs = keras.Input((T, F))
        outputs = keras.layers.Dense(2)(keras.layers.RNN(cell)(inputs))
        model = keras.Model(inputs, outputs)
        model.compile("adam", "mse")
        x = _x(32)
        model.fit(x, np.zeros((32, 2), "float32"), epochs=2, verbose=0)
        conv = convert(model, target="host", quantization="float32", mode="step")
        for runtime in ("litert", "tflm"):
            got = emulate(conv, x[:6], runtime=runtime).outputs
            np.testing.assert_allclose(got, model.predict(x[:6], verbose=0),
                                       atol=tolerances.FLOAT_TFLITE_ATOL, rtol=0,
                                       err_msg=f"{name} {runtime}")


def test_soft_orthogonality_penalty_against_numpy():
    from keras_rnnedge.optimize import SoftOrthogonality

    rng = np.random.default_rng(0)
    reg = SoftOrthogonality(0.01)
    for shape in ((5, 5), (4, 12), (9, 3)):
        w = rng.normal(0, 1, shape).astype("float32")
        gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
        want = 0.01 * np.sum((gram - np.eye(min(shape))) ** 2)
        np.testing.assert_allclose(float(reg(keras.backend.constant(w))), want, rtol=1e-5)
    q, _ = np.linalg.qr(rng.normal(0, 1, (6, 6)))
    assert float(reg(keras.backend.constant(q.astype("float32")))) < 1e-9
    assert float(reg(keras.backend.constant(np.ones(4, "float32")))) == 0.0
    for bad in (-1.0, float("inf"), "1e-3", True):
        with pytest.raises(ValueError, match="strength"):
            SoftOrthogonality(bad)


@pytest.mark.parametrize("name", sorted(CELL_REGISTRY))
def test_soft_orthogonality_on_every_cell_and_saved(name, tmp_path):
    """As ``recurrent_regularizer``: a loss per stored recurrent weight (factors included),
    equal to the penalty of that weight; saved and loaded with the model."""
    from keras_rnnedge.optimize import SoftOrthogonality

    for config in EXAMPLES[name]:
        reg = SoftOrthogonality(0.5)
        cell = CELL_REGISTRY[name](**config, recurrent_regularizer=reg)
        inputs = keras.Input((T, F))
        model = keras.Model(inputs, keras.layers.RNN(cell)(inputs))
        recurrent = [w for w in cell.weights if w.name.split("/")[-1].startswith(
            "recurrent_kernel")]
        assert recurrent and len(model.losses) >= len(recurrent)
        want = sum(float(reg(w)) for w in recurrent)
        got = sum(float(v) for v in model.losses)
        assert got == pytest.approx(want, rel=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[1].cell.recurrent_regularizer, SoftOrthogonality)
    assert loaded.layers[1].cell.recurrent_regularizer.strength == 0.5


@pytest.mark.parametrize("init", ["orthogonal", "identity"])
def test_orthogonal_and_identity_initialization_of_the_recurrent_matrix(init):
    """Le et al. (2015): U = I; the orthogonal default: U U^T = I (full-rank square U)."""
    for cls in (LowRankSimpleRNNCell, CELL_REGISTRY["FastGRNNCell"]):
        cell = cls(6, recurrent_initializer=init)
        keras.layers.RNN(cell).build((None, T, F))
        u = cell.recurrent_kernel.numpy()
        np.testing.assert_allclose(u @ u.T, np.eye(6), atol=1e-5)  # float32 QR round-off
        if init == "identity":
            np.testing.assert_array_equal(u, np.eye(6))


def _teacher_and_student(classes: int = 3):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((T, F))
    teacher = keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.LSTM(8)(inputs)))
    inputs = keras.Input((T, F))
    cell = CELL_REGISTRY["FastGRNNCell"](6, u_rank=2)
    student = keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.RNN(cell)(inputs)))
    return teacher, student


def test_distillation_loss_against_numpy():
    from keras_rnnedge.optimize import Distiller

    teacher, student = _teacher_and_student()
    d = Distiller(student, teacher, temperature=3.0, alpha=0.25)
    d.compile("adam")
    rng = np.random.default_rng(1)
    zs, zt = rng.normal(0, 2, (5, 3)), rng.normal(0, 2, (5, 3))
    y = np.array([0, 2, 1, 1, 0])

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    hard = -np.mean(np.log(softmax(zs))[np.arange(5), y])
    p, q = softmax(zt / 3.0), softmax(zs / 3.0)
    kl = np.mean(np.sum(p * np.log(p / q), axis=1))
    want = 0.25 * hard + 0.75 * 9.0 * kl
    got = float(d.distillation_loss(y, zs.astype("float32"), zt.astype("float32")))
    assert got == pytest.approx(want, rel=1e-5)


def test_distiller_fits_the_student_only_and_callbacks_see_the_student():
    """fit trains the student toward the teacher (pure distillation: alpha 0) while the teacher
    stays as it was; HardThresholding acts on the student's matrices only."""
    from keras_rnnedge.optimize import Distiller, HardThresholding

    teacher, student = _teacher_and_student()
    x = _x(256)
    y = np.argmax(teacher.predict(x, verbose=0), axis=1)
    before_teacher = [w.copy() for w in teacher.get_weights()]
    agree_before = np.mean(np.argmax(student.predict(x, verbose=0), axis=1) == y)
    d = Distiller(student, teacher, temperature=2.0, alpha=0.0)
    d.compile(keras.optimizers.Adam(0.03), metrics=["accuracy"])
    iht = HardThresholding({"recurrent_kernel": 0.5}, dense_epochs=6, iht_epochs=2)
    history = d.fit(x, y, epochs=10, batch_size=32, verbose=0, callbacks=[iht])
    assert "accuracy" in history.history and "loss" in history.history
    for a, b in zip(before_teacher, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    agree = np.mean(np.argmax(student.predict(x, verbose=0), axis=1) == y)
    assert agree > max(agree_before, 0.6)
    cell = student.layers[1].cell
    for w in (cell.recurrent_kernel_u, cell.recurrent_kernel_v):
        assert np.mean(w.numpy() != 0) <= 0.5 + 1e-9


def test_distiller_refuses_mismatched_models():
    from keras_rnnedge.optimize import Distiller

    teacher, student = _teacher_and_student(classes=3)
    _, other = _teacher_and_student(classes=4)
    with pytest.raises(ValueError, match="output shape"):
        Distiller(other, teacher)
    with pytest.raises(ValueError, match="alpha"):
        Distiller(student, teacher, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(student, teacher, temperature=0)
    with pytest.raises(TypeError, match="teacher"):
        Distiller(student, "lstm.keras")


@pytest.mark.parametrize("return_sequences", [False, True])
def test_regularized_rnn_adds_ar_tar_in_training_and_converts_as_an_rnn(return_sequences):
    """AR/TAR: the training loss equals the NumPy penalty of the output sequence; the outputs
    equal keras.layers.RNN's with the same weights; the float step model equals predict."""
    from keras_rnnedge.converters.tflite.pipeline import convert
    from keras_rnnedge.micro_targets.emulate import emulate
    from keras_rnnedge.optimize import RegularizedRNN

    keras.utils.set_random_seed(8)
    cell = CELL_REGISTRY["FastGRNNCell"](5, u_rank=2)
    layer = RegularizedRNN(cell, activation_l2=0.3, temporal_activation_l2=0.7,
                           return_sequences=return_sequences)
    inputs = keras.Input((T, F))
    model = keras.Model(inputs, layer(inputs))
    x = _x(4)
    out = model(x, training=True).numpy()
    seq = keras.Model(inputs, keras.layers.RNN(cell, return_sequences=True)(inputs)).predict(
        x, verbose=0)
    np.testing.assert_allclose(out, seq if return_sequences else seq[:, -1],
                               atol=1e-6)  # the same cell, traced twice
    want = 0.3 * np.mean(seq ** 2) + 0.7 * np.mean((seq[:, 1:] - seq[:, :-1]) ** 2)
    assert float(sum(model.losses)) == pytest.approx(want, rel=1e-5)
    model(x, training=False)
    assert not model.losses
    if not return_sequences:
        head = keras.Model(inputs, keras.layers.Dense(2)(model.output))
        conv = convert(head, target="host", quantization="float32", mode="step")
        got = emulate(conv, x, runtime="tflm").outputs
        np.testing.assert_allclose(got, head.predict(x, verbose=0),
                                   atol=tolerances.FLOAT_TFLITE_ATOL, rtol=0)
    with pytest.raises(ValueError, match="temporal_activation_l2"):
        RegularizedRNN(cell, temporal_activation_l2=-1.0)
