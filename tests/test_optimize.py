"""keras_rnnedge.optimize: per-weight pruning, EdgeML's hard thresholding and QAT.

The per-cell tests are parametrised over ``tests/cell_examples.py``, which covers every entry of
``CELL_REGISTRY`` (full-rank and low-rank configurations), so a new cell is tested here too.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from keras_rnnedge import optimize
from keras_rnnedge._compat import keras, tf, tfmot
from keras_rnnedge.cells import FastGRNNCell, LowRankLSTMCell
from keras_rnnedge.optimize import _tfmot
from keras_rnnedge.optimize.recurrent import cell_variable
from tests import tolerances
from tests.cell_examples import make, representative_cases

CASES = representative_cases()  # the slow tests: each family once (cell_examples)
IDS = [c[0] for c in CASES]
STOCK = {"LSTM": keras.layers.LSTM, "GRU": keras.layers.GRU, "SimpleRNN": keras.layers.SimpleRNN}
T, F, N, BATCH, OUT = 5, 3, 32, 8, 2

# Per-weight targets used throughout. Counts are checked exactly: the expected count uses the
# documented formula in the library's arithmetic (float32 for pruning, float64 for IHT).
SPARSITY = {"kernel": 0.8, "recurrent_kernel": 0.7, "projection": 0.6, "gate_kernel": 0.5}
DENSITY = {"kernel": 0.2, "recurrent_kernel": 0.3, "projection": 0.4, "gate_kernel": 0.5}


def density_of(model):
    """DENSITY for the matrices the model's recurrent cell has."""
    return {k: v for k, v in DENSITY.items() if k in model.layers[0].cell.structures}

# The QAT model against the float model, after the activation ranges are calibrated on the same
# batch: the output is rounded to 1/255 of its range (half an LSB), and on top come the rounding
# of the input (range / 255), of the RNN output, and of every weight (max|w| / 254 each),
# propagated through T=5 steps and the Dense layer. Measured at most 3.1 output LSBs over every
# example cell and the stock layers (with the activation ranges left at tfmot's initial [-6, 6]
# the same comparison is off by 6 to 25 LSBs).
QAT_VS_FLOAT_LSB = 4.0
# ... for a matrix that is a product of more than two quantized factors (a three-core tensor
# ring: 4.2 LSBs measured), each factor's rounding adds its share: the bound scales with the
# number of factors over two.
def qat_vs_float_lsb(model) -> float:
    cell = model.layers[0].cell
    factors = max((len(s.weight_names("w")) for s in getattr(cell, "structures", {}).values()),
                  default=1)
    return QAT_VS_FLOAT_LSB * max(1.0, factors / 2)


# The QAT model against an explicit fake-quant oracle (float model with per-tensor symmetric
# int8 weights, quantized input, RNN output and Dense output): the same arithmetic in a
# different order, so an output within float32 noise of a rounding boundary may round to the
# neighbouring level: one LSB, never two.
QAT_VS_ORACLE_LSB = 1.0
# A fake-quantized weight divided by its scale (max / 127) is an integer up to float32 rounding
# of the division (|q| <= 127, relative error ~1e-7).
GRID_ATOL = 1e-3


# -- helpers -----------------------------------------------------------------------------------
def data(rng, n=N):
    x = rng.normal(size=(n, T, F)).astype("float32")
    y = rng.normal(size=(n, OUT)).astype("float32")
    return x, y


def rnn_model(layer):
    return keras.Sequential([keras.Input((T, F)), layer, keras.layers.Dense(OUT)])


def case_model(name, config):
    """The model of a cell example, or of a stock layer (``name`` in STOCK, ``config`` None)."""
    if name in STOCK:
        return rnn_model(STOCK[name](6))
    return rnn_model(keras.layers.RNN(make(name, config)))


def base(name: str) -> str:
    """``kernel_u`` / ``kernel_factor_1`` / ``kernel_core_0`` → ``kernel``."""
    return re.sub(r"_(u|v|factor_\d+|core_\d+|blocks|diagonals|buckets|ring_\d+|groups)$", "", name)


def expected_nonzeros_pruned(size: int, sparsity: float) -> int:
    """``max(1, round(size * (1 - sparsity)))`` in the float32 arithmetic of the mask."""
    kept = np.float32(size) * (np.float32(1.0) - np.float32(sparsity))
    return max(1, int(np.round(kept)))


def expected_nonzeros_iht(size: int, density: float) -> int:
    return max(1, int(round(density * size)))


def compile_model(model, **kwargs):
    model.compile(keras.optimizers.Adam(0.01), "mse", **kwargs)
    # Creating the optimizer's slots now spares tf.function a second trace of the train step.
    model.optimizer.build(model.trainable_variables)


def short(variable) -> str:
    return variable.name.split(":")[0].split("/")[-1]


def train_pruned(name, config, rng, sparsity=None, steps=N // BATCH, run_eagerly=True,
                 **kwargs):
    model = case_model(name, config)
    if sparsity is None:  # SPARSITY for the matrices this cell has
        sparsity = {k: v for k, v in SPARSITY.items() if k in model.layers[0].cell.structures}
    pruned = optimize.prune_low_magnitude(model, sparsity, **kwargs)
    compile_model(pruned, run_eagerly=run_eagerly)
    x, y = data(rng, steps * BATCH)
    pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
               callbacks=[optimize.UpdatePruningStep()])
    return pruned, x


# -- finding recurrent layers ------------------------------------------------------------------
def test_iter_recurrent_layers_recurses_and_sees_through_wrappers():
    inner = keras.Sequential([keras.Input((T, F)), keras.layers.RNN(FastGRNNCell(4),
                                                                    return_sequences=True,
                                                                    name="fastgrnn")],
                             name="inner")
    inputs = keras.Input((T, F))
    h = inner(inputs)
    gru = keras.layers.GRU(3, return_sequences=True, name="g")
    h = keras.layers.Bidirectional(gru, name="bi")(h)
    h = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.GRUCell(2)]),
                         return_sequences=True, name="stacked")(h)
    h = keras.layers.LSTM(5, name="lstm")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(h))
    assert optimize.recurrent_layer_names(model) == [
        "fastgrnn", "forward_g", "backward_g", "lstm"]  # StackedRNNCells is skipped

    flat = case_model("FastGRNNCell", {"units": 4})
    rnn_name = flat.layers[0].name
    pruned = optimize.prune_low_magnitude(flat, 0.5)
    assert isinstance(pruned.layers[0], _tfmot.PruneLowMagnitude)
    assert optimize.recurrent_layer_names(pruned) == [rnn_name]
    assert optimize.recurrent_layer_names(optimize.quantize_model(flat)) == [rnn_name]
    assert isinstance(optimize.recurrent_cell(pruned.layers[0]), FastGRNNCell)


def test_recurrent_cell_rejects_non_rnn_layer():
    dense = keras.layers.Dense(3, name="head")
    with pytest.raises(ValueError, match=r"'head' of class Dense.*RNN layer.*LSTM/GRU/SimpleRNN"):
        optimize.recurrent_cell(dense)
    stacked = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.GRUCell(2)]),
                               name="stacked")
    with pytest.raises(ValueError, match="'stacked' whose cell is a StackedRNNCells"):
        optimize.recurrent_cell(stacked)


def test_weight_names_follow_the_instance():
    full, low = keras.layers.RNN(FastGRNNCell(4)), keras.layers.RNN(FastGRNNCell(4, u_rank=2))
    for layer in (full, low):
        layer.build((None, T, F))
    assert optimize.weight_names(full) == ("kernel", "recurrent_kernel")
    assert optimize.weight_names(low) == ("kernel", "recurrent_kernel_u", "recurrent_kernel_v")
    assert optimize.weight_names(keras.layers.LSTM(3), "quantizable") == optimize.STOCK_CELL_WEIGHTS


# -- pruning -----------------------------------------------------------------------------------
def test_magnitude_mask_keeps_an_exact_count_on_ties():
    weights = tf.constant([[1.0, -1.0, 1.0], [0.5, 1.0, 0.0]])
    threshold, mask = optimize.pruning.magnitude_mask(weights, tf.constant(0.5))
    # round(6 * 0.5) = 3 of the four entries of magnitude 1: the three lowest flat indices.
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 1], [0, 0, 0]])
    assert threshold.numpy() == 1.0


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_prunes_each_weight_to_its_target_strips_and_round_trips(case_id, name, config, rng,
                                                                  tmp_path):
    pruned, x = train_pruned(name, config, rng)
    wrapper = pruned.layers[0]
    assert isinstance(wrapper, optimize.PruneLowMagnitudePerWeight)
    assert isinstance(wrapper, _tfmot.PruneLowMagnitude)  # what tfmot's callbacks look for
    assert int(wrapper.pruning_step.numpy()) == N // BATCH  # UpdatePruningStep drove it
    cell = wrapper.layer.cell
    masks = {k: m.numpy() for k, m in wrapper.masks().items()}
    assert set(masks) == set(optimize.weight_names(cell))
    assert len(wrapper.pruning_vars) == len(masks)  # biases and scalars have no mask
    for weight_name, mask in masks.items():
        values = getattr(cell, weight_name).numpy()
        want = expected_nonzeros_pruned(values.size, SPARSITY[base(weight_name)])
        assert int(mask.sum()) == want, weight_name
        assert int(np.count_nonzero(values)) == want, weight_name
        assert np.all(values[mask == 0] == 0), weight_name
    want = pruned(x).numpy()

    # strip_pruning (ours and tfmot's) gives a plain model with the same predictions.
    for stripped in (optimize.strip_pruning(pruned), tfmot.sparsity.keras.strip_pruning(pruned)):
        assert not any(isinstance(layer, _tfmot.PruneLowMagnitude) for layer in stripped.layers)
        np.testing.assert_allclose(stripped(x).numpy(), want, atol=tolerances.REORDER_ATOL,
                                   rtol=0)

    # .keras save and load keep the masks, the zeros, the schedules and the predictions.
    pruned.save(tmp_path / "pruned.keras")
    loaded = optimize.load_model(tmp_path / "pruned.keras")
    loaded_wrapper = loaded.layers[0]
    assert isinstance(loaded_wrapper, optimize.PruneLowMagnitudePerWeight)
    loaded_masks = {k: m.numpy() for k, m in loaded_wrapper.masks().items()}
    assert set(loaded_masks) == set(masks)
    for weight_name, mask in masks.items():
        np.testing.assert_array_equal(loaded_masks[weight_name], mask, err_msg=weight_name)
        values = getattr(loaded_wrapper.layer.cell, weight_name).numpy()
        assert np.all(values[mask == 0] == 0), weight_name
    assert loaded_wrapper.get_config()["weight_schedules"] == wrapper.get_config()[
        "weight_schedules"]
    np.testing.assert_array_equal(loaded(x).numpy(), want)


@pytest.mark.parametrize("stock", sorted(STOCK))
def test_prunes_stock_layers_in_graph_mode(stock, rng):
    pruned, _ = train_pruned(stock, None, rng, sparsity=0.6, run_eagerly=False)
    cell = pruned.layers[0].layer.cell
    for weight_name in ("kernel", "recurrent_kernel"):
        values = getattr(cell, weight_name).numpy()
        assert np.count_nonzero(values) == expected_nonzeros_pruned(values.size, 0.6)


class SequenceRNN(keras.layers.RNN):
    """A subclass of RNN, which tfmot's own registry refuses (it matches classes exactly)."""


def test_prunes_rnn_subclass(rng):
    model = rnn_model(SequenceRNN(FastGRNNCell(6)))
    pruned = optimize.prune_low_magnitude(model, 0.5)
    compile_model(pruned, run_eagerly=True)
    x, y = data(rng, 2 * BATCH)
    pruned.fit(x, y, batch_size=BATCH, verbose=0, callbacks=[optimize.UpdatePruningStep()])
    kernel = pruned.layers[0].layer.cell.kernel.numpy()
    assert np.count_nonzero(kernel) == expected_nonzeros_pruned(kernel.size, 0.5)


@pytest.mark.slow
def test_prunes_and_thresholds_under_mirrored_strategy(rng, mirrored_strategy):
    strategy = mirrored_strategy
    x, y = data(rng)
    with strategy.scope():
        pruned = optimize.prune_low_magnitude(case_model("FastGRNNCell", {"units": 6,
                                                                          "u_rank": 3}),
                                             {"kernel": 0.8, "recurrent_kernel": 0.7})
        compile_model(pruned)
        dense = case_model("FastGRNNCell", {"units": 6, "u_rank": 3})
        compile_model(dense)
    pruned.fit(x, y, batch_size=BATCH, verbose=0, callbacks=[optimize.UpdatePruningStep()])
    for weight_name, mask in pruned.layers[0].masks().items():
        values = getattr(pruned.layers[0].layer.cell, weight_name).numpy()
        want = expected_nonzeros_pruned(values.size, SPARSITY[base(weight_name)])
        assert int(mask.numpy().sum()) == want == np.count_nonzero(values), weight_name
    iht = optimize.HardThresholding(density_of(dense), dense_epochs=0, iht_epochs=1)
    dense.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[iht])
    for target in iht.targets:
        values = target.variable.numpy()
        assert np.count_nonzero(values) == expected_nonzeros_iht(values.size, target.density)


def test_polynomial_schedule_reaches_target_at_end_step(rng):
    pruned, _ = train_pruned("FastGRNNCell", {"units": 6}, rng, schedule="polynomial",
                             begin_step=0, end_step=3, initial_sparsity=0.1)
    cell = pruned.layers[0].layer.cell
    for weight_name in ("kernel", "recurrent_kernel"):
        values = getattr(cell, weight_name).numpy()
        assert np.count_nonzero(values) == expected_nonzeros_pruned(
            values.size, SPARSITY[weight_name])


def test_unnamed_weights_are_not_pruned(rng):
    pruned, _ = train_pruned("FastGRNNCell", {"units": 6, "u_rank": 3}, rng,
                             sparsity={"recurrent_kernel_v": 0.5})
    cell = pruned.layers[0].layer.cell
    assert np.count_nonzero(cell.kernel.numpy()) == cell.kernel.numpy().size
    assert np.count_nonzero(cell.recurrent_kernel_u.numpy()) == cell.recurrent_kernel_u.shape[
        0] * cell.recurrent_kernel_u.shape[1]
    assert np.count_nonzero(cell.recurrent_kernel_v.numpy()) == expected_nonzeros_pruned(
        18, 0.5)


def test_wrapper_config_round_trip():
    wrapper = optimize.prune_low_magnitude(keras.layers.RNN(LowRankLSTMCell(4, rank=2)),
                                           {"kernel": 0.5, "recurrent_kernel": 0.25})
    config = wrapper.get_config()
    assert set(config["weight_schedules"]) == {"kernel", "recurrent_kernel"}
    clone = optimize.PruneLowMagnitudePerWeight.from_config(config)
    assert clone.get_config()["weight_schedules"] == config["weight_schedules"]
    assert clone.get_config()["pruning_schedule"] == config["pruning_schedule"]
    assert clone.pruning_schedule.frequency == 1
    assert keras.saving.get_registered_name(optimize.PruneLowMagnitudePerWeight) == (
        "keras_rnnedge>PruneLowMagnitudePerWeight")
    restored = keras.layers.deserialize(keras.layers.serialize(wrapper))
    assert isinstance(restored, optimize.PruneLowMagnitudePerWeight)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, True, "0.5",
                                      {"kernel": 1.0}, {"recurrent_kernel": -0.2}])
def test_prune_rejects_sparsity_outside_range(sparsity):
    with pytest.raises(ValueError, match=r"expected a float in \[0, 1\)"):
        optimize.prune_low_magnitude(case_model("FastGRNNCell", {"units": 4}), sparsity)


def test_prune_rejects_unknown_weight_names():
    full = case_model("FastGRNNCell", {"units": 4})
    with pytest.raises(ValueError, match=r"no weight 'bias'.*\['kernel', 'recurrent_kernel'\]"):
        optimize.prune_low_magnitude(full, {"kernel": 0.5, "bias": 0.5})
    with pytest.raises(ValueError, match=r"no weight 'kernel_u'"):
        optimize.prune_low_magnitude(full, {"kernel_u": 0.5})
    low = case_model("FastGRNNCell", {"units": 4, "w_rank": 2})
    with pytest.raises(ValueError, match=r"\['kernel', 'kernel_u', 'kernel_v', 'recurrent_kernel'"):
        optimize.prune_low_magnitude(low, {"zeta": 0.5})


def test_prune_rejects_non_recurrent_and_bad_arguments():
    model = case_model("FastGRNNCell", {"units": 4})
    with pytest.raises(ValueError, match=r"'dense.*' of class Dense.*expected an RNN layer"):
        optimize.prune_low_magnitude(keras.layers.Dense(3), 0.5)
    with pytest.raises(ValueError, match=r"are not recurrent layers.*Expected names among"):
        optimize.prune_low_magnitude(model, 0.5, layers=[model.layers[1].name])
    dense_only = keras.Sequential([keras.Input((F,)), keras.layers.Dense(2)], name="mlp")
    with pytest.raises(ValueError, match="'mlp', which has no supported recurrent layer"):
        optimize.prune_low_magnitude(dense_only, 0.5)
    with pytest.raises(ValueError, match="schedule='cubic'"):
        optimize.prune_low_magnitude(model, 0.5, schedule="cubic")
    with pytest.raises(ValueError, match="end_step=-1"):
        optimize.prune_low_magnitude(model, 0.5, schedule="polynomial")
    with pytest.raises(ValueError, match="frequency=0"):
        optimize.prune_low_magnitude(model, 0.5, frequency=0)
    pruned = optimize.prune_low_magnitude(model, 0.5)
    with pytest.raises(ValueError, match="already wrapped for pruning"):
        optimize.prune_low_magnitude(pruned, 0.5)


# -- iterative hard thresholding ---------------------------------------------------------------
class Recorder(keras.callbacks.Callback):
    """Snapshots of the targeted weights after every batch and epoch (runs after the IHT)."""

    def __init__(self, iht):
        super().__init__()
        self.iht = iht
        self.epochs: list[dict[str, np.ndarray]] = []
        self.batches: list[tuple[int, dict[str, np.ndarray]]] = []

    def _snapshot(self):
        return {t.key: t.variable.numpy().copy() for t in self.iht.targets}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((self.epoch, self._snapshot()))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self._snapshot())


def fit_iht(model, iht, rng, epochs, jit_compile=False, run_eagerly=False):
    compile_model(model, jit_compile=jit_compile, run_eagerly=run_eagerly)
    recorder = Recorder(iht)
    x, y = data(rng)
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                        callbacks=[iht, recorder])
    return history, recorder


JIT_CASE = ("FastGRNNCell", {"units": 6, "w_rank": 2, "u_rank": 3})


@pytest.mark.parametrize("case_id,name,config,jit_compile",
                         [(*c, False) for c in CASES]
                         + [pytest.param("jit", *JIT_CASE, True, marks=pytest.mark.slow)],
                         ids=IDS + ["FastGRNNCell-jit_compile"])
def test_hard_thresholding_three_phases(case_id, name, config, jit_compile, rng):
    model = case_model(name, config)
    iht = optimize.HardThresholding(density_of(model), dense_epochs=3, iht_epochs=3)
    # With jit_compile the callback must assign the values outside the compiled step.
    history, rec = fit_iht(model, iht, rng, epochs=8, jit_compile=jit_compile)
    rnn = model.layers[0]
    names = optimize.weight_names(rnn)
    assert sorted(t.weight for t in iht.targets) == sorted(names)
    keys = [f"sparsity/{rnn.name}/{n}" for n in names]

    for epoch in range(3):  # phase 1 leaves the weights dense
        for key in keys:
            assert np.count_nonzero(rec.epochs[epoch][key]) == rec.epochs[epoch][key].size, key
    end_of_iht = rec.epochs[5]
    for key, weight_name in zip(keys, names):
        values = end_of_iht[key]
        want = expected_nonzeros_iht(values.size, DENSITY[base(weight_name)])
        assert np.count_nonzero(values) == want, key
        support = values != 0
        for epoch, snapshot in rec.batches:  # phase 3: the support is frozen, batch by batch
            if epoch >= 6:
                np.testing.assert_array_equal(snapshot[key] != 0, support, err_msg=key)
                assert np.all(snapshot[key][~support] == 0), key
        assert not np.array_equal(rec.epochs[7][key], values), f"{key} was not fine-tuned"
        sparsity = 1.0 - want / values.size
        np.testing.assert_allclose(history.history[key], [0.0] * 3 + [sparsity] * 5, atol=1e-12)
    assert history.history["iht_phase"] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert iht.phase == "sparse"


def test_hard_thresholding_selects_layers_including_stock(rng):
    inputs = keras.Input((T, F))
    h = keras.layers.GRU(6, return_sequences=True, name="gru")(inputs)
    h = keras.layers.LSTM(5, name="lstm")(h)
    model = keras.Model(inputs, keras.layers.Dense(OUT)(h))
    iht = optimize.HardThresholding(0.5, dense_epochs=0, iht_epochs=1, layers=["lstm"])
    history, _ = fit_iht(model, iht, rng, epochs=2, run_eagerly=True)  # 8 steps: no tracing
    lstm, gru = model.get_layer("lstm").cell, model.get_layer("gru").cell
    for weight in (lstm.kernel, lstm.recurrent_kernel):
        size = weight.shape.num_elements()
        assert np.count_nonzero(weight.numpy()) == expected_nonzeros_iht(size, 0.5)
    assert np.count_nonzero(gru.kernel.numpy()) == gru.kernel.shape.num_elements()
    assert {k for k in history.history if k.startswith("sparsity/")} == {
        "sparsity/lstm/kernel", "sparsity/lstm/recurrent_kernel"}


def test_hard_thresholding_frequency(rng):
    model = case_model("FastGRNNCell", {"units": 6})
    iht = optimize.HardThresholding(0.25, dense_epochs=0, iht_epochs=1, frequency=2)
    _, rec = fit_iht(model, iht, rng, epochs=1)
    kernel = [snapshot["sparsity/" + model.layers[0].name + "/kernel"]
              for _, snapshot in rec.batches]
    want = expected_nonzeros_iht(kernel[0].size, 0.25)
    assert np.count_nonzero(kernel[0]) == kernel[0].size  # batch 1: not yet thresholded
    assert np.count_nonzero(kernel[1]) == want  # batch 2: thresholded
    np.testing.assert_array_equal(kernel[2] != 0, kernel[1] != 0)  # batch 3: support re-applied
    assert np.count_nonzero(kernel[3]) == want  # batch 4: thresholded again


def test_hard_thresholding_without_iht_epochs_freezes_at_fine_tuning(rng):
    model = case_model("FastGRNNCell", {"units": 6, "w_rank": 2, "u_rank": 3})
    iht = optimize.HardThresholding({"recurrent_kernel": 0.5}, dense_epochs=1, iht_epochs=0)
    history, rec = fit_iht(model, iht, rng, epochs=2)
    cell = model.layers[0].cell
    assert np.count_nonzero(cell.kernel_u.numpy()) == cell.kernel_u.shape.num_elements()
    for weight in (cell.recurrent_kernel_u, cell.recurrent_kernel_v):
        assert np.count_nonzero(weight.numpy()) == expected_nonzeros_iht(18, 0.5)
    assert history.history["iht_phase"] == [1, 3]


def test_hard_thresholding_a_qat_model(rng):
    # EdgeML's order is IHT then quantization; thresholding inside QAT works too: the callback
    # finds the variables behind the fake-quantized attributes through the wrapper.
    qat = optimize.quantize_model(case_model("FastGRNNCell", {"units": 6}))
    iht = optimize.HardThresholding({"kernel": 0.2, "recurrent_kernel": 0.3}, dense_epochs=0,
                                    iht_epochs=1)
    fit_iht(qat, iht, rng, epochs=2, run_eagerly=True)
    assert sorted(t.weight for t in iht.targets) == ["kernel", "recurrent_kernel"]
    for target in iht.targets:
        values = target.variable.numpy()
        assert np.count_nonzero(values) == expected_nonzeros_iht(values.size, target.density)
    qat(data(rng, 2)[0], training=False)
    used = qat.layers[1].layer.cell.kernel.numpy()  # the fake-quantized kernel: zeros stay zero
    assert np.count_nonzero(used) <= expected_nonzeros_iht(used.size, DENSITY["kernel"])


def test_hard_threshold_mask_ties_are_deterministic():
    mask = optimize.hard_threshold_mask(np.array([[1.0, -1.0], [1.0, 0.5]]), 0.5)
    np.testing.assert_array_equal(mask, [[True, True], [False, False]])
    assert optimize.hard_threshold_mask(np.ones(10), 0.01).sum() == 1  # keeps at least one


@pytest.mark.parametrize("density", [0.0, 1.5, -0.2, True, "0.5", {"kernel": 0.0}, {}])
def test_hard_thresholding_rejects_density(density):
    with pytest.raises(ValueError, match=r"density"):
        optimize.HardThresholding(density, dense_epochs=1, iht_epochs=1)


def test_hard_thresholding_rejects_bad_epochs_and_names(rng):
    with pytest.raises(ValueError, match="dense_epochs=-1"):
        optimize.HardThresholding(0.5, dense_epochs=-1, iht_epochs=1)
    with pytest.raises(ValueError, match="iht_epochs=2.5"):
        optimize.HardThresholding(0.5, dense_epochs=1, iht_epochs=2.5)
    with pytest.raises(ValueError, match="frequency=0"):
        optimize.HardThresholding(0.5, dense_epochs=1, iht_epochs=1, frequency=0)
    model = case_model("FastGRNNCell", {"units": 4})
    iht = optimize.HardThresholding({"kernel": 0.5, "nu": 0.5}, dense_epochs=1, iht_epochs=1)
    with pytest.raises(ValueError, match=r"no weight 'nu'.*\['kernel', 'recurrent_kernel'\]"):
        fit_iht(model, iht, rng, epochs=1)
    iht = optimize.HardThresholding(0.5, dense_epochs=1, iht_epochs=1, layers=["nope"])
    with pytest.raises(ValueError, match=r"\['nope'\] are not recurrent layers"):
        fit_iht(model, iht, rng, epochs=1)


# -- the frozen support is saved with the model ------------------------------------------------
def thresholded(name, config, rng, run_eagerly=False):
    """A model after the recipe (1 dense, 1 IHT, 1 sparse epoch): its support is frozen."""
    model = case_model(name, config)
    iht = optimize.HardThresholding(density_of(model), dense_epochs=1, iht_epochs=1)
    fit_iht(model, iht, rng, epochs=3, run_eagerly=run_eagerly)
    return model, {t.weight: t.variable.numpy().copy() for t in iht.targets}


def targeted(model, names):
    cell = optimize.recurrent_cell(model.layers[0])
    return {n: cell_variable(cell, n, model.layers[0]).numpy() for n in names}


def resume(model, rng, callback=None, initial_epoch=3, run_eagerly=False):
    compile_model(model, run_eagerly=run_eagerly)
    x, y = data(rng)
    model.fit(x, y, batch_size=BATCH, epochs=initial_epoch + 1, initial_epoch=initial_epoch,
              verbose=0, callbacks=[callback] if callback else [])


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_support_survives_keras_save_and_training_without_the_callback(case_id, name, config,
                                                                       rng, tmp_path):
    # Eagerly (a few steps do not repay tracing); the next test covers graph mode.
    model, before = thresholded(name, config, rng, run_eagerly=True)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    resume(loaded, rng, run_eagerly=True)  # no callback: only the SupportMask constraints
    after = targeted(loaded, before)
    for weight, values in before.items():
        want = expected_nonzeros_iht(values.size, DENSITY[base(weight)])
        assert np.count_nonzero(values) == want, weight
        np.testing.assert_array_equal(after[weight] != 0, values != 0, err_msg=weight)
    # Trained (a factor whose kept entries meet only pruned ones in the product gets no
    # gradient, so not necessarily every weight moves).
    assert any(not np.array_equal(after[w], before[w]) for w in before)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_support_survives_resume_with_and_without_the_callback(suffix, rng, tmp_path):
    name, config = JIT_CASE
    model, before = thresholded(name, config, rng)
    path = optimize.save_model(model, tmp_path / f"m{suffix}")

    # Control: the same model without its SupportMask constraints turns dense when trained,
    # so the checks below can fail.
    control = optimize.load_model(path)
    cell = optimize.recurrent_cell(control.layers[0])
    cell.kernel_constraint = cell.recurrent_constraint = None
    control = keras.Sequential.from_config(control.get_config())
    control.set_weights(optimize.load_model(path).get_weights())
    resume(control, rng)
    assert sum(np.count_nonzero(v) for v in targeted(control, before).values()) > sum(
        np.count_nonzero(v) for v in before.values())

    # Without the callback, after a reload.
    loaded = optimize.load_model(path)
    resume(loaded, rng)
    for weight, values in targeted(loaded, before).items():
        np.testing.assert_array_equal(values != 0, before[weight] != 0, err_msg=weight)

    # With the callback, in phase 3: it takes the masks from the model rather than selecting
    # anew. One kept entry set to exactly zero tells the two apart: a new selection would drop
    # it (ties go to the lower index), the saved mask keeps it and training revives it.
    loaded = optimize.load_model(path)
    variable = cell_variable(optimize.recurrent_cell(loaded.layers[0]),
                                                "recurrent_kernel_v", loaded.layers[0])
    values = variable.numpy()
    kept = np.flatnonzero(values)[-1]
    values.flat[kept] = 0.0
    variable.assign(values)
    iht = optimize.HardThresholding(density_of(loaded), dense_epochs=1, iht_epochs=1)
    resume(loaded, rng, callback=iht)
    assert iht.phase == "sparse"
    for weight, values in targeted(loaded, before).items():
        np.testing.assert_array_equal(values != 0, before[weight] != 0, err_msg=weight)

    # Without the callback, in the same session after a fit with it (the train step is traced
    # again with the constraints).
    resume(loaded, rng, initial_epoch=4)
    for weight, values in targeted(loaded, before).items():
        np.testing.assert_array_equal(values != 0, before[weight] != 0, err_msg=weight)


def test_restarting_the_recipe_frees_the_saved_support(rng, tmp_path):
    model, before = thresholded("FastGRNNCell", {"units": 6}, rng)
    cell = model.layers[0].cell
    assert isinstance(cell.kernel_constraint, optimize.SupportMask)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    iht = optimize.HardThresholding(density_of(loaded), dense_epochs=1, iht_epochs=1)
    resume(loaded, rng, callback=iht, initial_epoch=0)  # phase 1 again: dense training
    cell = loaded.layers[0].cell
    assert cell.kernel_constraint is None and cell.recurrent_constraint is None
    for weight, values in targeted(loaded, before).items():
        assert np.count_nonzero(values) == values.size, weight


def test_support_mask_keeps_another_constraint_and_round_trips():
    mask = np.array([[True, False], [False, True]])
    constraint = optimize.SupportMask({"kernel_u": mask, "kernel_v": ~mask},
                                      constraint=keras.constraints.NonNeg())
    config = keras.constraints.serialize(constraint)
    copy = keras.constraints.deserialize(json.loads(json.dumps(config)))
    assert isinstance(copy.constraint, keras.constraints.NonNeg)
    np.testing.assert_array_equal(copy.masks["kernel_u"], mask)
    values = np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32)
    u = tf.Variable(values, name="kernel_u")
    v = tf.Variable(values, name="kernel_v")
    w = tf.Variable(values, name="bias")  # not masked: only the inner constraint applies
    np.testing.assert_array_equal(copy(u).numpy(), [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(copy(v).numpy(), [[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(copy(w).numpy(), [[0.0, 2.0], [3.0, 0.0]])
    big = np.random.default_rng(0).random((37, 11)) < 0.3  # not a multiple of 8 bits
    again = optimize.SupportMask.from_config(optimize.SupportMask({"k": big}).get_config())
    np.testing.assert_array_equal(again.masks["k"], big)
    with pytest.raises(ValueError, match=r"shape \(3, 3\).*shape \(2, 2\)"):
        copy(tf.Variable(np.ones((3, 3), np.float32), name="kernel_u"))


# -- quantization-aware training ---------------------------------------------------------------
def calibrate(qat, float_model, x, rnn_weight_scale=1.0):
    """Set every range of the QAT model as a calibration pass on ``x`` would.

    Weight ranges are ``±max|w|`` (what ``LastValueQuantizer`` computes in training), those of
    the recurrent layer times ``rnn_weight_scale``; activation ranges are the float model's min
    and max of each layer output on ``x``, widened to include 0 as tfmot's quantizers do.
    """
    outputs = keras.Model(float_model.inputs, [layer.output for layer in float_model.layers])(x)
    ranges = {"input": value_range(x)}
    ranges.update({layer.name: value_range(o.numpy())
                   for layer, o in zip(float_model.layers, outputs)})
    for layer in qat.layers:
        variables = {short(v): v for v in layer.weights}
        if isinstance(layer, _tfmot.QuantizeLayer):
            variables[layer.name + "_min"].assign(ranges["input"][0])
            variables[layer.name + "_max"].assign(ranges["input"][1])
            continue
        scale = rnn_weight_scale if optimize.is_recurrent(layer) else 1.0
        for weight in layer.weights:
            if short(weight) + "_min" in variables:
                bound = scale * float(np.abs(weight.numpy()).max())
                variables[short(weight) + "_min"].assign(-bound)
                variables[short(weight) + "_max"].assign(bound)
        low, high = ranges[layer.layer.name]
        for prefix in ("output", "post_activation"):
            if prefix + "_min" in variables:
                variables[prefix + "_min"].assign(low)
                variables[prefix + "_max"].assign(high)
    return ranges


def value_range(values) -> tuple[float, float]:
    return min(float(values.min()), 0.0), max(float(values.max()), 0.0)


def fake_quant(x, low, high, narrow_range=False):
    return tf.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8,
                                                        narrow_range=narrow_range).numpy()


def oracle(float_model, x, ranges, quantized: set[str], rnn_weight_scale=1.0):
    """The float model with exactly what the quantization module docstring says is quantized.

    Per-tensor symmetric narrow-range int8 weights (the cell's quantizable weights and the Dense
    kernel), and 8-bit input, RNN output and Dense output; nothing else.
    """
    rnn, dense = float_model.layers
    originals = {}
    for layer, names, scale in ((rnn, quantized, rnn_weight_scale), (dense, {"kernel"}, 1.0)):
        for weight in layer.weights:
            if short(weight) in names:
                originals[weight.ref()] = weight.numpy()
                bound = scale * float(np.abs(weight.numpy()).max())
                weight.assign(fake_quant(weight.numpy(), -bound, bound, narrow_range=True))
    try:
        h = rnn(fake_quant(x, *ranges["input"])).numpy()
        h = fake_quant(h, *ranges[rnn.name])
        return fake_quant(dense(h).numpy(), *ranges[dense.name])
    finally:
        for layer in (rnn, dense):
            for weight in layer.weights:
                if weight.ref() in originals:
                    weight.assign(originals[weight.ref()])


@pytest.mark.parametrize("case_id,name,config", CASES + [(s, s, None) for s in sorted(STOCK)],
                         ids=IDS + sorted(STOCK))
def test_qat_model_matches_float_model_and_oracle(case_id, name, config, rng):
    float_model = case_model(name, config)
    x, _ = data(rng)
    quantized_names = set(optimize.weight_names(float_model.layers[0], "quantizable"))
    qat = optimize.quantize_model(float_model)
    assert isinstance(qat.layers[0], _tfmot.QuantizeLayer)
    assert isinstance(qat.layers[1].quantize_config, optimize.CellQuantizeConfig)
    want = float_model(x).numpy()

    ranges = calibrate(qat, float_model, x)
    got = qat(x, training=False).numpy()
    low, high = ranges[float_model.layers[1].name]
    lsb = (high - low) / 255
    assert np.abs(got - want).max() <= qat_vs_float_lsb(float_model) * lsb
    np.testing.assert_allclose(got, oracle(float_model, x, ranges, quantized_names),
                               atol=QAT_VS_ORACLE_LSB * lsb * 1.001, rtol=0)

    # Clip the recurrent weights to an eighth of their range: the output moves far from the
    # float model and still follows the oracle, so the cell computes with the fake-quantized
    # weights (not with the variables or with tensors cached when it was built).
    ranges = calibrate(qat, float_model, x, rnn_weight_scale=1 / 8)
    got = qat(x, training=False).numpy()
    assert np.abs(got - want).max() > 3 * QAT_VS_FLOAT_LSB * lsb
    np.testing.assert_allclose(
        got, oracle(float_model, x, ranges, quantized_names, rnn_weight_scale=1 / 8),
        atol=QAT_VS_ORACLE_LSB * lsb * 1.001, rtol=0)


@pytest.mark.parametrize("case_id,name,config", CASES, ids=IDS)
def test_qat_trains_with_int8_weights_and_round_trips(case_id, name, config, rng, tmp_path):
    qat = optimize.quantize_model(case_model(name, config))
    # Eagerly: one step does not repay tracing; test_qat_stock_layers_train covers graph mode.
    compile_model(qat, run_eagerly=True)
    x, y = data(rng, BATCH)
    history = qat.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # one step
    assert np.isfinite(history.history["loss"][0])

    wrapper = qat.layers[1]
    cell = wrapper.layer.cell
    got = qat(x, training=False).numpy()  # eager: the cell now holds this call's weights
    ranges = {short(v): float(v.numpy()[0]) if v.shape.rank else float(v.numpy())
              for v in wrapper.weights if short(v).endswith(("_min", "_max"))}
    for weight_name in optimize.weight_names(cell, "quantizable"):
        used = getattr(cell, weight_name)
        assert not isinstance(used, tf.Variable), weight_name  # the fake-quantized tensor
        low, high = ranges[weight_name + "_min"], ranges[weight_name + "_max"]
        assert low == -high and high > 0, weight_name  # symmetric, per tensor
        levels = used.numpy() / (high / 127)
        np.testing.assert_allclose(levels, np.round(levels), atol=GRID_ATOL, rtol=0)
        assert np.abs(np.round(levels)).max() <= 127, weight_name
        # not collapsed (a tiny Kronecker factor has only two entries)
        assert len(np.unique(np.round(levels))) > min(2, used.numpy().size - 1), weight_name
    assert ranges["output_min"] < ranges["output_max"]

    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = optimize.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), got)
    compile_model(loaded, run_eagerly=True)
    assert np.isfinite(loaded.fit(x, y, batch_size=BATCH, verbose=0).history["loss"][0])


@pytest.mark.parametrize("stock", sorted(STOCK))
def test_qat_stock_layers_train(stock, rng):
    qat = optimize.quantize_model(case_model(stock, None))
    assert isinstance(qat.layers[1].quantize_config, optimize.CellQuantizeConfig)
    compile_model(qat)
    x, y = data(rng, BATCH)
    assert np.isfinite(qat.fit(x, y, batch_size=BATCH, verbose=0).history["loss"][0])


def test_quantize_annotate_refuses_and_return_state():
    with pytest.raises(ValueError, match="'head' of class Dense"):
        optimize.quantize_annotate(keras.layers.Dense(2, name="head"))
    pruned = optimize.prune_low_magnitude(case_model("FastGRNNCell", {"units": 4}), 0.5)
    with pytest.raises(ValueError, match="strip_pruning"):
        optimize.quantize_model(pruned)
    with pytest.raises(TypeError, match="expected a tf_keras Sequential or functional Model"):
        optimize.quantize_model(keras.layers.RNN(FastGRNNCell(3)))
    layer = keras.layers.RNN(FastGRNNCell(3), return_state=True)
    assert optimize.CellQuantizeConfig().get_output_quantizers(layer) == []
    annotated = optimize.quantize_annotate(keras.layers.RNN(FastGRNNCell(3)))
    assert isinstance(annotated.quantize_config, optimize.CellQuantizeConfig)
    assert keras.saving.get_registered_name(optimize.CellQuantizeConfig) == (
        "keras_rnnedge>CellQuantizeConfig")
