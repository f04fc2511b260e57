"""The shared cell contract, parametrised over the cell registry."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import keras_rnnedge as kr
from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells import CELL_REGISTRY, CompressedCell
from keras_rnnedge.matrices import LowRank, get_structure
from tests import reference, tolerances
from tests.cell_examples import EXAMPLES, cases, make

CASES = cases()
IDS = [c[0] for c in CASES]
F, T, B = 3, 7, 4


def weights_by_name(cell) -> dict[str, np.ndarray]:
    return {w.name.split("/")[-1].split(":")[0]: w.numpy().astype(np.float64)
            for w in cell.weights}


def randomize(layer, rng, scale=0.5):
    layer.set_weights([rng.normal(0.0, scale, w.shape).astype("float32")
                       for w in layer.get_weights()])


def build_rnn(name, config, **rnn_kwargs):
    layer = keras.layers.RNN(make(name, config), **rnn_kwargs)
    return layer


def test_every_cell_has_examples():
    assert set(EXAMPLES) == set(CELL_REGISTRY), "add examples for new cells in cell_examples.py"
    assert set(reference.ORACLES) == set(CELL_REGISTRY), "add a NumPy oracle in reference.py"


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_matches_numpy_oracle(case_id, name, config, rng):
    layer = build_rnn(name, config, return_sequences=True)
    x = rng.normal(size=(B, T, F)).astype("float32")
    layer(x)
    randomize(layer, rng)
    got = layer(x).numpy()
    want = reference.ORACLES[name](weights_by_name(layer.cell), config, x.astype(np.float64))
    np.testing.assert_allclose(got, want, atol=tolerances.CELL_VS_NUMPY_ATOL, rtol=0)


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_config_covers_every_argument(case_id, name, config):
    cell = make(name, config)
    cfg = cell.get_config()
    for klass in type(cell).__mro__:
        if klass is CompressedCell:
            break
        for pname, p in inspect.signature(klass.__init__).parameters.items():
            if pname == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            assert pname in cfg, f"{name}.get_config() misses __init__ argument {pname!r}"
    for key, value in config.items():
        if key.endswith("_structure"):  # stored complete (every parameter of the family)
            assert get_structure(cfg[key]) == get_structure(value)
        else:
            assert cfg[key] == value
    clone = type(cell).from_config(cfg)
    assert clone.get_config() == cfg


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_save_load_roundtrip(case_id, name, config, rng, tmp_path):
    model = keras.Sequential([keras.Input((T, F)), build_rnn(name, config), keras.layers.Dense(2)])
    x = rng.normal(size=(B, T, F)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0].cell) is CELL_REGISTRY[name]
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_stats_count_the_weights(case_id, name, config):
    layer = build_rnn(name, config)
    layer(np.zeros((1, 2, F), "float32"))
    stats = layer.cell.compression_stats()
    assert stats.params == sum(int(np.prod(w.shape)) for w in layer.cell.weights)
    assert stats.dense_params >= stats.params
    if all(s.is_dense or isinstance(s, LowRank) for s in layer.cell.structures.values()):
        assert stats.macs_per_step <= stats.params  # one MAC per matrix parameter
    # (Kronecker and TT MAC counts: hand-computed cases in test_matrices.py)
    assert stats.state_size == sum(np.atleast_1d(layer.cell.state_size))


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_trains_with_jit_and_matches_eager(case_id, name, config, rng):
    x = rng.normal(size=(8, T, F)).astype("float32")
    y = rng.integers(0, 2, 8)
    outs = []
    for jit in (False, True):
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((T, F)), build_rnn(name, config),
                                  keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(0.1),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit)
        hist = model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        assert np.all(np.isfinite(hist.history["loss"]))
        outs.append(model.predict(x, verbose=0))
    np.testing.assert_allclose(outs[0], outs[1], atol=tolerances.REORDER_ATOL, rtol=0)


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_stateful_halves_equal_whole(case_id, name, config, rng):
    x = rng.normal(size=(2, 8, F)).astype("float32")
    whole = build_rnn(name, config, return_sequences=True)
    full = whole(x).numpy()
    stateful = keras.layers.RNN(type(whole.cell).from_config(whole.cell.get_config()),
                                return_sequences=True, stateful=True)
    inp = keras.Input((4, F), batch_size=2)
    model = keras.Model(inp, stateful(inp))
    stateful.set_weights(whole.get_weights())
    first = model.predict(x[:, :4], verbose=0)
    second = model.predict(x[:, 4:], verbose=0)
    np.testing.assert_allclose(np.concatenate([first, second], 1), full,
                               atol=tolerances.REORDER_ATOL, rtol=0)
    stateful.reset_states()
    np.testing.assert_allclose(model.predict(x[:, :4], verbose=0), first,
                               atol=tolerances.REORDER_ATOL, rtol=0)


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_masking_skips_padded_steps(case_id, name, config, rng):
    x = rng.normal(size=(2, 6, F)).astype("float32")
    padded = np.concatenate([x, np.zeros((2, 3, F), "float32")], axis=1)
    layer = build_rnn(name, config)
    model = keras.Sequential([keras.Input((None, F)), keras.layers.Masking(0.0), layer])
    short = keras.layers.RNN(type(layer.cell).from_config(layer.cell.get_config()))
    short(x)
    short.set_weights(layer.get_weights())
    np.testing.assert_allclose(model(padded).numpy(), short(x).numpy(),
                               atol=tolerances.REORDER_ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_mirrored_strategy_matches_one_replica(case_id, name, config, rng, mirrored_strategy):
    """Two replicas train to the same weights as one device.

    Without ``jit_compile``: XLA refuses MirroredStrategy over *logical* devices of one CPU
    ("Trying to access resource ... located in device CPU:1 from device CPU:0"), a TensorFlow
    limitation that does not involve the cells (stock LSTM fails the same way).
    """
    devices = tf.config.list_logical_devices("CPU")
    x = rng.normal(size=(8, T, F)).astype("float32")
    y = rng.integers(0, 2, 8)

    def train(strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = keras.Sequential([keras.Input((T, F)), build_rnn(name, config),
                                      keras.layers.Dense(2)])
            model.compile(keras.optimizers.SGD(0.5),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return [w.copy() for w in model.get_weights()]

    one = train(tf.distribute.OneDeviceStrategy(devices[0].name))
    two = train(mirrored_strategy)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=tolerances.DISTRIBUTED_ATOL, rtol=0)


@pytest.mark.parametrize("stock,ours", [(keras.layers.LSTMCell, kr.LowRankLSTMCell),
                                        (keras.layers.LSTMCell, kr.HLSTMCell),
                                        (keras.layers.GRUCell, kr.LowRankGRUCell)],
                         ids=["lstm", "hlstm_without_hidden_layers", "gru"])
@pytest.mark.parametrize("extra", [{}, {"use_bias": False}, {"reset_after": False}])
def test_full_rank_equals_stock_cell(stock, ours, extra, rng):
    if "reset_after" in extra and stock is keras.layers.LSTMCell:
        pytest.skip("LSTM has no reset_after")
    x = rng.normal(size=(B, T, F)).astype("float32")
    a = keras.layers.RNN(stock(5, **extra), return_sequences=True)
    b = keras.layers.RNN(ours(5, **extra), return_sequences=True)
    a(x)
    b(x)
    randomize(a, rng)
    b.set_weights(a.get_weights())
    assert [w.shape for w in a.cell.weights] == [w.shape for w in b.cell.weights]
    np.testing.assert_allclose(a(x).numpy(), b(x).numpy(), atol=tolerances.REORDER_ATOL, rtol=0)


@pytest.mark.parametrize("stock,ours", [(keras.layers.LSTMCell, kr.LowRankLSTMCell),
                                        (keras.layers.GRUCell, kr.LowRankGRUCell)])
def test_arguments_follow_stock_cell(stock, ours):
    theirs = inspect.signature(stock.__init__).parameters
    mine = {}
    for klass in ours.__mro__:
        if klass is CompressedCell:
            break
        mine.update(inspect.signature(klass.__init__).parameters)
    # Dropout is not implemented: a compressed cell for a microcontroller is trained with
    # weight-level compression, and the lowering has no dropout either.
    not_supported = {"dropout", "recurrent_dropout", "implementation", "self", "kwargs"}
    for pname, p in theirs.items():
        if pname in not_supported:
            continue
        assert pname in mine, f"{ours.__name__} lacks {stock.__name__} argument {pname!r}"
        assert mine[pname].default == p.default, pname


@pytest.mark.parametrize("name", sorted(CELL_REGISTRY))
def test_registered_under_package_name(name):
    assert keras.saving.get_registered_object(f"keras_rnnedge>{name}") is CELL_REGISTRY[name]


@pytest.mark.parametrize("name", sorted(CELL_REGISTRY))
@pytest.mark.parametrize("units", [0, -3, 2.5, True, "8"])
def test_bad_units(name, units):
    with pytest.raises(ValueError, match=r"argument units.*positive integer.*got"):
        CELL_REGISTRY[name](units)


@pytest.mark.parametrize("name,arg", [("FastGRNNCell", "w_rank"), ("FastGRNNCell", "u_rank"),
                                      ("FastRNNCell", "u_rank"), ("LowRankLSTMCell", "rank"),
                                      ("LowRankGRUCell", "recurrent_rank")])
def test_bad_rank(name, arg):
    with pytest.raises(ValueError, match=rf"argument {arg}.*got 0"):
        CELL_REGISTRY[name](8, **{arg: 0})
    too_big = {"u_rank": 9, "recurrent_rank": 9}.get(arg)
    if too_big is not None:
        with pytest.raises(ValueError, match=r"\[1, 8\].*got 9"):
            CELL_REGISTRY[name](8, **{arg: too_big})
    else:  # the input-side rank is checked when the input dimension is known
        layer = keras.layers.RNN(CELL_REGISTRY[name](8, **{arg: 4}))
        with pytest.raises(ValueError, match=r"\[1, 3\].*got 4"):
            layer(np.zeros((1, 2, 3), "float32"))


@pytest.mark.parametrize("name", sorted(CELL_REGISTRY))
def test_unknown_activation(name):
    with pytest.raises(ValueError, match=r"'softsign'.*Expected one of"):
        CELL_REGISTRY[name](8, activation="softsign")


@pytest.mark.parametrize("name,arg", [("FastGRNNCell", "zeta_initializer"),
                                      ("FastGRNNCell", "nu_initializer"),
                                      ("FastRNNCell", "alpha_initializer"),
                                      ("FastRNNCell", "beta_initializer")])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "1.0", True, None])
def test_bad_scalar_initializer(name, arg, value):
    with pytest.raises(ValueError, match=rf"argument {arg}, expected a finite float, got"):
        CELL_REGISTRY[name](8, **{arg: value})


@pytest.mark.parametrize("name,arg", [("LowRankLSTMCell", "use_bias"),
                                      ("LowRankLSTMCell", "unit_forget_bias"),
                                      ("LowRankGRUCell", "use_bias"),
                                      ("LowRankGRUCell", "reset_after")])
@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, [True]])
def test_bad_bool_argument(name, arg, value):
    with pytest.raises(ValueError, match=rf"argument {arg}, expected True or False, got"):
        CELL_REGISTRY[name](8, **{arg: value})
    assert getattr(CELL_REGISTRY[name](8, **{arg: np.bool_(False)}), arg) is False


def test_stats_need_a_built_cell():
    with pytest.raises(ValueError, match="not built"):
        kr.FastGRNNCell(4).compression_stats()


def test_fastgrnn_paper_har_configuration():
    """HAR-2 FastGRNN of the paper (H=80, r_W=5, r_U=40, F=9): parameter count by hand."""
    layer = keras.layers.RNN(kr.FastGRNNCell(80, w_rank=5, u_rank=40))
    layer(np.zeros((1, 2, 9), "float32"))
    stats = layer.cell.compression_stats()
    # W: 5*(9+80)=445, U: 40*(80+80)=6400, biases 2*80=160, zeta+nu 2
    assert stats.params == 445 + 6400 + 160 + 2
    assert stats.macs_per_step == 445 + 6400
    assert stats.dense_params == 9 * 80 + 80 * 80 + 160 + 2
