"""The HAR-2 FastGRNN as generated C on microcontrollers: accuracy, size and speed.

Trains the FastGRNN paper's HAR-2 model briefly (hidden 80, r_W 5, r_U 40, hard thresholding
to s_W 0.2 / s_U 0.3 over 2 dense + 2 IHT + 2 sparse epochs), quantizes it with
``quantize_model`` (int8 weights, Q15 state), generates C99 with ``generate_c`` and reports:

* test accuracy of the float model and of the integer model (the generated C compiled for the
  host, checked bit for bit against the NumPy oracle on the first sequences);
* flash and RAM of a whole program (the model, one 128-step test window in flash, UART/semihosting
  output and the counters of ``micro_targets``) and of the model alone, on the ATmega328P
  (``progmem=True``, ``avr-gcc -Os``, simavr) and the Cortex-M4 (``arm-none-eabi-gcc -O2``, QEMU);
* exact AVR cycles per step / window, Cortex-M4 executed instructions per step / window, MACs per
  step and cost per MAC; pass/fail lines for the deployment targets.

Inputs are standardised with the training set's per-channel mean and std before training; the
integer model's own per-channel input quantization (``quantize_input``) follows, so on a device
both affine maps compose into one ``x_q = round((x - offset) * scale)`` per channel.

Usage (from the repository root)::

    python benchmarks/c_targets.py            # full test set (2,996 windows), a few minutes
    python benchmarks/c_targets.py --quick    # 2 epochs, subsets: smoke test, no output files
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, machine_info, machine_line, write_section  # noqa: E402

from keras_rnnedge._compat import keras  # noqa: E402
from keras_rnnedge.cells import FastGRNNCell  # noqa: E402
from keras_rnnedge.converters import cgen  # noqa: E402
from keras_rnnedge.converters.cgen import generate_c  # noqa: E402
from keras_rnnedge.converters.intmodel import quantize_model  # noqa: E402
from keras_rnnedge.datasets import load_har  # noqa: E402
from keras_rnnedge.micro_targets.harness import (  # noqa: E402
    build_and_run_avr,
    build_and_run_cortex_m4,
    build_and_run_host,
)
from keras_rnnedge.optimize import HardThresholding  # noqa: E402

NAME = "c_targets"
RESULTS = REPO / "benchmarks" / "results" / f"{NAME}.json"
SEED = 0
IDENT = "har2_fastgrnn"
UNO_FLASH = 16 * 1024  # the task's budget (the ATmega328P has 32 KB, 0.5 KB bootloader)
UNO_RAM = 1024  # the task's budget (2 KB of SRAM)
F_CPU = 16_000_000
WINDOW_BUDGET_S = 1.0
M4_PER_MAC = 3.0

_PRELUDE = """#include <stdio.h>
#include <string.h>
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define RE_PRINTF printf_P
#define RE_STR(s) PSTR(s)
#else
#ifndef PROGMEM
#define PROGMEM
#endif
#define memcpy_P memcpy
#define RE_PRINTF printf
#define RE_STR(s) (s)
#endif
"""


def window_main(window: np.ndarray, num_outputs: int) -> str:
    """A deployment-shaped program: one window (T, F) in flash, copied one step at a time to a
    RAM buffer of F int16, each step timed alone; then predict, timed; prints the scores."""
    t, f = window.shape
    rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in window)
    return (
        _PRELUDE + f'#include "rnnedge_target.h"\n#include "{IDENT}.h"\n\n'
        f"static const int16_t inputs[{t}][{f}] PROGMEM = {{\n{rows}\n}};\n\n"
        "int main(void) {\n"
        f"    static {IDENT}_state_t s;\n    int16_t x[{f}];\n    int32_t y[{num_outputs}];\n"
        "    uint32_t t0, t1, steps = 0, pred;\n    uint16_t t;\n    uint8_t i;\n"
        f"    {IDENT}_reset(&s);\n"
        f"    for (t = 0; t < {t}u; ++t) {{\n"
        "        memcpy_P(x, inputs[t], sizeof x);\n"
        "        t0 = rnnedge_count();\n"
        f"        {IDENT}_step(&s, x);\n"
        "        t1 = rnnedge_count();\n"
        "        steps += t1 - t0 - rnnedge_count_overhead();\n    }\n"
        f"    t0 = rnnedge_count();\n    {IDENT}_predict(&s, y);\n    t1 = rnnedge_count();\n"
        "    pred = t1 - t0 - rnnedge_count_overhead();\n"
        f'    RE_PRINTF(RE_STR("@count step %lu {t}\\n"), (unsigned long)steps);\n'
        '    RE_PRINTF(RE_STR("@count predict %lu 1\\n"), (unsigned long)pred);\n'
        f"    for (i = 0; i < {num_outputs}u; ++i) "
        'RE_PRINTF(RE_STR("@score %ld\\n"), (long)y[i]);\n'
        "    return 0;\n}\n")


def host_main(num_outputs: int) -> str:
    """Reads ``N T F`` then N*T*F int16 from stdin; prints each sequence's scores."""
    return (
        f'#include <stdio.h>\n#include "{IDENT}.h"\n\n'
        "int main(void) {\n"
        f"    static {IDENT}_state_t s;\n    int16_t x[64];\n    int32_t y[{num_outputs}];\n"
        "    int n, t, f, a, b, c, v;\n"
        '    if (scanf("%d %d %d", &n, &t, &f) != 3 || f > 64) return 1;\n'
        "    for (a = 0; a < n; ++a) {\n"
        f"        {IDENT}_reset(&s);\n"
        "        for (b = 0; b < t; ++b) {\n"
        '            for (c = 0; c < f; ++c) { if (scanf("%d", &v) != 1) return 2; '
        "x[c] = (int16_t)v; }\n"
        f"            {IDENT}_step(&s, x);\n        }}\n"
        f"        {IDENT}_predict(&s, y);\n"
        f'        for (c = 0; c < {num_outputs}; ++c) printf("%ld ", (long)y[c]);\n'
        '        printf("\\n");\n    }\n    return 0;\n}\n')


def load(quick: bool):
    ds = load_har(2, validation_split=0.0, seed=SEED)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    rng = np.random.default_rng(SEED)
    if quick:
        idx = np.sort(rng.permutation(len(y_train))[:1024])
        x_train, y_train = x_train[idx], y_train[idx]
        idx = np.sort(rng.permutation(len(y_test))[:256])
        x_test, y_test = x_test[idx], y_test[idx]
    mean = x_train.mean(axis=(0, 1), keepdims=True)
    std = x_train.std(axis=(0, 1), keepdims=True) + 1e-6
    norm = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return norm(x_train), np.asarray(y_train), norm(x_test), np.asarray(y_test)


def train(x, y, epochs: int, dense: int, iht: int):
    keras.utils.set_random_seed(SEED)
    inputs = keras.Input(x.shape[1:])
    h = keras.layers.RNN(FastGRNNCell(80, w_rank=5, u_rank=40), name="rnn")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="classifier")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    iht_cb = HardThresholding({"kernel": 0.2, "recurrent_kernel": 0.3}, dense_epochs=dense,
                              iht_epochs=iht)
    model.fit(x, y, batch_size=100, epochs=epochs, callbacks=[iht_cb], verbose=2)
    return model


def avr_stack_bytes(files) -> dict:
    """Stack frames of the generated model's functions (``avr-gcc -fstack-usage``, the AVR
    flags of the harness): function -> bytes."""
    import subprocess
    import tempfile

    from keras_rnnedge.micro_targets.harness import AVR_CFLAGS

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        subprocess.run(["avr-gcc", *AVR_CFLAGS, "-fstack-usage", "-c", f"{IDENT}.c", "-o",
                        "m.o"], cwd=tmp, check=True, capture_output=True)
        frames = {}
        for line in Path(tmp, "m.su").read_text().splitlines():
            loc, size, _ = line.split("\t")
            frames[loc.rsplit(":", 1)[-1]] = int(size)
    return frames


def macs(im) -> dict:
    dense = nnz = 0
    for layer in im.recurrent:
        for m in layer.kernel.matrices() + layer.recurrent.matrices():
            dense += m.values.size
            nnz += m.nnz
    return {"dense_factored": int(dense), "nonzero": int(nnz)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs (1+1), 1,024 training and "
                    "256 test windows: a smoke test (writes neither the JSON nor the doc)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    info = machine_info()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()

    x_train, y_train, x_test, y_test = load(args.quick)
    epochs, dense, iht = (2, 1, 1) if args.quick else (args.epochs, 2, 2)
    model = train(x_train, y_train, epochs, dense, iht)
    float_pred = np.argmax(model.predict(x_test, batch_size=256, verbose=0), axis=1)
    float_acc = float(np.mean(float_pred == y_test))

    rng = np.random.default_rng(SEED)
    rep = x_train[np.sort(rng.permutation(len(x_train))[:512])]
    im = quantize_model(model, rep, weight_bits=8)
    x_q = np.stack([im.quantize_input(s) for s in x_test])  # (N, T, F) int16 values

    # Integer accuracy: the generated C on the host (bit-exact with the oracle; checked here).
    host_files = generate_c(im, IDENT)
    text = f"{len(x_q)} {x_q.shape[1]} {x_q.shape[2]}\n" + "\n".join(
        " ".join(map(str, seq.ravel())) for seq in x_q) + "\n"
    out = build_and_run_host(host_files, host_main(im.num_outputs), stdin=text, timeout=600)
    c_scores = np.array([line.split() for line in out.splitlines() if line.strip()], np.int64)
    n_check = 8 if args.quick else 32
    oracle = np.stack([im.run(s) for s in x_test[:n_check]])
    assert np.array_equal(oracle, c_scores[:n_check]), "host C differs from the oracle"
    int_acc = float(np.mean(np.argmax(c_scores, axis=1) == y_test))
    agree = float(np.mean(np.argmax(c_scores, axis=1) == float_pred))

    window = x_q[0]
    targets = {}
    for name, run, progmem in (("avr", build_and_run_avr, True),
                               ("cortex_m4", build_and_run_cortex_m4, False)):
        files = generate_c(im, IDENT, progmem=progmem)
        r = run(files, window_main(window, im.num_outputs), timeout=900)
        scores = [int(line.split()[1]) for line in r.stdout.splitlines()
                  if line.startswith("@score")]
        assert scores == [int(v) for v in c_scores[0]], (name, scores, c_scores[0])
        targets[name] = {
            "unit": r.count_unit,
            "per_step": r.counts["step"],
            "per_window": r.counts["step"] * window.shape[0],
            "predict": r.counts["predict"],
            "flash_bytes": r.flash_bytes,
            "ram_bytes": r.ram_bytes,
            "model_const_bytes": r.model_flash_bytes,
            "model_code_bytes": r.model_code_bytes,
            "model_ram_bytes": r.model_ram_bytes,
            "window_in_flash_bytes": int(window.size * 2),
        }

    # The same model with the saturating kernels on every row (the generator before the
    # non-saturating kernels, up to loop shape): what the proven bound saves.
    saturating = {}
    cgen._SATURATE_ALL = True
    try:
        for name, run, progmem in (("avr", build_and_run_avr, True),
                                   ("cortex_m4", build_and_run_cortex_m4, False)):
            r = run(generate_c(im, IDENT, progmem=progmem), window_main(window, im.num_outputs),
                    timeout=900)
            saturating[name] = {"per_step": r.counts["step"], "flash_bytes": r.flash_bytes}
    finally:
        cgen._SATURATE_ALL = False

    frames = avr_stack_bytes(generate_c(im, IDENT, progmem=True))
    step_frame = frames[f"{IDENT}_step"]
    callee = max((v for k, v in frames.items() if k.startswith("re_")), default=0)
    targets["avr"]["step_stack_bytes"] = step_frame + callee
    targets["avr"]["ram_with_step_stack_bytes"] = targets["avr"]["ram_bytes"] + step_frame + callee

    mac = macs(im)
    avr, m4 = targets["avr"], targets["cortex_m4"]
    for t in saturating.values():
        t["per_mac_nonzero"] = t["per_step"] / mac["nonzero"]
    window_s = avr["per_window"] / F_CPU
    for t in targets.values():
        t["per_mac_nonzero"] = t["per_step"] / mac["nonzero"]
        t["per_mac_dense_factored"] = t["per_step"] / mac["dense_factored"]
    checks = {
        "uno_flash": avr["flash_bytes"] <= UNO_FLASH,
        "uno_ram_static": avr["ram_bytes"] <= UNO_RAM,
        "uno_ram_with_stack": avr["ram_with_step_stack_bytes"] <= UNO_RAM,
        "uno_window_1s": window_s <= WINDOW_BUDGET_S,
        "m4_3_instr_per_mac": m4["per_mac_nonzero"] <= M4_PER_MAC,
    }
    record = {
        "command": command_line(), "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info, "quick": args.quick, "epochs": epochs,
        "test_windows": int(len(y_test)), "standardized_inputs": True,
        "float_accuracy": float_acc, "int_accuracy": int_acc, "int_float_agreement": agree,
        "oracle_checked_sequences": n_check, "macs_per_step": mac,
        "weight_bytes": im.weight_bytes(),
        "matrices": [{"name": m.name, "shape": list(m.shape), "nnz": m.nnz,
                      "storage": "CSR" if m.sparse else "dense", "bytes": m.nbytes}
                     for layer in im.recurrent
                     for m in layer.kernel.matrices() + layer.recurrent.matrices()],
        "targets": targets, "all_rows_saturating": saturating,
        "window_seconds_16mhz": window_s, "checks": checks,
        "seconds": round(time.time() - t_start, 1),
    }
    print(json.dumps({k: record[k] for k in ("float_accuracy", "int_accuracy", "checks")}))
    if args.quick:  # a smoke test: neither the results file nor the doc
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if not args.no_doc:
        write_section(NAME, section(record))
    return 0


def section(r: dict) -> str:
    avr, m4, mac = r["targets"]["avr"], r["targets"]["cortex_m4"], r["macs_per_step"]
    sat = r["all_rows_saturating"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    c = r["checks"]
    subset = (f"{r['test_windows']} test windows (a random subset: `--quick`)" if r["quick"]
              else f"all {r['test_windows']} test windows")
    mats = ", ".join(f"{m['name']} {m['shape'][0]}x{m['shape'][1]} {m['storage']} "
                     f"({m['nnz']} nnz, {m['bytes']} B)" for m in r["matrices"])
    lines = [
        "## Generated C on microcontrollers (HAR-2 FastGRNN)", "",
        f"Command: `{r['command']}` — {r['date']}, {r['seconds']:.0f} s.  ",
        f"Machine: {machine_line(r['machine'])}.", "",
        f"FastGRNN, hidden 80, r_W 5, r_U 40, HardThresholding s_W 0.2 / s_U 0.3 "
        f"({r['epochs']} epochs: dense, IHT, sparse fine-tuning; Adam 0.02, batch 100), "
        "bundled HAR-2 data, inputs standardised with the training set's per-channel mean/std. "
        "Quantized with `quantize_model` (int8 weights, Q15 int16 state), C from `generate_c`. "
        f"Integer accuracy is that of the generated C compiled for the host on {subset}, checked "
        f"bit for bit against the NumPy oracle on the first {r['oracle_checked_sequences']}; "
        "the AVR and Cortex-M4 runs give the host's scores on the timed window.", "",
        f"Matrices: {mats}. Rows whose worst case fits int32 use the non-saturating kernels "
        "(all of them here).", "",
        "| | ATmega328P (avr-gcc -Os, simavr) | Cortex-M4 (arm-none-eabi-gcc -O2, QEMU) |",
        "|---|---|---|",
        f"| whole program flash / RAM (bytes) | {avr['flash_bytes']:,} / {avr['ram_bytes']:,} "
        f"| {m4['flash_bytes']:,} / {m4['ram_bytes']:,} |",
        f"| model: constants + code (flash) / RAM (bytes) | {avr['model_const_bytes']:,} + "
        f"{avr['model_code_bytes']:,} / {avr['model_ram_bytes']} | {m4['model_const_bytes']:,} + "
        f"{m4['model_code_bytes']:,} / {m4['model_ram_bytes']} |",
        f"| cost per time step | {avr['per_step']:,.0f} cycles (exact) | "
        f"{m4['per_step']:,.0f} instructions |",
        f"| cost per 128-step window | {avr['per_window']:,.0f} cycles = "
        f"{r['window_seconds_16mhz'] * 1000:.0f} ms at 16 MHz | {m4['per_window']:,.0f} "
        "instructions |",
        f"| same, saturating kernels on every row | {sat['avr']['per_step']:,.0f} cycles/step, "
        f"{sat['avr']['per_mac_nonzero']:.1f} per non-zero MAC | "
        f"{sat['cortex_m4']['per_step']:,.0f} instructions/step, "
        f"{sat['cortex_m4']['per_mac_nonzero']:.2f} per non-zero MAC |",
        f"| predict (head) | {avr['predict']:,.0f} cycles | {m4['predict']:,.0f} instructions |",
        f"| per MAC (non-zero / dense-factored) | {avr['per_mac_nonzero']:.1f} / "
        f"{avr['per_mac_dense_factored']:.1f} cycles | {m4['per_mac_nonzero']:.2f} / "
        f"{m4['per_mac_dense_factored']:.2f} instructions |",
        "",
        f"MACs per step: {mac['nonzero']:,} non-zero (what the CSR kernels execute), "
        f"{mac['dense_factored']:,} dense-factored (the low-rank factors without sparsity). "
        "Per-MAC figures divide the whole step (activations and state update included) by "
        "these counts. Whole-program figures include the 128-step test window in flash "
        f"({avr['window_in_flash_bytes']:,} bytes), stdio output and the counters; static RAM "
        "only in the table (the step's stack frame, from `avr-gcc -fstack-usage` with the "
        "deepest kernel's frame added, is in the RAM lines below; main's frame and return "
        "addresses are not counted). Cortex-M4 counts are executed instructions (QEMU "
        "`-icount`), not cycles.", "",
        "Where the step goes (separate marginal measurement, dense FastGRNN H=32 vs H=80): a "
        "non-saturating int8 MAC costs about 45 AVR cycles (two hardware multiplies in inline "
        "asm plus the loop) and about 5 M4 instructions in CSR (4.8 dense, unrolled by 4); the "
        "rest of the step is the per-unit int32 rescaling, activations and state update, "
        "which dominates on the AVR (32-bit shifts by 15 are loops there) and is the next "
        "thing to optimize for the 1 s window. ≤ 3 instructions per MAC on the M4 needs "
        "packed (SMLAD) dense kernels; a CSR gather (index load, value load, input load, "
        "multiply-accumulate) is at least 4.", "",
        f"Accuracy (HAR-2): float {r['float_accuracy'] * 100:.2f} %, integer "
        f"{r['int_accuracy'] * 100:.2f} % (argmax agreement {r['int_float_agreement'] * 100:.2f} "
        "%).", "",
        "Targets:", "",
        f"- {ok(c['uno_flash'])}: fits an Arduino Uno, whole program ≤ 16 KB flash "
        f"({avr['flash_bytes']:,} B)",
        f"- {ok(c['uno_ram_static'])}: whole program ≤ 1 KB RAM, static ({avr['ram_bytes']:,} B)",
        f"- {ok(c['uno_ram_with_stack'])}: whole program ≤ 1 KB RAM, static + the step's stack "
        f"({avr['ram_bytes']:,} + {avr['step_stack_bytes']:,} = "
        f"{avr['ram_with_step_stack_bytes']:,} B; `<id>_step` keeps its int32 pre-activations "
        "and low-rank scratch on the stack; the ATmega328P has 2 KB)",
        f"- {ok(c['uno_window_1s'])}: one 128-step window in ≤ 1.0 s on the ATmega328P at 16 MHz "
        f"({r['window_seconds_16mhz']:.3f} s)",
        f"- {ok(c['m4_3_instr_per_mac'])}: Cortex-M4 ≤ 3 executed instructions per MAC "
        f"({m4['per_mac_nonzero']:.2f} per non-zero MAC)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
