"""keras_rnnedge.optimize.GrowAndPrune: grow-and-prune training (Dai, Yin, Jha 2020).

The growth is checked against the gradient computed here in closed form (a linear model with a
mean-squared loss), the pruning against magnitudes sorted by NumPy, and the whole schedule on an
H-LSTM: supports enforced through training, logged, saved with the model and stored sparse by
the integer converter.
"""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge import optimize
from keras_rnnedge._compat import keras
from keras_rnnedge.cells import HLSTMCell, SupportMask
from keras_rnnedge.converters.c.intmodel import quantize_model
from keras_rnnedge.optimize import GrowAndPrune, grow_mask, prune_mask

T, F, N, BATCH = 6, 3, 64, 16


def _sequences(rng, n=N):
    x = rng.normal(size=(n, T, F)).astype("float32")
    y = (x[:, :, 0].mean(1) > 0).astype("int32")
    return x, y


def _hlstm_model(hidden=6):
    model = keras.Sequential([keras.Input((T, F)),
                              keras.layers.RNN(HLSTMCell(8, hidden_units=hidden), name="rnn"),
                              keras.layers.Dense(2, name="head")])
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_grow_mask_takes_the_largest_dormant_scores():
    mask = np.array([[1, 0, 0], [0, 1, 0]], bool)
    score = np.array([[9.0, 1.0, 5.0], [5.0, 8.0, 0.5]])
    # dormant: (0,1)=1, (0,2)=5, (1,0)=5, (1,2)=0.5; two largest: the two 5s (lower index first)
    np.testing.assert_array_equal(grow_mask(mask, score, 2), [[1, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(grow_mask(mask, score, 10), np.ones((2, 3), bool))
    np.testing.assert_array_equal(grow_mask(mask, score, 0), mask)


def test_prune_mask_keeps_the_largest_active_magnitudes():
    mask = np.array([1, 1, 1, 0, 1], bool)
    values = np.array([0.1, -3.0, 0.5, 9.0, -0.2])
    np.testing.assert_array_equal(prune_mask(mask, values, 0.4), [0, 1, 1, 0, 0])
    # never more than are active, never fewer than one
    np.testing.assert_array_equal(prune_mask(mask, values, 1.0), mask)
    assert prune_mask(mask, values, 0.01).sum() == 1


def test_growth_follows_the_accumulated_gradient():
    """One Dense layer, MSE: dL/dW = 2 x^T (x W + b - y) / (n m) per batch, summed in |.|."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 5)).astype("float32")
    y = rng.normal(size=(48, 4)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="d")])
    model.compile(keras.optimizers.SGD(0.0), "mse")  # lr 0: weights stay, only the mask moves
    gp = GrowAndPrune((x, y), density=1.0, seed_density=0.25, growth_ratio=1.0,
                      schedule=[("grow", 1)], batch_size=16, seed=3)
    gp.set_model(model)
    gp.on_train_begin()
    seed = gp.targets[0].mask.copy()
    assert seed.sum() == 5  # round(0.25 * 20)
    w, b = (v.numpy().astype(np.float64) for v in model.layers[0].weights)
    score = np.zeros_like(w)
    for start in range(0, 48, 16):
        xb, yb = x[start:start + 16].astype(np.float64), y[start:start + 16]
        score += np.abs(2.0 * xb.T @ (xb @ w + b - yb) / (16 * 4))
    gp.on_epoch_begin(0)
    grown = gp.targets[0].mask
    want = grow_mask(seed, score, 5)
    np.testing.assert_array_equal(grown, want)
    assert grown.sum() == 10
    np.testing.assert_array_equal(model.layers[0].kernel.numpy() != 0, grown & (w != 0))


def test_schedule_on_an_hlstm_logs_enforces_and_saves(tmp_path):
    rng = np.random.default_rng(1)
    x, y = _sequences(rng)
    model = _hlstm_model()
    density = {"kernel": 0.3, "recurrent_kernel": 0.2, "gate_kernel": 0.25, "head": 0.5}
    gp = GrowAndPrune((x, y), density=density, seed_density=0.3, growth_ratio=0.5,
                      schedule=[("grow", 2), ("prune", 2), ("train", 1)], growth_batches=2)
    history = model.fit(x, y, epochs=5, batch_size=BATCH, verbose=0, callbacks=[gp])
    logs = history.history
    assert logs["gp_phase"] == [1, 1, 2, 2, 3]
    cell = model.get_layer("rnn").cell
    sizes = {"kernel": cell.kernel.shape.num_elements(),
             "recurrent_kernel": cell.recurrent_kernel.shape.num_elements(),
             "gate_kernel": cell.gate_kernel.shape.num_elements()}
    for name, size in sizes.items():
        d = logs[f"density/rnn/{name}"]
        seed = round(0.3 * size)
        # growth: +50 % of the active entries twice (at most all), then pruned to the target
        grown = min(size, round(1.5 * seed) + round(0.5 * round(1.5 * seed)))
        assert d[1] <= grown / size + 1e-9 and d[1] > seed / size, name
        target = max(1, round(density[name] * size)) / size
        assert d[3] <= target + 1e-9 and d[4] == d[3], name
        mask = gp.targets[[t.weight for t in gp.targets].index(name)].mask
        assert mask.mean() == pytest.approx(target)
        np.testing.assert_array_equal(getattr(cell, name).numpy()[~mask], 0)
    assert logs["density/head/kernel"][-1] == pytest.approx(0.5, abs=1 / 16)

    # the supports travel with the model and keep the zeros in later training
    assert isinstance(cell.gate_constraint, SupportMask)
    assert isinstance(model.get_layer("head").kernel_constraint, SupportMask)
    path = str(tmp_path / "gp.keras")
    optimize.save_model(model, path)
    loaded = optimize.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    loaded.compile(keras.optimizers.Adam(0.01),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    zeros = {n: getattr(loaded.get_layer("rnn").cell, n).numpy() == 0 for n in sizes}
    loaded.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    for name, z in zeros.items():
        np.testing.assert_array_equal(getattr(loaded.get_layer("rnn").cell, name).numpy()[z], 0)

    # the integer converter stores the pruned matrices sparse, and the C stores them as CSR
    im = quantize_model(model, x, weight_bits=8)
    layer = im.recurrent[0]
    assert layer.kind == "hlstm"
    assert layer.matrices["recurrent_kernel"].u.sparse
    assert layer.matrices["recurrent_kernel"].u.nnz == round(0.2 * sizes["recurrent_kernel"])


def test_a_model_with_supports_starts_from_them():
    rng = np.random.default_rng(2)
    x, y = _sequences(rng)
    model = _hlstm_model()
    first = GrowAndPrune((x, y), density={"gate_kernel": 0.2}, seed_density=0.5,
                         schedule=[("prune", 1)], dense=False)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[first])
    mask = first.targets[0].mask.copy()
    second = GrowAndPrune((x, y), density={"gate_kernel": 0.2}, seed_density=0.9,
                          schedule=[("train", 1)], dense=False)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[second])
    np.testing.assert_array_equal(second.targets[0].mask, mask)  # no new seed


@pytest.mark.parametrize("kwargs,match", [
    ({"density": 0.0}, r"density=0.0, expected a float in \(0, 1\]"),
    ({"density": 0.5, "seed_density": 1.5}, r"seed_density=1.5"),
    ({"density": 0.5, "growth_ratio": -1}, r"growth_ratio=-1, expected a non-negative"),
    ({"density": 0.5, "schedule": [("shrink", 2)]}, r"schedule=.*phase in \('grow'"),
    ({"density": 0.5, "schedule": [("grow", 0)]}, r"epochs >= 1"),
    ({"density": 0.5, "growth_batches": 0}, r"growth_batches=0, expected a positive"),
])
def test_bad_arguments_are_named(kwargs, match):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=match):
        GrowAndPrune(_sequences(rng), **kwargs)


def test_bad_data_and_names_are_named():
    with pytest.raises(ValueError, match=r"expected \(x, y\) arrays or a tf.data.Dataset"):
        GrowAndPrune(np.zeros((4, 3)), density=0.5)
    rng = np.random.default_rng(0)
    x, y = _sequences(rng)
    model = _hlstm_model()
    gp = GrowAndPrune((x, y), density={"projection": 0.5})
    with pytest.raises(ValueError, match=r"has no weight 'projection'.*gate_kernel"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[gp])
    gp = GrowAndPrune((x, y), density=0.5, dense=["classifier"])
    with pytest.raises(ValueError, match=r"'classifier'.*not Dense layers.*head"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[gp])
