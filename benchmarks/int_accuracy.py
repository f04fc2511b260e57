"""Integer model accuracy: the FastGRNN models of ``train_quality.py``, float vs fixed point.

Trains the thresholded FastGRNN of :mod:`benchmarks.train_quality` (its task configurations,
data protocol and recipe: low rank, dense -> IHT -> sparse through ``HardThresholding``, Adam
with cosine decay, early stopping on validation accuracy within the sparse phase) for HAR-6,
KWS-12 and HAR-2, quantizes each with ``quantize_model`` (int8 and int16 weights, Q15 int16
state; representative data: 512 random training windows) and reports float vs integer test
accuracy and argmax agreement.

The integer accuracy is that of the exact integer arithmetic: ``IntModel.run`` (the NumPy
oracle, stepping the whole test set as one batch), and the C from ``generate_c`` compiled for
the host and run on every test window (its scores must equal the oracle's, bit for bit).

Writes ``benchmarks/results/int_accuracy.json`` and the ``int_accuracy`` section of
``docs/benchmarks.md``. Run from the repository root::

    python benchmarks/int_accuracy.py --data-dir ../shared/data           # about 10-15 min
    python benchmarks/int_accuracy.py --quick --data-dir ../shared/data   # smoke test, no files
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks.common import (  # noqa: E402
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
    build_model,
    iht_schedule,
    load_task,
    specs_for,
)
from keras_rnnedge._compat import keras, np  # noqa: E402
from keras_rnnedge.converters.cgen import generate_c  # noqa: E402
from keras_rnnedge.converters.intmodel import activate, quantize_model  # noqa: E402
from keras_rnnedge.micro_targets.crun import CModelSources, run_c  # noqa: E402
from keras_rnnedge.optimize import HardThresholding  # noqa: E402

NAME = "int_accuracy"
RESULTS = REPO / "benchmarks" / "results" / f"{NAME}.json"
TASK_ORDER = ("har6", "kws12", "har2")
TARGET_TASKS = ("har6", "kws12")  # the target: within 1 point of the float model
MAX_DROP_POINTS = 1.0
REPRESENTATIVE = 512
WEIGHT_BITS = (8, 16)


def train_fastgrnn(task, data: dict, max_epochs: int, patience: int):
    """The thresholded FastGRNN of ``train_quality`` (same spec, schedule and early stopping)."""
    spec = next(s for s in specs_for(task) if s.kind == "fastgrnn")
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    schedule = iht_schedule(max_epochs)
    epochs = sum(schedule)
    iht = HardThresholding(spec.density, dense_epochs=schedule[0], iht_epochs=schedule[1])
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True,
        start_from_epoch=schedule[0] + schedule[1])
    steps = -(-len(data["train"][1]) // task.batch_size)
    model = build_model(spec, data["input_shape"], data["num_classes"], epochs * steps)
    started = time.perf_counter()
    model.fit(*data["train"], validation_data=data["val"], epochs=epochs,
              batch_size=task.batch_size, callbacks=[iht, stopper], verbose=0, shuffle=True)
    info = {"spec": spec.describe(), "units": spec.units, "learning_rate": spec.lr,
            "epochs_max": epochs, "iht_schedule": list(schedule),
            "epochs_run": len(model.history.epoch) if model.history else epochs,
            "best_epoch": stopper.best_epoch + 1,
            "train_seconds": round(time.perf_counter() - started, 1)}
    return model, info


def host_scores(im, x_test: np.ndarray, ident: str) -> np.ndarray:
    """Scores of the generated C (compiled with the host gcc) on every sequence of ``x_test``."""
    sources = CModelSources(ident, generate_c(im, ident), im.features, im.num_outputs)
    return run_c(sources, im.quantize_input(x_test), target="host", timeout=900).scores


def activation_errors(frac: int = 15) -> dict:
    """Max |integer - float| of the approximated activations in ``Q{frac}`` over every input
    from -16 to 16 (in steps of 2**-frac; beyond, both are saturated)."""
    v = np.arange(-16 << frac, (16 << frac) + 1, dtype=np.int64)
    x = v / 2.0**frac
    exact = {"tanh": np.tanh(x), "sigmoid": 0.5 * (1.0 + np.tanh(0.5 * x))}
    return {name: float(np.max(np.abs(activate(v, name, frac) / 2.0**frac - ref)))
            for name, ref in exact.items()}


def evaluate(task, data: dict, model) -> dict:
    x_train, _ = data["train"]
    x_test, y_test = data["test"]
    float_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
    float_acc = float(np.mean(float_pred == y_test))
    rng = np.random.default_rng(SEED)
    rep = x_train[np.sort(rng.permutation(len(x_train))[:REPRESENTATIVE])]
    record = {"float_accuracy": float_acc, "test_windows": int(len(y_test)),
              "steps": int(x_test.shape[1]), "features": int(x_test.shape[2]), "int": {}}
    for bits in WEIGHT_BITS:
        im = quantize_model(model, rep, weight_bits=bits)
        started = time.perf_counter()
        scores = im.run(x_test)
        oracle_seconds = time.perf_counter() - started
        started = time.perf_counter()
        c_scores = host_scores(im, x_test, f"{task.name}_fastgrnn_int{bits}")
        c_seconds = time.perf_counter() - started
        if not np.array_equal(c_scores, scores):
            bad = int(np.sum(np.any(c_scores != scores, axis=1)))
            raise RuntimeError(f"{task.name} int{bits}: the host C differs from the oracle on "
                               f"{bad} of {len(scores)} sequences")
        int_pred = np.argmax(scores, axis=1)
        int_acc = float(np.mean(int_pred == y_test))
        record["int"][str(bits)] = {
            "accuracy": int_acc,
            "drop_points": 100.0 * (float_acc - int_acc),
            "delta_points": 100.0 * (int_acc - float_acc),
            "agreement": float(np.mean(int_pred == float_pred)),
            "c_equals_oracle": True,
            "oracle_seconds": round(oracle_seconds, 2),
            "host_c_seconds": round(c_seconds, 2),
            "weight_bytes": im.weight_bytes(),
            "state_shift": [layer.state_shift for layer in im.recurrent],
            "approximations": list(im.approximations),
        }
        print(f"  {task.name} int{bits}: float {100 * float_acc:.2f} %, integer "
              f"{100 * int_acc:.2f} %, agreement {100 * record['int'][str(bits)]['agreement']:.2f}"
              f" % (oracle {oracle_seconds:.1f} s, host C {c_seconds:.1f} s, C == oracle)",
              flush=True)
    return record


def _delta(task: dict, integer: dict) -> float:
    """Integer minus float accuracy in points (``0.0``, not ``-0.0``, when equal)."""
    return 100.0 * (integer["accuracy"] - task["float_accuracy"]) + 0.0


def evaluate_targets(records: dict) -> list[dict]:
    targets = []
    for name in TARGET_TASKS:
        if name not in records:
            continue
        r = records[name]
        for bits in WEIGHT_BITS:
            i = r["int"][str(bits)]
            targets.append({
                "task": name,
                "target": f"FastGRNN integer model (int{bits} weights, Q15 state) test accuracy "
                          f"within {MAX_DROP_POINTS:g} point of the float model",
                "passed": i["drop_points"] <= MAX_DROP_POINTS,
                "text": f"float {100 * r['float_accuracy']:.2f} %, integer "
                        f"{100 * i['accuracy']:.2f} % ({_delta(r, i):+.2f} points; argmax "
                        f"agreement {100 * i['agreement']:.2f} %)",
            })
    return targets


def section(r: dict) -> str:
    quick = " (**--quick smoke test: tiny subsets; numbers are meaningless**)" if r["quick"] else ""
    lines = [
        "## Integer model accuracy (FastGRNN, float vs fixed point)", "",
        f"Command: `{r['command']}` — {r['date']}, {r['seconds']:.0f} s{quick}.  ",
        f"Machine: {machine_line(r['machine'])}.", "",
        "The thresholded FastGRNN of `train_quality` (same configuration per task, data "
        "protocol and recipe: dense → IHT → sparse, early stopping in the sparse phase; epoch "
        "budgets below), quantized by `quantize_model` with int8 or int16 weights (Q15 int16 "
        f"state, input ranges from {REPRESENTATIVE} random training windows). Integer accuracy "
        "is that of the exact integer arithmetic on every test window: the NumPy oracle "
        "`IntModel.run` (one batch), and the C of `generate_c` compiled with the host gcc, "
        "whose scores equal the oracle's bit for bit on every window (checked). Agreement: "
        "the integer and float models predict the same class.", "",
        "| task | model | epochs (best/run/max) | float acc % | int8 acc % | int8 Δ | int8 "
        "agreement % | int16 acc % | int16 Δ | int16 agreement % | oracle s (int8) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in TASK_ORDER:
        if name not in r["tasks"]:
            continue
        t = r["tasks"][name]
        i8, i16 = t["int"]["8"], t["int"]["16"]
        lines.append(
            f"| {TASKS[name].title} | FastGRNN {t['training']['spec']} | "
            f"{t['training']['best_epoch']}/{t['training']['epochs_run']}/"
            f"{t['training']['epochs_max']} | {100 * t['float_accuracy']:.2f} | "
            f"{100 * i8['accuracy']:.2f} | {_delta(t, i8):+.2f} | "
            f"{100 * i8['agreement']:.2f} | {100 * i16['accuracy']:.2f} | "
            f"{_delta(t, i16):+.2f} | {100 * i16['agreement']:.2f} | "
            f"{i8['oracle_seconds']:.1f} |")
    errors = r["activation_max_error_q15"]
    approx = sorted({a for t in r["tasks"].values() for i in t["int"].values()
                     for a in i["approximations"]})
    shifts = ", ".join(f"{name} {r['tasks'][name]['int']['8']['state_shift'][0]}"
                       for name in TASK_ORDER if name in r["tasks"])
    lines += [
        "",
        "Test windows: " + ", ".join(f"{name} {r['tasks'][name]['test_windows']:,} x "
                                     f"{r['tasks'][name]['steps']} steps"
                                     for name in TASK_ORDER if name in r["tasks"]) + ". "
        "Δ: integer minus float accuracy, in points. Oracle seconds: `IntModel.run` on the "
        "whole test set.", "",
        "What keeps the integer model close: the FastGRNN state exceeds 1 on these tasks (h "
        "adds the candidate, weighted by up to sigmoid(zeta) + sigmoid(nu), to z h), so it is "
        "stored as h / 2^s in Q15 with s calibrated on the representative data (a factor 2 of "
        f"headroom; s: {shifts}); matrix scales keep every row's "
        "sum |w| × 2^15 within int32, so no accumulator saturates (this matters for int16 "
        "weights).", "",
        "Activations: FastGRNN's sigmoid gate and tanh candidate are integer approximations, "
        f"max error in Q15 (measured over every Q15 input in [-16, 16]): tanh "
        f"{errors['tanh']:.2e}, sigmoid {errors['sigmoid']:.2e}. Substitutions listed by "
        "`IntModel.approximations`: " + ("; ".join(f"`{a}`" for a in approx) or "none") + ".",
        "",
        "Targets (HAR-6 and KWS-12; HAR-2 reported above, without a target):", "",
    ]
    lines += [f"- {target_line(t)}" for t in r["targets"]]
    return "\n".join(lines)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None,
                    help="directory of speech_commands_v2_test12.npz (or $RNNEDGE_DATA_DIR)")
    ap.add_argument("--tasks", nargs="+", choices=TASK_ORDER, default=list(TASK_ORDER))
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="epochs per model for every task (default: train_quality's per task: "
                    + ", ".join(f"{t.name} {t.max_epochs}" for t in TASKS.values()) + ")")
    ap.add_argument("--quick", action="store_true", help="smoke test: train_quality's tiny "
                    "subsets, 3 epochs (writes neither the JSON nor the doc)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.max_epochs is not None and args.max_epochs < 3:
        ap.error("--max-epochs must be at least 3 (one epoch per phase)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()
    data = {name: load_task(TASKS[name], args.data_dir, args.quick) for name in args.tasks}
    records = {}
    for name in args.tasks:
        task = TASKS[name]
        max_epochs = args.max_epochs or (3 if args.quick else task.max_epochs)
        patience = task.patience
        print(f"{name}: training FastGRNN, up to {max_epochs} epochs", flush=True)
        model, training = train_fastgrnn(task, data[name], max_epochs, patience)
        print(f"  {name}: trained in {training['train_seconds']:.0f} s, best epoch "
              f"{training['best_epoch']}/{training['epochs_run']}", flush=True)
        record = evaluate(task, data[name], model)
        record["training"] = {**training, "patience": patience}
        records[name] = record
    result = {
        "command": command_line(), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info, "quick": args.quick, "representative_windows": REPRESENTATIVE,
        "activation_max_error_q15": activation_errors(15), "tasks": records,
        "targets": evaluate_targets(records), "seconds": round(time.time() - t_start, 1),
    }
    for t in result["targets"]:
        print(target_line(t), flush=True)
    if args.quick:
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.no_doc:
        write_section(NAME, section(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())

