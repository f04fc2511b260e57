"""Fuzz the generated C of random models (libFuzzer, ASan/UBSan) against the NumPy oracle.

Each model is drawn at random (:func:`random_fuzz_model`): one or two recurrent layers of any
supported kind (FastGRNN, FastRNN, low-rank LSTM/GRU, stock LSTM/GRU/SimpleRNN) with random
sizes, ranks, sparsity (CSR storage), activations and weight scales, an optional Dense head,
int8 or int16 weights and a random state format (``frac_bits``, the LSTM cell format), through
the real ``quantize_model`` and ``generate_c``. ``keras_rnnedge.micro_targets.fuzz`` then runs
libFuzzer on it for ``--seconds`` (the fuzz target also checks the model against a second build
of itself with the saturating kernels only, and against a rerun from reset), and replays every
input the fuzzer kept through a plain gcc build, checked bit for bit against
``IntModel.step``/``predict``. A crash or a mismatch is a finding; the reproducers stay in the
work folder.

Usage (from the repository root)::

    python benchmarks/fuzz_c.py --models 20 --seconds 30       # the documented long run
    python benchmarks/fuzz_c.py --models 3 --seconds 5 --no-record   # a quick look

It prints one line per model, writes ``benchmarks/results/fuzz_c.json`` and the results section
of ``docs/fuzzing.md`` (command, date, machine, executions, corpus sizes, findings), and exits
with 1 when anything was found.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from benchmarks.common import REPO, command_line, machine_info, machine_line, write_section  # noqa: E402
from keras_rnnedge._compat import keras  # noqa: E402
from keras_rnnedge.cells import (  # noqa: E402
    FastGRNNCell,
    FastRNNCell,
    LowRankGRUCell,
    LowRankLSTMCell,
)
from keras_rnnedge.cells.base import quantized_sigmoid, quantized_tanh  # noqa: E402
from keras_rnnedge.cells.step import GATE_ACTIVATIONS  # noqa: E402
from keras_rnnedge.converters.c import cgen  # noqa: E402
from keras_rnnedge.converters.c.intmodel import (  # noqa: E402
    CANDIDATE_ACTIVATIONS,
    CELL_ACTIVATIONS,
    DENSE_ACTIVATIONS,
    LSTM_GRU_ACTIVATIONS,
    SIMPLE_RNN_ACTIVATIONS,
    quantize_model,
)
from keras_rnnedge.micro_targets.fuzz import FuzzModel, FuzzReport, fuzz_model  # noqa: E402

KINDS = ("fastgrnn", "fastrnn", "lowrank_lstm", "lowrank_gru", "lstm", "gru", "simplernn")
#: Activations by name, as the Keras layers take them (the quantized ones as functions).
_FUNCTIONS = {"quantized_tanh": quantized_tanh, "quantized_sigmoid": quantized_sigmoid}
RESULTS = REPO / "benchmarks" / "results" / "fuzz_c.json"
DOC = REPO / "docs" / "fuzzing.md"


def _rank(rng, size: int):
    return None if rng.random() < 0.4 else int(rng.integers(1, max(2, size + 1)))


def _layer(rng, kind: str, units: int, inputs: int, sequences: bool):
    """A recurrent layer of ``kind`` with random options; its description."""
    def pick(names) -> str:
        return str(rng.choice(sorted(names)))

    if kind in ("fastgrnn", "fastrnn"):
        options = dict(w_rank=_rank(rng, min(units, inputs)), u_rank=_rank(rng, units),
                       activation=pick(CANDIDATE_ACTIVATIONS))
        if kind == "fastgrnn":
            options["recurrent_activation"] = pick(CELL_ACTIVATIONS)
            cell = FastGRNNCell(units, **options)
        else:
            cell = FastRNNCell(units, **options)
    elif kind in ("lowrank_lstm", "lowrank_gru"):
        options = dict(rank=_rank(rng, min(4 * units, inputs)), recurrent_rank=_rank(rng, units),
                       activation=pick(LSTM_GRU_ACTIVATIONS),
                       recurrent_activation=pick(GATE_ACTIVATIONS))
        if kind == "lowrank_lstm":
            options["unit_forget_bias"] = bool(rng.random() < 0.5)
            cell = LowRankLSTMCell(units, **options)
        else:
            options["reset_after"] = bool(rng.random() < 0.5)
            cell = LowRankGRUCell(units, **options)
    else:
        allowed = SIMPLE_RNN_ACTIVATIONS if kind == "simplernn" else LSTM_GRU_ACTIVATIONS
        options = {"activation": pick(allowed)}
        if kind != "simplernn":
            options["recurrent_activation"] = pick(GATE_ACTIVATIONS)
        if kind == "gru":
            options["reset_after"] = bool(rng.random() < 0.5)
        layer_type = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
                      "simplernn": keras.layers.SimpleRNN}[kind]
        text = ", ".join(f"{k}={v}" for k, v in options.items())
        layer = layer_type(units, return_sequences=sequences,
                           **{k: _FUNCTIONS.get(v, v) for k, v in options.items()})
        return layer, f"{kind}({units}, {text})"
    text = ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)
    return keras.layers.RNN(cell, return_sequences=sequences), f"{kind}({units}, {text})"


def _randomize(model, rng, sparsity: float) -> None:
    """Random weights at a random scale per tensor (so the quantizer picks varied formats);
    recurrent matrices hard-thresholded to ``sparsity`` (CSR storage where it is smaller)."""
    for var in model.weights:
        shape = tuple(var.shape)
        scale = 10.0 ** rng.uniform(-1.5, 0.6)
        value = rng.normal(0.0, scale, shape)
        if len(shape) == 2 and sparsity and "dense" not in var.name:
            cut = np.quantile(np.abs(value), sparsity)
            value[np.abs(value) < cut] = 0.0
        elif shape == (1,):  # FastGRNN zeta/nu, FastRNN alpha/beta (through a sigmoid)
            value = rng.normal(0.0, 3.0, shape)
        var.assign(value.astype("float32"))


def random_fuzz_model(seed: int, name: str | None = None, *, tries: int = 20
                      ) -> tuple[FuzzModel, dict]:
    """A random model as a :class:`FuzzModel` (with the all-saturating reference build) and its
    description (the draw's options). Draws that ``quantize_model`` refuses (a weight beyond
    the format's range, which it names) are drawn again, up to ``tries`` times."""
    rng = np.random.default_rng(seed)
    name = name or f"fuzz_{seed}"
    refused = []
    for _ in range(tries):
        keras.backend.clear_session()
        # now and then a wide input (CSR with 8-bit and 16-bit column indices)
        features = int(rng.integers(1, 11) if rng.random() < 0.9 else rng.integers(129, 300))
        kinds = [str(rng.choice(KINDS)) for _ in range(1 if rng.random() < 0.7 else 2)]
        x = inputs = keras.Input((8, features))
        described = []
        for n, kind in enumerate(kinds):
            units = int(rng.integers(1, 17) if rng.random() < 0.8 else rng.integers(17, 49))
            layer, text = _layer(rng, kind, units, int(x.shape[-1]), n < len(kinds) - 1)
            x = layer(x)
            described.append(text)
        for n in range(int(rng.choice([0, 1, 1, 2]))):
            last = n == 0 or rng.random() < 0.5
            options = sorted(DENSE_ACTIVATIONS) if last else sorted(
                set(DENSE_ACTIVATIONS) - {"softmax"})
            act = str(rng.choice(options))
            units = int(rng.integers(1, 9))
            x = keras.layers.Dense(units, activation=_FUNCTIONS.get(act, act))(x)
            described.append(f"dense({units}, {act})")
            if last:
                break
        model = keras.Model(inputs, x, name=name)
        sparsity = float(rng.choice([0.0, 0.0, rng.uniform(0.3, 0.95)]))
        _randomize(model, rng, sparsity)
        data = rng.normal(size=(16, 8, features)) * 10.0 ** rng.uniform(-2, 2, features) \
            + rng.normal(size=features) * 10.0 ** rng.uniform(-2, 2, features)
        bits = int(rng.choice([8, 16]))
        frac = 15 if rng.random() < 0.5 else int(rng.integers(1, 16))
        cell_frac = None if rng.random() < 0.6 else int(rng.integers(0, frac + 1))
        progmem = bool(rng.random() < 0.3)
        options = {"layers": described, "features": features, "sparsity": round(sparsity, 3),
                   "weight_bits": bits, "frac_bits": frac, "cell_frac_bits": cell_frac,
                   "progmem": progmem}
        try:
            im = quantize_model(model, data.astype("float32"), weight_bits=bits, frac_bits=frac,
                                cell_frac_bits=cell_frac)
        except ValueError as error:
            refused.append(str(error).split(".")[0])
            continue
        sources = cgen.generate_c(im, name, progmem=progmem)
        # every row through the saturating kernels
        reference = cgen.generate_c(im, f"{name}_ref", saturate_all=True)
        options["refused_draws"] = refused
        lstm = cell_frac is not None and any(k.endswith("lstm") for k in kinds)
        description = "; ".join([*described, f"int{bits} weights, state Q{frac}"
                                 + (f", LSTM cell Q{cell_frac}" if lstm else "")
                                 + (", progmem" if progmem else "")])
        fm = FuzzModel(name=name, c_sources=sources, features=im.features,
                       num_outputs=im.num_outputs, state_sizes=tuple(im.state_sizes),
                       state_layout=tuple(im.state_layout), oracle=im,
                       reference=(f"{name}_ref", reference), description=description)
        return fm, options
    raise RuntimeError(f"quantize_model refused {tries} draws of seed {seed}: {refused[-3:]}")


def _section(args, info, reports: list[FuzzReport], total: float) -> str:
    found = [r for r in reports if r.findings]
    rows = ["| model | layers and format | executions | corpus (files / bytes) | replayed | "
            "findings |", "|---|---|---:|---:|---:|---|"]
    for r in reports:
        what = "; ".join([*r.crashes, *r.mismatches]) or "none"
        rows.append(f"| {r.name} | {r.description} | {r.executions:,} | {r.corpus_files} / "
                    f"{r.corpus_bytes:,} | {r.replayed} | {what} |")
    return "\n".join([
        "## Results of the last run",
        "",
        f"Command: `{command_line()}`  ",
        f"Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}  ",
        f"Machine: {machine_line(info)}",
        "",
        f"{len(reports)} random models (seeds {args.seed} to {args.seed + len(reports) - 1}), "
        f"{args.seconds:g} s of fuzzing each, inputs of at most {args.max_steps} steps; "
        f"{sum(r.executions for r in reports):,} executions in all, "
        f"{sum(r.corpus_files for r in reports):,} corpus inputs replayed against the oracle, "
        f"{total / 60:.1f} min in all. Findings: "
        + (f"{sum(r.findings for r in found)} in {len(found)} models." if found else "none."),
        "",
        *rows,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=20, help="random models (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="fuzzing time per model (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first model")
    parser.add_argument("--max-steps", type=int, default=16, help="steps per input (max)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep sources, corpora and reproducers here (default: temporary)")
    parser.add_argument("--no-record", action="store_true",
                        help="do not write benchmarks/results/fuzz_c.json and docs/fuzzing.md")
    args = parser.parse_args(argv)
    if args.models < 1 or args.seconds <= 0 or args.max_steps < 1:
        parser.error("--models, --seconds and --max-steps must be positive")
    info = machine_info()
    start = time.perf_counter()
    reports, results = [], []
    with tempfile.TemporaryDirectory(prefix="rnnedge_fuzz_") as tmp:
        root = args.workdir or Path(tmp)
        for k in range(args.models):
            seed = args.seed + k
            model, options = random_fuzz_model(seed)
            report = fuzz_model(model, seconds=args.seconds, workdir=root / model.name,
                                seed=seed + 1, max_steps=args.max_steps)
            reports.append(report)
            results.append({**options, "seed": seed, "name": report.name,
                            "executions": report.executions,
                            "corpus_files": report.corpus_files,
                            "corpus_bytes": report.corpus_bytes, "replayed": report.replayed,
                            "crashes": list(report.crashes),
                            "mismatches": list(report.mismatches),
                            "seconds": round(report.seconds, 1)})
            print(f"{report.name}: {report.executions:,} executions, corpus "
                  f"{report.corpus_files} files / {report.corpus_bytes:,} B, "
                  f"{report.replayed} replayed, findings {report.findings} "
                  f"({report.seconds:.0f} s) - {report.description}", flush=True)
            for finding in (*report.crashes, *report.mismatches):
                print(f"    FINDING {finding}", flush=True)
    total = time.perf_counter() - start
    found = sum(r.findings for r in reports)
    print(f"{len(reports)} models, {sum(r.executions for r in reports):,} executions, "
          f"{found} findings, {total / 60:.1f} min")
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"command": command_line(), "machine": info,
                                       "date": datetime.datetime.now().isoformat(),
                                       "seconds_per_model": args.seconds,
                                       "max_steps": args.max_steps, "models": results},
                                      indent=1) + "\n", encoding="utf-8")
        write_section("fuzz_c", _section(args, info, reports, total), DOC)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
