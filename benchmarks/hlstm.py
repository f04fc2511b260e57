"""The H-LSTM with grow-and-prune training against a one-layer and a stacked two-layer LSTM.

Dai, Yin, Jha, "Grow and Prune Compact, Fast, and Accurate LSTMs" (IEEE Trans. Computers 2020)
report 10.8-38.7x fewer parameters than their baselines at equal or better quality. Here, on
KWS-12 and HAR-6, in one run:

* ``LSTM-1``: a stock ``LSTM`` layer;
* ``LSTM-2``: two stacked stock ``LSTM`` layers (the deeper baseline the H-LSTM replaces);
* ``H-LSTM GP``: one :class:`keras_rnnedge.cells.HLSTMCell` layer (a ReLU hidden layer in each
  gate) trained with :class:`keras_rnnedge.optimize.GrowAndPrune` from a sparse seed: growth
  by accumulated gradient, then magnitude pruning of every matrix to :data:`DENSITY`, then
  training with the support fixed.

Every model: ``train_quality``'s data protocol (10 % stratified validation split, standardised
inputs), Adam with cosine decay, early stopping on validation accuracy with the best weights
restored (for GP only after pruning ends). Measured as deployed: ``convert_c`` (int8 weights,
Q15 state), the C compiled for the host on every test window (scores checked against the NumPy
oracle), the int8 TFLite step model's bytes and its TFLite Micro arena, and the C per step on the
ATmega328P (simavr, cycles) and the Cortex-M4 (QEMU, instructions) over a short window.

Writes ``benchmarks/results/hlstm.json`` and the ``hlstm`` section of ``docs/benchmarks.md``.
Run from the repository root::

    python benchmarks/hlstm.py --data-dir ../shared/data
    python benchmarks/hlstm.py --quick --data-dir ../shared/data   # smoke test, no files
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks.c_targets import macs as c_macs  # noqa: E402
from benchmarks.common import (  # noqa: E402
    REPO,
    command_line,
    machine_info,
    machine_line,
    target_line,
    write_section,
)
from benchmarks.families import device_costs, tflm_costs  # noqa: E402
from benchmarks.train_quality import (  # noqa: E402
    LR_FLOOR,
    SEED,
    TASKS,
    EpochTimer,
    load_task,
)
from keras_rnnedge._compat import keras, np  # noqa: E402
from keras_rnnedge.cells import HLSTMCell  # noqa: E402
from keras_rnnedge.converters import convert_c  # noqa: E402
from keras_rnnedge.micro_targets.crun import run_c  # noqa: E402
from keras_rnnedge.optimize import GrowAndPrune  # noqa: E402
from keras_rnnedge.summary import summary  # noqa: E402

NAME = "hlstm"
RESULTS = REPO / "benchmarks" / "results" / f"{NAME}.json"
TASK_ORDER = ("kws12", "har6")
UNITS = {"kws12": 100, "har6": 80}  # the LSTMs' hidden size (families' and FastGRNN's)
HIDDEN_UNITS = {"kws12": 32, "har6": 32}  # each H-LSTM gate's hidden layer
EPOCHS = {"kws12": 40, "har6": 40}
PATIENCE = {"kws12": 8, "har6": 8}
DENSITY = 0.3  # non-zeros kept in every H-LSTM matrix
SEED_DENSITY = 0.5
GROWTH_RATIO = 0.5
GROWTH_BATCHES = 30
MODELS = ("lstm1", "lstm2", "hlstm_gp")
TITLES = {"lstm1": "LSTM-1 (stock)", "lstm2": "LSTM-2 (stacked, stock)",
          "hlstm_gp": "H-LSTM, grow-and-prune"}
TARGET_RATIO = 10.0
PAPER = "10.8-38.7x"
DEVICE_STEPS = 4


def gp_schedule(epochs: int) -> list[tuple[str, int]]:
    """Grow over the first tenth, prune over the next third, then train (at least 1 each)."""
    grow = max(1, round(epochs / 10))
    prune = max(1, round(epochs / 3))
    return [("grow", grow), ("train", max(1, round(epochs / 10))), ("prune", prune),
            ("train", max(1, epochs - 2 * grow - prune))]


def build(name: str, task: str, data: dict, lr: float, decay_steps: int):
    inputs = keras.Input(data["input_shape"])
    units = UNITS[task]
    if name == "lstm1":
        h = keras.layers.LSTM(units, name="rnn")(inputs)
    elif name == "lstm2":
        h = keras.layers.LSTM(units, return_sequences=True, name="rnn")(inputs)
        h = keras.layers.LSTM(units, name="rnn_2")(h)
    else:
        h = keras.layers.RNN(HLSTMCell(units, hidden_units=HIDDEN_UNITS[task]), name="rnn")(inputs)
    outputs = keras.layers.Dense(data["num_classes"], name="classifier")(h)
    model = keras.Model(inputs, outputs, name=f"{task}_{name}")
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(lr, decay_steps=decay_steps, alpha=LR_FLOOR),
            clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=name == "hlstm_gp")  # XLA for keras.layers.RNN; the stock LSTM is slower
    return model


class Progress(keras.callbacks.Callback):
    def __init__(self, prefix: str, timer: EpochTimer):
        super().__init__()
        self.prefix, self.timer = prefix, timer

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        phase = {1: " grow", 2: " prune", 3: " train"}.get(logs.get("gp_phase"), "")
        dens = [v for k, v in logs.items() if k.startswith("density/")]
        extra = f" density {np.mean(dens):.3f}" if dens else ""
        print(f"  {self.prefix} epoch {epoch + 1:3d}{phase}: loss {logs.get('loss', 0):.4f} "
              f"acc {logs.get('accuracy', 0):.4f} val_acc {logs.get('val_accuracy', 0):.4f}"
              f"{extra} ({self.timer.seconds[-1]:.1f} s)", flush=True)


def train(name: str, task: str, data: dict, epochs: int, patience: int):
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    t = TASKS[task]
    steps = -(-len(data["train"][1]) // t.batch_size)
    model = build(name, task, data, t.lr_stock, epochs * steps)
    timer = EpochTimer()
    callbacks = [timer]
    start_from = 0
    schedule = None
    if name == "hlstm_gp":
        schedule = gp_schedule(epochs)
        callbacks.append(GrowAndPrune(
            data["train"], density=DENSITY, seed_density=SEED_DENSITY,
            growth_ratio=GROWTH_RATIO, schedule=schedule, growth_batches=GROWTH_BATCHES,
            batch_size=t.batch_size, dense=False, seed=SEED))
        start_from = sum(e for _, e in schedule[:-1])  # early stopping once the support holds
    stopper = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                            patience=patience, restore_best_weights=True,
                                            start_from_epoch=start_from)
    callbacks += [stopper, Progress(f"{task} {name}", timer)]
    print(f"{task} {TITLES[name]}: up to {epochs} epochs"
          + (f", schedule {schedule}" if schedule else ""), flush=True)
    started = time.perf_counter()
    model.fit(*data["train"], validation_data=data["val"], epochs=epochs,
              batch_size=t.batch_size, callbacks=callbacks, verbose=0, shuffle=True)
    return model, {"epochs_max": epochs, "epochs_run": len(timer.seconds),
                   "best_epoch": stopper.best_epoch + 1, "patience": patience,
                   "learning_rate": t.lr_stock, "schedule": schedule,
                   "train_seconds": round(time.perf_counter() - started, 1)}


def evaluate(name: str, task: str, model, data: dict) -> dict:
    x_train = data["train"][0]
    x_test, y_test = data["test"]
    float_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = convert_c(model, target="host", representative_data=x_train,
                         name=f"{task}_{name}", checks="warn", progress=False)
    im = conv.int_model
    x_q = conv.quantize_input(x_test)
    host = run_c(conv, x_q, target="host", progress=False, timeout=1800)
    mismatched = int(np.sum(np.any(host.scores != im.run(x_test), axis=1)))
    int_pred = np.argmax(host.scores, axis=1)
    s = summary(model)
    macs = c_macs(im)
    record = {
        "float_accuracy": float(np.mean(float_pred == y_test)),
        "int8_accuracy": float(np.mean(int_pred == y_test)),
        "c_windows": int(len(y_test)), "c_mismatched_windows_vs_oracle": mismatched,
        "params": s.totals.params, "nonzero_params": s.totals.nonzero_params,
        "summary_bytes_int8": s.totals.bytes_int8,
        "macs_per_step": s.totals.macs_per_step, "c_macs_nonzero": macs["nonzero"],
        "c_weight_bytes": im.weight_bytes(),
        "densities": {f"{layer.name}/{k}": round(float(np.mean(
            [m.nnz / m.values.size for m in lin.matrices()])), 4)
            for layer in im.recurrent for k, lin in layer.matrices.items()},
    }
    record.update(tflm_costs(model, x_train, f"{task}_{name}"))
    record["devices"] = device_costs(conv, x_q[:1, :DEVICE_STEPS], host.scores[:1])
    print(f"  {task} {name}: float {100 * record['float_accuracy']:.2f} %, C int8 "
          f"{100 * record['int8_accuracy']:.2f} %, {record['nonzero_params']:,} non-zero params, "
          f"{record['c_weight_bytes']:,} B C weights (C == oracle on "
          f"{len(y_test) - mismatched}/{len(y_test)})", flush=True)
    return record


def evaluate_targets(rows: list[dict]) -> list[dict]:
    out = []
    for task in TASK_ORDER:
        got = {r["model"]: r for r in rows if r["task"] == task}
        if not all(m in got for m in MODELS):
            continue
        gp, stacked, one = got["hlstm_gp"], got["lstm2"], got["lstm1"]
        ratio = stacked["nonzero_params"] / gp["nonzero_params"]
        gap = 100 * (gp["int8_accuracy"] - stacked["int8_accuracy"])
        out.append({
            "task": task,
            "target": f">= {TARGET_RATIO:g}x fewer parameters than the stacked LSTM at equal "
                      "or better int8 accuracy (the paper: " + PAPER + ")",
            "passed": ratio >= TARGET_RATIO and gap >= 0,
            "text": f"{ratio:.1f}x fewer non-zero parameters ({stacked['nonzero_params']:,} -> "
                    f"{gp['nonzero_params']:,}), int8 {100 * gp['int8_accuracy']:.2f} % vs "
                    f"{100 * stacked['int8_accuracy']:.2f} % ({gap:+.2f} points); against the "
                    f"one-layer LSTM {one['nonzero_params'] / gp['nonzero_params']:.1f}x fewer, "
                    f"{100 * (gp['int8_accuracy'] - one['int8_accuracy']):+.2f} points"})
    return out


def _device(d: dict) -> tuple[str, str]:
    uno, m4 = d.get("uno", {}), d.get("cortex-m4", {})

    def cell(x, unit_text):
        if not x:
            return "-"
        if not x.get("fits", True):
            return "does not fit"
        if x.get("failed"):
            return "run failed"
        return f"{x['per_step']:,.0f}{unit_text}" + ("" if x.get("equals_host", True)
                                                     else " (differs from host)")
    return cell(uno, ""), cell(m4, "")


def section(r: dict) -> str:
    quick = (" (**--quick smoke test: tiny subsets, 2 epochs; numbers are meaningless**)"
             if r["quick"] else "")
    lines = [
        "## H-LSTM with grow-and-prune training against one and two LSTM layers", "",
        f"Command: `{r['command']}` — {r['date']}, {r['seconds'] / 60:.1f} min{quick}.  ",
        f"Machine: {machine_line(r['machine'])}; `uname -m` {r['machine_arch']}.", "",
        "Dai, Yin, Jha (IEEE Trans. Computers 2020): an LSTM whose gates are small MLPs "
        "(`HLSTMCell`, a ReLU hidden layer of "
        f"{', '.join(f'{HIDDEN_UNITS[t]} ({t})' for t in TASK_ORDER)} units per gate), trained "
        "with `GrowAndPrune` from a random seed support of "
        f"{SEED_DENSITY:g}: growth by accumulated |gradient| (+{GROWTH_RATIO:g} of the active "
        f"connections per growth epoch, gradients over {GROWTH_BATCHES} batches), then "
        f"magnitude pruning of every recurrent matrix to {DENSITY:g} density, then training with "
        "the support fixed; against a stock LSTM and two stacked stock LSTMs of the same hidden "
        "size. Same recipe for every model: `train_quality`'s data protocol, Adam with cosine "
        "decay from the task's learning rate and `clipnorm=1`, early stopping on validation "
        "accuracy with the best weights restored (GP: once pruning is over). int8: `convert_c` "
        "(int8 weights, Q15 state; the GP zeros stored CSR), the C compiled for the host on every "
        "test window; its scores equal the NumPy oracle's on "
        + ("every window of every model" if r["c_equals_oracle"] else
           "**not every window, see the JSON**") + ".", "",
        "Columns: *params* = non-zero parameters of the whole model (recurrent layers, biases, "
        "classifier); *MACs/step* = the C's non-zero multiply-accumulates of the recurrent "
        "matrices; *C bytes* = the C's constant data; *TFLite B* / *TFLM arena B* = the int8 "
        "step flatbuffer (stores the pruned zeros dense) and its TensorFlow Lite Micro arena; "
        "*Uno cycles* (ATmega328P, simavr) and *M4 instructions* (QEMU) per step of the "
        f"integer C, mean over a {DEVICE_STEPS}-step test window.", "",
    ]
    for task in TASK_ORDER:
        rows = [x for x in r["rows"] if x["task"] == task]
        if not rows:
            continue
        t = TASKS[task]
        lines += [f"### {t.title}, hidden {UNITS[task]}", "",
                  f"Batch {t.batch_size}, learning rate {t.lr_stock:g}, at most "
                  f"{rows[0]['training']['epochs_max']} epochs; {rows[0]['c_windows']:,} test "
                  "windows.", "",
                  "| model | params | float acc % | int8 C acc % | MACs/step | C bytes | "
                  "TFLite B | TFLM arena B | Uno cycles/step | M4 instructions/step | epochs |",
                  "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for x in rows:
            uno, m4 = _device(x["devices"])
            lines.append(
                f"| {TITLES[x['model']]} | {x['nonzero_params']:,} | "
                f"{100 * x['float_accuracy']:.2f} | {100 * x['int8_accuracy']:.2f} | "
                f"{x['c_macs_nonzero']:,} | {x['c_weight_bytes']:,} | {x['tflite_bytes']:,} | "
                f"{x['tflm_arena_bytes'] or 0:,} | {uno} | {m4} | "
                f"{x['training']['best_epoch']}/{x['training']['epochs_run']} |")
        lines.append("")
    lines += ["### Targets", ""]
    lines += [f"- {target_line(t)}" for t in r["targets"]]
    lines += ["", f"The paper's ratios ({PAPER}) are against its own baselines on NeuralTalk, "
              "DeepSpeech2 and IWSLT; these are against two stacked stock LSTMs of our hidden "
              "size on the bundled tasks.", ""]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None,
                    help="directory of speech_commands_v2_test12.npz (or $RNNEDGE_DATA_DIR)")
    ap.add_argument("--tasks", nargs="+", choices=TASK_ORDER, default=list(TASK_ORDER))
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per model (default per task: "
                    + ", ".join(f"{k} {v}" for k, v in EPOCHS.items()) + ")")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: tiny subsets, 4 epochs (writes neither the JSON nor the doc)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 4:
        ap.error(f"--epochs: expected an integer >= 4 (grow, train, prune, train), got "
                 f"{args.epochs}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()
    print(f"Machine: {machine_line(info)}", flush=True)
    rows = []
    for task in args.tasks:
        data = load_task(TASKS[task], args.data_dir, args.quick)
        epochs = args.epochs or (4 if args.quick else EPOCHS[task])
        patience = 1 if args.quick else PATIENCE[task]
        for name in args.models:
            model, training = train(name, task, data, epochs, patience)
            rows.append({"task": task, "model": name, "training": training,
                         **evaluate(name, task, model, data)})
        print(f"== {task} done at {(time.time() - t_start) / 60:.1f} min", flush=True)
    result = {
        "command": command_line(), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info, "machine_arch": os.uname().machine, "quick": args.quick,
        "units": UNITS, "hidden_units": HIDDEN_UNITS, "density": DENSITY,
        "c_equals_oracle": all(x["c_mismatched_windows_vs_oracle"] == 0 for x in rows),
        "rows": rows, "targets": evaluate_targets(rows),
        "seconds": round(time.time() - t_start, 1),
    }
    for t in result["targets"]:
        print(target_line(t), flush=True)
    print(f"Done in {result['seconds'] / 60:.1f} min", flush=True)
    if args.quick:
        print(section(result))
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if not args.no_doc:
        write_section(NAME, section(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
