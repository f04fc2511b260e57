"""Training aids on and off for the thresholded FastGRNN on HAR-6 and KWS-12, in one run.

Each row is ``train_quality``'s FastGRNN recipe (the paper's ranks, EdgeML's dense -> IHT ->
sparse fine-tuning through ``HardThresholding``, Adam with cosine decay, early stopping on
validation accuracy with the best weights restored in the sparse phase) with one aid added, then
all of them: gradient clipping (``clipnorm``), variational input and recurrent dropout,
DropConnect on the recurrent matrix, zoneout on h, the soft orthogonality penalty on the
recurrent matrix, AR/TAR on the outputs (``RegularizedRNN``). Same seed, data and epochs for
every row; test accuracy of the restored float model, the validation accuracy it was chosen on,
and the best epoch. One seed per row: differences under about one point on HAR-6 (2,996 test
windows) and KWS-12 (955) are within the run-to-run spread of this recipe.

Writes ``benchmarks/results/aids_ablation.json`` and the ``aids_ablation`` section of
``docs/benchmarks.md``. From the repository root::

    python benchmarks/aids_ablation.py --data-dir ../shared/data
    python benchmarks/aids_ablation.py --quick --data-dir ../shared/data   # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks.common import (  # noqa: E402
    REPO,
    command_line,
    machine_info,
    machine_line,
    write_section,
)
from benchmarks.train_quality import TASKS, Spec, load_task, train_one  # noqa: E402

SECTION = "aids_ablation"
RESULTS = REPO / "benchmarks" / "results" / f"{SECTION}.json"
TASK_NAMES = ("har6", "kws12")
# KWS-12 at most 40 epochs here (train_quality: 60) to keep the run near half an hour.
MAX_EPOCHS = {"har6": 30, "kws12": 40}

ROWS: tuple[tuple[str, tuple], ...] = (
    ("recipe (no aid)", ()),
    ("+ gradient clipping (clipnorm 1)", (("clipnorm", 1.0),)),
    ("+ dropout 0.1 (variational, x)", (("dropout", 0.1),)),
    ("+ recurrent dropout 0.1 (variational, h)", (("recurrent_dropout", 0.1),)),
    ("+ DropConnect 0.2 on U", (("recurrent_weight_dropout", 0.2),)),
    ("+ zoneout 0.05 on h", (("zoneout_h", 0.05),)),
    ("+ soft orthogonality 1e-3 on U", (("orthogonality", 1e-3),)),
    ("+ AR/TAR 1e-3", (("ar_tar", 1e-3),)),
    ("all of the above", (("clipnorm", 1.0), ("dropout", 0.1), ("recurrent_dropout", 0.1),
                          ("recurrent_weight_dropout", 0.2), ("zoneout_h", 0.05),
                          ("orthogonality", 1e-3), ("ar_tar", 1e-3))),
)


def fastgrnn_spec(task, label: str, extras: tuple) -> Spec:
    return Spec(label, "fastgrnn", task.fast_units, task.w_rank, task.u_rank,
                {"kernel": task.s_w, "recurrent_kernel": task.s_u}, lr=task.lr_fastgrnn,
                extras=extras)


def render(records: list[dict], info: dict, started, elapsed: float, quick: bool) -> str:
    lines = [
        "## Training aids on and off: thresholded FastGRNN (`benchmarks/aids_ablation.py`)", "",
        f"Command: `{command_line()}` — {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min."
        + (" **Quick smoke run: subsets, 2-3 epochs.**" if quick else "") + "  ",
        f"Machine: {machine_line(info)}.", "",
        "Each row adds one aid to `train_quality`'s FastGRNN recipe (paper ranks, dense -> IHT "
        "-> sparse fine-tuning, Adam with cosine decay, early stopping on validation accuracy "
        "in the sparse phase, best weights restored); the last row adds all. One seed per row: "
        "differences under about one point are within the recipe's run-to-run spread. "
        "*test* / *val*: float accuracy of the restored model; *best*: its epoch / epochs run.",
        ""]
    for name in TASK_NAMES:
        rows = [r for r in records if r["task"] == name]
        if not rows:
            continue
        base = rows[0]["test_accuracy"]
        lines += [f"### {TASKS[name].title}", "",
                  "| training | test % | Δ test (points) | val % | best / run |",
                  "|:--|--:|--:|--:|--:|"]
        for r in rows:
            lines.append(f"| {r['model']} | {100 * r['test_accuracy']:.2f} | "
                         f"{100 * (r['test_accuracy'] - base):+.2f} | "
                         f"{100 * r['val_accuracy']:.2f} | {r['best_epoch']} / {r['epochs_run']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="directory of speech_commands_v2_test12.npz")
    ap.add_argument("--tasks", default=",".join(TASK_NAMES))
    ap.add_argument("--quick", action="store_true", help="subsets, 3 epochs: a smoke test "
                    "(writes neither the JSON nor the doc)")
    args = ap.parse_args(argv)
    names = [n for n in args.tasks.split(",") if n]
    if not names or any(n not in TASK_NAMES for n in names):
        ap.error(f"--tasks: expected names from {TASK_NAMES}, got {args.tasks!r}")
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    records = []
    for name in names:
        task = TASKS[name]
        data = load_task(task, args.data_dir, args.quick)
        epochs = 3 if args.quick else MAX_EPOCHS[name]
        patience = 1 if args.quick else task.patience
        for label, extras in ROWS:
            record = train_one(task, fastgrnn_spec(task, label, extras), data, epochs, patience)
            record.pop("summary", None)
            record.pop("history", None)
            record["extras"] = dict(extras)
            records.append(record)
    elapsed = time.perf_counter() - t0
    if args.quick:
        print(render(records, info, started, elapsed, True))
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": command_line(), "date": started.isoformat(
        timespec="seconds"), "machine": info, "elapsed_seconds": elapsed,
        "max_epochs": MAX_EPOCHS, "records": records}, indent=1, default=str) + "\n",
        encoding="utf-8")
    write_section(SECTION, render(records, info, started, elapsed, False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
