"""compress(): a trained model's matrices refit in a family, against NumPy's SVD and the
original model."""

from __future__ import annotations

import numpy as np
import pytest

from keras_rnnedge._compat import keras
from keras_rnnedge.cells import FastGRNNCell, LowRankSimpleRNNCell
from keras_rnnedge.optimize import compress, energy_rank, prune_low_magnitude
from tests import tolerances

F, T = 5, 6
STOCK = {
    "lstm": lambda: keras.layers.LSTM(8, name="rnn"),
    "gru": lambda: keras.layers.GRU(8, name="rnn"),
    "gru_reset_before": lambda: keras.layers.GRU(8, reset_after=False, name="rnn",
                                                 recurrent_activation="hard_sigmoid"),
    "simplernn": lambda: keras.layers.SimpleRNN(8, activation="relu", name="rnn",
                                                return_sequences=True),
}


def _model(layer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((None, F)), layer, keras.layers.Dense(3, name="head")])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _x(n=4, seed=1):
    return np.random.default_rng(seed).normal(size=(n, T, F)).astype("float32")


@pytest.mark.parametrize("kind", sorted(STOCK))
def test_full_rank_reproduces_the_stock_model(kind):
    model = _model(STOCK[kind]())
    out = compress(model, rank=64)  # capped at each matrix's smaller dimension: exact
    assert type(out.layers[0]) is keras.layers.RNN and out.layers[0].name == "rnn"
    assert out.layers[0].return_sequences == model.layers[0].return_sequences
    np.testing.assert_allclose(out.predict(_x(), verbose=0), model.predict(_x(), verbose=0),
                               atol=tolerances.REORDER_ATOL)


@pytest.mark.parametrize("kind", sorted(STOCK))
def test_rank_r_is_the_truncated_svd(kind):
    model = _model(STOCK[kind]())
    report = []
    out = compress(model, rank=2, report=report)
    cell = out.layers[0].cell
    for entry in report:
        w = model.layers[0].cell.get_weights()[["kernel", "recurrent_kernel"].index(entry.matrix)]
        s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
        # Eckart-Young: the error of the best rank-2 approximation
        assert entry.relative_error == pytest.approx(np.sqrt(np.sum(s[2:]**2) / np.sum(s**2)),
                                                     rel=1e-5)
        u = getattr(cell, f"{entry.matrix}_u").numpy()
        v = getattr(cell, f"{entry.matrix}_v").numpy()
        assert u.shape[1] == 2 and np.linalg.norm(u @ v - w) / np.linalg.norm(w) == \
            pytest.approx(entry.relative_error, rel=1e-4)
        assert entry.params_after == 2 * sum(w.shape) and entry.params_before == w.size


def test_energy_picks_the_smallest_rank_that_keeps_it():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 20)) * np.linspace(3, 0.1, 20)
    s2 = np.linalg.svd(w, compute_uv=False) ** 2
    for energy in (0.5, 0.9, 0.99, 1.0):
        r = energy_rank(w, energy)
        assert s2[:r].sum() >= energy * s2.sum() * (1 - 1e-12)
        assert r == 1 or s2[:r - 1].sum() < energy * s2.sum()
    model = _model(STOCK["lstm"]())
    report = []
    compress(model, energy=0.8, report=report)
    for entry in report:
        assert entry.relative_error <= np.sqrt(0.2) + 1e-9  # 80 % of the energy kept


def test_kronecker_fit_recovers_a_kronecker_matrix_and_families_chain():
    model = _model(STOCK["gru"]())
    cell = model.layers[0].cell
    rng = np.random.default_rng(3)
    kron = np.kron(rng.normal(size=(2, 4)), rng.normal(size=(4, 6)))  # 8 x 24
    cell.recurrent_kernel.assign(kron.astype("float32"))
    report = []
    out = compress(model, structure={"recurrent_kernel": {"family": "kronecker",
                                                          "factors": [[2, 4], [4, 6]]}},
                   report=report)
    assert [r.matrix for r in report] == ["recurrent_kernel"]
    assert report[0].relative_error < 1e-6
    np.testing.assert_allclose(out.predict(_x(), verbose=0), model.predict(_x(), verbose=0),
                               atol=tolerances.REORDER_ATOL)
    # compressing the result again keeps the matrices it does not name
    again = compress(out, structure={"kernel": "toeplitz"})
    structures = again.layers[0].cell.structures
    assert structures["kernel"].family == "toeplitz"
    assert structures["recurrent_kernel"].family == "kronecker"


def test_our_cells_refit_and_fine_tune(tmp_path):
    model = _model(keras.layers.RNN(FastGRNNCell(8), name="rnn"))
    out = compress(model, structure="block_circulant")
    assert out.layers[0].cell.structures["recurrent_kernel"].family == "block_circulant"
    out.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x, y = _x(32), model.predict(_x(32), verbose=0)  # distill the original back in
    before = out.evaluate(x, y, verbose=0)
    out.fit(x, y, epochs=20, verbose=0)
    assert out.evaluate(x, y, verbose=0) < 0.5 * before
    out.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), out.predict(x, verbose=0),
                               atol=tolerances.REORDER_ATOL)


def test_functional_and_nested_models_keep_their_graph():
    inputs = keras.Input((None, F))
    inner = keras.Sequential([keras.Input((None, F)),
                              keras.layers.RNN(LowRankSimpleRNNCell(6), return_sequences=True,
                                               name="inner_rnn")], name="inner")
    h = inner(inputs)
    h = keras.layers.LSTM(4, name="outer_rnn")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    out = compress(model, rank=64)
    np.testing.assert_allclose(out.predict(_x(), verbose=0), model.predict(_x(), verbose=0),
                               atol=tolerances.REORDER_ATOL)
    only = compress(model, rank=1, layers=["outer_rnn"])
    assert only.get_layer("inner").layers[0].cell.structures["kernel"].is_dense


@pytest.mark.parametrize("kwargs,match", [
    ({}, r"none of structure, rank and energy; expected exactly one"),
    ({"rank": 2, "energy": 0.5}, r"rank, energy of structure, rank and energy"),
    ({"energy": 1.5}, r"energy=1.5, expected a fraction in \(0, 1\]"),
    ({"rank": 2, "layers": ["nope"]}, r"\['nope'\] are not recurrent layers.*\['rnn'\]"),
    ({"rank": 2, "matrices": ["projection"]}, r"matrices \['projection'\] for layer 'rnn'"),
    ({"structure": "circulant"}, r"unknown value for argument structure: 'circulant'"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compress(_model(STOCK["lstm"]()), **kwargs)


def test_wrapped_and_unsupported_models_are_refused():
    pruned = prune_low_magnitude(_model(STOCK["gru"]()), 0.5)
    with pytest.raises(ValueError, match=r"wrapped by tfmot.*strip_pruning"):
        compress(pruned, rank=2)
    bi = keras.Sequential([keras.Input((T, F)), keras.layers.Bidirectional(keras.layers.GRU(3))])
    with pytest.raises(ValueError, match=r"Bidirectional layer"):
        compress(bi, rank=2)
    dense = keras.Sequential([keras.Input((F,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"without recurrent layers"):
        compress(dense, rank=2)
