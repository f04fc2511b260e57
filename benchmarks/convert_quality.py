"""Conversion quality under TensorFlow Lite Micro: FastGRNN against stock LSTM and GRU, int8.

On HAR-6 and KWS-12, side by side, for the models of the training benchmark
(``benchmarks/train_quality.py``):

* FastGRNN (hidden 80 / 100, low rank, hard thresholding): ``mode="step"`` (one time step,
  state in and out, the loop in the caller), int8 after post-training quantization (PTQ) and
  after a short quantization-aware fine-tune (QAT, :func:`keras_rnnedge.optimize.quantize_model`);
* stock ``LSTM`` at the same hidden size: ``mode="fused"`` (``UNIDIRECTIONAL_SEQUENCE_LSTM``), int8;
* stock ``GRU`` at the same hidden size: ``mode="unrolled"`` (TFLite Micro has no GRU op), int8.

Measured for each: flatbuffer bytes, TFLite Micro arena bytes (the converter's audit against the
Arduino Nano 33 BLE Sense, measured on this host), TFLite Micro host time per time step, int8
accuracy over the test set in the TFLite Micro interpreter, the Keras accuracy it came from,
the agreement of int8 and Keras predictions, and conversion seconds.

Training reuses the training benchmark's recipe (its data standardisation, model builder, Adam
with cosine decay, early stopping, EdgeML's dense -> IHT -> sparse schedule for FastGRNN) with a
smaller epoch budget. Writes ``benchmarks/results/convert_quality.json`` and the
``convert_quality`` section of ``docs/benchmarks.md``. Run from the repository root::

    python benchmarks/convert_quality.py --data-dir ../shared/data
    python benchmarks/convert_quality.py --quick --data-dir ../shared/data   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks import train_quality  # noqa: E402
from benchmarks.common import (  # noqa: E402
    DOC,
    REPO,
    command_line,
    machine_info,
    machine_line,
    target_line,
    write_section,
)
from benchmarks.train_quality import (  # noqa: E402
    SEED,
    TASKS,
    Task,
    load_task,
    specs_for,
    train_one,
)
from keras_rnnedge._compat import keras, np  # noqa: E402
from keras_rnnedge.converters import convert  # noqa: E402
from keras_rnnedge.micro_targets.audit import TargetFitError  # noqa: E402
from keras_rnnedge.micro_targets.emulate import emulate  # noqa: E402
from keras_rnnedge.optimize import HardThresholding, quantize_model  # noqa: E402

SECTION = "convert_quality"
RESULTS = REPO / "benchmarks" / "results" / "convert_quality.json"
TARGET = "nano33ble"
TASK_NAMES = ("har6", "kws12")
#: Training windows used to calibrate the int8 ranges (the converter uses at most 64).
REPRESENTATIVE_WINDOWS = 64
#: QAT fine-tune learning rate: FastGRNN's cosine schedule ends at 0.05 x 0.02 = 0.001.
QAT_LR = 1e-3
#: The issue's targets.
SIZE_RATIO_TARGET = 0.25
ACCURACY_POINTS = 1.0


@dataclasses.dataclass(frozen=True)
class Budget:
    """Epochs of the reduced training budget (the training benchmark uses 30 / 60 epochs).

    Early-stopping patience is the training benchmark's own (``Task.patience``) unless given.
    """

    stock_epochs: int
    fastgrnn_epochs: int  # split a third each: dense, IHT, sparse fine-tuning
    qat_epochs: int
    patience: int | None = None


BUDGETS = {
    "har6": Budget(stock_epochs=15, fastgrnn_epochs=21, qat_epochs=3),
    "kws12": Budget(stock_epochs=30, fastgrnn_epochs=30, qat_epochs=3),
}
QUICK_BUDGET = Budget(stock_epochs=1, fastgrnn_epochs=3, qat_epochs=1, patience=1)
QUICK_TEST = 48
QUICK_REPRESENTATIVE = 8
#: --quick crops every window to its first time steps: the unrolled GRU converts in seconds.
QUICK_STEPS = 16

# Model kind -> conversion mode.
CONVERSION_MODES = {"lstm": "fused", "gru": "unrolled", "fastgrnn": "step"}


def log(text: str) -> None:
    print(text, flush=True)


# -- training ----------------------------------------------------------------------------------


@contextlib.contextmanager
def capture_models():
    """The models ``train_quality.train_one`` builds: it returns only its record, so the trained
    model is taken at construction (``train_one`` looks ``build_model`` up at call time)."""
    built: list = []
    original = train_quality.build_model

    def capture(*args, **kwargs):
        model = original(*args, **kwargs)
        built.append(model)
        return model

    train_quality.build_model = capture
    try:
        yield built
    finally:
        train_quality.build_model = original


def train(task: Task, spec, data: dict, budget: Budget):
    """Train with the training benchmark's recipe; returns (model, record without summary)."""
    epochs = budget.fastgrnn_epochs if spec.kind == "fastgrnn" else budget.stock_epochs
    with capture_models() as built:
        record = train_one(task, spec, data, epochs, budget.patience)
    record.pop("summary", None)
    return built[-1], record


def qat_finetune(task: Task, model, record: dict, data: dict, epochs: int):
    """QAT copy of a trained FastGRNN, fine-tuned for ``epochs`` at a low, constant rate.

    :class:`HardThresholding` with no dense and no IHT epochs re-applies the trained support
    after every batch, so the fine-tune keeps the sparsity (tfmot's QAT alone would fill it).
    As in the training recipe, the epoch with the best validation accuracy is kept.
    """
    qat = quantize_model(model)
    qat.compile(
        optimizer=keras.optimizers.Adam(QAT_LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    keep = HardThresholding(record["density"], dense_epochs=0, iht_epochs=0)
    best = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=epochs, restore_best_weights=True
    )
    keras.utils.set_random_seed(SEED)
    start = time.perf_counter()
    history = qat.fit(
        *data["train"],
        validation_data=data["val"],
        epochs=epochs,
        batch_size=task.batch_size,
        callbacks=[keep, best],
        verbose=0,
        shuffle=True,
    )
    seconds = time.perf_counter() - start
    for epoch in range(epochs):
        log(
            f"  {task.name} FastGRNN QAT epoch {epoch + 1}: "
            f"loss {history.history['loss'][epoch]:.4f} "
            f"acc {history.history['accuracy'][epoch]:.4f} "
            f"val_acc {history.history['val_accuracy'][epoch]:.4f}"
        )
    return qat, {
        "epochs": epochs,
        "best_epoch": best.best_epoch + 1,
        "learning_rate": QAT_LR,
        "seconds": seconds,
        "sparsity": keep.sparsity(),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }


def keras_predictions(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)


# -- conversion and emulation ------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def convert_and_run(
    task: Task,
    label: str,
    model,
    mode: str,
    representative: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    reference: np.ndarray,
) -> dict:
    """int8 conversion for the target, then the whole evaluation set through TFLite Micro.

    A model that converts but does not fit the target keeps its measured sizes (from the
    audit's report) and is converted again for the host target (no audit), so that its
    accuracy can still be measured; a conversion that fails records the error and no numbers.
    """
    row: dict = {
        "task": task.name,
        "model": label,
        "mode": mode,
        "quantization": "int8",
        "target": TARGET,
        "representative_windows": int(len(representative)),
    }
    name = f"{task.name}_{label}".lower().replace("-", "_").replace(" ", "_")
    log(f"{task.name} {label}: converting ({mode}, int8, target {TARGET})")
    start = time.perf_counter()
    try:
        result = convert(
            model,
            target=TARGET,
            quantization="int8",
            mode=mode,
            representative_data=representative,
            name=name,
        )
        report = result.audit
        row["convert_seconds"] = time.perf_counter() - start
        row["fits"], row["fit_error"] = True, None
    except TargetFitError as exc:
        row["convert_seconds"] = time.perf_counter() - start
        report = exc.report
        row["fits"], row["fit_error"] = False, str(exc)
        log(f"{task.name} {label}: does not fit {TARGET}: {exc}")
        start = time.perf_counter()
        try:
            result = convert(
                model,
                target="host",
                quantization="int8",
                mode=mode,
                representative_data=representative,
                name=name,
            )
        except Exception as exc2:  # reported in the table
            row["error"] = "host re-conversion failed: " + first_line(exc2)
            log(f"{task.name} {label}: {row['error']}")
            result = None
        row["host_convert_seconds"] = time.perf_counter() - start
    except Exception as exc:  # any conversion failure is a result to report
        row["convert_seconds"] = time.perf_counter() - start
        row["error"] = first_line(exc)
        row["error_full"] = str(exc)
        log(f"{task.name} {label}: conversion failed after {row['convert_seconds']:.0f} s: "
            f"{row['error']}")
        return row
    row.update(
        flatbuffer_bytes=report.model_bytes,
        arena_bytes=report.arena_bytes,
        arena_with_margin=report.arena_with_margin,
        flash_needed=report.flash_needed,
        ram_needed=report.ram_needed,
        flash_available=report.flash_available,
        ram_available=report.ram_available,
        ops=list(report.ops),
    )
    log(
        f"{task.name} {label}: flatbuffer {report.model_bytes:,} B, arena "
        f"{report.arena_bytes:,} B, converted in {row['convert_seconds']:.1f} s"
    )
    if result is None:
        return row
    row["checks"] = dict(result.checks)
    row["folded"] = list(result.lowered.folded)
    row["host_flatbuffer_bytes"] = len(result.flatbuffer)
    # The audit measured the arena of the target conversion. A host re-conversion (after a fit
    # failure) is not byte-identical (the converter is not deterministic on unrolled graphs) and
    # may need a few bytes more: it runs in the audit's arena plus the sketch's margin, and only
    # if that fails in an arena measured for it.
    same = len(result.flatbuffer) == report.model_bytes and row["fits"]
    arenas = [report.arena_bytes if same else report.arena_with_margin, None]
    n = len(x_test)
    marks = {max(1, round(n * f)) for f in (0.25, 0.5, 0.75)}
    eval_start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done in marks:
            log(
                f"  {task.name} {label}: TFLM {done}/{total} sequences "
                f"({time.perf_counter() - eval_start:.0f} s)"
            )

    errors = []
    for arena in arenas:
        try:
            run = emulate(result, x_test, runtime="tflm", arena_bytes=arena, progress=progress)
            break
        except Exception as exc:  # reported in the table
            errors.append(first_line(exc))
            log(f"{task.name} {label}: TFLite Micro run with arena {arena} failed: {errors[-1]}")
    else:
        row["error"] = "TFLite Micro run failed: " + " / ".join(errors)
        return row
    row["tflm_errors"] = errors
    eval_seconds = time.perf_counter() - eval_start
    predictions = run.predictions()
    steps = x_test.shape[1]
    invokes = run.step_seconds
    per_step = (
        float(np.median(invokes)) if mode == "step" else float(np.median(invokes[:, 0])) / steps
    )
    row.update(
        tflm_arena_used=run.arena_bytes,
        eval_windows=int(n),
        eval_seconds=eval_seconds,
        timesteps=int(steps),
        invokes_per_window=int(invokes.shape[1]),
        seconds_per_invoke_median=float(np.median(invokes)),
        seconds_per_step=per_step,
        int8_accuracy=float(np.mean(predictions == y_test)),
        agreement=float(np.mean(predictions == reference)),
    )
    log(
        f"{task.name} {label}: int8 TFLM accuracy {100 * row['int8_accuracy']:.2f} %, "
        f"agreement with Keras {100 * row['agreement']:.2f} %, "
        f"{1e6 * per_step:.1f} us/step, {eval_seconds:.0f} s for {n} windows"
    )
    return row


# -- one task ------------------------------------------------------------------------------------


def evaluation_subset(data: dict, max_test: int | None):
    x, y = data["test"]
    if max_test is None or max_test >= len(y):
        return x, y, False
    idx = np.sort(np.random.default_rng(SEED).permutation(len(y))[:max_test])
    return x[idx], y[idx], True


def run_task(task: Task, data: dict, budget: Budget, args) -> tuple[list[dict], list[dict]]:
    """Train, convert and evaluate the three models of a task; returns (rows, training records)."""
    x_test, y_test, subset = evaluation_subset(data, args.max_test)
    x_train = data["train"][0]
    rng = np.random.default_rng(SEED)
    representative = x_train[np.sort(rng.permutation(len(x_train))[: args.representative])]
    wanted = {f"LSTM-{task.fast_units}": 0, f"GRU-{task.fast_units}": 1, "FastGRNN": 2}
    specs = sorted((s for s in specs_for(task) if s.label in wanted),
                   key=lambda s: wanted[s.label])
    rows, trained = [], []
    for spec in specs:
        model, record = train(task, spec, data, budget)
        trained.append(record)
        reference = keras_predictions(model, x_test, task.batch_size)
        float_acc = float(np.mean(reference == y_test))
        common = {
            "units": spec.units,
            "keras_float_accuracy": float_acc,
            "keras_float_test_accuracy_full": record["test_accuracy"],
            "eval_subset": subset,
        }
        if spec.kind != "fastgrnn":
            row = convert_and_run(
                task, spec.label, model, CONVERSION_MODES[spec.kind], representative, x_test,
                y_test, reference,
            )
            rows.append({**row, **common, "keras_reference": "float"})
            continue
        if not args.qat_only:
            row = convert_and_run(
                task, "FastGRNN PTQ", model, "step", representative, x_test, y_test, reference
            )
            rows.append({**row, **common, "keras_reference": "float"})
        qat, qat_record = qat_finetune(task, model, record, data, budget.qat_epochs)
        qat_reference = keras_predictions(qat, x_test, task.batch_size)
        qat_acc = float(np.mean(qat_reference == y_test))
        log(f"{task.name} FastGRNN QAT: Keras accuracy {100 * qat_acc:.2f} % "
            f"(float {100 * float_acc:.2f} %), best QAT epoch {qat_record['best_epoch']}")
        row = convert_and_run(
            task, "FastGRNN QAT", qat, "step", representative, x_test, y_test, qat_reference
        )
        rows.append(
            {**row, **common, "keras_reference": "QAT", "keras_qat_accuracy": qat_acc,
             "qat": qat_record}
        )
    return rows, trained


# -- report --------------------------------------------------------------------------------------


def _find(rows, task, model):
    return next((r for r in rows if r["task"] == task and r["model"] == model), None)


def _total(row) -> int | None:
    if row is None or row.get("flatbuffer_bytes") is None or row.get("arena_bytes") is None:
        return None
    return row["flatbuffer_bytes"] + row["arena_bytes"]


def evaluate_targets(rows: list[dict], tasks: list[Task]) -> list[dict]:
    targets = []
    for task in tasks:
        lstm = _find(rows, task.name, f"LSTM-{task.fast_units}")
        for variant in ("FastGRNN QAT", "FastGRNN PTQ"):
            fast = _find(rows, task.name, variant)
            if fast is None or lstm is None:
                continue
            fast_total, lstm_total = _total(fast), _total(lstm)
            fast_acc, lstm_acc = fast.get("int8_accuracy"), lstm.get("int8_accuracy")
            if None in (fast_total, lstm_total, fast_acc, lstm_acc):
                targets.append({
                    "task": task.name, "model": variant, "passed": False,
                    "target": "flatbuffer + arena <= 1/4 of the LSTM's at accuracy within 1 point",
                    "text": "not measured: " + (fast.get("error") or lstm.get("error") or "?"),
                })
                continue
            ratio = fast_total / lstm_total
            gap = 100 * (fast_acc - lstm_acc)
            targets.append({
                "task": task.name,
                "model": variant,
                "target": f"{variant} (step, int8) flatbuffer + arena <= 1/4 of LSTM-"
                f"{task.fast_units} (fused, int8) at int8 accuracy within "
                f"{ACCURACY_POINTS:g} point",
                "ratio": ratio,
                "accuracy_gap_points": gap,
                "passed": ratio <= SIZE_RATIO_TARGET and gap >= -ACCURACY_POINTS,
                "text": (
                    f"({fast['flatbuffer_bytes']:,} + {fast['arena_bytes']:,}) B / "
                    f"({lstm['flatbuffer_bytes']:,} + {lstm['arena_bytes']:,}) B = "
                    f"{fast_total:,} / {lstm_total:,} = **{ratio:.3f}** (need <= "
                    f"{SIZE_RATIO_TARGET:g}: {'ok' if ratio <= SIZE_RATIO_TARGET else 'no'}); "
                    f"int8 accuracy {100 * fast_acc:.2f} % vs {100 * lstm_acc:.2f} %, "
                    f"{gap:+.3f} points (need >= {-ACCURACY_POINTS:+.2f}: "
                    f"{'ok' if gap >= -ACCURACY_POINTS else 'no'})"
                ),
            })
        qat = _find(rows, task.name, "FastGRNN QAT")
        if qat is not None and qat.get("int8_accuracy") is not None:
            diff = 100 * (qat["int8_accuracy"] - qat["keras_qat_accuracy"])
            targets.append({
                "task": task.name,
                "model": "FastGRNN QAT",
                "target": f"FastGRNN int8 (TFLite Micro) accuracy within {ACCURACY_POINTS:g} "
                "point of the Keras QAT model",
                "accuracy_gap_points": diff,
                "passed": abs(diff) <= ACCURACY_POINTS,
                "text": (
                    f"int8 {100 * qat['int8_accuracy']:.2f} % vs Keras QAT "
                    f"{100 * qat['keras_qat_accuracy']:.2f} %: {diff:+.3f} points (need within "
                    f"+-{ACCURACY_POINTS:.2f}); predictions agree on "
                    f"{100 * qat['agreement']:.2f} %"
                ),
            })
    return targets


def _int(value) -> str:
    return "—" if value is None else f"{value:,}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _fits_cell(row) -> str:
    if row.get("fits") is None:
        return "—"
    if row["fits"]:
        return "yes"
    # One line per memory: "model needs ... B of flash (...) but ... has ... B".
    problems = [
        line.strip() for line in row["fit_error"].splitlines()[1:] if "needs" in line
    ]
    short = []
    for line in problems:
        kind = "flash" if "flash" in line.split("(")[0] else "RAM"
        needs = line.split("needs ", 1)[1].split(" B", 1)[0]
        has = line.rsplit(" has ", 1)[1].split(" B", 1)[0]
        short.append(f"{kind} {needs} > {has} B")
    return "**no**: " + "; ".join(short) if short else "**no**"


def render(rows, trained, tasks, targets, info, args, started, elapsed, budgets) -> str:
    quick = args.quick
    lines = [
        "## Conversion quality under TFLite Micro: FastGRNN vs stock LSTM/GRU, int8 "
        "(`benchmarks/convert_quality.py`)",
        "",
        "```",
        command_line(),
        "```",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; whole run {elapsed / 60:.1f} min (training "
        "included)"
        + (
            f" (**--quick smoke test: tiny subsets cropped to {QUICK_STEPS} time steps, 1-3 "
            "epochs; numbers are meaningless**)"
            if quick
            else ""
        ),
        f"- Machine: {machine_line(info)}; load average at the end {info.get('load_at_end')}",
        "- Models: trained with the recipe of `benchmarks/train_quality.py` (same data "
        "standardisation, validation split, Adam with cosine decay, early stopping with best "
        "weights restored, EdgeML's dense -> IHT -> sparse schedule for FastGRNN) on a smaller "
        "epoch budget: "
        + "; ".join(
            f"{t.name} stock at most {budgets[t.name].stock_epochs} epochs, FastGRNN "
            f"{budgets[t.name].fastgrnn_epochs} (a third per phase), patience "
            f"{budgets[t.name].patience}"
            for t in tasks
        )
        + f". FastGRNN then gets a QAT fine-tune (`keras_rnnedge.optimize.quantize_model`, "
        f"{' / '.join(sorted({str(budgets[t.name].qat_epochs) for t in tasks}))} epochs, Adam at a "
        f"constant {QAT_LR:g}, the sparse support re-applied after every batch).",
        f"- Conversion: `keras_rnnedge.converters.convert(model, target=\"{TARGET}\", "
        "quantization=\"int8\", mode=...)`: FastGRNN `step` (one time step, state in/out, the "
        "time loop in the caller), LSTM `fused` (UNIDIRECTIONAL_SEQUENCE_LSTM), GRU `unrolled` "
        f"(TFLite Micro has no GRU op). Calibration on {args.representative} training windows "
        "(seeded random choice; the converter uses at most 64). *PTQ* = the float model "
        "quantized after training; *QAT* = the QAT fine-tuned model.",
        "- Columns: *flatbuffer B* = the `.tflite` bytes (the C array); *arena B* = the TFLite "
        "Micro tensor arena the audit measured on this 64-bit host (exact to 16 B; the sketch "
        "allocates it +10 % + 1 KiB); *fits* = the audit against the Arduino Nano 33 BLE Sense "
        "(1 MB flash incl. ~100 KB estimated runtime, 256 KB RAM), with the audit's figures "
        "when it does not fit (the model is then converted again for the host target to measure "
        "its accuracy); *us/step* = median host wall time of `invoke()` in the TFLite Micro "
        "Python interpreter (reference kernels, x86-64, not a microcontroller) per time step "
        "(step mode: one invoke per step; fused/unrolled: one invoke per window / time steps); "
        "*Keras acc* = the Keras model the conversion started from (float, or the QAT model), "
        "*int8 acc* = the int8 flatbuffer run window by window in TFLite Micro; *agree* = "
        "fraction of windows where int8 and Keras predict the same class; *convert s* = "
        "`convert()` wall time including the audit's arena measurement.",
        "",
    ]
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task.name]
        if not task_rows:
            continue
        n_eval = next((r.get("eval_windows") for r in task_rows if r.get("eval_windows")), None)
        subset = any(r.get("eval_subset") for r in task_rows)
        n_test = len(args.data[task.name]["test"][1])
        lines += [f"### {task.title}", ""]
        lines.append(
            f"Evaluated on {'a seeded subset of ' if subset else 'all '}{_int(n_eval)} of "
            f"{n_test:,} test windows ({task_rows[0].get('timesteps') or '?'} time steps each)."
        )
        if task.note:
            lines += ["", f"FastGRNN configuration: {task.note}"]
        lines += [
            "",
            "| model | mode | flatbuffer B | arena B | flatbuffer + arena B | fits nano33ble | "
            "us/step | Keras float acc % | Keras QAT acc % | int8 TFLM acc % | agree % | "
            "convert s |",
            "|:--|:--|--:|--:|--:|:--|--:|--:|--:|--:|--:|--:|",
        ]
        for r in task_rows:
            if r.get("flatbuffer_bytes") is None:
                err = r.get("error", "failed").replace("|", "\\|")
                lines.append(
                    f"| {r['model']} | {r['mode']} | conversion failed: {err} | | | | | "
                    f"{_pct(r.get('keras_float_accuracy'))} | | | | "
                    f"{r.get('convert_seconds', 0):.1f} |"
                )
                continue
            acc = _pct(r.get("int8_accuracy"))
            if r.get("error"):
                acc = r["error"].replace("|", "\\|")
            per_step = r.get("seconds_per_step")
            lines.append(
                f"| {r['model']} | {r['mode']} | {_int(r['flatbuffer_bytes'])} | "
                f"{_int(r['arena_bytes'])} | {_int(_total(r))} | {_fits_cell(r)} | "
                f"{'—' if per_step is None else f'{1e6 * per_step:.1f}'} | "
                f"{_pct(r.get('keras_float_accuracy'))} | {_pct(r.get('keras_qat_accuracy'))} | "
                f"{acc} | {_pct(r.get('agreement'))} | {r['convert_seconds']:.1f} |"
            )
        fast = next((t for t in trained if t["task"] == task.name and t["kind"] == "fastgrnn"),
                    None)
        notes = []
        for t in trained:
            if t["task"] != task.name:
                continue
            notes.append(
                f"{t['model']} best epoch {t['best_epoch']}/{t['epochs_run']} "
                f"(lr {t['learning_rate']:g}, {t['wall_seconds']:.0f} s; "
                f"{t['bytes_int8']:,} B of int8 weights by `keras_rnnedge.summary`)"
            )
        lines += ["", "Training: " + "; ".join(notes) + "."]
        if fast and fast.get("sparsity"):
            sparsity = ", ".join(
                f"{key.rsplit('/', 1)[-1]} {100 * value:.0f} %"
                for key, value in fast["sparsity"].items()
            )
            lines.append(
                f"FastGRNN zeros per thresholded matrix: {sparsity} (kept through QAT; the "
                "int8 flatbuffer stores them as dense FULLY_CONNECTED weights)."
            )
        qat = next((r for r in task_rows if r.get("qat")), None)
        if qat:
            lines.append(
                f"QAT fine-tune: best validation accuracy at epoch {qat['qat']['best_epoch']} of "
                f"{qat['qat']['epochs']} (kept), {qat['qat']['seconds']:.0f} s."
            )
        for r in task_rows:
            if r.get("fits") is not False:
                continue
            head, *rest = [line.strip() for line in r["fit_error"].splitlines() if line.strip()]
            lines.append(f"{r['model']} audit: {head} " + "; ".join(rest))
            host = r.get("host_flatbuffer_bytes")
            if "host_convert_seconds" in r and host is not None:
                same = host == r["flatbuffer_bytes"]
                lines.append(
                    f"Its accuracy and time come from a second conversion of the same model for "
                    f"the host target ({r['host_convert_seconds']:.1f} s), whose flatbuffer has "
                    + ("the same size." if same else
                       f"{host:,} B instead of {r['flatbuffer_bytes']:,} B (the converter is not "
                       "byte-for-byte deterministic on this unrolled graph)")
                    + (f"; TFLite Micro ran it in a {r['tflm_arena_used']:,} B arena ("
                       + ("the audit's arena + margin" if r["tflm_arena_used"]
                          == r["arena_with_margin"] else "measured for it") + ")."
                       if r.get("tflm_arena_used") else ".")
                )
        lines.append("")
    lines += ["### Targets", ""]
    for t in targets:
        lines.append(f"- {target_line(t)}")
    if not targets:
        lines.append("- (no target could be evaluated)")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", default=",".join(TASK_NAMES), help="comma-separated subset of %(default)s"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: tiny subsets ({QUICK_TEST} test windows) cropped to {QUICK_STEPS} time "
        "steps, 1 epoch (3 for FastGRNN's phases), 1 QAT epoch",
    )
    parser.add_argument("--stock-epochs", type=int, default=None,
                        help="LSTM/GRU epochs for every task (default per task: "
                        + ", ".join(f"{k} {b.stock_epochs}" for k, b in BUDGETS.items()) + ")")
    parser.add_argument("--fastgrnn-epochs", type=int, default=None,
                        help="FastGRNN epochs (dense+IHT+sparse) for every task (default: "
                        + ", ".join(f"{k} {b.fastgrnn_epochs}" for k, b in BUDGETS.items())
                        + ")")
    parser.add_argument("--qat-epochs", type=int, default=None,
                        help="QAT fine-tune epochs (default 3)")
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience (default: the training benchmark's, "
                        + ", ".join(f"{k} {TASKS[k].patience}" for k in BUDGETS) + ")")
    parser.add_argument("--max-test", type=int, default=None,
                        help="evaluate int8 accuracy on a seeded subset of this many test "
                        "windows (default: the whole test set)")
    parser.add_argument("--representative", type=int, default=None,
                        help=f"calibration windows (default {REPRESENTATIVE_WINDOWS})")
    parser.add_argument("--qat-only", action="store_true",
                        help="skip the post-training-quantized FastGRNN row")
    parser.add_argument("--out", default=str(DOC.relative_to(REPO)),
                        help="Markdown file whose convert_quality section is rewritten")
    parser.add_argument("--results", default=str(RESULTS.relative_to(REPO)),
                        help="JSON file of raw results")
    parser.add_argument("--data-dir", default=None,
                        help="directory holding speech_commands_v2_test12.npz (default: "
                        "$RNNEDGE_DATA_DIR)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASK_NAMES]
    if unknown or not names:
        parser.error(f"--tasks: expected names from {list(TASK_NAMES)}, got {args.tasks!r}")
    args.task_list = [TASKS[n] for n in names]
    for flag in ("stock_epochs", "fastgrnn_epochs", "qat_epochs", "patience", "max_test",
                 "representative"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')}: expected a positive integer, got {value}")
    if args.fastgrnn_epochs is not None and args.fastgrnn_epochs < 3:
        parser.error(f"--fastgrnn-epochs: expected >= 3 (dense, IHT, sparse), got "
                     f"{args.fastgrnn_epochs}")
    if args.quick:
        args.max_test = args.max_test or QUICK_TEST
        args.representative = args.representative or QUICK_REPRESENTATIVE
    args.representative = args.representative or REPRESENTATIVE_WINDOWS
    return args


def budget_for(task: Task, args) -> Budget:
    base = QUICK_BUDGET if args.quick else BUDGETS[task.name]
    return Budget(
        stock_epochs=args.stock_epochs or base.stock_epochs,
        fastgrnn_epochs=args.fastgrnn_epochs or base.fastgrnn_epochs,
        patience=args.patience or base.patience or task.patience,
        qat_epochs=args.qat_epochs or base.qat_epochs,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    info = machine_info()
    log(f"Machine: {machine_line(info)}")
    # Load everything first: a missing KWS file fails in seconds.
    args.data = {task.name: load_task(task, args.data_dir, args.quick) for task in args.task_list}
    if args.quick:
        for d in args.data.values():
            for split in ("train", "val", "test"):
                x, y = d[split]
                d[split] = (np.ascontiguousarray(x[:, :QUICK_STEPS]), y)
            d["input_shape"] = (QUICK_STEPS, *tuple(d["input_shape"])[1:])
    budgets = {task.name: budget_for(task, args) for task in args.task_list}
    rows, trained = [], []
    for task in args.task_list:
        d, b = args.data[task.name], budgets[task.name]
        log(
            f"== {task.title}: train {len(d['train'][1])}, val {len(d['val'][1])}, test "
            f"{len(d['test'][1])}; stock {b.stock_epochs} epochs, FastGRNN {b.fastgrnn_epochs} "
            f"+ {b.qat_epochs} QAT, patience {b.patience}"
        )
        task_rows, task_trained = run_task(task, d, b, args)
        rows += task_rows
        trained += task_trained
        log(f"== {task.name} done at {(time.perf_counter() - t0) / 60:.1f} min")
    elapsed = time.perf_counter() - t0
    info["load_at_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    targets = evaluate_targets(rows, args.task_list)
    results_path = REPO / args.results
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(
        json.dumps(
            {
                "command": command_line(),
                "date": started.isoformat(timespec="seconds"),
                "elapsed_seconds": elapsed,
                "quick": args.quick,
                "machine": info,
                "budgets": {k: dataclasses.asdict(v) for k, v in budgets.items()},
                "representative_windows": args.representative,
                "max_test": args.max_test,
                "rows": rows,
                "training": trained,
                "targets": targets,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    out = write_section(
        SECTION,
        render(rows, trained, args.task_list, targets, info, args, started, elapsed, budgets),
        REPO / args.out,
    )
    for t in targets:
        log(target_line(t))
    log(f"Wrote {results_path} and the {SECTION} section of {out} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
