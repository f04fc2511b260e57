"""Matrix families side by side: stock LSTM/GRU against pruning, low rank, Kronecker and TT.

The keyword-spotting comparison of the survey "RNNs for Edge Intelligence" (Table 8, after
Thakker et al.), on our KWS-12 data and on HAR-6, in one run. For each task and each base cell
(LSTM, GRU) at one hidden size:

* the stock cell (``keras.layers.LSTM`` / ``GRU``);
* the stock cell pruned by magnitude (:func:`keras_rnnedge.optimize.prune_low_magnitude`,
  polynomial schedule, per-weight targets, then :func:`~keras_rnnedge.optimize.strip_pruning`);
* ``LowRankLSTMCell`` / ``LowRankGRUCell`` with ``kernel_structure`` and ``recurrent_structure``
  from the ``low_rank``, ``kronecker`` and ``tensor_train`` families,

each compressed one to about :data:`RATIO` times fewer matrix parameters than the stock cell
(same hidden size). The configurations come from the families' ``cost()``: for Kronecker and
TT the input matrix gets the closest configuration to its share, the recurrent matrix the
closest to what is left of the whole budget; low rank takes one rank for both matrices, the
total closest to the budget; pruning keeps the matching fraction of non-zeros per matrix.

Every model trains with the same recipe (``train_quality``'s data protocol, Adam with cosine
decay, early stopping on validation accuracy with the best weights restored; for pruning only
once the target sparsity is reached), is converted with ``convert_c`` (int8 weights, Q15 state)
and run as C compiled for the host on every test window (``run_c(..., target="host")``; the
scores are compared with the NumPy oracle bit for bit). Reported: float and int8 accuracy,
int8 bytes (the C's constant data and ``summary()``'s), MACs per step, the survey's relative
performance (accuracy / stock accuracy) and memory savings (stock bytes / compressed bytes).
The HAR-6 LSTM models (hidden 80, 9 inputs: the HAR-2 FastGRNN's shape) are also run as C on
the ATmega328P (simavr, exact cycles) and the Cortex-M4 (QEMU, executed instructions).

Writes ``benchmarks/results/families.json`` and the ``families`` section of
``docs/benchmarks.md``. Run from the repository root::

    python benchmarks/families.py --data-dir ../shared/data           # about 26 min on 2 cores
    python benchmarks/families.py --quick --data-dir ../shared/data   # smoke test, no files
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
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
from benchmarks.train_quality import (  # noqa: E402
    LR_FLOOR,
    SEED,
    TASKS,
    EpochTimer,
    Progress,
    load_task,
)
from keras_rnnedge._compat import keras, np  # noqa: E402
from keras_rnnedge.cells import LowRankGRUCell, LowRankLSTMCell  # noqa: E402
from keras_rnnedge.converters import convert, convert_c  # noqa: E402
from keras_rnnedge.matrices import (  # noqa: E402
    BlockCirculant,
    Dense,
    Hashed,
    Kronecker,
    LowRank,
    TensorRing,
    TensorTrain,
    Toeplitz,
)
from keras_rnnedge.matrices.base import divisor_splits  # noqa: E402
from keras_rnnedge.micro_targets.crun import run_c  # noqa: E402
from keras_rnnedge.micro_targets.harness import CompileError  # noqa: E402
from keras_rnnedge.optimize import (  # noqa: E402
    UpdatePruningStep,
    compress,
    prune_low_magnitude,
    strip_pruning,
)
from keras_rnnedge.summary import summary  # noqa: E402

NAME = "families"
RESULTS = REPO / "benchmarks" / "results" / f"{NAME}.json"
TASK_ORDER = ("kws12", "har6")
HIDDEN = {"kws12": 100, "har6": 80}  # train_quality's larger stock size (= FastGRNN's)
EPOCHS = {"kws12": 30, "har6": 10}
PATIENCE = {"kws12": 10, "har6": 4}
RATIO = 15.0  # matrix parameters of the stock cell / of the compressed cell
BASES = ("lstm", "gru")
GATES = {"lstm": 4, "gru": 3}
FAMILIES = ("stock", "svd", "pruning", "low_rank", "kronecker", "tensor_train", "tensor_ring",
            "block_circulant", "toeplitz", "hashed")
FAMILY_TITLES = {"stock": "stock", "pruning": "magnitude pruning", "low_rank": "low rank",
                 "svd": "SVD of the stock + fine-tuning", "kronecker": "Kronecker",
                 "tensor_train": "tensor train", "tensor_ring": "tensor ring",
                 "block_circulant": "block-circulant",
                 "toeplitz": "Toeplitz", "hashed": "hashed"}
STRUCTURED = ("kronecker", "tensor_train", "tensor_ring", "block_circulant", "toeplitz",
              "hashed")
SVD_EPOCHS = 0.5  # fine-tuning epochs of the SVD rows, as a fraction of the task's budget
CIRCULANT_BLOCKS = (2, 4, 8, 16, 32)
TT_CORES = 3
TT_MAX_RANK = 32
MAX_GAP_POINTS = 1.5
DEVICE_TASK, DEVICE_BASE = "har6", "lstm"
DEVICE_STEPS = 4  # steps of the one window timed on the emulated boards (simavr is slow)
DEVICE_TIMEOUT = 300  # seconds per build and per emulator run
PRUNE_BEGIN, PRUNE_END = 1 / 6, 2 / 3  # of the epoch budget: dense, pruning ramp, fine-tuning

# Survey "RNNs for Edge Intelligence", Table 8 (Thakker et al., Google Speech Commands).
SURVEY_ROWS = [
    ("LSTM", "baseline", "92.5", "243.4", "1x"),
    ("LSTM", "magnitude pruning", "84.91", "15.6", "15.6x"),
    ("LSTM", "low rank", "89.13", "16.8", "14.5x"),
    ("LSTM", "Kronecker", "91.2", "15.3", "15.9x"),
    ("LSTM", "Kronecker + int8", "91.04", "8.0", "30.4x"),
    ("GRU", "baseline", "93.5", "305", "1x"),
    ("GRU", "low rank", "90.88", "", ""),
    ("GRU", "Kronecker", "92.3", "22.2", "13.7x"),
]


# -- matched configurations ------------------------------------------------------------------


def _closest(candidates, target: float):
    """The (key, structure, params) whose params are nearest ``target`` in ratio; ties go to
    the first (callers order candidates by preference)."""
    return min(candidates, key=lambda c: abs(math.log(c[2] / target)))


def _kronecker(rows: int, cols: int, target: float):
    # Two factors (Thakker et al.); among equally close sizes, the product that can reach the
    # highest rank, then the most balanced factors.
    cands = []
    for ms in divisor_splits(rows, 2):
        for ns in divisor_splits(cols, 2):
            k = Kronecker(factors=tuple(zip(ms, ns)))
            rank = math.prod(min(m, n) for m, n in zip(ms, ns))
            cands.append((-rank, max(m * n for m, n in zip(ms, ns)), k,
                          k.cost(rows, cols).params))
    cands.sort(key=lambda c: (c[0], c[1]))
    return _closest([(c[:2], c[2], c[3]) for c in cands], target)


def _tensor_train(rows: int, cols: int, target: float):
    cands = []
    for r in range(1, TT_MAX_RANK + 1):
        try:
            tt = TensorTrain(ranks=r, num_cores=TT_CORES).resolve(rows, cols, "structure")
        except ValueError:
            continue
        cands.append((r, tt, tt.cost(rows, cols).params))
    return _closest(cands, target)


def _tensor_ring(rows: int, cols: int, target: float):
    cands = []
    for r in range(1, TT_MAX_RANK + 1):
        tr = TensorRing(ranks=r, num_cores=TT_CORES).resolve(rows, cols, "structure")
        cands.append((r, tr, tr.cost(rows, cols).params))
    return _closest(cands, target)


def _block_circulant(rows: int, cols: int, target: float):
    cands = []
    for k in CIRCULANT_BLOCKS:
        bc = BlockCirculant(k).resolve(rows, cols, "structure")
        cands.append((k, bc, bc.cost(rows, cols).params))
    return _closest(cands, target)


def _hashed(rows: int, cols: int, target: float):
    h = Hashed(buckets=max(1, min(round(target), rows * cols))).resolve(rows, cols, "structure")
    return (h.buckets, h, h.cost(rows, cols).params)


def _toeplitz(rows: int, cols: int, target: float):
    # one configuration: rows + cols - 1 diagonals (far below the budget at these sizes)
    t = Toeplitz().resolve(rows, cols, "structure")
    return (None, t, t.cost(rows, cols).params)


CHOOSERS = {"kronecker": _kronecker, "tensor_train": _tensor_train, "tensor_ring": _tensor_ring,
            "block_circulant": _block_circulant, "toeplitz": _toeplitz, "hashed": _hashed}


def matched_config(family: str, features: int, units: int, gates: int) -> dict:
    """Structures (or pruning targets) giving about 1/RATIO of the stock matrix parameters.

    Kronecker and TT: the input matrix takes the configuration closest to its own share, the
    recurrent matrix the one closest to the rest of the whole budget, so the total lands near
    1/RATIO. Low rank: one rank for both, the total closest to the budget."""
    shapes = {"kernel": (features, gates * units), "recurrent_kernel": (units, gates * units)}
    dense = {k: Dense().cost(*s).params for k, s in shapes.items()}
    budget = sum(dense.values()) / RATIO
    if family == "stock":
        return {"structures": None, "params": dense, "budget": budget}
    if family == "pruning":
        keep = {k: max(1, round(v / RATIO)) for k, v in dense.items()}
        return {"sparsity": {k: 1.0 - keep[k] / dense[k] for k in dense}, "params": keep,
                "budget": budget}
    if family in ("low_rank", "svd"):
        # One rank for both matrices (EdgeML's LR-LSTM/LR-GRU): the input matrix's own share
        # would be rank 1 (a one-dimensional bottleneck on the input).
        shape_list = list(shapes.values())
        _, r, _ = _closest([(r, r, sum(LowRank(r).cost(*s).params for s in shape_list))
                            for r in range(1, min(min(s) for s in shape_list) + 1)], budget)
        return {"structures": {"kernel": LowRank(r), "recurrent_kernel": LowRank(r)},
                "params": {k: LowRank(r).cost(*s).params for k, s in shapes.items()},
                "budget": budget}
    choose = CHOOSERS[family]
    _, k_struct, k_params = choose(*shapes["kernel"], dense["kernel"] / RATIO)
    _, u_struct, u_params = choose(*shapes["recurrent_kernel"], max(1.0, budget - k_params))
    return {"structures": {"kernel": k_struct, "recurrent_kernel": u_struct},
            "params": {"kernel": k_params, "recurrent_kernel": u_params}, "budget": budget}


def describe_config(family: str, config: dict) -> str:
    if family == "stock":
        return "dense"
    if family == "pruning":
        return ", ".join(f"{k} {100 * s:.1f} % zeros" for k, s in config["sparsity"].items())
    return "; ".join(f"{k}: {s.describe()}" for k, s in config["structures"].items())


# -- models ----------------------------------------------------------------------------------


def build_model(base: str, family: str, config: dict, units: int, data: dict, lr: float,
                decay_steps: int, prune_steps: tuple[int, int], start=None):
    inputs = keras.Input(data["input_shape"])
    if family == "svd":  # the trained stock model, its matrices factorized
        model = compress(start, structure=config["structures"])
    elif family in ("stock", "pruning"):
        rnn = (keras.layers.LSTM if base == "lstm" else keras.layers.GRU)(units, name="rnn")
    else:
        cell = (LowRankLSTMCell if base == "lstm" else LowRankGRUCell)(
            units, kernel_structure=config["structures"]["kernel"],
            recurrent_structure=config["structures"]["recurrent_kernel"])
        rnn = keras.layers.RNN(cell, name="rnn")
    if family != "svd":
        outputs = keras.layers.Dense(data["num_classes"], name="classifier")(rnn(inputs))
        model = keras.Model(inputs, outputs, name=f"{base}_{family}")
    if family == "pruning":
        model = prune_low_magnitude(model, config["sparsity"], schedule="polynomial",
                                    begin_step=prune_steps[0], end_step=prune_steps[1])
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(lr, decay_steps=decay_steps, alpha=LR_FLOOR)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # XLA for the cells in keras.layers.RNN; the stock layers are much slower with it.
        jit_compile=family not in ("stock", "pruning"))
    return model


def train(task, base: str, family: str, config: dict, data: dict, epochs: int, patience: int,
          start=None):
    if start is None:
        keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    units = HIDDEN[task.name]
    steps = -(-len(data["train"][1]) // task.batch_size)
    begin = max(0, round(PRUNE_BEGIN * epochs)) * steps
    end_epoch = max(1, round(PRUNE_END * epochs))
    prune_steps = (begin, max(begin + 1, end_epoch * steps))
    lr = task.lr_stock
    if family == "svd":  # fine-tuning: a shorter schedule from a tenth of the learning rate
        epochs = max(2, round(SVD_EPOCHS * epochs))
        lr = task.lr_stock / 10
    model = build_model(base, family, config, units, data, lr, epochs * steps,
                        prune_steps, start=start)
    before = None
    if family == "svd":
        x_test, y_test = data["test"]
        pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
        before = float(np.mean(pred == y_test))
        print(f"  SVD of the stock model before fine-tuning: float {100 * before:.2f} %",
              flush=True)
    timer = EpochTimer()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True,
        # pruned models: only once the mask holds the target sparsity
        start_from_epoch=end_epoch if family == "pruning" else 0)
    callbacks = ([UpdatePruningStep()] if family == "pruning" else []) + [
        timer, stopper, Progress(f"{task.name} {base} {family}", timer)]
    print(f"{task.name} {base.upper()}-{units} {family}: {describe_config(family, config)}, "
          f"up to {epochs} epochs", flush=True)
    started = time.perf_counter()
    model.fit(*data["train"], validation_data=data["val"], epochs=epochs,
              batch_size=task.batch_size, callbacks=callbacks, verbose=0, shuffle=True)
    wall = time.perf_counter() - started
    if family == "pruning":
        model = strip_pruning(model)
    info = {"epochs_max": epochs, "epochs_run": len(timer.seconds),
            "best_epoch": stopper.best_epoch + 1, "patience": patience,
            "learning_rate": lr, "train_seconds": round(wall, 1),
            "seconds_per_epoch": float(np.median(timer.seconds[1:] or timer.seconds))}
    if family == "pruning":
        info["prune_steps"] = list(prune_steps)
    if before is not None:
        info["float_accuracy_before_fine_tuning"] = before
    return model, info


# -- measurement -----------------------------------------------------------------------------


def size_record(model, im) -> dict:
    """summary() figures (whole model and the recurrent layer) and the C's constant bytes."""
    s = summary(model)
    rnn = next(layer for layer in s.layers if layer.recurrent)
    c_matrices = sum(m.nbytes for layer in im.recurrent for lin in layer.matrices.values()
                     for m in lin.matrices())
    return {
        "params": s.totals.params, "nonzero_params": s.totals.nonzero_params,
        "summary_bytes_int8": s.totals.bytes_int8,
        "rnn_bytes_int8": rnn.bytes_int8,
        "rnn_matrix_params": sum(t.params for t in rnn.tensors if t.kind == "matrix"),
        "rnn_matrix_nonzero": sum(t.nonzero_params for t in rnn.tensors if t.kind == "matrix"),
        "rnn_matrix_bytes_int8": sum(t.bytes_int8 for t in rnn.tensors if t.kind == "matrix"),
        "macs_per_step": s.totals.macs_per_step,
        "matrices": [{"name": m.name, "family": m.family, "shape": list(m.shape),
                      "params": m.params, "macs": m.macs} for m in rnn.matrices],
        "c_weight_bytes": im.weight_bytes(),
        "c_matrix_bytes": int(c_matrices),
        "c_macs": c_macs(im),
    }


def evaluate(task, base: str, family: str, model, data: dict) -> dict:
    x_train = data["train"][0]
    x_test, y_test = data["test"]
    float_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
    float_acc = float(np.mean(float_pred == y_test))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = convert_c(model, target="host", representative_data=x_train,
                         name=f"{task.name}_{base}_{family}", checks="warn", progress=False)
    im = conv.int_model
    x_q = conv.quantize_input(x_test)
    host = run_c(conv, x_q, target="host", progress=False, timeout=1800)
    c_seconds = time.perf_counter() - started
    oracle = im.run(x_test)
    mismatched = int(np.sum(np.any(host.scores != oracle, axis=1)))
    int_pred = np.argmax(host.scores, axis=1)
    record = {
        "float_accuracy": float_acc,
        "int8_accuracy": float(np.mean(int_pred == y_test)),
        "agreement": float(np.mean(int_pred == float_pred)),
        "c_windows": int(len(y_test)),
        "c_mismatched_windows_vs_oracle": mismatched,
        "c_seconds": round(c_seconds, 1),
        "host_seconds_per_step": host.per_step,
        **size_record(model, im),
    }
    record.update(tflm_costs(model, x_train, f"{task.name}_{base}_{family}"))
    if task.name == DEVICE_TASK and base == DEVICE_BASE:
        record["devices"] = device_costs(conv, x_q[:1, :DEVICE_STEPS], host.scores[:1])
    print(f"  {task.name} {base} {family}: float {100 * float_acc:.2f} %, C int8 "
          f"{100 * record['int8_accuracy']:.2f} % ({record['c_weight_bytes']:,} B C weights, "
          f"{record['macs_per_step']:,} MACs/step; C == oracle on "
          f"{len(y_test) - mismatched}/{len(y_test)})", flush=True)
    return record


def tflm_costs(model, x_train: np.ndarray, name: str) -> dict:
    """The int8 TFLite step model: flatbuffer bytes and the TFLite Micro arena measured on the
    host (``convert(..., target="nano33ble")``'s audit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = convert(model, target="nano33ble", quantization="int8",
                         representative_data=x_train, name=name, checks="warn", progress=False)
    return {"tflite_bytes": len(result.flatbuffer),
            "tflm_arena_bytes": None if result.audit is None else result.audit.arena_bytes,
            "tflite_folded": list(result.lowered.folded)}


def device_costs(conv, window: np.ndarray, _host_scores) -> dict:
    """Per-step cost of the C on the ATmega328P (simavr) and the Cortex-M4 (QEMU), one short
    window; the scores are checked against the host C's on the same window."""
    reference = run_c(conv, window, target="host", progress=False).scores
    out = {}
    for target in ("uno", "cortex-m4"):
        try:
            r = run_c(conv, window, target=target, progress=False, timeout=DEVICE_TIMEOUT)
        except ValueError as exc:  # the model does not fit the board with a test window
            out[target] = {"fits": False, "error": str(exc)}
            print(f"    {target}: {exc}", flush=True)
            continue
        except CompileError as exc:  # the program failed to build or run: reported as is
            out[target] = {"fits": True, "failed": True, "error": str(exc)[:2000]}
            print(f"    {target}: FAILED: {str(exc)[:300]}", flush=True)
            continue
        out[target] = {"fits": True, "per_step": r.per_step, "unit": r.unit,
                       "flash_bytes": r.flash_bytes, "ram_bytes": r.ram_bytes,
                       "model_flash_bytes": r.model_flash_bytes,
                       "model_code_bytes": r.model_code_bytes,
                       "equals_host": bool(np.array_equal(r.scores, reference))}
        print(f"    {target}: {r.per_step:,.0f} {r.unit}/step, flash {r.flash_bytes:,} B",
              flush=True)
    return out


# -- report ----------------------------------------------------------------------------------


def add_ratios(rows: list[dict]) -> None:
    """The survey's metrics against the stock cell of the same task and base."""
    for r in rows:
        stock = next(s for s in rows if s["task"] == r["task"] and s["base"] == r["base"]
                     and s["family"] == "stock")
        r["relative_performance_int8"] = r["int8_accuracy"] / stock["int8_accuracy"]
        r["relative_performance_float"] = r["float_accuracy"] / stock["float_accuracy"]
        r["memory_savings_c"] = stock["c_weight_bytes"] / r["c_weight_bytes"]
        r["memory_savings_summary"] = stock["summary_bytes_int8"] / r["summary_bytes_int8"]
        r["memory_savings_matrices"] = stock["c_matrix_bytes"] / r["c_matrix_bytes"]
        r["param_ratio_matrices"] = stock["rnn_matrix_nonzero"] / r["rnn_matrix_nonzero"]


def evaluate_targets(rows: list[dict]) -> list[dict]:
    targets = []
    for task in TASK_ORDER:
        got = {r["family"]: r for r in rows if r["task"] == task and r["base"] == "lstm"}
        if "stock" not in got:
            continue
        stock = got["stock"]
        structured = [got[f] for f in STRUCTURED if f in got]
        others = [got[f] for f in ("pruning", "low_rank", "svd") if f in got]
        if not structured:
            continue
        best = max(structured, key=lambda r: r["int8_accuracy"])
        gap = 100 * (stock["int8_accuracy"] - best["int8_accuracy"])
        ok_size = best["memory_savings_matrices"] >= RATIO
        targets.append({
            "task": task,
            "target": f"a structured LSTM within {MAX_GAP_POINTS} points of the stock LSTM "
                      f"(int8 C accuracy) at >= {RATIO:g}x smaller int8 recurrent matrices",
            "passed": gap <= MAX_GAP_POINTS and ok_size,
            "text": f"best {FAMILY_TITLES[best['family']]} {100 * best['int8_accuracy']:.2f} % vs "
                    f"stock {100 * stock['int8_accuracy']:.2f} % ({-gap:+.2f} points), "
                    f"matrices {best['memory_savings_matrices']:.1f}x smaller "
                    f"({stock['c_matrix_bytes']:,} B -> {best['c_matrix_bytes']:,} B)"})
        whole = max(structured, key=lambda r: r["memory_savings_c"])
        targets.append({
            "task": task,
            "target": f"the same at >= {RATIO:g}x smaller whole int8 model (C constant data: "
                      "matrices, int32 biases, classifier)",
            "passed": gap <= MAX_GAP_POINTS and best["memory_savings_c"] >= RATIO,
            "text": f"{FAMILY_TITLES[best['family']]} {best['memory_savings_c']:.1f}x "
                    f"({stock['c_weight_bytes']:,} B -> {best['c_weight_bytes']:,} B); the "
                    f"most of any structured row {whole['memory_savings_c']:.1f}x: the biases "
                    "and the classifier are not compressed"})
        if others:
            rival = max(others, key=lambda r: r["int8_accuracy"])
            lead = 100 * (best["int8_accuracy"] - rival["int8_accuracy"])
            targets.append({
                "task": task,
                "target": "a structured LSTM ahead of pruning, low rank and SVD at the "
                          "same parameter budget (int8 C accuracy)",
                "passed": lead > 0,
                "text": f"{FAMILY_TITLES[best['family']]} {100 * best['int8_accuracy']:.2f} % "
                        f"vs best of the others {FAMILY_TITLES[rival['family']]} "
                        f"{100 * rival['int8_accuracy']:.2f} % ({lead:+.2f} points)"})
    return targets


def _device_cell(d: dict, text: str, columns: int) -> str:
    pad = " | " * (columns - 1)
    if not d["fits"]:
        return "does not fit (32 KB flash)" + pad
    if d.get("failed"):
        return "**run failed** (see below)" + pad
    return text + ("" if d["equals_host"] else " (scores differ from the host C)")


def section(r: dict) -> str:
    quick = (" (**--quick smoke test: tiny subsets, 2 epochs; numbers are meaningless**)"
             if r["quick"] else "")
    lines = [
        "## Matrix families side by side (KWS-12 and HAR-6; survey Table 8)", "",
        f"Command: `{r['command']}` — {r['date']}, {r['seconds'] / 60:.1f} min{quick}.  ",
        f"Machine: {machine_line(r['machine'])}; `uname -m` {r['machine_arch']}.", "",
        "The keyword-spotting comparison of the survey \"RNNs for Edge Intelligence\" (Table 8, "
        "after Thakker et al.) on our data: the stock LSTM and GRU, and each compressed to "
        f"about {RATIO:g}x fewer matrix parameters than the stock cell at the same hidden size "
        "by SVD of the trained stock cell (`keras_rnnedge.optimize.compress`, one rank for both "
        "matrices, then fine-tuning from a tenth of the learning rate), "
        "by magnitude pruning (stock layer, `prune_low_magnitude` with per-weight targets, "
        "dense for the first sixth of the epochs, then a polynomial ramp to the target until "
        "two thirds, then fine-tuning; `strip_pruning`), low rank, Kronecker (two factors) "
        "tensor train and tensor ring (three cores), block-circulant (block size from "
        f"{list(CIRCULANT_BLOCKS)}), Toeplitz (one configuration: rows + cols - 1 diagonals, "
        "far below the budget) and hashed (buckets = the budget's share) "
        "(`LowRankLSTMCell` / `LowRankGRUCell` with `kernel_structure` / "
        "`recurrent_structure`). Configurations from the families' `cost()`, against a budget "
        f"of 1/{RATIO:g} of the stock matrix parameters: Kronecker and TT give the input "
        "matrix the configuration closest to its share and the recurrent matrix the one "
        "closest to the rest of the budget; low rank takes one rank for both matrices (the "
        "input matrix's own share would be rank 1), the total closest to the budget; pruning "
        "keeps 1/15 of each matrix. Same recipe for every "
        "model: `train_quality`'s data protocol (10 % stratified validation split, "
        "standardised inputs), Adam with cosine decay from the task's stock learning rate, "
        "early stopping on validation accuracy with the best weights restored (pruning: only "
        "after the ramp). int8: `convert_c` (int8 weights, Q15 state), the generated C compiled "
        "for the host and run on every test window (`run_c(..., target=\"host\")`; its scores "
        "are compared with the NumPy oracle: "
        + ("equal on every window of every model" if r["c_equals_oracle"] else
           "**they differ on some windows, see the JSON**") + ").", "",
        "Columns: *matrix params* = non-zero scalars of the recurrent matrices (what the "
        "budget matches); *C bytes* = the C's constant data (matrices as stored, CSR for the "
        "pruned ones, int32 biases, the classifier); *summary bytes* = `keras_rnnedge.summary` "
        "int8 size of the whole model; *MACs/step* = `summary()` (dense or factored products; "
        "for pruning the C executes only the non-zero ones, in parentheses); *rel. perf.* = "
        "int8 accuracy / the stock cell's (the survey's relative performance); *savings* = "
        "stock C bytes / C bytes (the survey's memory savings), and in brackets the same for "
        "the recurrent matrices alone; *TFLite B* = the int8 step flatbuffer "
        "(`convert(..., quantization=\"int8\")`; *dense*: its matrices are folded, no TFLite "
        "builtin for the family) and *TFLM arena B* its TensorFlow Lite Micro arena measured on "
        "the host.", "",
    ]
    for task in TASK_ORDER:
        rows = [x for x in r["rows"] if x["task"] == task]
        if not rows:
            continue
        t = TASKS[task]
        lines += [f"### {t.title}, hidden {HIDDEN[task]}", "",
                  f"Batch {t.batch_size}, learning rate {t.lr_stock:g}, at most "
                  f"{rows[0]['training']['epochs_max']} epochs (patience "
                  f"{rows[0]['training']['patience']}); {rows[0]['c_windows']:,} test windows.",
                  "",
                  "| cell | family | configuration | matrix params | float acc % | int8 C acc % "
                  "| rel. perf. | C bytes | summary bytes | savings [matrices] | MACs/step | "
                  "TFLite B | TFLM arena B | epochs |",
                  "|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for x in rows:
            macs = f"{x['macs_per_step']:,}"
            if x["family"] == "pruning":
                macs += f" ({x['c_macs']['nonzero']:,})"
            lines.append(
                f"| {x['base'].upper()} | {FAMILY_TITLES[x['family']]} | {x['config_text']} | "
                f"{x['rnn_matrix_nonzero']:,} | {100 * x['float_accuracy']:.2f} | "
                f"{100 * x['int8_accuracy']:.2f} | {x['relative_performance_int8']:.3f} | "
                f"{x['c_weight_bytes']:,} | {x['summary_bytes_int8']:,} | "
                f"{x['memory_savings_c']:.1f}x [{x['memory_savings_matrices']:.1f}x] | {macs} | "
                f"{x['tflite_bytes']:,}{' (dense)' if x['tflite_folded'] else ''} | "
                f"{x['tflm_arena_bytes'] or 0:,} | "
                f"{x['training']['best_epoch']}/{x['training']['epochs_run']} |")
        lines.append("")
    dev = [x for x in r["rows"] if "devices" in x]
    if dev:
        lines += [f"### The C on microcontrollers ({TASKS[DEVICE_TASK].title} "
                  f"{DEVICE_BASE.upper()}, hidden {HIDDEN[DEVICE_TASK]}, 9 inputs)", "",
                  f"Cost of one `<id>_step`, mean over a {DEVICE_STEPS}-step test window "
                  "(`run_c(..., target=\"uno\")`: ATmega328P in simavr, exact cycles, "
                  "avr-gcc -Os, weights in flash; `target=\"cortex-m4\"`: QEMU `-icount`, "
                  "executed instructions, arm-none-eabi-gcc -O2); the scores equal the host "
                  "C's on that window unless noted.", "",
                  "| family | MACs/step | Uno cycles/step | Uno ms/step at 16 MHz | Uno flash B "
                  "| Cortex-M4 instructions/step | instructions per MAC |",
                  "|:--|--:|--:|--:|--:|--:|--:|"]
        for x in dev:
            uno, m4 = x["devices"]["uno"], x["devices"]["cortex-m4"]
            macs = x["c_macs"]["nonzero"] if x["family"] == "pruning" else x["macs_per_step"]
            uno_text = _device_cell(uno, f"{uno.get('per_step', 0):,.0f} | "
                                    f"{uno.get('per_step', 0) / 16e3:.2f} | "
                                    f"{uno.get('flash_bytes') or 0:,}", 3)
            m4_text = _device_cell(m4, f"{m4.get('per_step', 0):,.0f} | "
                                   f"{m4.get('per_step', 0) / macs:.2f}", 2)
            lines.append(f"| {FAMILY_TITLES[x['family']]} | {macs:,} | {uno_text} | "
                         f"{m4_text} |")
        failed = [(x, t, d) for x in dev for t, d in x["devices"].items() if d.get("failed")]
        if failed:
            lines.append("")
        for x, t, d in failed:
            lines.append(f"Failed run, {FAMILY_TITLES[x['family']]} on {t}: "
                         f"`{d['error'].splitlines()[0]}`")
        lines.append("")
    lines += ["### Which family wins where", "",
              f"![int8 accuracy against int8 bytes, every family]({PLOT.name})", "",
              *(f"- {w}" for w in winners(r)),
              "- The survey's conclusions: low rank with sparsity (IHT) and quantization is the "
              "best trade-off on HAR and KWS, and Kronecker products keep the most accuracy at "
              "the largest compression ratios (Thakker et al.: 15-38x). The compact families "
              "(block-circulant, Toeplitz, hashed) are stored dense in a TFLite flatbuffer "
              "(no builtin for their structure): their savings hold for the standalone C only.",
              ""]
    lines += [
        "### The survey's rows (Table 8, Thakker et al., Google Speech Commands), for "
        "reference", "",
        "Not comparable as equals: full Speech Commands training set and the authors' model "
        "sizes (float32 KB); ours: 3.9 k clips of the v0.02 test set, int8 bytes.", "",
        "| cell | method | accuracy % | size KB | savings |", "|:--|:--|--:|--:|--:|",
        *(f"| {c} | {m} | {a} | {s} | {x} |" for c, m, a, s, x in SURVEY_ROWS), "",
        "### Targets", "",
    ]
    lines += [f"- {target_line(t)}" for t in r["targets"]]
    return "\n".join(lines) + "\n"


PLOT = REPO / "docs" / "families.png"


def plot(r: dict, path: Path = PLOT) -> None:
    """int8 C accuracy against the C's constant bytes, every family, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASK_ORDER if any(x["task"] == t for x in r["rows"])]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.6), squeeze=False)
    markers = dict(zip(FAMILIES, "o*sDv^<>PhX"))
    for ax, task in zip(axes[0], tasks):
        for x in (x for x in r["rows"] if x["task"] == task):
            ax.scatter(x["c_weight_bytes"], 100 * x["int8_accuracy"], s=60,
                       marker=markers.get(x["family"], "o"),
                       label=f"{x['base'].upper()} {FAMILY_TITLES[x['family']]}")
        ax.set_xscale("log")
        ax.set_xlabel("int8 model bytes (the C's constant data)")
        ax.set_ylabel("int8 accuracy % (the C on every test window)")
        ax.set_title(f"{TASKS[task].title}, hidden {HIDDEN[task]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def winners(r: dict) -> list[str]:
    """Per task: the most accurate compressed row, and the smallest within MAX_GAP_POINTS."""
    out = []
    for task in TASK_ORDER:
        rows = [x for x in r["rows"] if x["task"] == task and x["family"] != "stock"]
        stock = [x for x in r["rows"] if x["task"] == task and x["family"] == "stock"]
        if not rows or not stock:
            continue
        best = max(rows, key=lambda x: x["int8_accuracy"])
        near = [x for x in rows
                if 100 * (stock[0]["int8_accuracy"] - x["int8_accuracy"]) <= MAX_GAP_POINTS]
        line = (f"{TASKS[task].title}: the most accurate compressed model is "
                f"{best['base'].upper()} {FAMILY_TITLES[best['family']]} "
                f"({100 * best['int8_accuracy']:.2f} %, {best['memory_savings_c']:.1f}x smaller)")
        if near:
            small = max(near, key=lambda x: x["memory_savings_c"])
            line += (f"; the smallest within {MAX_GAP_POINTS} points of the stock cell is "
                     f"{small['base'].upper()} {FAMILY_TITLES[small['family']]} "
                     f"({100 * small['int8_accuracy']:.2f} %, {small['memory_savings_c']:.1f}x "
                     "smaller)")
        else:
            line += f"; no compressed model is within {MAX_GAP_POINTS} points of the stock cell"
        out.append(line + ".")
    return out


# -- main ------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None,
                    help="directory of speech_commands_v2_test12.npz (or $RNNEDGE_DATA_DIR)")
    ap.add_argument("--tasks", nargs="+", choices=TASK_ORDER, default=list(TASK_ORDER))
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs per model for every task (default per task: "
                    + ", ".join(f"{k} {v}" for k, v in EPOCHS.items()) + ")")
    ap.add_argument("--bases", nargs="+", choices=BASES, default=list(BASES))
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES),
                    help="rows to run (stock first: the ratios and the SVD rows need it)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: tiny subsets, 2 epochs (writes neither the JSON nor the doc)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.families[0] != "stock":
        ap.error("--families: expected 'stock' first (every ratio is against it)")
    if args.epochs is not None and args.epochs < 2:
        ap.error(f"--epochs: expected an integer >= 2, got {args.epochs}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()
    print(f"Machine: {machine_line(info)}", flush=True)
    data = {name: load_task(TASKS[name], args.data_dir, args.quick) for name in args.tasks}
    rows = []
    for name in args.tasks:
        task, d = TASKS[name], data[name]
        epochs = args.epochs or (2 if args.quick else EPOCHS[name])
        patience = 1 if args.quick else PATIENCE[name]
        features = d["input_shape"][-1]
        for base in args.bases:
            stock = None
            for family in args.families:
                config = matched_config(family, features, HIDDEN[name], GATES[base])
                model, training = train(task, base, family, config, d, epochs, patience,
                                        start=stock if family == "svd" else None)
                if family == "stock":
                    stock = model
                text = describe_config(family, config)
                if family == "svd":
                    text += (" (float "
                             f"{100 * training['float_accuracy_before_fine_tuning']:.2f} % "
                             "before fine-tuning)")
                record = evaluate(task, base, family, model, d)
                rows.append({"task": name, "base": base, "family": family,
                             "units": HIDDEN[name], "config_text": text,
                             "config": {k: (v.get_config() if hasattr(v, "get_config") else v)
                                        for k, v in (config.get("structures") or {}).items()}
                             or config.get("sparsity"),
                             "budget_params": config["budget"], "training": training,
                             **record})
        print(f"== {name} done at {(time.time() - t_start) / 60:.1f} min", flush=True)
    add_ratios(rows)
    result = {
        "command": command_line(), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info, "machine_arch": os.uname().machine, "quick": args.quick,
        "ratio": RATIO, "hidden": HIDDEN,
        "c_equals_oracle": all(x["c_mismatched_windows_vs_oracle"] == 0 for x in rows),
        "rows": rows, "targets": evaluate_targets(rows),
        "survey": [dict(zip(("cell", "method", "accuracy", "kb", "savings"), s))
                   for s in SURVEY_ROWS],
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
        plot(result)
        write_section(NAME, section(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
