"""EdgeML's three-phase training recipe for sparse FastGRNN, as a Keras callback.

Kusupati et al., "FastGRNN: A Fast, Accurate, Stable and Tiny Kilobyte Sized Gated Recurrent
Neural Network", NeurIPS 2018, Algorithm 1; EdgeML's ``fastTrainer``:

1. dense training for ``dense_epochs`` epochs;
2. iterative hard thresholding (IHT) for ``iht_epochs`` epochs: every ``frequency`` batches each
   targeted weight keeps only its ``round(density * size)`` largest-magnitude entries; between
   two thresholdings the last support is re-applied after each batch (EdgeML's
   ``runSparseTraining``), so the weights leave every batch sparse;
3. sparse fine-tuning for the remaining epochs with the support frozen: the mask at the end of
   phase 2 is re-applied after every batch, so pruned entries stay exactly zero.

Unlike tfmot pruning it adds no variables and no wrapper: the callback reads the weights and
assigns thresholded values between batches, outside the (possibly ``jit_compile``d) train step.

The frozen support is saved with the model: when phase 3 begins, each thresholded weight gets a
:class:`SupportMask` constraint (through the cell's ``kernel_constraint`` /
``recurrent_constraint``, so it is part of the model's config in ``.keras`` and ``.h5`` files).
The optimizer applies it after every step, so a reloaded model keeps its zeros when training
resumes, with or without the callback; a callback given such a model takes its masks from it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from keras_rnnedge._compat import keras, np, tf
from keras_rnnedge.cells.constraints import SupportMask
from keras_rnnedge.optimize.recurrent import (
    cell_variable,
    recurrent_cell,
    resolve_weight_values,
    select_recurrent_layers,
)

__all__ = ["HardThresholding", "SupportMask", "hard_threshold_mask"]

PHASES = ("dense", "iht", "sparse")


def hard_threshold_mask(values: np.ndarray, density: float) -> np.ndarray:
    """Boolean mask of the ``max(1, round(density * size))`` largest-magnitude entries.

    Ties are broken deterministically: among equal magnitudes the lower flat index is kept.

    Args:
        values: the weight values.
        density: fraction of entries to keep, in (0, 1].

    Returns:
        A boolean array of ``values.shape`` with exactly that many ``True`` entries.
    """
    flat = np.abs(np.asarray(values)).ravel()
    keep = max(1, int(round(density * flat.size)))
    order = np.argsort(-flat, kind="stable")
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(np.shape(values))


def _check_density(value, argument):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"Received {argument}={value!r}, expected a float in (0, 1]: the "
                         "fraction of entries kept non-zero (EdgeML's s_W / s_U).")
    return float(value)


def _check_epochs(value, argument):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"Received {argument}={value!r}, expected a non-negative integer "
                         "number of epochs.")
    return int(value)


def _constraint_attribute(cell, weight: str) -> str | None:
    """The cell attribute (and config key) holding the constraint of ``weight``, if any.

    That is the ``<stem>_constraint`` argument whose stem is the longest one that ``weight``
    starts with: ``kernel_u`` → ``kernel_constraint``, ``recurrent_kernel`` →
    ``recurrent_constraint`` (the Keras convention, which the cells follow).
    """
    try:
        config = cell.get_config()
    except NotImplementedError:
        return None
    stems = [key[: -len("_constraint")] for key in config
             if key.endswith("_constraint") and hasattr(cell, key)]
    stems = [stem for stem in stems if weight == stem or weight.startswith(stem + "_")]
    return f"{max(stems, key=len)}_constraint" if stems else None


def _set_variable_constraint(variable, constraint) -> None:
    """Point ``variable`` (and the components of a distributed or autocast variable) at
    ``constraint``: tf.Variable has no public setter, the optimizer reads ``.constraint``."""
    parts = [variable, *getattr(variable, "_values", ()), getattr(variable, "_variable", None)]
    for part in parts:
        if part is not None and hasattr(part, "_constraint"):
            part._constraint = constraint


class _Target:
    """One thresholded weight: its cell, variable, density, log key and current mask."""

    def __init__(self, layer_name: str, cell, weight: str, variable: tf.Variable,
                 density: float):
        self.cell = cell
        self.weight = weight
        self.variable = variable
        self.density = density
        self.key = f"sparsity/{layer_name}/{weight}"
        self.mask: np.ndarray | None = None
        self.attribute = _constraint_attribute(cell, weight)

    def saved_mask(self) -> np.ndarray | None:
        """The mask the model holds for this weight (a :class:`SupportMask`), if any."""
        current = getattr(self.cell, self.attribute) if self.attribute else None
        if isinstance(current, SupportMask):
            mask = current.masks.get(self.weight)
            if mask is not None and tuple(mask.shape) == tuple(self.variable.shape):
                return mask
        return None

    def store_mask(self, mask: np.ndarray | None) -> None:
        """Install ``mask`` in the model (``None``: remove it), keeping any other constraint."""
        if self.attribute is None:
            return
        current = getattr(self.cell, self.attribute)
        if isinstance(current, SupportMask):
            masks, inner = dict(current.masks), current.constraint
        else:
            masks, inner = {}, current
        masks.pop(self.weight, None)
        if mask is not None:
            masks[self.weight] = np.asarray(mask, bool)
        setattr(self.cell, self.attribute, SupportMask(masks, inner) if masks else inner)

    def sync_variable(self) -> None:
        if self.attribute is not None:
            _set_variable_constraint(self.variable, getattr(self.cell, self.attribute))


class HardThresholding(keras.callbacks.Callback):
    """Dense → iterative hard thresholding → sparse fine-tuning (EdgeML's FastGRNN recipe).

    Phases by epoch index ``e`` (``initial_epoch`` counts): ``e < dense_epochs`` dense,
    ``e < dense_epochs + iht_epochs`` IHT, later epochs sparse with a frozen support. Give
    ``fit`` at least ``dense_epochs + iht_epochs`` epochs; the rest are fine-tuning.

    At each epoch end the callback writes ``logs["sparsity/<layer>/<weight>"]`` (fraction of
    zeros of each targeted weight) and ``logs["iht_phase"]`` (1, 2 or 3), so they appear in
    ``History.history`` and the progress bar. :attr:`phase` names the current phase.

    When phase 3 begins, the support is also stored in the model as a :class:`SupportMask`
    constraint of each thresholded weight, so it survives ``model.save`` and keeps the zeros in
    any later training, with or without this callback. Given a model that holds such masks, the
    callback uses them in phase 3 (no new selection), and removes them if it starts in phase 1
    or 2 (the recipe starts again). A cell without a ``<weight>_constraint`` argument in its
    config cannot hold the mask; its support is then kept only while the callback runs.

    Args:
        density: fraction of non-zeros kept, in (0, 1], for every targeted weight, or a dict from
            weight (base) names to densities, e.g. ``{"kernel": 0.2, "recurrent_kernel": 0.3}``.
            A base name covers the full matrix or both of its low-rank factors (EdgeML thresholds
            ``W1, W2`` with ``s_W`` and ``U1, U2`` with ``s_U``). Weights a dict does not name
            stay dense. Targeted weights are the prunable weights of each cell
            (``kernel``/``recurrent_kernel`` or their factors).
        dense_epochs: epochs of phase 1.
        iht_epochs: epochs of phase 2.
        frequency: threshold every ``frequency`` batches in phase 2 (EdgeML's ``k``).
        ramp_epochs: move into thresholding gradually over the first ``ramp_epochs`` IHT epochs
            (0, the default, is EdgeML's jump to the target density at the first IHT batch).
            The density kept goes from 1 to the target along Zhu & Gupta's cubic schedule,
            ``d_t = d + (1 - d) (1 - t / ramp)^3`` per batch, so the first thresholdings remove
            few, small weights; the later IHT epochs run at the target density. Must not exceed
            ``iht_epochs``.
        layers: names of the recurrent layers to threshold (default: every supported one).

    Raises:
        ValueError: for a density outside (0, 1], negative epochs, a non-positive frequency;
            at the start of training, for a weight name a cell lacks or an unknown layer name.

    Example:
        >>> from keras_rnnedge.optimize import HardThresholding
        >>> iht = HardThresholding({"kernel": 0.2, "recurrent_kernel": 0.3},
        ...                        dense_epochs=10, iht_epochs=20)
        >>> # model.fit(x, y, epochs=40, callbacks=[iht])
    """

    def __init__(self, density: float | Mapping[str, float], *, dense_epochs: int,
                 iht_epochs: int, frequency: int = 1, ramp_epochs: int = 0,
                 layers: Sequence[str] | None = None):
        super().__init__()
        if isinstance(density, Mapping):
            if not density:
                raise ValueError("Received density={}, expected a float in (0, 1] or a "
                                 "non-empty dict of weight names to densities.")
            for key, value in density.items():
                _check_density(value, f"density[{key!r}]")
            self.density: float | dict[str, float] = dict(density)
        else:
            self.density = _check_density(density, "density")
        self.dense_epochs = _check_epochs(dense_epochs, "dense_epochs")
        self.iht_epochs = _check_epochs(iht_epochs, "iht_epochs")
        if isinstance(frequency, bool) or not isinstance(frequency, numbers.Integral) \
                or frequency < 1:
            raise ValueError(f"Received frequency={frequency!r}, expected a positive integer "
                             "(threshold every `frequency` batches).")
        self.frequency = int(frequency)
        self.ramp_epochs = _check_epochs(ramp_epochs, "ramp_epochs")
        if self.ramp_epochs > self.iht_epochs:
            raise ValueError(f"Received ramp_epochs={ramp_epochs!r} with iht_epochs="
                             f"{self.iht_epochs}: the ramp to the target density runs inside "
                             "the IHT phase; expected ramp_epochs <= iht_epochs.")
        if layers is not None and (isinstance(layers, str) or not isinstance(layers, Sequence)):
            raise TypeError(f"Received layers={layers!r}, expected a list of layer names or "
                            "None.")
        self.layers = None if layers is None else list(layers)
        self.phase: str = PHASES[0]
        self.targets: list[_Target] = []
        self._iht_batches = 0
        self._ramp_batches = 0
        self._frozen = False
        self._retrace = False

    # -- set-up -------------------------------------------------------------------------------
    def _collect(self) -> list[_Target]:
        targets = []
        for outer, rnn in select_recurrent_layers(self.model, self.layers):
            cell = recurrent_cell(rnn)
            by_name = resolve_weight_values(cell, self.density, argument="density",
                                            check=_check_density, layer_name=rnn.name)
            for name, value in by_name.items():
                targets.append(_Target(rnn.name, cell, name, cell_variable(cell, name, outer),
                                       value))
        if not targets:
            raise ValueError(
                "Received a model without weights to threshold: no supported recurrent layer "
                f"(layers={self.layers!r}). Expected a model with RNN(cell) layers using "
                "keras_rnnedge cells, or LSTM/GRU/SimpleRNN layers.")
        return targets

    def phase_of(self, epoch: int) -> str:
        """The phase (``"dense"``, ``"iht"`` or ``"sparse"``) of an epoch index."""
        if epoch < self.dense_epochs:
            return "dense"
        if epoch < self.dense_epochs + self.iht_epochs:
            return "iht"
        return "sparse"

    # -- thresholding -------------------------------------------------------------------------
    def ramp_fraction(self) -> float:
        """How far the ramp has gone, from 0 to 1 (1 without a ramp, and once it is over)."""
        if self._ramp_batches <= 0:
            return 1.0
        return min(1.0, self._iht_batches / self._ramp_batches)

    def density_now(self, target: float) -> float:
        """The density kept at this point of the IHT phase for a weight of density
        ``target`` (the cubic ramp, then ``target``)."""
        return target + (1.0 - target) * (1.0 - self.ramp_fraction()) ** 3

    def _threshold(self) -> None:
        for t in self.targets:
            values = t.variable.numpy()
            t.mask = hard_threshold_mask(values, self.density_now(t.density))
            t.variable.assign(np.where(t.mask, values, 0).astype(values.dtype))

    def _apply_masks(self) -> None:
        for t in self.targets:
            if t.mask is not None:
                values = t.variable.numpy()
                t.variable.assign(np.where(t.mask, values, 0).astype(values.dtype))

    def _freeze(self) -> None:
        self._ramp_batches = 0  # the frozen support is at the target density
        self._threshold()
        self._frozen = True
        self._store_masks(keep=True)

    def _store_masks(self, keep: bool) -> None:
        """Save the current masks in the model (``keep``) or remove them from it."""
        for t in self.targets:
            t.store_mask(t.mask if keep else None)
        for t in self.targets:  # after all: factors of one matrix share one constraint
            t.sync_variable()
        # A train step traced before reads the old constraints: trace the next one anew.
        self._retrace = True

    # -- Keras hooks --------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.targets = self._collect()
        self._iht_batches = 0
        steps = self.params.get("steps") if self.params else None
        self._ramp_batches = self.ramp_epochs * steps if steps else 0
        if self.ramp_epochs and not steps:
            raise ValueError("HardThresholding(ramp_epochs=...) needs the number of batches per "
                             "epoch: pass training data of known length to fit (arrays, or "
                             "steps_per_epoch= with a generator or dataset).")
        self._retrace = False
        for t in self.targets:
            t.mask = t.saved_mask()
        # A model saved after phase 2 brings its frozen support along.
        self._frozen = all(t.mask is not None for t in self.targets)

    def on_epoch_begin(self, epoch, logs=None):
        self.phase = self.phase_of(epoch)
        if self.phase != "sparse" and any(t.saved_mask() is not None for t in self.targets):
            # The recipe starts again (phase 1 or 2) on a model with a frozen support: free it.
            self._frozen = False
            self._store_masks(keep=False)
            self.model.train_function = self.model.make_train_function(force=True)
            self._retrace = False
        if self.phase == "sparse" and not self._frozen:
            # No IHT epoch ran in this fit (iht_epochs=0 or a later initial_epoch).
            self._freeze()

    def on_train_batch_end(self, batch, logs=None):
        if self.phase == "iht":
            self._iht_batches += 1
            if self._iht_batches % self.frequency == 0:
                self._threshold()
            else:
                self._apply_masks()
        elif self.phase == "sparse":
            self._apply_masks()

    def on_epoch_end(self, epoch, logs=None):
        if self.phase == "iht" and epoch == self.dense_epochs + self.iht_epochs - 1:
            self._freeze()
        if logs is not None:
            for t in self.targets:
                logs[t.key] = float(np.mean(t.variable.numpy() == 0))
            logs["iht_phase"] = PHASES.index(self.phase) + 1

    def on_train_end(self, logs=None):
        if self._retrace:
            # The next fit traces its train step with the constraints now in the model.
            self.model.train_function = None
            self._retrace = False

    def sparsity(self) -> dict[str, float]:
        """Current fraction of zeros of each targeted weight, keyed like the logs."""
        return {t.key: float(np.mean(t.variable.numpy() == 0)) for t in self.targets}

    def get_config(self) -> dict[str, Any]:
        return {"density": self.density, "dense_epochs": self.dense_epochs,
                "iht_epochs": self.iht_epochs, "frequency": self.frequency,
                "ramp_epochs": self.ramp_epochs,
                "layers": self.layers}
