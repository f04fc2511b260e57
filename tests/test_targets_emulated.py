"""The generated C on emulated microcontrollers: Cortex-M4 under QEMU, ATmega328P under simavr.

The same generated C99 as on the host (``progmem=True`` for the AVR, where it matters) must give
the NumPy oracle's states and scores bit for bit on both targets; the builds report flash/RAM
and the model's constant data; the counters of ``rnnedge_target.h`` measure cycles (AVR,
exact) and instructions (Cortex-M4 under ``-icount shift=0``, in steps of 40).

Without the toolchains these tests FAIL with the installation hint (so CI, which installs them,
really runs them); set ``RNNEDGE_SKIP_TOOLCHAIN=1`` to skip them instead.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from keras_rnnedge.cells import FastGRNNCell
from keras_rnnedge.converters.c import intmodel
from keras_rnnedge.converters.c.cgen import generate_c
from keras_rnnedge.converters.c.intmodel import quantize_model
from keras_rnnedge.micro_targets.harness import (
    TOOLCHAIN_PACKAGES,
    ToolchainMissingError,
    build_and_run_arm,
    build_and_run_avr,
    build_and_run_cortex_m0,
    build_and_run_cortex_m4,
    parse_trace,
    require_toolchain,
    timing_main,
    trace_main,
)
from tests.test_codegen import (
    _PRODUCT_PAIRS,
    SYNTHETIC,
    runtime_check_files,
    runtime_check_main,
    synthetic_inputs,
    synthetic_model,
)
from tests.test_intmodel import _assert_bit_exact, _build, _make, _oracle, _randomize

TARGETS = {"cortex_m4": build_and_run_cortex_m4, "cortex_m0": build_and_run_cortex_m0,
           "avr": build_and_run_avr}

# The Cortex-M counters read SysTick, which QEMU advances once per 40 instructions (mps2-an386,
# 25 MHz) or 62.5 (microbit, 16 MHz) under -icount shift=0: a measurement is off by at most
# one tick at each end.
ARM_COUNT_RESOLUTION = {"cortex_m4": 40, "cortex_m0": 62.5}
# A bigger model must cost more per step, about in proportion to its weights: step cost per
# multiply-accumulate of the H=8 model within a factor 2.5 of the H=32 model's (the per-step
# work that grows with H only, not H^2, weighs more in the small model, the more so since the
# MAC loops skip saturation where the bound allows; measured 1.82 on the Cortex-M4 (11.8 vs
# 6.5 instructions per MAC) and 2.31 on the AVR (191 vs 83 cycles); both counts are exact).
COST_PER_MAC_RATIO = 2.5
# The AVR build must keep the weights in flash: static RAM at most half the model's constant
# data (measured: 65 bytes of RAM against 508 bytes of weights for H=16).
AVR_RAM_PER_WEIGHT_BYTE = 0.5


def _toolchain(target: str):
    try:
        require_toolchain(target)
    except ToolchainMissingError as e:
        if os.environ.get("RNNEDGE_SKIP_TOOLCHAIN") == "1":
            pytest.skip(f"RNNEDGE_SKIP_TOOLCHAIN=1: {e}")
        pytest.fail(f"{e} (set RNNEDGE_SKIP_TOOLCHAIN=1 to skip these tests instead)",
                    pytrace=False)
    return TARGETS[target]


on_each_target = pytest.mark.parametrize("name", sorted(TARGETS))


def _fastgrnn(units: int, seed: int = 0, features: int = 4, steps: int = 6):
    rng = np.random.default_rng(seed)
    model = _build([FastGRNNCell(units)], features=features)
    _randomize(model, rng)
    data = rng.normal(size=(16, steps, features)).astype("float32")
    im = quantize_model(model, data, weight_bits=8)
    return im, np.stack([im.quantize_input(s) for s in data[:3]])


def _trace(im, x_q, run, *, progmem: bool):
    files = generate_c(im, "emu model", progmem=progmem)
    main = trace_main("emu_model", features=im.features, state_sizes=im.state_sizes,
                      num_outputs=im.num_outputs, sequences=x_q, progmem=True)
    return run(files, main)


def _macs(im) -> int:
    return sum(m.nnz for layer in im.recurrent
               for m in layer.kernel.matrices() + layer.recurrent.matrices())


def _assert_outputs_bit_exact(got, want, state_sizes):
    """The trace prints each layer's output ``h`` (the first ``size`` values of its state
    vector, then ``c``... for longer states) and the scores: all equal the oracle's."""
    for g, w in zip(got, want, strict=True):
        for gs, ws in zip(g["states"], w["states"], strict=True):
            for layer, size in enumerate(state_sizes):
                np.testing.assert_array_equal(gs[layer], ws[layer][:size])
        np.testing.assert_array_equal(g["scores"], w["scores"])


@pytest.mark.toolchain
@on_each_target
@pytest.mark.parametrize("config", ["fastgrnn_full_int8", "fastgrnn_lowrank_sparse_int8",
                                    "fastgrnn_quantized_stacked",
                                    # one model per further matrix family
                                    "fastgrnn_kronecker_int8", "fastrnn_tt_int16",
                                    "fastgrnn_tensor_ring_int8", "lstmp_group_shuffle_int8",
                                    "fastgrnn_circulant_toeplitz_int8",
                                    "lstm_hashed_circulant_int16",
                                    # the H-LSTM: calibrated hidden vectors, sparse (CSR)
                                    "hlstm_sparse_lowrank_stacked_int16"])
def test_c_matches_oracle_bit_for_bit_on_target(name, config):
    run = _toolchain(name)
    _, im, data = _make(config)
    x_q = np.stack([im.quantize_input(s) for s in data[:3]])
    result = _trace(im, x_q, run, progmem=name == "avr")
    got = parse_trace(result.stdout, len(im.state_sizes))
    want = _oracle(im, x_q)
    _assert_outputs_bit_exact(got, want, im.state_sizes)


@pytest.mark.toolchain
@on_each_target
def test_two_size_state_layout_on_target(name):
    """A projection LSTM (h of 4 and 3 values, c of 8 and 6) stacked: the outputs h and the
    scores bit for bit on the target (the trace prints each layer's h)."""
    run = _toolchain(name)
    _, im, data = _make("lstmp_kronecker_stacked_int8")
    x_q = np.stack([im.quantize_input(s) for s in data[:2]])
    got = parse_trace(_trace(im, x_q, run, progmem=name == "avr").stdout, len(im.state_sizes))
    want = _oracle(im, x_q)
    _assert_outputs_bit_exact(got, want, im.state_sizes)


@pytest.mark.toolchain
@on_each_target
def test_flash_and_ram_figures(name):
    run = _toolchain(name)
    im, x_q = _fastgrnn(16)
    result = _trace(im, x_q, run, progmem=name == "avr")
    _assert_bit_exact(parse_trace(result.stdout, 1), _oracle(im, x_q))
    scalars = 4 * sum(len(layer.scalars) for layer in im.recurrent)  # inlined in the code
    # the runtime's activation table (uint16 knots), when a tanh/sigmoid uses it
    uses_table = any(a in ("tanh", "sigmoid") for layer in im.recurrent
                     for a in (layer.activation, layer.recurrent_activation))
    table = 2 * len(getattr(intmodel, "TANH_TABLE", ())) if uses_table else 0
    assert result.model_flash_bytes == im.weight_bytes() - scalars + table
    assert result.model_code_bytes > 0 and result.model_ram_bytes == 0
    assert result.flash_bytes > result.model_flash_bytes + result.model_code_bytes
    assert result.ram_bytes > 0
    if name == "avr":
        assert result.ram_bytes <= AVR_RAM_PER_WEIGHT_BYTE * result.model_flash_bytes
        # Without PROGMEM avr-gcc copies every const array to SRAM.
        plain = _trace(im, x_q[:1], run, progmem=False)
        assert plain.ram_bytes - result.ram_bytes >= result.model_flash_bytes


@pytest.mark.toolchain
@on_each_target
def test_cost_per_step_is_measured_and_grows_with_the_model(name):
    run = _toolchain(name)
    per_step, per_mac = {}, {}
    for units in (8, 32):
        im, x_q = _fastgrnn(units)
        files = generate_c(im, "emu model", progmem=name == "avr")
        result = run(files, timing_main("emu_model", features=im.features,
                                        num_outputs=im.num_outputs, sequence=x_q[0],
                                        repeats=4 if name == "avr" else 40))
        assert result.count_unit == ("cycles" if name == "avr" else "instructions")
        counts = result.counts
        assert counts["step"] > 0 and counts["predict"] > 0
        if name == "avr":
            assert counts["empty"] == 0  # the overhead is subtracted exactly
        else:
            # at most one tick (62.5 instructions read as 62 or 63 on the microbit)
            assert counts["empty"] <= np.ceil(ARM_COUNT_RESOLUTION[name])
        per_step[units] = counts["step"]
        per_mac[units] = counts["step"] / _macs(im)
    assert per_step[32] > 4 * per_step[8]  # 12x the multiply-accumulates
    ratio = per_mac[8] / per_mac[32]
    assert 1 / COST_PER_MAC_RATIO <= ratio <= COST_PER_MAC_RATIO


@pytest.mark.toolchain
def test_avr_cycle_counter_is_exact():
    run = _toolchain("avr")
    cases = [(1, 1), (1, 60000), (7, 50000), (20, 65535)]  # 0 to 80 timer overflows
    lines = "".join(
        f"    t0 = rnnedge_count(); rnnedge_busy_loop({m}, {n}u); t1 = rnnedge_count();\n"
        f'    printf("%lu\\n", (unsigned long)(t1 - t0 - rnnedge_count_overhead()));\n'
        for m, n in cases)
    main = ('#include <stdio.h>\n#include "rnnedge_target.h"\n'
            "int main(void) {\n    uint32_t t0, t1;\n" + lines + "    return 0;\n}\n")
    got = np.array(run({}, main).stdout.split(), np.int64)
    want = np.array([m * (4 * n + 3) - 1 for m, n in cases])
    # The call costs the same constant every time: the overflow interrupts leave no trace.
    assert np.all(got - want == (got - want)[0]) and 0 <= (got - want)[0] < 50


@pytest.mark.toolchain
@pytest.mark.parametrize("name", sorted(ARM_COUNT_RESOLUTION))
def test_cortex_m_counts_instructions(name):
    run = _toolchain(name)
    n = 250_000
    main = ('#include <stdio.h>\n#include "rnnedge_target.h"\n'
            "int main(void) {\n    uint32_t t0, t1, n = " + str(n) + "u;\n"
            "    t0 = rnnedge_count();\n"
            "#if defined(__ARM_ARCH_6M__) /* gcc writes Thumb-1 in the divided syntax */\n"
            '    __asm__ volatile("1: sub %0, #1\\n\\tbne 1b" : "+r"(n) :: "cc");\n'
            "#else\n"
            '    __asm__ volatile("1: subs %0, %0, #1\\n\\tbne 1b" : "+r"(n) :: "cc");\n'
            "#endif\n"
            "    t1 = rnnedge_count();\n"
            '    printf("%lu\\n", (unsigned long)(t1 - t0));\n    return 7;\n}\n')
    result = run({}, main, check=False)
    assert result.exit_code == 7  # main's return, through semihosting
    assert result.model_flash_bytes is None
    # two instructions per iteration, one tick of slack at each end, plus the counter's code
    assert abs(int(result.stdout) - 2 * n) <= 2 * ARM_COUNT_RESOLUTION[name] + 40


@pytest.mark.toolchain
def test_cortex_m0plus_cycle_estimate_from_the_trace():
    """The Cortex-M0+ cycles of a traced region equal the TRM table applied by hand: the same
    call with an empty function and with one whose body is MOVS, ten SUBs with nine taken and
    one untaken BNE, an LDR, a PUSH and a POP of two registers: 1 + 10 + 9 x 2 + 1 + 2 + 3 + 3
    = 38 cycles more."""
    run = _toolchain("cortex_m0")
    main = (
        '#include <stdio.h>\n#include "rnnedge_target.h"\n'
        "__attribute__((noinline)) void f_empty(void) { __asm__ volatile (\"\"); }\n"
        "__attribute__((noinline)) void f_loop(void) {\n"
        '    __asm__ volatile ("movs r0, #10\\n1:\\n\\tsub r0, #1\\n\\tbne 1b\\n\\t"\n'
        '                      "ldr r1, [sp]\\n\\tpush {r4, r5}\\n\\tpop {r4, r5}"\n'
        '                      ::: "r0", "r1", "cc", "memory");\n}\n'
        "int main(void) {\n    uint32_t a, b, c, d;\n"
        "    a = rnnedge_count(); f_empty(); b = rnnedge_count();\n"
        "    c = rnnedge_count(); f_loop(); d = rnnedge_count();\n"
        '    printf("%lu %lu\\n", (unsigned long)(b - a), (unsigned long)(d - c));\n'
        "    return 0;\n}\n")
    result = run({}, main, trace=True)
    empty, loop = result.cycle_estimates
    assert loop - empty == 38
    with pytest.raises(ValueError, match="cortex_m0"):
        build_and_run_arm("cortex_m4", {}, main, trace=True)


@pytest.mark.toolchain
@on_each_target
def test_output_survives_the_emulator(name):
    """Long lines, backslashes and control characters come through (simavr logs UART0 per line,
    with control characters as dots)."""
    run = _toolchain(name)
    text = "tab\\there \\\\ back\\\\slash\\n" + "x" * 700 + "\\n" + "end."
    main = f'#include <stdio.h>\nint main(void) {{ printf("{text}"); return 3; }}\n'
    result = run({}, main, check=False)
    assert result.stdout == "tab\there \\ back\\slash\n" + "x" * 700 + "\nend."
    assert result.exit_code == 3


def test_missing_toolchain_names_packages_and_script(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    for name, packages in TOOLCHAIN_PACKAGES.items():
        with pytest.raises(ToolchainMissingError) as info:
            TARGETS[name]({}, "int main(void) { return 0; }\n")
        message = str(info.value)
        assert isinstance(info.value, FileNotFoundError)
        assert "scripts/install-toolchains.sh" in message
        assert all(p in message for p in packages)


@pytest.mark.toolchain
@on_each_target
@pytest.mark.parametrize("config", sorted(SYNTHETIC))
def test_generated_kernels_bit_exact_on_target(name, config):
    """Every row kernel and cell kind on the target's own code paths (AVR: assembler loops and
    multiplies, weights in flash; Cortex-M4: SMLAD/QADD/SSAT), against the oracle, on inputs
    with the int16 extremes."""
    run = _toolchain(name)
    im = synthetic_model(**SYNTHETIC[config][0])
    x_q = synthetic_inputs(im, n=2, steps=5)
    result = _trace(im, x_q, run, progmem=name == "avr")
    oracle = _oracle(im, x_q)
    for o in oracle:  # the trace prints h (an LSTM's oracle state is h then c)
        o["states"] = [[s[:im.recurrent[0].units]] for (s,) in o["states"]]
    _assert_bit_exact(parse_trace(result.stdout, 1), oracle)


@pytest.mark.toolchain
@on_each_target
def test_runtime_products_shifts_and_saturation_on_target(name):
    run = _toolchain(name)
    main, want = runtime_check_main(_PRODUCT_PAIRS)
    result = run(runtime_check_files(name == "avr"), main)
    assert result.stdout.split() == want
