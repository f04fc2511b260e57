"""Flexible RNNs (method 1): one cell run at several widths, switched within a sequence.

Lambert, Le Bolzer and Schnitzler, "Flexible Recurrent Neural Networks" (ECML PKDD 2020),
method 1, on three tasks in one run:

* ``pmnist``: permuted pixel MNIST, downsampled to 14 x 14 (the mean of each 2 x 2 block of
  grey levels) and read as 196 one-pixel steps in one fixed seeded permutation
  (``np.random.default_rng(SEED).permutation(196)``, the same for every split);
* ``adding``: the adding task, generated: ``T`` steps of two channels (a value drawn
  uniformly in [0, 1), and a marker that is 1 at two steps, one drawn in each half of the
  sequence), target = the sum of the two marked values; a regression scored by its MSE, next to
  the MSE of predicting the training targets' mean;
* ``har6``: HAR-6 (bundled), standardised with the training set's statistics
  (``train_quality``'s data protocol).

For each task one ``LowRankGRUCell`` (dense matrices) with levels ``(units/4, units/2, units)``
is trained with :class:`~keras_rnnedge.flexible.ScheduleSequence` (every sequence a random
level, half of them switching to another at a random step), early stopping on the validation
split at the top level with the best weights restored. Then, on the test set: the metric at each
constant level, and for a switch at step ``t`` from level ``a`` to level ``b`` (every ordered
pair of levels, ``t`` on a grid from 0 to ``T``), with the average MACs per step of each
schedule (:func:`~keras_rnnedge.flexible.level_macs` weighted by the steps at each level),
against the paper's weighted-average law ``(t m_a + (T - t) m_b) / T``.

Deployment cost per level, from one C build of the HAR-6 model (``convert_c`` for the Uno,
int8 weights, Q15 state): ATmega328P cycles (simavr) and Cortex-M4 executed instructions (QEMU)
per step at each constant level, next to ``level_macs``; the integer model's test accuracy at
each level and on two switching schedules (the NumPy oracle, bit-exact with the C, checked on
the host C and on the emulated boards).

Writes ``benchmarks/results/flexible.json``, ``docs/flexible_<task>.png`` and the ``flexible``
section of ``docs/benchmarks.md``. Run from the repository root::

    python benchmarks/flexible.py --data-dir ../shared/data           # about 30 min on 2 cores
    python benchmarks/flexible.py --quick --data-dir ../shared/data \\
        --out /tmp/flexible.md --results /tmp/flexible.json --figures /tmp   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks.common import (  # noqa: E402
    DOC,
    REPO,
    command_line,
    machine_info,
    machine_line,
    write_section,
)
from benchmarks.train_quality import LR_FLOOR, SEED, TASKS, EpochTimer, load_task  # noqa: E402
from keras_rnnedge._compat import keras, np  # noqa: E402
from keras_rnnedge.cells import LowRankGRUCell  # noqa: E402
from keras_rnnedge.converters import convert_c  # noqa: E402
from keras_rnnedge.datasets.mnist import load_mnist  # noqa: E402
from keras_rnnedge.flexible import (  # noqa: E402
    FlexibleRNN,
    ScheduleSequence,
    WithLevel,
    level_macs,
    random_schedules,
    switch_schedule,
)
from keras_rnnedge.micro_targets.crun import run_c  # noqa: E402
from keras_rnnedge.micro_targets.harness import CompileError  # noqa: E402

NAME = "flexible"
RESULTS = REPO / "benchmarks" / "results" / f"{NAME}.json"
TASK_ORDER = ("pmnist", "adding", "har6")
UNITS = 64
LEVELS = (UNITS // 4, UNITS // 2, UNITS)
SWITCH_FRACTION = 0.5  # ScheduleSequence's default: half of the training sequences switch
MNIST_SIDE = 14  # 28 x 28 downsampled by 2 x 2 means: 196 steps
MNIST_VAL = 5000
ADDING_T = 100
ADDING_SIZES = (20000, 2000, 5000)  # train, validation, test sequences
DEVICE_WINDOWS = 2
DEVICE_TARGETS = ("uno", "cortex-m4")
DEVICE_TIMEOUT = 600
HAR_SAMPLE_MS = 20.0  # HAR's 50 Hz sampling: the time one step may take in real time
#: the law "holds" at a switch step when the measured metric is within this fraction of the
#: gap between the two constant levels, or within two standard errors of its own estimate
LAW_GAP_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class Setup:
    name: str
    title: str
    epochs: int
    patience: int
    batch_size: int
    lr: float
    regression: bool = False


SETUPS = {
    "pmnist": Setup("pmnist", f"Permuted pixel MNIST ({MNIST_SIDE} x {MNIST_SIDE}, "
                    f"{MNIST_SIDE ** 2} steps)", epochs=24, patience=6, batch_size=128, lr=3e-3),
    "adding": Setup("adding", f"Adding task (T = {ADDING_T})", epochs=20, patience=6,
                    batch_size=64, lr=3e-3, regression=True),
    "har6": Setup("har6", "HAR-6 (six activities)", epochs=40, patience=10, batch_size=64,
                  lr=3e-3),
}
QUICK_SIZES = (1024, 256, 512)  # train, validation, test in --quick


# -- data ------------------------------------------------------------------------------------


def _take(x, y, n, rng):
    index = np.sort(rng.permutation(len(y))[:n])
    return x[index], y[index]


def load_pmnist(data_dir: str | None, quick: bool) -> dict:
    ds = load_mnist(data_dir, validation_split=MNIST_VAL / 60000, seed=SEED)
    side, block = MNIST_SIDE, 28 // MNIST_SIDE
    permutation = np.random.default_rng(SEED).permutation(side * side)

    def to_steps(x):
        images = x.reshape(len(x), side, block, side, block).mean(axis=(2, 4))
        return images.reshape(len(x), side * side)[:, permutation, None]

    splits = {"train": (to_steps(ds.x_train), ds.y_train), "val": (to_steps(ds.x_val), ds.y_val),
              "test": (to_steps(ds.x_test), ds.y_test)}
    if quick:
        rng = np.random.default_rng(SEED)
        splits = {k: _take(*v, n, rng) for (k, v), n in zip(splits.items(), QUICK_SIZES)}
    mean, std = float(splits["train"][0].mean()), float(splits["train"][0].std())
    splits = {k: (((x - mean) / std).astype(np.float32), y.astype(np.int32))
              for k, (x, y) in splits.items()}
    return {**splits, "num_classes": 10, "input_shape": splits["train"][0].shape[1:],
            "permutation_seed": SEED, "standardised": [mean, std]}


def adding_data(n: int, timesteps: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(n, timesteps, 2)`` float32 (value, marker) and the ``(n,)`` sums of the marked values:
    one marker drawn in each half."""
    values = rng.random((n, timesteps)).astype(np.float32)
    half = timesteps // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, timesteps, n)
    markers = np.zeros((n, timesteps), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    y = (values[np.arange(n), first] + values[np.arange(n), second]).astype(np.float32)
    return np.stack([values, markers], axis=-1), y


def load_adding(quick: bool) -> dict:
    rng = np.random.default_rng(SEED)
    sizes = QUICK_SIZES if quick else ADDING_SIZES
    splits = {k: adding_data(n, ADDING_T, rng) for k, n in zip(("train", "val", "test"), sizes)}
    return {**splits, "num_classes": None, "input_shape": (ADDING_T, 2)}


def load(task: str, data_dir: str | None, quick: bool) -> dict:
    if task == "pmnist":
        return load_pmnist(data_dir, quick)
    if task == "adding":
        return load_adding(quick)
    data = load_task(TASKS["har6"], data_dir, quick)
    return {**data, "standardised": "per channel, training statistics (train_quality)"}


# -- model -----------------------------------------------------------------------------------


def build(task: str, data: dict, decay_steps: int):
    setup = SETUPS[task]
    timesteps, features = data["input_shape"]
    x = keras.Input((timesteps, features), name="x")
    level = keras.Input((timesteps,), name="level")
    cell = LowRankGRUCell(UNITS, levels=LEVELS)
    h = FlexibleRNN(cell, name="rnn")(WithLevel(name="with_level")([x, level]))
    out = keras.layers.Dense(1 if setup.regression else data["num_classes"], name="head")(h)
    model = keras.Model([x, level], out, name=f"flex_{task}")
    if setup.regression:
        loss, metrics = keras.losses.MeanSquaredError(), []
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(setup.lr, decay_steps=decay_steps,
                                                   alpha=LR_FLOOR),
            clipnorm=1.0),
        loss=loss, metrics=metrics, jit_compile=True)
    return model, cell


class Progress(keras.callbacks.Callback):
    def __init__(self, prefix: str, timer: EpochTimer, regression: bool):
        super().__init__()
        self.prefix, self.timer, self.regression = prefix, timer, regression

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        score = (f"val_mse {logs.get('val_loss', 0):.5f}" if self.regression else
                 f"acc {logs.get('accuracy', 0):.4f} val_acc {logs.get('val_accuracy', 0):.4f}")
        print(f"  {self.prefix} epoch {epoch + 1:3d}: loss {logs.get('loss', 0):.4f} {score} "
              f"({self.timer.seconds[-1]:.1f} s)", flush=True)


def train(task: str, data: dict, epochs: int, patience: int):
    setup = SETUPS[task]
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    x_train, y_train = data["train"]
    x_val, y_val = data["val"]
    timesteps = x_train.shape[1]
    sequence = ScheduleSequence(x_train, y_train, num_levels=len(LEVELS),
                                batch_size=setup.batch_size, seed=SEED,
                                switch_fraction=SWITCH_FRACTION)
    model, cell = build(task, data, epochs * len(sequence))
    top = switch_schedule(len(x_val), timesteps, timesteps, len(LEVELS) - 1, len(LEVELS) - 1)
    monitor, mode = ("val_loss", "min") if setup.regression else ("val_accuracy", "max")
    timer = EpochTimer()
    stopper = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                            restore_best_weights=True)
    print(f"{setup.title}: {len(y_train)} train / {len(y_val)} val / {len(data['test'][1])} "
          f"test sequences, up to {epochs} epochs", flush=True)
    started = time.perf_counter()
    model.fit(sequence, validation_data=([x_val, top], y_val), epochs=epochs,
              callbacks=[timer, stopper, Progress(task, timer, setup.regression)], verbose=0)
    seconds = time.perf_counter() - started
    return model, cell, {
        "epochs_max": epochs, "epochs_run": len(timer.seconds),
        "best_epoch": stopper.best_epoch + 1, "patience": patience,
        "best_val": float(stopper.best), "val_metric": monitor, "batch_size": setup.batch_size,
        "learning_rate": setup.lr, "train_seconds": round(seconds, 1),
        "seconds_per_epoch_median": round(float(np.median(timer.seconds[1:] or timer.seconds)),
                                          2)}


# -- evaluation ------------------------------------------------------------------------------


def switch_steps(timesteps: int) -> list[int]:
    """0, T/8, ..., 7T/8, 15T/16, T (rounded): ten switch steps, denser where the last steps
    weigh most."""
    grid = [round(i * timesteps / 8) for i in range(8)] + [round(15 * timesteps / 16), timesteps]
    return sorted(set(int(t) for t in grid))


def score(task: str, pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The metric (accuracy, or MSE for the adding task) and its standard error."""
    if SETUPS[task].regression:
        sq = (pred.reshape(-1) - y) ** 2
        return float(sq.mean()), float(sq.std(ddof=1) / np.sqrt(len(sq)))
    correct = np.argmax(pred, axis=1) == y
    p = float(correct.mean())
    return p, float(np.sqrt(max(p * (1 - p), 1e-12) / len(correct)))


def schedule_macs(macs: list[int], timesteps: int, t: int, a: int, b: int) -> float:
    return (t * macs[a] + (timesteps - t) * macs[b]) / timesteps


def law_analysis(task: str, curve: list[dict], m_a: float, m_b: float, timesteps: int) -> dict:
    """Deviation of each interior switch from ``(t m_a + (T - t) m_b) / T``."""
    gap = abs(m_a - m_b)
    interior = [p for p in curve if 0 < p["t"] < timesteps]
    for p in interior:
        p["law"] = (p["t"] * m_a + (timesteps - p["t"]) * m_b) / timesteps
        p["deviation"] = p["metric"] - p["law"]
        tolerance = max(LAW_GAP_FRACTION * gap, 2 * p["se"])
        p["law_holds"] = bool(abs(p["deviation"]) <= tolerance)
        # how much better (+) or worse (-) than the law, in the task's sense
        p["better_than_law"] = -p["deviation"] if SETUPS[task].regression else p["deviation"]
    worst = max(interior, key=lambda p: abs(p["deviation"]))
    return {
        "gap": gap,
        "max_abs_deviation": abs(worst["deviation"]),
        "max_deviation_t": worst["t"],
        "max_deviation_signed": worst["deviation"],
        "max_deviation_of_gap": abs(worst["deviation"]) / gap if gap > 0 else None,
        "holds_at": [p["t"] for p in interior if p["law_holds"]],
        "fails_at": [p["t"] for p in interior if not p["law_holds"]],
        "mean_abs_deviation": float(np.mean([abs(p["deviation"]) for p in interior])),
    }


def evaluate(task: str, model, cell, data: dict) -> dict:
    x_test, y_test = data["test"]
    n, timesteps = x_test.shape[:2]
    macs = [level_macs(cell, level) for level in range(len(LEVELS))]
    started = time.perf_counter()

    def run(schedule):
        pred = model.predict([x_test, schedule], batch_size=500, verbose=0)
        return score(task, pred, y_test)

    constant = []
    for level in range(len(LEVELS)):
        metric, se = run(switch_schedule(n, timesteps, 0, level, level))
        constant.append({"level": level, "units": LEVELS[level], "metric": metric, "se": se,
                         "macs_per_step": macs[level]})
    steps = switch_steps(timesteps)
    switches = []
    for a in range(len(LEVELS)):
        for b in range(len(LEVELS)):
            if a == b:
                continue
            curve = []
            for t in steps:
                if t == 0:
                    metric, se = constant[b]["metric"], constant[b]["se"]
                elif t == timesteps:
                    metric, se = constant[a]["metric"], constant[a]["se"]
                else:
                    metric, se = run(switch_schedule(n, timesteps, t, a, b))
                curve.append({"t": t, "metric": metric, "se": se,
                              "macs_per_step": schedule_macs(macs, timesteps, t, a, b)})
            law = law_analysis(task, curve, constant[a]["metric"], constant[b]["metric"],
                               timesteps)
            switches.append({"from": a, "to": b, "curve": curve, "law": law})
            print(f"  {task} switch {a}->{b}: max |deviation from the law| "
                  f"{_fmt(task, law['max_abs_deviation'])} at t = {law['max_deviation_t']} "
                  f"(gap {_fmt(task, law['gap'])}); holds at {len(law['holds_at'])}/"
                  f"{len(law['holds_at']) + len(law['fails_at'])} steps", flush=True)
    out = {"timesteps": timesteps, "test_windows": int(n), "switch_steps": steps,
           "constant": constant, "switches": switches,
           "eval_seconds": round(time.perf_counter() - started, 1)}
    if SETUPS[task].regression:
        mean = float(np.mean(data["train"][1]))
        out["baseline_mse"] = float(np.mean((y_test - mean) ** 2))
        out["baseline_prediction"] = mean
    print("  " + task + " constant levels: " + ", ".join(
        f"{c['units']} units {_fmt(task, c['metric'])} ({c['macs_per_step']:,} MACs)"
        for c in constant), flush=True)
    return out


def _fmt(task: str, value: float) -> str:
    return f"{value:.4f}" if SETUPS[task].regression else f"{100 * value:.2f} %"


# -- deployment ------------------------------------------------------------------------------


def deploy(model, cell, data: dict) -> dict:
    """The HAR-6 model as integer C for the Uno: cost per step per level on the ATmega328P and
    the Cortex-M4, the integer oracle's test accuracy per level and on two switches."""
    x_train, _ = data["train"]
    x_val, y_val = data["val"]
    x_test, y_test = data["test"]
    n, timesteps = x_test.shape[:2]
    top = len(LEVELS) - 1
    out: dict = {"target": "uno"}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            conv = convert_c(model, target="uno", representative_data=x_train,
                             validation_data=(x_val, y_val), checks="warn", progress=False,
                             name="flex_har6")
        except Exception as exc:  # reported as is: the part is skipped, not the benchmark
            out.update(fits=False, error=f"{type(exc).__name__}: {exc}")
            print(f"  deployment: {out['error']}", flush=True)
            return out
    im = conv.int_model
    quality = conv.quality
    out["quality_check"] = {"float_accuracy": quality.float_accuracy,
                            "deployed_accuracy": quality.deployed_accuracy,
                            "agreement": quality.agreement, "source": quality.source}
    out["weight_bytes"] = int(im.weight_bytes())
    float_acc = {}
    levels_out = []
    for level in range(len(LEVELS)):
        schedule = switch_schedule(n, timesteps, 0, level, level)
        pred = model.predict([x_test, schedule], batch_size=500, verbose=0)
        float_acc[level] = float(np.mean(np.argmax(pred, axis=1) == y_test))
        int_scores = im.run(x_test, levels=schedule)
        levels_out.append({"level": level, "units": LEVELS[level],
                           "macs_per_step": level_macs(cell, level),
                           "float_accuracy": float_acc[level],
                           "int_accuracy": float(np.mean(np.argmax(int_scores, 1) == y_test))})
    switches = []
    for a, b in ((0, top), (top, 0)):
        t = timesteps // 2
        schedule = switch_schedule(n, timesteps, t, a, b)
        pred = model.predict([x_test, schedule], batch_size=500, verbose=0)
        int_scores = im.run(x_test, levels=schedule)
        switches.append({"from": a, "to": b, "t": t,
                         "float_accuracy": float(np.mean(np.argmax(pred, 1) == y_test)),
                         "int_accuracy": float(np.mean(np.argmax(int_scores, 1) == y_test))})
    out["switches"] = switches
    # the C against the oracle on switching schedules (host), then the cost per level
    windows = x_test[:16]
    mixed = random_schedules(len(windows), timesteps, len(LEVELS), seed=SEED,
                             switch_fraction=1.0)
    host = run_c(conv, conv.quantize_input(windows), target="host", levels=mixed,
                 progress=False, timeout=DEVICE_TIMEOUT)
    out["host_c_equals_oracle_on_switches"] = bool(
        np.array_equal(host.scores, im.run(windows, levels=mixed)))
    x_q = conv.quantize_input(x_test[:DEVICE_WINDOWS])
    for level, row in enumerate(levels_out):
        want = im.run(x_test[:DEVICE_WINDOWS], levels=np.full((DEVICE_WINDOWS, timesteps),
                                                              level))
        for target in DEVICE_TARGETS:
            try:
                r = run_c(conv, x_q, target=target, levels=np.full(timesteps, level),
                          progress=False, timeout=DEVICE_TIMEOUT)
            except ValueError as exc:  # does not fit the board
                row[target] = {"fits": False, "error": str(exc)}
                print(f"    {target}: {exc}", flush=True)
                continue
            except CompileError as exc:
                row[target] = {"fits": True, "failed": True, "error": str(exc)[:2000]}
                print(f"    {target}: FAILED: {str(exc)[:300]}", flush=True)
                continue
            row[target] = {"fits": True, "per_step": r.per_step, "unit": r.unit,
                           "flash_bytes": r.flash_bytes, "ram_bytes": r.ram_bytes,
                           "model_flash_bytes": r.model_flash_bytes,
                           "equals_oracle": bool(np.array_equal(r.scores, want))}
            if r.seconds_per_step() is not None:
                row[target]["ms_per_step"] = 1000 * r.seconds_per_step()
        uno, m4 = row.get("uno", {}), row.get("cortex-m4", {})
        print(f"  har6 C level {level} ({LEVELS[level]} units, {row['macs_per_step']:,} MACs): "
              f"int {100 * row['int_accuracy']:.2f} % (float {100 * row['float_accuracy']:.2f}"
              f" %), Uno {uno.get('per_step', float('nan')):,.0f} cycles, M4 "
              f"{m4.get('per_step', float('nan')):,.0f} instructions per step", flush=True)
    out["levels"] = levels_out
    out["fits"] = all(row.get(t, {}).get("fits", False) for row in levels_out
                      for t in DEVICE_TARGETS)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


# -- plots -----------------------------------------------------------------------------------


def plot(task: str, r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = SETUPS[task]
    timesteps = r["timesteps"]
    scale = 1.0 if setup.regression else 100.0
    ylabel = "test MSE (lower is better)" if setup.regression else "test accuracy %"
    top = len(LEVELS) - 1
    groups = [("lowest <-> highest level", {(0, top), (top, 0)}),
              ("neighbouring levels", {(a, b) for a in range(len(LEVELS))
                                       for b in range(len(LEVELS)) if abs(a - b) == 1})]
    colours = {(0, top): "tab:blue", (top, 0): "tab:red", (0, 1): "tab:cyan",
               (1, 0): "tab:orange", (1, 2): "tab:green", (2, 1): "tab:purple"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, (title, pairs) in zip(axes[:2], groups):
        for s in r["switches"]:
            key = (s["from"], s["to"])
            if key not in pairs:
                continue
            ts = [p["t"] for p in s["curve"]]
            ys = [scale * p["metric"] for p in s["curve"]]
            es = [scale * p["se"] for p in s["curve"]]
            m_a = r["constant"][s["from"]]["metric"]
            m_b = r["constant"][s["to"]]["metric"]
            law = [scale * (t * m_a + (timesteps - t) * m_b) / timesteps for t in ts]
            c = colours.get(key, "black")
            label = f"{LEVELS[s['from']]} -> {LEVELS[s['to']]} units"
            ax.errorbar(ts, ys, yerr=es, marker="o", color=c, label=label, capsize=2)
            ax.plot(ts, law, "--", color=c, alpha=0.7, label=f"law ({label})")
        if setup.regression:
            ax.axhline(r["baseline_mse"], color="grey", ls=":", label="predict the mean")
            ax.set_yscale("log")
        ax.set_xlabel(f"switch step t (level a before t, b from t on; T = {timesteps})")
        ax.set_ylabel(ylabel + " (± 1 s.e.)")
        ax.set_title(f"{setup.title}: {title}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for s in r["switches"]:
        key = (s["from"], s["to"])
        ax.plot([p["t"] for p in s["curve"]], [p["macs_per_step"] for p in s["curve"]],
                marker=".", color=colours.get(key, "black"),
                label=f"{LEVELS[s['from']]} -> {LEVELS[s['to']]} units")
    ax.set_xlabel("switch step t")
    ax.set_ylabel("average MACs per step")
    ax.set_title("cost of the schedule (level_macs weighted by steps)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- report ----------------------------------------------------------------------------------


def _metric(task: str, value: float, se: float | None = None) -> str:
    if SETUPS[task].regression:
        text = f"{value:.4f}"
        return text + (f" ± {se:.4f}" if se is not None else "")
    text = f"{100 * value:.2f}"
    return text + (f" ± {100 * se:.2f}" if se is not None else "")


def _dev(task: str, value: float) -> str:
    return f"{value:+.4f}" if SETUPS[task].regression else f"{100 * value:+.2f}"


def section(r: dict, figure_links: dict) -> str:
    quick = (" (**--quick smoke test: tiny subsets, 2 epochs; the numbers are meaningless**)"
             if r["quick"] else "")
    top = len(LEVELS) - 1
    lines = [
        "## Flexible RNNs: accuracy and cost per level, switched within a sequence", "",
        f"Command: `{r['command']}` — {r['date']}, {r['seconds'] / 60:.1f} min{quick}.  ",
        f"Machine: {machine_line(r['machine'])}.", "",
        "Lambert, Le Bolzer, Schnitzler, *Flexible Recurrent Neural Networks* (ECML PKDD 2020), "
        "method 1: one cell whose first k units form a working smaller cell, for several k, and "
        "whose level may change at any step. Here one `LowRankGRUCell("
        f"{UNITS}, levels={LEVELS})` per task (dense matrices, `reset_after`), trained with "
        "`ScheduleSequence` (every training sequence runs a random level; "
        f"{SWITCH_FRACTION:g} of them switch to another random level at a random step; fresh "
        "schedules every epoch), Adam with cosine decay and `clipnorm=1`, early stopping on the "
        "validation split **at the top level** with the best weights restored. Evaluated on the "
        "test set at each constant level and for a switch at step t from level a to level b "
        "(level a on steps 0..t-1, b on steps t..T-1; every ordered pair of levels; t = 0 is "
        "level b throughout, t = T level a). *MACs/step* of a schedule = `level_macs` of each "
        "level weighted by its number of steps.", "",
        "Data:",
        "- **pmnist**: the MNIST file `mnist.npz` of `--data-dir`; each 28 x 28 image "
        f"downsampled to {MNIST_SIDE} x {MNIST_SIDE} by the mean of each 2 x 2 block, read "
        f"row by row into {MNIST_SIDE ** 2} one-pixel steps and reordered by one fixed "
        f"permutation (`np.random.default_rng({SEED}).permutation({MNIST_SIDE ** 2})`, the "
        "same for every split), standardised with the training pixels' mean and std; "
        f"{MNIST_VAL:,} training images held out (per class) for validation, the remaining "
        "training images all used, the full 10,000-image test set.",
        f"- **adding**: generated (seed {SEED}); T = {ADDING_T} steps of two channels (a value "
        "uniform in [0, 1) and a marker that is 1 at two steps, one drawn uniformly in each "
        "half), target = the sum of the two marked values; "
        + "/".join(f"{n:,}" for n in r["tasks"].get("adding", {}).get("sizes", ADDING_SIZES))
        + " train/validation/test sequences; mean squared error, beside the MSE of always "
        "predicting the training targets' mean.",
        "- **har6**: the bundled HAR-6 windows (128 steps x 9 channels) with `train_quality`'s "
        "protocol: 10 % stratified validation split, every channel standardised with the "
        "training set's mean and std.", "",
        "**Weighted-average law** (the paper's observation): a switch at t scores about "
        "(t m_a + (T - t) m_b) / T, m_l the score at constant level l. *Deviation* = measured "
        "- law (accuracy points, or MSE); the law is counted as holding at t when |deviation| "
        f"<= max({LAW_GAP_FRACTION:g} x |m_a - m_b|, 2 standard errors of the measured value). "
        "Scores are ± one standard error (binomial for accuracy, of the squared errors for "
        "MSE).", "",
    ]
    for task in TASK_ORDER:
        if task not in r["tasks"]:
            continue
        t = r["tasks"][task]
        ev = t["evaluation"]
        tr = t["training"]
        setup = SETUPS[task]
        unit = "MSE" if setup.regression else "accuracy %"
        lines += [f"### {setup.title}", "",
                  f"{t['sizes'][0]:,} / {t['sizes'][1]:,} / {t['sizes'][2]:,} train / "
                  f"validation / test sequences; batch {tr['batch_size']}, learning rate "
                  f"{tr['learning_rate']:g}; best epoch {tr['best_epoch']} of {tr['epochs_run']} "
                  f"(at most {tr['epochs_max']}, patience {tr['patience']}), "
                  f"{tr['train_seconds'] / 60:.1f} min of training "
                  f"({tr['seconds_per_epoch_median']:.1f} s per epoch).", ""]
        if setup.regression:
            lines += [f"Predicting the training targets' mean ({ev['baseline_prediction']:.3f})"
                      f" scores MSE {ev['baseline_mse']:.4f} on the test set.", ""]
        lines += [f"| level | units | test {unit} | MACs/step |", "|--:|--:|--:|--:|"]
        for c in ev["constant"]:
            lines.append(f"| {c['level']} | {c['units']} | {_metric(task, c['metric'], c['se'])}"
                         f" | {c['macs_per_step']:,} |")
        lines += ["", f"Switches, test {unit} (law in brackets) at each switch step t; the last "
                  "two rows are the MACs per step of the lowest <-> highest schedules:", ""]
        steps = ev["switch_steps"]
        lines += ["| a -> b (units) | " + " | ".join(f"t={s}" for s in steps) + " |",
                  "|:--|" + "--:|" * len(steps)]
        for s in ev["switches"]:
            cells = []
            for p in s["curve"]:
                text = _metric(task, p["metric"])
                if "law" in p:
                    text += f" ({_metric(task, p['law'])})"
                cells.append(text)
            lines.append(f"| {LEVELS[s['from']]} -> {LEVELS[s['to']]} | " + " | ".join(cells)
                         + " |")
        for s in ev["switches"]:
            if (s["from"], s["to"]) in ((0, top), (top, 0)):
                lines.append(f"| MACs/step {LEVELS[s['from']]} -> {LEVELS[s['to']]} | "
                             + " | ".join(f"{p['macs_per_step']:,.0f}" for p in s["curve"])
                             + " |")
        lines += ["", "| a -> b (units) | gap m_a - m_b | largest deviation (at t) | "
                  "of the gap | mean abs deviation | law holds at t | fails at t |",
                  "|:--|--:|--:|--:|--:|:--|:--|"]
        for s in ev["switches"]:
            law = s["law"]
            gap = ev["constant"][s["from"]]["metric"] - ev["constant"][s["to"]]["metric"]
            frac = ("-" if law["max_deviation_of_gap"] is None
                    else f"{100 * law['max_deviation_of_gap']:.0f} %")
            lines.append(
                f"| {LEVELS[s['from']]} -> {LEVELS[s['to']]} | {_dev(task, gap)} | "
                f"{_dev(task, law['max_deviation_signed'])} ({law['max_deviation_t']}) | {frac} | "
                f"{_metric(task, law['mean_abs_deviation'])} | "
                f"{', '.join(map(str, law['holds_at'])) or 'none'} | "
                f"{', '.join(map(str, law['fails_at'])) or 'none'} |")
        lines += ["", f"![{setup.title}]({figure_links[task]})", ""]
    d = r.get("deployment")
    if d:
        lines += ["### Deployment cost per level (HAR-6 model, one C build)", ""]
        if not d.get("levels"):
            lines += [f"Not converted: {d.get('error')}", ""]
        else:
            lines += [
                "The HAR-6 model above through `convert_c(target=\"uno\")` (int8 weights, Q15 "
                f"state; {d['weight_bytes']:,} B of constant data; the level input is dropped, "
                "the C takes a level per step in `flex_har6_step_level`). Per step at each "
                f"constant level: ATmega328P cycles (simavr, exact; 16 MHz) and Cortex-M4 "
                f"executed instructions (QEMU), each the mean over {DEVICE_WINDOWS} full test "
                "windows, next to `level_macs`; the integer C's test accuracy per level (the "
                "NumPy oracle over every test window). The host C equals the oracle on 16 "
                "windows with random switches: "
                + ("yes" if d["host_c_equals_oracle_on_switches"] else "**no**") + "; the "
                "emulated boards equal it at every level: "
                + ("yes" if all(row.get(tg, {}).get("equals_oracle", False)
                                for row in d["levels"] for tg in DEVICE_TARGETS) else "**no**")
                + ".", "",
                "| level | units | MACs/step | Uno cycles/step | Uno ms/step | cycles/MAC | "
                "M4 instructions/step | instructions/MAC | float acc % | int C acc % |",
                "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
            for row in d["levels"]:
                uno, m4 = row.get("uno", {}), row.get("cortex-m4", {})
                macs = row["macs_per_step"]

                def cost(x):
                    return f"{x['per_step']:,.0f}" if "per_step" in x else "-"

                def per_mac(x):
                    return f"{x['per_step'] / macs:.1f}" if "per_step" in x else "-"
                lines.append(
                    f"| {row['level']} | {row['units']} | {macs:,} | {cost(uno)} | "
                    f"{uno.get('ms_per_step', float('nan')):.2f} | {per_mac(uno)} | {cost(m4)} "
                    f"| {per_mac(m4)} | {100 * row['float_accuracy']:.2f} | "
                    f"{100 * row['int_accuracy']:.2f} |")
            first = d["levels"][0]
            flash = first.get("uno", {}).get("flash_bytes")
            ram = first.get("uno", {}).get("ram_bytes")
            lines += ["", f"Uno program: {flash:,} B flash, {ram:,} B static RAM "
                      "(avr-size). " if flash else "",
                      f"At HAR's 50 Hz a step has {HAR_SAMPLE_MS:g} ms: on the Uno the levels "
                      "that keep up in real time are "
                      + (", ".join(f"{row['units']} units" for row in d["levels"]
                                   if row.get("uno", {}).get("ms_per_step", 1e9)
                                   <= HAR_SAMPLE_MS) or "none") + ".", ""]
            lines += ["Switches at t = T/2 (float / integer C test accuracy %): " + "; ".join(
                f"{LEVELS[s['from']]} -> {LEVELS[s['to']]} units {100 * s['float_accuracy']:.2f}"
                f" / {100 * s['int_accuracy']:.2f}" for s in d["switches"]) + ".", ""]
    lines += ["### Summary", ""] + [f"- {line}" for line in r["summary"]] + [""]
    return "\n".join(lines) + "\n"


def summarize(r: dict) -> list[str]:
    """One line per task and direction (lowest <-> highest level): the law's largest
    deviation; and the deployment's cost ratio."""
    out = []
    top = len(LEVELS) - 1
    for task in TASK_ORDER:
        if task not in r["tasks"]:
            continue
        ev = r["tasks"][task]["evaluation"]
        const = ", ".join(f"{c['units']} units {_metric(task, c['metric'])}"
                          for c in ev["constant"])
        unit = "MSE" if SETUPS[task].regression else "accuracy %"
        parts = []
        for s in ev["switches"]:
            if (s["from"], s["to"]) not in ((0, top), (top, 0)):
                continue
            law = s["law"]
            parts.append(f"{LEVELS[s['from']]} -> {LEVELS[s['to']]}: largest deviation "
                         f"{_dev(task, law['max_deviation_signed'])} at t = "
                         f"{law['max_deviation_t']} (law holds at "
                         f"{len(law['holds_at'])}/{len(law['holds_at']) + len(law['fails_at'])}"
                         " interior steps)")
        out.append(f"{task} ({unit} at constant levels: {const}); " + "; ".join(parts) + ".")
    d = r.get("deployment") or {}
    if d.get("levels"):
        rows = d["levels"]
        uno = [row.get("uno", {}).get("per_step") for row in rows]
        m4 = [row.get("cortex-m4", {}).get("per_step") for row in rows]
        macs = [row["macs_per_step"] for row in rows]
        if all(uno) and all(m4):
            out.append(
                "har6 C per step, levels " + " / ".join(str(u) for u in LEVELS) + ": MACs "
                + " / ".join(f"{m:,}" for m in macs) + " (top/lowest "
                f"{macs[-1] / macs[0]:.1f}x), Uno cycles " + " / ".join(f"{u:,.0f}" for u in uno)
                + f" ({uno[-1] / uno[0]:.1f}x), M4 instructions "
                + " / ".join(f"{m:,.0f}" for m in m4) + f" ({m4[-1] / m4[0]:.1f}x); integer C "
                "accuracy " + " / ".join(f"{100 * row['int_accuracy']:.2f} %" for row in rows)
                + ".")
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None,
                    help="directory of mnist.npz (or $RNNEDGE_DATA_DIR)")
    ap.add_argument("--tasks", nargs="+", choices=TASK_ORDER, default=list(TASK_ORDER))
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per task (default: "
                    + ", ".join(f"{k} {v.epochs}" for k, v in SETUPS.items()) + ")")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: subsets of " + "/".join(map(str, QUICK_SIZES))
                    + " train/val/test sequences, 2 epochs")
    ap.add_argument("--no-deploy", action="store_true",
                    help="skip the HAR-6 C build and the emulated boards")
    ap.add_argument("--out", default=str(DOC.relative_to(REPO)),
                    help="Markdown file whose flexible section is rewritten")
    ap.add_argument("--results", default=str(RESULTS.relative_to(REPO)),
                    help="JSON file of raw results")
    ap.add_argument("--figures", default="docs",
                    help="directory of the flexible_<task>.png plots")
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs: expected a positive integer, got {args.epochs}")
    return args


def _relative_link(target: Path, doc: Path) -> str:
    return os.path.relpath(target.resolve(), doc.resolve().parent)


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()
    print(f"Machine: {machine_line(info)}", flush=True)
    # load every data set first: a missing MNIST file fails at once
    data = {task: load(task, args.data_dir, args.quick) for task in args.tasks}
    doc = REPO / args.out
    figures = REPO / args.figures
    result: dict = {"command": command_line(), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": info, "quick": args.quick, "units": UNITS, "levels": LEVELS,
                    "cell": "LowRankGRUCell (dense, reset_after)",
                    "switch_fraction": SWITCH_FRACTION, "law_gap_fraction": LAW_GAP_FRACTION,
                    "tasks": {}}
    links = {}
    for task in args.tasks:
        d = data[task]
        epochs = args.epochs or (2 if args.quick else SETUPS[task].epochs)
        patience = 1 if args.quick else SETUPS[task].patience
        model, cell, training = train(task, d, epochs, patience)
        evaluation = evaluate(task, model, cell, d)
        result["tasks"][task] = {
            "sizes": [int(len(d[k][1])) for k in ("train", "val", "test")],
            "training": training, "evaluation": evaluation,
            **({"standardised": d["standardised"]} if "standardised" in d else {})}
        png = figures / f"flexible_{task}.png"
        plot(task, evaluation, png)
        links[task] = _relative_link(png, doc)
        result["tasks"][task]["figure"] = str(png.relative_to(REPO)) if png.is_relative_to(
            REPO) else str(png)
        if task == "har6" and not args.no_deploy:
            result["deployment"] = deploy(model, cell, d)
        print(f"== {task} done at {(time.time() - t_start) / 60:.1f} min", flush=True)
    result["summary"] = summarize(result)
    result["seconds"] = round(time.time() - t_start, 1)
    for line in result["summary"]:
        print(line, flush=True)
    results_path = REPO / args.results
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    out = write_section(NAME, section(result, links), doc)
    print(f"Wrote {results_path}, the {NAME} section of {out} and the plots in {figures} "
          f"({result['seconds'] / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
