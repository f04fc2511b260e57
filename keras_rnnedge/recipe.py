"""One training recipe for compressed recurrent classifiers, behind one call.

:func:`train` takes a model (or builds one with :func:`build_classifier`) and a
:class:`~keras_rnnedge.datasets.Dataset`, and runs the phases of :class:`Recipe` as separate
``fit`` calls, each with its own optimizer and learning-rate schedule:

1. ``dense``: dense training, cosine decay from ``learning_rate`` to a fifth of it;
2. ``threshold``: iterative hard thresholding (:class:`~keras_rnnedge.optimize.HardThresholding`)
   with a cubic ramp from dense to the target density over the first ``ramp_epochs`` (half the
   phase by default), at half the rate decaying to a tenth;
3. ``sparse``: fine-tuning with the support frozen (saved in the model as
   :class:`~keras_rnnedge.optimize.SupportMask` constraints), at a fifth of the rate decaying to
   a hundredth;
4. ``qat`` (``qat_epochs > 0``): int8 quantization-aware training
   (:func:`~keras_rnnedge.optimize.quantize_model`) at a fiftieth of the rate.

In every phase the weights of the epoch with the best validation accuracy are restored at its
end (in the threshold phase, among the epochs at the target density), so a phase that diverges
cannot lose what the one before reached; ``patience`` stops a phase early. Model selection uses
the validation split only: the test set is evaluated once, at the end. Gradients are clipped to
a global norm of ``clipnorm`` in every phase. With a ``teacher``, every phase trains through a
:class:`~keras_rnnedge.optimize.Distiller` (soft targets at ``temperature``, label weight
``alpha``).

Inputs are standardised by a stock ``keras.layers.Normalization`` layer adapted on the training
windows (:func:`build_classifier`): it is part of the saved model, and the converters fold it
into the deployed model's input handling, so the exports take raw sensor values.

``budget_bytes`` chooses the density: the one density, shared by every thresholded matrix, at
which :func:`~keras_rnnedge.summary.summary`'s int8 size of the model fits the budget
(:func:`density_for_budget`).

Example::

    from keras_rnnedge.datasets import load_har
    from keras_rnnedge.recipe import Recipe, build_classifier, make_cell, train

    data = load_har(6, validation_split=0.1)
    model = build_classifier(make_cell("fastgrnn", 80, kernel_rank=5, recurrent_rank=40),
                             data.x_train, data.num_classes)
    result = train(model, data, Recipe(), budget_bytes=6 * 1024)
    result.model.save("fastgrnn.keras")

The ``rnnedge train`` command runs the same recipe from the shell and converts the result for a
board.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Mapping
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.cells import CELL_REGISTRY
from keras_rnnedge.optimize.distill import Distiller
from keras_rnnedge.optimize.quantization import quantize_model
from keras_rnnedge.optimize.recurrent import (
    cell_variable,
    recurrent_cell,
    resolve_weight_values,
    select_recurrent_layers,
)
from keras_rnnedge.optimize.thresholding import HardThresholding, hard_threshold_mask
from keras_rnnedge.progress import ProgressArg, check_progress, progress_bar

__all__ = [
    "CELL_KINDS",
    "PHASES",
    "Recipe",
    "TrainResult",
    "build_classifier",
    "density_for_budget",
    "make_cell",
    "train",
]

#: Short names of the cells :func:`make_cell` builds (the ``--cell`` of ``rnnedge train``).
CELL_KINDS = {
    "fastgrnn": "FastGRNNCell",
    "fastrnn": "FastRNNCell",
    "lstm": "LowRankLSTMCell",
    "gru": "LowRankGRUCell",
    "rnn": "LowRankSimpleRNNCell",
    "projection_lstm": "ProjectionLSTMCell",
    "hlstm": "HLSTMCell",
}

PHASES = ("dense", "threshold", "sparse", "qat")

#: Per phase: (initial, final) learning rate as fractions of ``Recipe.learning_rate``
#: (cosine decay between them over the phase's batches).
LR_FRACTIONS = {"dense": (1.0, 0.2), "threshold": (0.5, 0.1), "sparse": (0.2, 0.01),
                "qat": (0.02, 0.02)}

#: Lowest density :func:`density_for_budget` tries: below it a matrix keeps almost nothing.
MIN_DENSITY = 0.02

#: A feature whose training variance is below this is constant: it is left unscaled (variance
#: 1) rather than multiplied by ``1 / epsilon``.
CONSTANT_FEATURE_VARIANCE = 1e-12


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Received {name}={value!r}, expected an integer >= {minimum}.")
    return int(value)


def _check_positive(value, name: str, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"Received {name}={value!r}, expected a finite number > 0"
                         + (" or None." if allow_none else "."))
    return float(value)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The phases and settings of :func:`train` (see the module docstring).

    Attributes:
        dense_epochs, threshold_epochs, sparse_epochs, qat_epochs: epochs of each phase (a
            phase of 0 epochs is skipped; without a density the threshold and sparse phases
            are skipped).
        ramp_epochs: epochs of the cubic ramp to the target density inside the threshold phase
            (``None``: half of it, rounded up).
        learning_rate: Adam's rate at the start of the dense phase (the other phases' rates
            are fractions of it, :data:`LR_FRACTIONS`).
        batch_size: windows per batch.
        clipnorm: global gradient-norm clipping (``None``: none). Adam at 0.01 without clipping
            diverged on HAR in the dense phase; clipping at 1 also gained 0.5-0.6 points on
            HAR-6 and KWS-12 in the aids ablation (docs/benchmarks.md).
        patience: stop a phase after this many epochs without a better validation accuracy
            (``None``: run every epoch; the best epoch is restored either way).
        temperature, alpha: the :class:`~keras_rnnedge.optimize.Distiller`'s, when a teacher
            is given.
        seed: seeds weights, data order and dropout.
        jit_compile: XLA for the dense, threshold and sparse phases (the compressed cells train
            several times faster with it on CPU; the QAT phase runs without).
    """

    dense_epochs: int = 10
    threshold_epochs: int = 10
    sparse_epochs: int = 10
    qat_epochs: int = 0
    ramp_epochs: int | None = None
    learning_rate: float = 0.01
    batch_size: int = 64
    clipnorm: float | None = 1.0
    patience: int | None = None
    temperature: float = 4.0
    alpha: float = 0.3
    seed: int = 0
    jit_compile: bool = True

    def __post_init__(self):
        for name in ("dense_epochs", "threshold_epochs", "sparse_epochs", "qat_epochs"):
            _check_int(getattr(self, name), name, 0)
        if self.ramp_epochs is not None:
            _check_int(self.ramp_epochs, "ramp_epochs", 0)
            if self.ramp_epochs > self.threshold_epochs:
                raise ValueError(f"Received ramp_epochs={self.ramp_epochs} > threshold_epochs="
                                 f"{self.threshold_epochs}: the ramp runs inside the threshold "
                                 "phase.")
        _check_positive(self.learning_rate, "learning_rate")
        _check_int(self.batch_size, "batch_size", 1)
        _check_positive(self.clipnorm, "clipnorm", allow_none=True)
        if self.patience is not None:
            _check_int(self.patience, "patience", 1)
        _check_positive(self.temperature, "temperature")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) \
                or not 0 <= self.alpha <= 1:
            raise ValueError(f"Received alpha={self.alpha!r}, expected a number in [0, 1].")
        _check_int(self.seed, "seed", 0)

    @property
    def ramp(self) -> int:
        """The ramp's epochs (``ramp_epochs``, or half the threshold phase)."""
        if self.ramp_epochs is not None:
            return self.ramp_epochs
        return (self.threshold_epochs + 1) // 2

    def epochs(self, phase: str) -> int:
        return getattr(self, f"{phase}_epochs")


@dataclasses.dataclass(frozen=True)
class PhaseRecord:
    """What one phase did: epochs run, the restored epoch and its validation accuracy."""

    phase: str
    epochs_run: int
    best_epoch: int | None
    val_accuracy: float | None
    seconds: float


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The trained model and what :func:`train` measured.

    Attributes:
        model: the trained model (the QAT model after a ``qat`` phase; every converter takes
            it as it is).
        density: the density kept by the thresholded matrices (``None``: dense).
        phases: one :class:`PhaseRecord` per phase run.
        val_accuracy: validation accuracy of the returned model.
        test_accuracy: test accuracy of the returned model (float, Keras), or ``None`` without
            test data.
        seconds: training wall time.
        history: one dict per epoch (phase, epoch, loss, accuracy, val_accuracy, ...).
    """

    model: keras.Model
    density: float | None
    phases: tuple[PhaseRecord, ...]
    val_accuracy: float
    test_accuracy: float | None
    seconds: float
    history: tuple[dict, ...]


# -- building ---------------------------------------------------------------------------------


def make_cell(kind: str, units: int, *, kernel_rank: int | None = None,
              recurrent_rank: int | None = None, **kwargs) -> keras.layers.Layer:
    """A registered cell by short name (:data:`CELL_KINDS`) or class name.

    ``kernel_rank`` / ``recurrent_rank`` make the input / recurrent matrix low rank (the
    ``low_rank`` family, for every cell kind); other keyword arguments go to the cell.

    Raises:
        ValueError: for an unknown kind, naming the known ones.
    """
    name = CELL_KINDS.get(str(kind).lower(), kind)
    if name not in CELL_REGISTRY:
        raise ValueError(f"Received cell kind {kind!r}; expected one of "
                         f"{', '.join(CELL_KINDS)} (or a registered class name: "
                         f"{', '.join(sorted(CELL_REGISTRY))}).")
    if kernel_rank is not None:
        kwargs["kernel_structure"] = {"family": "low_rank", "rank": kernel_rank}
    if recurrent_rank is not None:
        kwargs["recurrent_structure"] = {"family": "low_rank", "rank": recurrent_rank}
    return CELL_REGISTRY[name](units, **kwargs)


def build_classifier(cell: keras.layers.Layer, x_train, num_classes: int, *,
                     standardize: bool = True, name: str | None = None) -> keras.Model:
    """``Input -> Normalization -> RNN(cell) -> Dense(num_classes)`` (logits).

    ``cell`` may also be a recurrent layer (``keras.layers.GRU(80)``, ``LSTM``...): it is used
    as it is, for stock baselines trained with the same recipe.

    The ``Normalization`` layer (per feature, adapted on ``x_train``) standardises the inputs;
    the converters fold it into the exports' input quantization, so the deployed model takes
    raw values too. A constant feature (training variance below
    :data:`CONSTANT_FEATURE_VARIANCE`) is only centred.

    Args:
        cell: a recurrent cell (:func:`make_cell`, or any registered cell), or a recurrent
            layer returning its last output.
        x_train: training windows ``(N, T, F)`` (their length fixes the model's; ``None`` in
            the model's input would allow any length, but the exports check windows of the
            trained length).
        num_classes: outputs of the Dense head.
        standardize: ``False`` leaves the inputs as they are.
        name: the model's name (default: the cell's kind).
    """
    x_train = np.asarray(x_train, np.float32)
    if x_train.ndim != 3 or 0 in x_train.shape:
        raise ValueError(f"Expected x_train of shape (windows, time steps, features), but got "
                         f"{x_train.shape}.")
    if not np.all(np.isfinite(x_train)):
        raise ValueError("x_train holds NaN or infinite values: clean or impute them before "
                         "training (the standardisation statistics would be NaN).")
    num_classes = _check_int(num_classes, "num_classes", 2)
    inputs = keras.Input(x_train.shape[1:], name="x")
    h = inputs
    if standardize:
        mean = x_train.mean(axis=(0, 1), dtype=np.float64)
        variance = x_train.var(axis=(0, 1), dtype=np.float64)
        variance = np.where(variance < CONSTANT_FEATURE_VARIANCE, 1.0, variance)
        h = keras.layers.Normalization(axis=-1, mean=mean.astype(np.float32),
                                       variance=variance.astype(np.float32),
                                       name="standardize")(h)
    layer = cell if isinstance(cell, keras.layers.RNN) else keras.layers.RNN(cell, name="rnn")
    h = layer(h)
    outputs = keras.layers.Dense(num_classes, name="classifier")(h)
    kind = {v: k for k, v in CELL_KINDS.items()}.get(type(cell).__name__,
                                                      type(cell).__name__.lower())
    return keras.Model(inputs, outputs, name=name or kind)


# -- budget -----------------------------------------------------------------------------------


def _targets(model: keras.Model, density) -> list:
    """``(variable, density)`` of every weight the recipe thresholds."""
    out = []
    for outer, rnn in select_recurrent_layers(model, None):
        cell = recurrent_cell(rnn)
        by_name = resolve_weight_values(cell, density, argument="density",
                                        check=lambda v, a: v, layer_name=rnn.name)
        out += [(cell_variable(cell, n, outer), v) for n, v in by_name.items()]
    return out


def int8_bytes_at(model: keras.Model, density: float) -> int:
    """``summary(model)``'s int8 bytes with every thresholded matrix at ``density`` (the
    weights are thresholded for the count and restored)."""
    from keras_rnnedge.summary import summary

    targets = _targets(model, density)
    saved = [v.numpy() for v, _ in targets]
    try:
        for (variable, d), values in zip(targets, saved):
            # a fresh model may hold ties and zeros: rank by |value| with ties broken by
            # position, and keep the kept entries non-zero (only the counts matter here)
            order = np.abs(values) + 1e-9 * np.arange(values.size).reshape(values.shape)
            kept = np.where(values == 0, 1e-3, values)
            variable.assign(np.where(hard_threshold_mask(order, d), kept, 0).astype(values.dtype))
        return summary(model).totals.bytes_int8
    finally:
        for (variable, _), values in zip(targets, saved):
            variable.assign(values)


def density_for_budget(model: keras.Model, budget_bytes: int) -> float | None:
    """The highest density (shared by every thresholded matrix, to 1 %) at which the model's
    int8 size (:func:`~keras_rnnedge.summary.summary`, sparse matrices as CSR when smaller)
    fits ``budget_bytes``; ``None`` when the dense model fits.

    Raises:
        ValueError: the model does not fit even at :data:`MIN_DENSITY`; the message gives the
            size reached and what to shrink.
    """
    from keras_rnnedge.summary import summary

    budget_bytes = _check_int(budget_bytes, "budget_bytes", 1)
    dense = summary(model).totals.bytes_int8
    if dense <= budget_bytes:
        return None
    smallest = int8_bytes_at(model, MIN_DENSITY)
    if smallest > budget_bytes:
        raise ValueError(
            f"Model {model.name!r} needs {dense:,} bytes at int8 and still {smallest:,} with "
            f"every recurrent matrix at {MIN_DENSITY:.0%} density; the budget is "
            f"{budget_bytes:,} bytes. Use fewer hidden units, lower ranks "
            "(kernel_rank/recurrent_rank), or a larger budget.")
    lo, hi = MIN_DENSITY, 1.0  # fits at lo, not at hi
    while hi - lo > 0.005:
        mid = (lo + hi) / 2
        if int8_bytes_at(model, mid) <= budget_bytes:
            lo = mid
        else:
            hi = mid
    return math.floor(lo * 100) / 100 if lo >= 0.01 else lo


# -- training ---------------------------------------------------------------------------------


class _BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the best ``val_accuracy`` from ``start`` on, restore
    them at the end of the phase (also when ``patience`` stops it)."""

    def __init__(self, start: int, patience: int | None):
        super().__init__()
        self.start, self.patience = start, patience
        self.best = -np.inf
        self.best_epoch: int | None = None
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is None or epoch < self.start:
            return
        if value > self.best:
            self.best, self.best_epoch = float(value), epoch
            self.weights = self.model.get_weights()
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


class _Clock:
    """Elapsed time and ETA over all phases (the planned epochs; patience may end sooner)."""

    def __init__(self, planned: int):
        self.planned, self.start, self.ends = planned, time.perf_counter(), []

    def lap(self) -> tuple[float, float]:
        now = time.perf_counter() - self.start
        self.ends.append(now)
        laps = np.diff([0.0, *self.ends])
        # a phase's first epoch includes tracing/compiling: the median of the recent ones
        recent = float(np.median(laps[-5:]))
        return now, recent * max(0, self.planned - len(self.ends))


class _Lines(keras.callbacks.Callback):
    """One line per epoch, a bar over the batches (on a terminal), and the history rows."""

    def __init__(self, phase: str, epochs: int, log, progress, rows: list, clock: _Clock,
                 thresholding: HardThresholding | None = None, on_epoch=None):
        super().__init__()
        self.phase, self.epochs, self.log, self.progress = phase, epochs, log, progress
        self.rows, self.clock, self.thresholding = rows, clock, thresholding
        self.on_epoch = on_epoch
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = progress_bar(self.progress, f"{self.phase} {epoch + 1}/{self.epochs}",
                                self.params.get("steps"), unit="batch", leave=False)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
        logs = dict(logs or {})
        row = {"phase": self.phase, "epoch": epoch + 1,
               **{k: float(v) for k, v in logs.items()
                  if k in ("loss", "accuracy", "val_loss", "val_accuracy")}}
        extra = ""
        if self.thresholding is not None and self.thresholding.targets:
            kept = [float(np.mean(t.variable.numpy() != 0)) for t in self.thresholding.targets]
            row["density"] = float(np.mean(kept))
            extra = f"  density {row['density']:.2f}"
        self.rows.append(row)
        elapsed, eta = self.clock.lap()
        self.log(f"{self.phase:9s} epoch {epoch + 1:3d}/{self.epochs}  loss "
                 f"{row.get('loss', float('nan')):.4f}  acc {row.get('accuracy', 0):.4f}  "
                 f"val_acc {row.get('val_accuracy', 0):.4f}{extra}  {clock_text(elapsed)}, "
                 f"ETA {clock_text(eta)}")
        if self.on_epoch is not None:
            self.on_epoch(dict(row))


def clock_text(seconds: float) -> str:
    """``42 s``, ``3:07`` (minutes:seconds) or ``1:02:03``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _optimizer(recipe: Recipe, phase: str, steps: int):
    first, last = LR_FRACTIONS[phase]
    rate = recipe.learning_rate * first
    if last != first:
        rate = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=max(1, recipe.epochs(phase) * steps), alpha=last / first)
    return keras.optimizers.Adam(rate, clipnorm=recipe.clipnorm)


def _check_data(data) -> None:
    for name in ("x_train", "y_train", "x_val", "y_val"):
        if getattr(data, name, None) is None:
            raise ValueError(f"Expected a Dataset with {name}, but it is missing: the recipe "
                             "selects each phase's weights on a validation split (load it with "
                             "validation_split=0.1, or pass x_val/y_val in the .npz).")
    for name in ("x_train", "x_val"):
        if not np.all(np.isfinite(getattr(data, name))):
            raise ValueError(f"{name} holds NaN or infinite values: clean or impute them "
                             "before training.")


def train(model: keras.Model, data, recipe: Recipe | None = None, *,
          density: float | Mapping[str, float] | None = None, budget_bytes: int | None = None,
          teacher: keras.Model | None = None, log: Callable[[str], None] | None = print,
          progress: ProgressArg = True,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data`` with the recipe's phases (see the module docstring).

    Args:
        model: an uncompiled (or compiled: it is recompiled per phase) classifier producing
            logits, e.g. from :func:`build_classifier`.
        data: a :class:`~keras_rnnedge.datasets.Dataset` with a validation split.
        recipe: the phases and settings (default: ``Recipe()``).
        density: the fraction of non-zeros kept per thresholded matrix (a float, or a dict
            from weight names as :class:`~keras_rnnedge.optimize.HardThresholding` takes);
            ``None`` with no ``budget_bytes``: dense (no threshold or sparse phase).
        budget_bytes: int8 size to fit (:func:`density_for_budget`); excludes ``density``.
        teacher: a trained model producing logits of the same classes: distillation in every
            phase.
        log: called with one line per epoch and per phase (``None``: silent).
        progress: a bar over each epoch's batches (:mod:`keras_rnnedge.progress`).
        on_epoch: called after every epoch with its history row (``phase``, ``epoch``,
            ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``density``), e.g. to
            report to a scheduler that stops bad trials early (:mod:`keras_rnnedge.search`).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: for a dataset without validation split or with non-finite inputs, both
            ``density`` and ``budget_bytes``, or a budget the model cannot meet.
    """
    recipe = recipe or Recipe()
    if not isinstance(recipe, Recipe):
        raise TypeError(f"Received recipe={recipe!r}, expected a keras_rnnedge.recipe.Recipe.")
    if not isinstance(model, keras.Model):
        raise TypeError(f"Received {type(model).__name__}, expected a tf_keras Model (see "
                        "build_classifier).")
    _check_data(data)
    check_progress(progress)
    log = log or (lambda line: None)
    if density is not None and budget_bytes is not None:
        raise ValueError("Received both density and budget_bytes: give one (budget_bytes "
                         "chooses the density).")
    keras.utils.set_random_seed(recipe.seed)
    if budget_bytes is not None:
        density = density_for_budget(model, budget_bytes)
        log(f"budget {budget_bytes:,} bytes at int8: "
            + (f"density {density:.2f} for every recurrent matrix" if density is not None
               else "the dense model fits"))
    start = time.perf_counter()
    rows: list[dict] = []
    records: list[PhaseRecord] = []
    steps = -(-len(data.y_train) // recipe.batch_size)
    current = model
    runs = [p for p in PHASES if recipe.epochs(p) > 0
            and not (density is None and p in ("threshold", "sparse"))]
    clock = _Clock(sum(recipe.epochs(p) for p in runs))
    for phase in runs:
        epochs = recipe.epochs(phase)
        callbacks: list[keras.callbacks.Callback] = []
        thresholding = None
        first_eligible = 0
        if phase == "qat":
            current = quantize_model(current)
        if phase == "threshold":
            ramp = recipe.ramp
            # never freezes here (one IHT epoch more than the fit runs): the sparse phase
            # freezes the support of the restored best epoch
            thresholding = HardThresholding(density, dense_epochs=0, iht_epochs=epochs + 1,
                                            ramp_epochs=ramp)
            first_eligible = max(0, ramp - 1)
        elif phase == "sparse":
            thresholding = HardThresholding(density, dense_epochs=0, iht_epochs=0)
        if thresholding is not None:
            callbacks.append(thresholding)
        best = _BestWeights(first_eligible, recipe.patience)
        callbacks += [best, _Lines(phase, epochs, log, progress, rows, clock,
                                   thresholding=thresholding, on_epoch=on_epoch)]
        trained = current
        jit = recipe.jit_compile and phase != "qat"
        if teacher is not None:
            trained = Distiller(current, teacher, temperature=recipe.temperature,
                                alpha=recipe.alpha)
            trained.compile(_optimizer(recipe, phase, steps), metrics=["accuracy"],
                            jit_compile=jit)
        else:
            trained.compile(_optimizer(recipe, phase, steps),
                            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=["accuracy"], jit_compile=jit)
        phase_start = time.perf_counter()
        history = trained.fit(data.x_train, data.y_train, batch_size=recipe.batch_size,
                              epochs=epochs, validation_data=(data.x_val, data.y_val),
                              callbacks=callbacks, verbose=0, shuffle=True)
        run = len(history.epoch)
        records.append(PhaseRecord(phase, run, None if best.best_epoch is None
                                   else best.best_epoch + 1,
                                   None if best.best_epoch is None else best.best,
                                   time.perf_counter() - phase_start))
        if best.best_epoch is not None:
            log(f"{phase:9s} restored epoch {best.best_epoch + 1} (val_acc {best.best:.4f})")
    if not records:
        raise ValueError("The recipe ran no phase: give dense_epochs > 0, or a density with "
                         "threshold/sparse epochs.")
    seconds = time.perf_counter() - start
    current.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    _, val_acc = current.evaluate(data.x_val, data.y_val, batch_size=256, verbose=0)
    test_acc = None
    if getattr(data, "x_test", None) is not None and getattr(data, "y_test", None) is not None:
        _, test_acc = current.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)
        test_acc = float(test_acc)
    return TrainResult(model=current, density=None if density is None else
                       (density if isinstance(density, float) else dict(density)),
                       phases=tuple(records), val_accuracy=float(val_acc),
                       test_accuracy=test_acc, seconds=seconds, history=tuple(rows))


def describe(result: TrainResult) -> dict[str, Any]:
    """A JSON-ready summary of a :class:`TrainResult` (no model)."""
    return {"density": result.density, "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy, "seconds": result.seconds,
            "phases": [dataclasses.asdict(p) for p in result.phases]}
