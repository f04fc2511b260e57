"""Grow-and-prune training as a Keras callback.

Dai, Yin, Jha, "Grow and Prune Compact, Fast, and Accurate LSTMs" (IEEE Transactions on
Computers, 2020), after NeST (Dai, Yin, Jha, 2019): the connections and the weights are learned
together. Training starts from a sparse *seed* architecture (a random support of each weight);
a **growth** phase activates the dormant connections whose loss gradient, accumulated over
training batches, is the largest in magnitude; a **pruning** phase removes the active
connections of smallest magnitude, step by step down to a target density; phases alternate as
the schedule says, and the network trains between them with its support enforced.

The callback is generic: it acts on the prunable weights of every recurrent cell (the matrices
of any family, their factors and cores included) and on the kernels of ``Dense`` layers. Like
:class:`~keras_rnnedge.optimize.HardThresholding` it adds no variables and no wrapper: it assigns
masked values between batches. When training ends the supports are stored in the model as
:class:`~keras_rnnedge.cells.SupportMask` constraints (saved with it, enforced in any later
training); the converters then store the zeros as they store any sparse matrix (CSR in the C
where it is smaller).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from keras_rnnedge._compat import keras, np, tf
from keras_rnnedge.optimize.recurrent import (
    cell_variable,
    recurrent_cell,
    resolve_weight_values,
    select_recurrent_layers,
    unwrap,
)
from keras_rnnedge.optimize.thresholding import _Target

__all__ = ["GrowAndPrune", "grow_mask", "prune_mask"]

PHASES = ("grow", "prune", "train")


def grow_mask(mask: np.ndarray, score: np.ndarray, count: int) -> np.ndarray:
    """``mask`` with the ``count`` dormant entries of largest ``score`` activated (ties: the
    lower flat index first)."""
    mask = np.asarray(mask, bool)
    flat = np.where(mask.ravel(), -np.inf, np.asarray(score, np.float64).ravel())
    count = int(min(max(count, 0), int((~mask).sum())))
    out = mask.ravel().copy()
    out[np.argsort(-flat, kind="stable")[:count]] = True
    return out.reshape(mask.shape)


def prune_mask(mask: np.ndarray, values: np.ndarray, density: float) -> np.ndarray:
    """``mask`` keeping only the ``max(1, round(density * size))`` active entries of largest
    magnitude (never more than are active)."""
    mask = np.asarray(mask, bool)
    keep = min(max(1, int(round(density * mask.size))), int(mask.sum()))
    score = np.where(mask.ravel(), np.abs(np.asarray(values, np.float64)).ravel(), -1.0)
    out = np.zeros(mask.size, bool)
    out[np.argsort(-score, kind="stable")[:keep]] = True
    return out.reshape(mask.shape)


def _fraction(value, argument: str, low_open: bool = True) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
          and (0 < value <= 1 if low_open else 0 <= value))
    if not ok:
        expected = "a float in (0, 1]" if low_open else "a non-negative float"
        raise ValueError(f"Received {argument}={value!r}, expected {expected}.")
    return float(value)


def _ratio(value, argument: str) -> float:
    return _fraction(value, argument, low_open=False)


def _schedule(schedule) -> tuple[tuple[str, int], ...]:
    try:
        items = [(str(p), e) for p, e in schedule]
    except (TypeError, ValueError):
        items = None
    if not items or any(p not in PHASES or isinstance(e, bool)
                        or not isinstance(e, numbers.Integral) or e < 1 for p, e in items):
        raise ValueError(f"Received schedule={schedule!r}, expected a non-empty list of "
                         f"(phase, epochs) pairs with phase in {PHASES} and epochs >= 1, e.g. "
                         "[('grow', 2), ('prune', 4), ('train', 2)].")
    return tuple((p, int(e)) for p, e in items)


class GrowAndPrune(keras.callbacks.Callback):
    """Grow-and-prune training (Dai, Yin, Jha 2020) of every recurrent cell and Dense kernel.

    Epochs follow ``schedule``, a list of ``(phase, epochs)``; epochs past its end train with the
    last support. In order:

    - at the start of training, each targeted weight without a support gets a random *seed*
      support of ``seed_density`` (seeded by ``seed``);
    - ``"grow"``: at the start of each of its epochs, the loss gradient is accumulated
      (``|∂L/∂w|`` summed) over ``growth_batches`` batches of ``data``, and each weight gains
      ``round(growth_ratio * active)`` of its dormant entries, those of largest accumulated
      gradient (a per-layer ratio). A grown entry starts at zero; the optimizer moves it from
      the next batch;
    - ``"prune"``: at the start of each of its epochs each weight keeps its largest-magnitude
      active entries, the density stepping linearly from where the phase began to ``density``
      at its last epoch;
    - ``"train"``: the support is fixed.

    The support is enforced after every batch. ``logs["density/<layer>/<weight>"]`` (fraction of
    non-zeros) and ``logs["gp_phase"]`` (1 grow, 2 prune, 3 train) are written at each epoch
    end. When training ends the supports are stored in the model as
    :class:`~keras_rnnedge.cells.SupportMask` constraints, so they are saved with it; given a
    model holding such supports, the callback starts from them instead of a seed.

    Args:
        data: training data for the gradients of the growth phase: ``(x, y)`` arrays or a
            ``tf.data.Dataset`` of ``(x, y)`` batches (the loss is the compiled one).
        density: target fraction of non-zeros of each weight after pruning, in (0, 1]; or a
            dict from weight (base) names (``kernel``, ``gate_kernel``...) and Dense layer names
            to densities; weights it does not name are not targeted.
        seed_density: density of the random seed support, in (0, 1] (1: start dense).
        growth_ratio: new connections per growth step as a fraction of the active ones (a
            float >= 0, or a dict like ``density``).
        schedule: ``(phase, epochs)`` pairs, ``phase`` in ``"grow"``, ``"prune"``, ``"train"``.
        growth_batches: batches of ``data`` per growth step (default: all of it).
        batch_size: batch size for array ``data``.
        layers: names of the recurrent layers to act on (default: all).
        dense: also act on the kernels of ``Dense`` layers (``True``), on those named (a list),
            or on none (``False``).
        seed: seed of the seed supports.

    Example:
        >>> from keras_rnnedge.optimize import GrowAndPrune
        >>> gp = GrowAndPrune((x_train, y_train), density=0.1, seed_density=0.3,
        ...                   schedule=[("grow", 3), ("prune", 6), ("train", 3)])  # doctest: +SKIP
        >>> model.fit(x_train, y_train, epochs=12, callbacks=[gp])  # doctest: +SKIP
    """

    def __init__(self, data, *, density: float | Mapping[str, float],
                 seed_density: float = 0.5, growth_ratio: float | Mapping[str, float] = 0.5,
                 schedule: Sequence = (("grow", 2), ("prune", 4), ("train", 2)),
                 growth_batches: int | None = None, batch_size: int = 64,
                 layers: Sequence[str] | None = None, dense: bool | Sequence[str] = True,
                 seed: int = 0):
        super().__init__()
        self.density = self._spec(density, "density", _fraction)
        self.seed_density = _fraction(seed_density, "seed_density")
        self.growth_ratio = self._spec(growth_ratio, "growth_ratio", _ratio)
        self.schedule = _schedule(schedule)
        for value, name in ((growth_batches, "growth_batches"), (batch_size, "batch_size")):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, numbers.Integral) or value < 1):
                raise ValueError(f"Received {name}={value!r}, expected a positive integer.")
        if batch_size is None:
            raise ValueError("Received batch_size=None, expected a positive integer.")
        self.growth_batches = growth_batches
        self.batch_size = int(batch_size)
        self.data = self._dataset(data)
        if layers is not None and (isinstance(layers, str) or not isinstance(layers, Sequence)):
            raise TypeError(f"Received layers={layers!r}, expected a list of layer names or "
                            "None.")
        self.layers = None if layers is None else list(layers)
        if not isinstance(dense, bool) and (isinstance(dense, str)
                                            or not isinstance(dense, Sequence)):
            raise TypeError(f"Received dense={dense!r}, expected True, False or a list of "
                            "Dense layer names.")
        self.dense = dense if isinstance(dense, bool) else list(dense)
        self.seed = int(seed)
        self.phase: str = self.schedule[0][0]
        self.targets: list[_Target] = []
        self._prune_from: dict[str, float] = {}
        self._gradients = None

    @staticmethod
    def _spec(value, argument, check):
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"Received {argument}={{}}, expected a float or a non-empty "
                                 "dict of weight or layer names to values.")
            return {str(k): check(v, f"{argument}[{k!r}]") for k, v in value.items()}
        return check(value, argument)

    def _dataset(self, data):
        if isinstance(data, tf.data.Dataset):
            return data
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError(f"Received data of type {type(data).__name__}, expected (x, y) "
                             "arrays or a tf.data.Dataset of (x, y) batches: the growth phase "
                             "needs the loss gradient on training data.")
        x, y = (np.asarray(a) for a in data)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"Received data with {len(x)} inputs and {len(y)} targets, "
                             "expected the same non-zero number.")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(self.batch_size)

    # -- targets ------------------------------------------------------------------------------
    @staticmethod
    def _value_for(spec, names: Sequence[str]):
        if not isinstance(spec, Mapping):
            return spec
        return next((spec[n] for n in names if n in spec), None)

    def _dense_layers(self) -> list:
        if self.dense is False:
            return []
        found, stack = [], [self.model]
        while stack:
            layer = unwrap(stack.pop(0))
            if isinstance(layer, keras.Model):
                stack.extend(layer.layers)
            elif isinstance(layer, keras.layers.Dense):
                found.append(layer)
        if self.dense is not True:
            names = {d.name for d in found}
            unknown = [n for n in self.dense if n not in names]
            if unknown:
                raise ValueError(f"Received dense={self.dense!r}, but {unknown!r} are not Dense "
                                 f"layers of the model. Expected names among {sorted(names)}.")
            found = [d for d in found if d.name in self.dense]
        return found

    def _collect(self) -> list[_Target]:
        targets: list[_Target] = []
        dense = self._dense_layers()
        dense_names = {d.name for d in dense}

        def cell_spec(spec):
            if isinstance(spec, Mapping):
                return {k: v for k, v in spec.items() if k not in dense_names} or None
            return spec

        for outer, rnn in select_recurrent_layers(self.model, self.layers):
            cell = recurrent_cell(rnn)
            spec = cell_spec(self.density)
            if spec is None:
                continue
            densities = resolve_weight_values(cell, spec, argument="density",
                                              check=_fraction, layer_name=rnn.name)
            ratios = resolve_weight_values(cell, cell_spec(self.growth_ratio) or 0.0,
                                           argument="growth_ratio", check=_ratio,
                                           layer_name=rnn.name)
            for name, value in densities.items():
                t = _Target(rnn.name, cell, name, cell_variable(cell, name, outer), value)
                t.growth = ratios.get(name, 0.0)
                targets.append(t)
        for layer in dense:
            value = self._value_for(self.density, (layer.name,))
            if value is None:
                continue
            t = _Target(layer.name, layer, "kernel", layer.kernel, value)
            growth = self._value_for(self.growth_ratio, (layer.name,))
            t.growth = 0.0 if growth is None else growth
            targets.append(t)
        for t in targets:
            t.key = t.key.replace("sparsity/", "density/", 1)
        if not targets:
            raise ValueError(
                "Received a model without weights to grow and prune: no recurrent cell or Dense "
                f"kernel is targeted (density={self.density!r}, layers={self.layers!r}, "
                f"dense={self.dense!r}). Expected a model with recurrent or Dense layers and "
                "a density that names some of their weights.")
        return targets

    # -- phases -------------------------------------------------------------------------------
    def phase_of(self, epoch: int) -> tuple[str, int, int]:
        """``(phase, index of the epoch within the phase, epochs of the phase)``."""
        start = 0
        for phase, epochs in self.schedule:
            if epoch < start + epochs:
                return phase, epoch - start, epochs
            start += epochs
        return "train", 0, 1

    def _gradient_sums(self) -> list[np.ndarray]:
        variables = [t.variable for t in self.targets]
        model = self.model
        if self._gradients is None:
            @tf.function
            def gradients(x, y):
                with tf.GradientTape() as tape:
                    loss = model.compute_loss(x, y, model(x, training=False))
                return [tf.abs(g) if g is not None else tf.zeros_like(v)
                        for g, v in zip(tape.gradient(loss, variables), variables)]
            self._gradients = gradients
        sums = [np.zeros(v.shape, np.float64) for v in variables]
        data = self.data if self.growth_batches is None else self.data.take(self.growth_batches)
        for x, y in data:
            for s, g in zip(sums, self._gradients(x, y)):
                s += g.numpy()
        return sums

    def _grow(self) -> None:
        sums = self._gradient_sums()
        for t, score in zip(self.targets, sums):
            count = int(round(t.growth * t.mask.sum()))
            t.mask = grow_mask(t.mask, score, count)

    def _prune(self, index: int, epochs: int) -> None:
        for t in self.targets:
            start = self._prune_from.setdefault(t.key, float(t.mask.mean()))
            target = min(t.density, start)
            density = start + (target - start) * (index + 1) / epochs
            t.mask = prune_mask(t.mask, t.variable.numpy(), density)

    def _apply_masks(self) -> None:
        for t in self.targets:
            values = t.variable.numpy()
            t.variable.assign(np.where(t.mask, values, 0).astype(values.dtype))

    # -- Keras hooks --------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.targets = self._collect()
        self._gradients = None
        self._prune_from = {}
        rng = np.random.default_rng(self.seed)
        saved = False
        for t in self.targets:
            t.mask = t.saved_mask()
            if t.mask is not None:
                saved = True
            else:  # the seed architecture: a random support
                keep = max(1, int(round(self.seed_density * t.variable.shape.num_elements())))
                flat = np.zeros(t.variable.shape.num_elements(), bool)
                flat[rng.permutation(flat.size)[:keep]] = True
                t.mask = flat.reshape(t.variable.shape)
        if saved:  # training moves the supports: the callback holds them until the end
            for t in self.targets:
                t.store_mask(None)
            for t in self.targets:
                t.sync_variable()
            self.model.train_function = self.model.make_train_function(force=True)
        self._apply_masks()

    def on_epoch_begin(self, epoch, logs=None):
        self.phase, index, epochs = self.phase_of(epoch)
        if self.phase == "grow":
            self._grow()
            self._prune_from = {}
        elif self.phase == "prune":
            if index == 0:
                self._prune_from = {}
            self._prune(index, epochs)
        self._apply_masks()

    def on_train_batch_end(self, batch, logs=None):
        self._apply_masks()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for t in self.targets:
                logs[t.key] = float(np.mean(t.variable.numpy() != 0))
            logs["gp_phase"] = PHASES.index(self.phase) + 1

    def on_train_end(self, logs=None):
        self._apply_masks()
        for t in self.targets:
            t.store_mask(t.mask)
        for t in self.targets:
            t.sync_variable()
        # the next fit traces its train step with the supports now in the model
        self.model.train_function = None

    def densities(self) -> dict[str, float]:
        """Current fraction of non-zeros of each targeted weight, keyed like the logs."""
        return {t.key: float(np.mean(t.variable.numpy() != 0)) for t in self.targets}

    def get_config(self) -> dict[str, Any]:
        return {"density": self.density, "seed_density": self.seed_density,
                "growth_ratio": self.growth_ratio, "schedule": [list(s) for s in self.schedule],
                "growth_batches": self.growth_batches, "batch_size": self.batch_size,
                "layers": self.layers, "dense": self.dense, "seed": self.seed}

