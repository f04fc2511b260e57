"""Project stage for the standalone C model: an Arduino sketch and a plain Cortex-M C project.

Both wrap the files of :func:`keras_rnnedge.converters.c.cgen.generate_c` (``<id>.h``, ``<id>.c``)
and need no TFLite Micro:

* :func:`c_sketch`: the sketch folder ``<id>/`` (``<id>.ino`` plus the model's C, which the
  Arduino IDE compiles with the sketch). It streams like the TFLite Micro sketch: one line of
  comma-separated floats per time step from ``Serial`` (:func:`~.sketch.serial_sample_reader`),
  quantized with the model's input offset and scale (round half away from zero, saturated to
  int16; constants in ``PROGMEM`` on AVR), one ``<id>_step`` per sample, and every ``timesteps``
  samples the best class and its score (the logit) are printed and the state is reset. It runs
  on the AVR boards (Uno) as on the 32-bit ones.
* :func:`cortex_m_project`: a directory with ``main.c``, the model, start-up code, a linker
  script and a ``Makefile`` for ``arm-none-eabi-gcc``; ``make run`` runs it in QEMU
  (``mps2-an386``, a Cortex-M4F) with semihosting. ``main.c`` runs one example window, prints
  the scores, the class and the instructions per step, and returns 0 only if the scores equal
  those of the integer oracle (embedded as ``expected``). For a real board, replace
  ``startup.c``/``link.ld`` with the vendor's and the ``printf`` with the board's output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from keras_rnnedge import micro_targets
from keras_rnnedge.converters.carray import comment_text
from keras_rnnedge.converters.tflite.sketch import (
    BAUD_RATE,
    _c_float,
    _c_string,
    serial_sample_reader,
)

__all__ = ["c_sketch", "cortex_m_project"]

_CHARS_PER_VALUE = 24
_CORTEX_M4_SUPPORT = ("startup.c", "link.ld", "rnnedge_target.h")


def c_sketch(ident: str, model_files: dict[str, str], *, features: int, num_outputs: int,
             frac_bits: int | None, timesteps: int, input_offset, input_scale,
             class_names: Sequence[str] = (), board_name: str = "",
             num_levels: int | None = None) -> dict[str, str]:
    """The Arduino sketch folder for the standalone C model: ``{"<id>/<file>": text}``.

    Args:
        ident: the model's C identifier (``<id>``).
        model_files: ``{"<id>.h": ..., "<id>.c": ...}`` from ``generate_c``.
        features, num_outputs, frac_bits: the model's (scores are in ``Q<frac_bits>``;
            ``None``: the float build, which takes the samples and gives the scores as floats).
        timesteps: samples per window (a prediction every ``timesteps`` samples).
        input_offset, input_scale: ``x_q = sat16(round((x - offset) * scale))`` per feature
            (ignored for the float build).
        class_names: printed instead of class numbers when given (one per output).
        board_name: for the comments and the README.
        num_levels: a flexible model's levels (its C has ``<id>_step_level``): the sketch
            starts at the top level and a Serial line ``L<n>`` (or ``level <n>``) switches to
            level ``n`` from the next sample on, mid-window too (the state carries across).

    Raises:
        ValueError: an inconsistent argument (named).
    """
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"Expected timesteps to be a positive integer (the window length), but "
                         f"got {timesteps!r}; pass timesteps= for models without a fixed input "
                         "length.")
    is_float = frac_bits is None
    offset = np.zeros(features) if is_float else np.asarray(input_offset).ravel()
    scale = np.ones(features) if is_float else np.asarray(input_scale).ravel()
    if offset.size != features or scale.size != features:
        raise ValueError(f"Expected {features} input offsets and scales, but got {offset.size} "
                         f"and {scale.size}.")
    if class_names and len(class_names) != num_outputs:
        raise ValueError(f"Expected {num_outputs} class names, but got {len(class_names)}.")
    if num_levels is not None and (not isinstance(num_levels, int) or not 1 <= num_levels <= 255):
        raise ValueError(f"Expected num_levels to be None or an integer in [1, 255], but got "
                         f"{num_levels!r}.")
    cases = [f"    case {k}: Serial.print(F({_c_string(n)})); break;"
             for k, n in enumerate(class_names)]
    up = ident.upper()
    step_call = (f"{ident}_step(&state, {{}});" if num_levels is None
                 else f"{ident}_step_level(&state, {{}}, level);")
    level_code = [] if num_levels is None else [
        f"// Flexible width: the level of the next steps (0..{num_levels - 1}; the top runs every",
        "// unit). A Serial line \"L<n>\" sets it; the state carries across a switch.",
        f"static uint8_t level = {num_levels - 1};",
        "static void set_level(const char* line) {",
        "  const char* p = line;",
        "  while (*p != '\\0' && (*p < '0' || *p > '9')) ++p;",
        "  char* end = nullptr;",
        "  const long value = strtol(p, &end, 10);",
        f"  if (end == p || value < 0 || value >= {up}_NUM_LEVELS) {{",
        '    Serial.print(F("Ignored a level: expected L0 to L"));',
        f"    Serial.println({up}_NUM_LEVELS - 1);",
        "    return;",
        "  }",
        "  level = static_cast<uint8_t>(value);",
        '  Serial.print(F("level "));',
        "  Serial.println(static_cast<int>(value));",
        "}",
        "",
    ]
    if is_float:
        quantization, quantize_fn = [], []
        step_lines = ["  if (!read_sample(x)) return;", "  " + step_call.format("x")]
        score_type = "float"
        score_line = "  Serial.println(scores[best], 4);"
    else:
        quantization = [
            "// x_q = sat16(round((x - offset) * scale)): the model's input quantization.",
            "static const float kInputOffset[io::kFeatures] PROGMEM = {"
            + ", ".join(_c_float(v) for v in offset) + "};",
            "static const float kInputScale[io::kFeatures] PROGMEM = {"
            + ", ".join(_c_float(v) for v in scale) + "};",
            ""]
        quantize_fn = [
            "static int16_t quantize(float x, int i) {",
            "  float v = (x - RE_READ_FLOAT(&kInputOffset[i])) * "
            "RE_READ_FLOAT(&kInputScale[i]);",
            "  if (v != v) v = 0.0f;  // NaN",
            "  if (v > 32767.0f) v = 32767.0f;",
            "  if (v < -32768.0f) v = -32768.0f;",
            "  return static_cast<int16_t>(v >= 0.0f ? v + 0.5f : v - 0.5f);",
            "}",
            ""]
        step_lines = ["  int16_t x_q[io::kFeatures];", "  if (!read_sample(x)) return;",
                      "  for (int i = 0; i < io::kFeatures; ++i) x_q[i] = quantize(x[i], i);",
                      "  " + step_call.format("x_q")]
        score_type = "int32_t"
        score_line = (f"  Serial.println(static_cast<float>(scores[best]) / "
                      f"{float(1 << frac_bits)!r}f, 4);")
    lines = [
        f"// {comment_text(ident)}: standalone {'float' if is_float else 'integer'} C model "
        "(keras-rnnedge), no TFLite Micro"
        + (f", for the {comment_text(board_name)}." if board_name else "."),
        "// Streams one sample per line of comma-separated values on Serial; prints the class",
        f"// every {timesteps} samples. See README.md.",
        "#include <Arduino.h>",
        "#include <stdlib.h>",
        f'#include "{ident}.h"',
        "",
        "#if defined(__AVR__)",
        "#include <avr/pgmspace.h>",
        "#define RE_READ_FLOAT(p) pgm_read_float(p)",
        "#else",
        "#ifndef PROGMEM",
        "#define PROGMEM",
        "#endif",
        "#define RE_READ_FLOAT(p) (*(p))",
        "#endif",
        "",
        "namespace io {",
        f"constexpr int kFeatures = {up}_NUM_FEATURES;",
        f"constexpr int kNumClasses = {up}_NUM_OUTPUTS;",
        f"constexpr unsigned long kTimesteps = {timesteps}ul;",
        "}  // namespace io",
        f"constexpr long kBaudRate = {BAUD_RATE};",
        f"constexpr int kLineLength = io::kFeatures * {_CHARS_PER_VALUE} + 2;",
        "",
        *quantization,
        f"static {ident}_state_t state;",
        "static unsigned long steps = 0;",
        "static unsigned long window_count = 0;",
        "",
        *level_code,
        *serial_sample_reader(levels=num_levels is not None),
        *quantize_fn,
        "static void print_class(int k) {",
        "  switch (k) {",
        *cases,
        "    default: Serial.print(k);",
        "  }",
        "}",
        "",
        "void setup() {",
        "  Serial.begin(kBaudRate);",
        "  while (!Serial) {",
        "  }",
        f"  {ident}_reset(&state);",
        f'  Serial.print(F("{ident} ready: send "));',
        "  Serial.print(io::kFeatures);",
        '  Serial.print(F(" comma-separated values per line; a prediction every "));',
        "  Serial.print(io::kTimesteps);",
        '  Serial.println(F(" lines."));',
        "}",
        "",
        "void loop() {",
        "  float x[io::kFeatures];",
        *step_lines,
        "  if (++steps < io::kTimesteps) return;",
        f"  {score_type} scores[io::kNumClasses];",
        f"  {ident}_predict(&state, scores);",
        "  int best = 0;",
        "  for (int k = 1; k < io::kNumClasses; ++k) {",
        "    if (scores[k] > scores[best]) best = k;",
        "  }",
        '  Serial.print(F("window "));',
        "  Serial.print(window_count);",
        '  Serial.print(F(": "));',
        "  print_class(best);",
        "  Serial.print(' ');",
        score_line,
        "  ++window_count;",
        "  steps = 0;",
        f"  {ident}_reset(&state);",
        "}",
        "",
    ]
    readme = "\n".join([
        f"# {ident}: Arduino sketch with the standalone C model",
        "",
        "Generated by keras-rnnedge (`rnnedge convert --format c`). No library is needed: the "
        "model is plain C99 (`" + ident + ".c`, integer arithmetic, weights in flash with "
        "`PROGMEM` on AVR), compiled by the Arduino IDE with the sketch"
        + (f"; made for the {board_name}." if board_name else "."),
        "",
        f"Open `{ident}.ino`, upload, open the serial monitor at {BAUD_RATE} baud and send one "
        f"line of {features} comma-separated values per time step (same units and order as the "
        f"training data). After {timesteps} lines it prints `window N: <class> <score>` and "
        "starts a new window. Replace `read_sample()` with your sensor code.",
        *([] if num_levels is None else [
            "",
            f"Flexible model: {num_levels} levels of width (level `l` runs the first units of "
            f"each flexible layer, see `{ident}.h`). It starts at the top level "
            f"({num_levels - 1}); send a line `L<n>` (for example `L0`) to run the next samples "
            "at level n, within a window too: the state carries across the switch. Call "
            f"`{ident}_step_level(&state, x_q, level)` from your own code to switch from it "
            "(battery level, load)."]),
        "",
        "Check it on the host first: `rnnedge run <dir> --target uno --data test.npz` runs the "
        "same C in simavr (ATmega328P) and reports cycles per step.",
        "",
    ])
    folder = {f"{ident}/{ident}.ino": "\n".join(lines), f"{ident}/README.md": readme}
    for name, text in model_files.items():
        folder[f"{ident}/{name}"] = text
    return folder


def _support(name: str) -> str:
    """A file of the Cortex-M4 (QEMU) support code of ``micro_targets`` (the start-up code is
    shared by the Cortex-M machines)."""
    folder = "cortex_m" if name == "startup.c" else "cortex_m4"
    path = os.path.join(os.path.dirname(os.path.abspath(micro_targets.__file__)), folder, name)
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def cortex_m_project(ident: str, model_files: dict[str, str], *, example, expected,
                     num_outputs: int) -> dict[str, str]:
    """A plain C project for Cortex-M: ``{"<file>": text}`` (see the module docstring).

    Args:
        ident: the model's C identifier.
        model_files: ``{"<id>.h": ..., "<id>.c": ...}`` from ``generate_c``.
        example: one quantized window ``(T, F)`` (int16 values).
        expected: the oracle's scores for ``example`` (``num_outputs`` int32 values).
        num_outputs: scores per prediction.
    """
    is_float = np.asarray(example).dtype.kind == "f"
    x = np.asarray(example, np.float32 if is_float else np.int64)
    y = np.asarray(expected, np.float64 if is_float else np.int64).ravel()
    if x.ndim != 2 or y.size != num_outputs:
        raise ValueError(f"Expected an example window (T, F) and {num_outputs} expected scores, "
                         f"but got shapes {x.shape} and {y.shape}.")
    t, f = x.shape
    value = (lambda v: f"{float(v)!r}f") if is_float else (lambda v: str(int(v)))
    rows = ",\n".join("    {" + ", ".join(value(v) for v in row) + "}" for row in x)
    if is_float:
        x_type, y_type = "float", "float"
        expected_c = ", ".join(f"{float(np.float32(v))!r}f" for v in y)
        print_score = 'printf(" %.6f", (double)scores[i]);'
        # float32 C against the Keras model: sums in another order, libm against TensorFlow
        differs = "fabsf(scores[i] - expected[i]) > 1e-4f * (1.0f + fabsf(expected[i]))"
        what = "the Keras model's (to 1e-4)"
    else:
        x_type, y_type = "int16_t", "int32_t"
        expected_c = ", ".join(f"INT32_C({int(v)})" for v in y)
        print_score = 'printf(" %ld", (long)scores[i]);'
        differs = "scores[i] != expected[i]"
        what = "the oracle's"
    main = f"""/* {comment_text(ident)}: run one example window on a Cortex-M and check the scores.
 * Generated by keras-rnnedge (`rnnedge convert --format c`). */
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include "rnnedge_target.h"
#include "{ident}.h"

/* One window of inputs as {ident}_step takes them. */
static const {x_type} example[{t}][{f}] = {{
{rows}
}};
/* Its scores by keras_rnnedge's oracle (the integer model, or the Keras model for floats). */
static const {y_type} expected[{num_outputs}] = {{{expected_c}}};

int main(void) {{
    static {ident}_state_t state;
    {y_type} scores[{num_outputs}];
    uint32_t t0, t1;
    int i, t, best = 0, same = 1;
    {ident}_reset(&state);
    t0 = rnnedge_count();
    for (t = 0; t < {t}; ++t) {ident}_step(&state, example[t]);
    t1 = rnnedge_count();
    {ident}_predict(&state, scores);
    printf("scores");
    for (i = 0; i < {num_outputs}; ++i) {{
        {print_score}
        if (scores[i] > scores[best]) best = i;
        if ({differs}) same = 0;
    }}
    printf("\\nclass %d\\n%s per step: %lu\\n", best, RNNEDGE_COUNT_UNIT,
           (unsigned long)((t1 - t0) / {t}u));
    printf("%s\\n", same ? "scores equal {what}" : "MISMATCH with {what}");
    return same ? 0 : 1;
}}
"""
    makefile = f"""# {comment_text(ident)}: plain C for Cortex-M (arm-none-eabi-gcc).
# `make` builds it; `make run` runs it in QEMU.
# Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
CC = arm-none-eabi-gcc
SIZE = arm-none-eabi-size
QEMU = qemu-system-arm
CFLAGS = -std=c99 -Wall -Wextra -Werror -pedantic -mcpu=cortex-m4 -mthumb \\
	-mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2
LDFLAGS = --specs=rdimon.specs -nostartfiles -T link.ld -lm
SOURCES = main.c {ident}.c startup.c

all: {ident}.elf

{ident}.elf: $(SOURCES) {ident}.h rnnedge_target.h link.ld
	$(CC) $(CFLAGS) $(SOURCES) $(LDFLAGS) -o $@
	$(SIZE) $@

run: {ident}.elf
	$(QEMU) -M mps2-an386 -nographic -monitor none -serial none -semihosting \\
	-icount shift=0 -kernel {ident}.elf

clean:
	rm -f {ident}.elf

.PHONY: all run clean
"""
    readme = "\n".join([
        f"# {ident}: plain C for Cortex-M",
        "",
        "Generated by keras-rnnedge (`rnnedge convert --format c`).",
        "",
        f"- `{ident}.h`, `{ident}.c`: the model (C99, integer arithmetic, no malloc): "
        f"`{ident}_reset`, `{ident}_step` (one sample), `{ident}_predict` (the scores).",
        "- `main.c`: runs one example window and checks its scores against the integer oracle.",
        "- `startup.c`, `link.ld`, `rnnedge_target.h`: start-up code, memory map and instruction "
        "counter for QEMU's `mps2-an386` (a Cortex-M4F); on a real board use the vendor's "
        "start-up code and linker script instead.",
        "",
        "`make` builds `" + ident + ".elf`; `make run` runs it in QEMU and prints the scores, "
        "the class and the executed instructions per step (exit code 0 when the scores match).",
        "",
    ])
    files = {"main.c": main, "Makefile": makefile, "README.md": readme, **model_files}
    for name in _CORTEX_M4_SUPPORT:
        files[name] = _support(name)
    return files
