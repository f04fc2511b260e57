"""Compression search under a board's budget (keras_rnnedge.search) on this machine's Ray.

Per task, a search of bounded budget (``--trials`` configurations drawn, seeded, from cell kind
{FastGRNN, GRU, LSTM} x hidden {16, 32, 64} x recurrent matrix {dense, low rank 4, low rank 8} x
density {dense, 0.5, 0.25}, int8 weights; each trained with the project's recipe for
``--epochs`` epochs, ASHA on, two trials at a time on the two cores):

* HAR-6 for the Arduino Uno (32 KB flash, 2 KB RAM, 16 MHz; time per step from simavr's exact
  cycles) at most 8 ms per step;
* KWS-12 for the Arduino Nano 33 BLE (1 MB flash, 256 KB RAM, 64 MHz; time per step from
  QEMU's executed Cortex-M4 instructions at one per cycle) at most 8 ms per step.

It publishes each search's table and Pareto front (PNG in ``docs/``) and how far the best
fitting model (integer C on the host over every test window; chosen on validation: HAR-6
holds out whole training subjects for it) is from the best stock LSTM/GRU of
``benchmarks/recipe_quality.py`` (same recipe and test split, read from its results file with
their date).

Speed-up of Ray: the same four HAR-6 configurations (ASHA off, so the work is identical) run
with one trial at a time and with two, side by side in this run; trials per hour and the ratio.

Writes ``benchmarks/results/search_pareto.json``, ``docs/search_<task>.png`` and the
``search_pareto`` section of ``docs/benchmarks.md``. From the repository root::

    python benchmarks/search_pareto.py --data-dir ../shared/data
    python benchmarks/search_pareto.py --quick --data-dir ../shared/data   # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks.common import (  # noqa: E402
    REPO,
    command_line,
    machine_info,
    machine_line,
    quick_subset,
    target_line,
    write_section,
)
from keras_rnnedge.datasets import load_har, load_speech_commands  # noqa: E402
from keras_rnnedge.recipe import Recipe  # noqa: E402
from keras_rnnedge.search import Constraints, SearchSpace, search  # noqa: E402

SECTION = "search_pareto"
RESULTS = REPO / "benchmarks" / "results" / f"{SECTION}.json"
STOCK = REPO / "benchmarks" / "results" / "recipe_quality.json"
SPACE = SearchSpace(cells=("fastgrnn", "gru", "lstm"), units=(16, 32, 64),
                    recurrent=(None, {"family": "low_rank", "rank": 4},
                               {"family": "low_rank", "rank": 8}),
                    densities=(None, 0.5, 0.25))
TASKS = {"har6": ("HAR-6 (six activities)", "uno", 8.0),
         "kws12": ("KWS-12 (Speech Commands, 12 classes)", "nano33ble", 8.0)}
#: The configurations timed with one and with two trials at a time.
SPEEDUP_SPACE = SearchSpace(cells=("fastgrnn",), units=(16, 32), recurrent=(None,),
                            densities=(None, 0.5))


def load(task: str, data_dir, quick: bool):
    if task == "kws12":
        ds = load_speech_commands(data_dir, validation_split=0.1, seed=0)
    else:  # subjects held out for validation: the choice among trials tracks the test split
        ds = load_har(6, validation_split=0.1, seed=0, validation_by="subject")
    return quick_subset(ds) if quick else ds


def recipe_for(epochs: int) -> Recipe:
    third = max(1, epochs // 3)
    return Recipe(dense_epochs=third, threshold_epochs=third,
                  sparse_epochs=max(1, epochs - 2 * third), learning_rate=0.01, batch_size=64)


def stock_reference() -> dict:
    """The best stock model per task from recipe_quality's results (same recipe and splits)."""
    if not STOCK.is_file():
        return {}
    payload = json.loads(STOCK.read_text())
    return {r["task"]: {"model": r["best_stock"], "test_accuracy": r["best_stock_accuracy"],
                        "bytes_int8": r["best_stock_bytes"], "date": payload["date"]}
            for r in payload["results"]}


def run_task(task: str, data, args, work: Path) -> dict:
    title, target, latency = TASKS[task]
    print(f"{title} on {target}:", flush=True)
    result = search(data, space=SPACE, constraints=Constraints(target, max_latency_ms=latency),
                    recipe=recipe_for(args.epochs), max_trials=args.trials, seed=0,
                    out=work / task, log=lambda line: print(line, flush=True))
    png = REPO / "docs" / f"search_{task}.png"
    if (result.out / "pareto.png").is_file() and not args.quick:
        shutil.copyfile(result.out / "pareto.png", png)
    return {"task": task, "title": title, "target": target, "max_latency_ms": latency,
            "rows": list(result.rows), "pareto": list(result.pareto), "best": result.best,
            "seconds": result.seconds, "png": str(png.relative_to(REPO)),
            "windows": {"train": len(data.y_train), "val": len(data.y_val),
                        "test": len(data.y_test)}}


def speedup(data, args, work: Path) -> dict:
    """The same configurations, ASHA off, one trial at a time and two at a time."""
    out = {}
    for workers in (1, 2):
        start = time.perf_counter()
        result = search(data, space=SPEEDUP_SPACE, constraints=Constraints("uno"),
                        recipe=recipe_for(args.epochs), seed=0, early_stopping=False,
                        max_concurrent=workers, out=work / f"speedup{workers}", log=None)
        seconds = time.perf_counter() - start
        trials = sum(r["status"] != "rejected before training" for r in result.rows)
        out[workers] = {"seconds": seconds, "trials": trials,
                        "trials_per_hour": 3600 * trials / seconds}
        print(f"speed-up: {workers} worker(s): {trials} trials in {seconds:.0f} s", flush=True)
    out["ratio"] = out[2]["trials_per_hour"] / out[1]["trials_per_hour"]
    return out


def render(payload: dict) -> str:
    lines = [
        f"Command: `{payload['command']}`  ",
        f"Date: {payload['date']}  ",
        f"Machine: {machine_line(payload['machine'])}  ",
        f"Elapsed: {payload['elapsed_seconds'] / 60:.1f} min",
        "",
        f"Search space: {len(SPACE.configs())} configurations (cell FastGRNN/GRU/LSTM x hidden "
        "16/32/64 x recurrent matrix dense/low rank 4/low rank 8 x density dense/0.5/0.25, "
        f"int8 weights); {payload['trials']} drawn per task (seeded) among those that pass "
        f"the check before training; {payload['epochs']} epochs per trial (a third dense, "
        "threshold, sparse; dense models all dense); ASHA on; two trials at a time on local "
        "Ray. *C val/test*: the integer C on the host over every validation/test window; "
        "*flash/RAM*: compiled for the board; *ms/step*: simavr cycles at 16 MHz (Uno), QEMU "
        "instructions at one per cycle at 64 MHz (Nano 33 BLE).",
        "",
    ]
    stock = payload["stock"]
    for r in payload["results"]:
        lines += [f"### {r['title']} on {r['target']} (at most {r['max_latency_ms']:g} ms per "
                  "step)", "",
                  f"Windows: {r['windows']['train']:,} train, {r['windows']['val']:,} "
                  f"validation, {r['windows']['test']:,} test. Search: {r['seconds'] / 60:.1f} "
                  f"min. Pareto plot: `{r['png']}`.", ""]
        lines += _table(r)
        lines.append("")
    s = payload["speedup"]
    lines += ["### Ray: one trial at a time against two", "",
              f"The same {s[1]['trials']} HAR-6 configurations (FastGRNN 16/32 units, dense and "
              "density 0.5; ASHA off): "
              f"1 worker {s[1]['seconds']:.0f} s ({s[1]['trials_per_hour']:.0f} trials/hour), "
              f"2 workers {s[2]['seconds']:.0f} s ({s[2]['trials_per_hour']:.0f} trials/hour): "
              f"**{s['ratio']:.2f}x**.", ""]
    lines += ["Comparisons and targets:", ""] + [
        f"MEASURED {t['task']}: {t['target']}: {t['text']}" if t["passed"] is None
        else target_line(t) for t in payload["targets"]]
    if stock:
        lines += ["", "Stock references: " + "; ".join(
            f"{k}: {v['model']} {100 * v['test_accuracy']:.2f} % at {v['bytes_int8']:,} B "
            f"(recipe_quality, {v['date']})" for k, v in stock.items())]
    return "\n".join(lines) + "\n"


def _table(r: dict) -> list[str]:
    lines = ["| configuration | status | C val % | C test % | flash B | RAM B | ms/step |",
             "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(r["rows"]):
        if row["status"] == "rejected before training":
            continue
        mark = (" **best**" if i == r["best"] else "") + (" (Pareto)" if i in r["pareto"]
                                                           else "")

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}"

        latency = row.get("latency_ms")
        lines.append(f"| {row['config']}{mark} | {row['status']} | "
                     f"{pct(row.get('c_val_accuracy'))} | {pct(row.get('c_test_accuracy'))} | "
                     f"{_num(row.get('flash_bytes'))} | {_num(row.get('ram_bytes'))} | "
                     f"{'-' if latency is None else f'{latency:.3g}'} |")
    rejected = sum(row["status"] == "rejected before training" for row in r["rows"])
    lines.append("")
    lines.append(f"{rejected} configurations rejected before training (weights or state "
                 "beyond the board's flash or RAM).")
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:,}"


def targets_of(payload: dict) -> list[dict]:
    out = []
    for r in payload["results"]:
        best = None if r["best"] is None else r["rows"][r["best"]]
        ref = payload["stock"].get(r["task"])
        if best is None:
            out.append({"task": r["task"], "target": "a fitting model found", "passed": False,
                        "text": "no configuration met the constraints"})
            continue
        text = (f"best {best['config']}: C test {100 * best['c_test_accuracy']:.2f} %, "
                f"flash {best['flash_bytes']:,} B, {best.get('latency_ms') or 0:.3g} ms/step")
        if ref:
            gap = 100 * (ref["test_accuracy"] - best["c_test_accuracy"])
            text += (f"; {gap:+.2f} points behind {ref['model']} "
                     f"({100 * ref['test_accuracy']:.2f} % float at {ref['bytes_int8']:,} B "
                     "of int8 weights)")
        out.append({"task": r["task"], "target": f"best fitting model on {r['target']} "
                    "against the best stock LSTM/GRU", "passed": None, "text": text})
    s = payload["speedup"]
    out.append({"task": "har6", "target": "2 Ray workers vs 1 on 2 cores (trials per hour)",
                "passed": s["ratio"] > 1.0, "text": f"{s['ratio']:.2f}x"})
    return out


def main(argv=None) -> int:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks", default="har6,kws12")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs = min(args.trials, 3), 3
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results = []
    with tempfile.TemporaryDirectory(prefix="rnnedge-search-") as tmp:
        work = Path(tmp)
        for task in args.tasks.split(","):
            results.append(run_task(task, load(task, args.data_dir, args.quick), args, work))
        speed = speedup(load("har6", args.data_dir, args.quick), args, work)
    ray.shutdown()
    payload = {"command": command_line(argv), "quick": args.quick,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), "elapsed_seconds": time.perf_counter() - start,
               "trials": args.trials, "epochs": args.epochs, "results": results,
               "speedup": speed, "stock": stock_reference()}
    payload["targets"] = targets_of(payload)
    text = render(payload)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(payload, indent=1, default=str) + "\n")
        write_section(SECTION, "## Compression search under a board's budget (Ray Tune)\n\n"
                      + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
