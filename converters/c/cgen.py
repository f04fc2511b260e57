"""Standalone C99 for an :class:`~keras_rnnedge.converters.c.intmodel.IntModel`.

:func:`generate_c` emits ``<id>.h`` and ``<id>.c``: dependency-free C99 (``<stdint.h>`` only),
no ``malloc``, and no floating point unless ``RNNEDGE_WITH_FLOAT_INPUT`` is defined (which adds
``<id>_quantize_input`` and the input scale constants). The arithmetic is that of the module
docstring of :mod:`~keras_rnnedge.converters.c.intmodel`, whose NumPy oracle it matches bit for
bit. Weights are ``const``; with ``progmem=True`` they carry ``PROGMEM`` and are read with
``pgm_read_byte``/``pgm_read_word``/``pgm_read_dword`` on AVR, and with plain reads elsewhere, so
the same source compiles on the host.

API (``<id>`` is ``c_identifier(name)``)::

    typedef struct { int16_t h0[H0]; [int16_t c0[H0];] ... } <id>_state_t;  // caller's state
    void <id>_reset(<id>_state_t *state);
    void <id>_step(<id>_state_t *state, const int16_t x_q[<ID>_NUM_FEATURES]);
    void <id>_predict(const <id>_state_t *state, int32_t scores[<ID>_NUM_OUTPUTS]);
    #ifdef RNNEDGE_WITH_FLOAT_INPUT
    void <id>_quantize_input(const float x[<ID>_NUM_FEATURES], int16_t x_q[<ID>_NUM_FEATURES]);
    #endif

Scores are ``int32`` in ``Q<ID>_FRAC_BITS`` (the head's pre-softmax outputs times ``2**Q``).

An LSTM layer's cell state is ``c<n>`` in the state struct (``int16``, in the format given in
the header's comment). The only 64-bit arithmetic is one product per unit and step in a GRU with
``reset_after=True``. Arithmetic right shifts of negative values are assumed (gcc, clang,
avr-gcc, arm-none-eabi-gcc).

Code shape: ``<id>_step`` computes a factored matrix's int16 rank-``r`` intermediate first, then
loops over the units, each computing the rows of its gates with a row kernel (one dot product),
its activations and its new state, so the stack holds int16 vectors only (the intermediates, and
a new ``h`` when ``U`` is full rank). Row kernels skip saturation where a row's bound proves
int32 cannot overflow (:func:`_row_fits`); on the AVR (weights in flash) their loops are in
assembler and 16x16-bit products use the hardware multiplier; with the ARM DSP extension
(Cortex-M4) dense loops use SMLAD and saturation QADD/SSAT. Every such path computes the
oracle's integers (the proofs are in the comments of the runtime).

The source builds without a warning with gcc, clang (``-Weverything`` too), arm-none-eabi-gcc and
avr-gcc at ``-std=c99 -Wall -Wextra -Werror -pedantic``: row kernels are emitted only when the
model uses them, the runtime's helpers that it does not call are marked ``RE_UNUSED``, macros
that nothing uses are left out, and switch cases fall through with ``RE_FALLTHROUGH``.
The float build, for boards with an FPU, is
:func:`~keras_rnnedge.converters.c.cgen_float.generate_float_c` (the same API in ``float``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from keras_rnnedge.cells.step import ACTIVATION_TABLE, Node
from keras_rnnedge.converters.c import runtime_text as _runtime_text
from keras_rnnedge.converters.c.intmodel import (
    HARD_SIGMOID_SLOPE,
    INT16_MAX,
    INT16_MIN,
    INT32_MAX,
    INT32_MIN,
    TANH_LIMIT,
    TANH_STEP_BITS,
    TANH_TABLE,
    IntLinear,
    IntMatrix,
    IntModel,
    IntRecurrent,
    shift,
)
from keras_rnnedge.converters.c.schedule import schedule
from keras_rnnedge.converters.carray import c_identifier, comment_text
from keras_rnnedge.matrices import factor_suffix

__all__ = ["generate_c"]

_RUNTIME = _runtime_text("rnnedge_int.h").replace("HS_SLOPE", f"INT32_C({HARD_SIGMOID_SLOPE})")

# Row kernels. Each computes ONE output of a matrix-vector product (an int32 dot product of a
# stored row with an int16 vector), so that the layer code can fuse the rows of every gate of a
# unit with its activations and state update (no int32 vector of H entries on the stack).
# ``_sat`` kernels saturate the int32 accumulator at every step (the oracle's matvec,
# literally). ``_nosat`` kernels accumulate with plain additions; the generator uses them only
# for rows whose worst case provably fits int32 (see ``_row_fits`` below), where they give the
# same result in any summation order (which the unrolled, DSP and assembly loops use).
# CSR matrices with int8 values and 8-bit columns are stored as (column, value) byte pairs
# (``re_csr8_t``), so that one pointer walks both (on the AVR: two LPM Z+ per non-zero). With
# at most 128 columns the pair holds the byte offset 2 column of x[column] instead (kernels
# ``re_mv_csr_i8_c8o_*``): the AVR adds it to x without a 16-bit shift (2 cycles per non-zero),
# the Cortex-M4 reads x with LDRH [x, offset] as it did with LDRH [x, column, LSL #1].
_RE_CSR8 = _runtime_text("rnnedge_int_csr8.h")

_DENSE_HEAD = ("RE_KERNEL int32_t re_mv_dense_{t}_{mode}(const {ct} *w, uint16_t n, "
               "const int16_t *x) {{\n    int32_t acc = 0;\n")
_CSR_HEAD = ("RE_KERNEL int32_t re_mv_csr_{t}_c{c}_{mode}(const {ct} *v, const uint{c}_t *cp,\n"
             "                                    const uint16_t *ptr, uint16_t row, "
             "const int16_t *x) {{\n"
             "    const uint16_t k = RE_RD_U16(ptr + row);\n"
             "    uint16_t n = (uint16_t)(RE_RD_U16(ptr + row + 1) - k);\n"
             "    int32_t acc = 0;\n    v += k;\n    cp += k;\n")
_CSR8_HEAD = ("RE_KERNEL int32_t re_mv_csr_i8_c8_{mode}(const re_csr8_t *e, const uint16_t *ptr, "
              "uint16_t row,\n"
              "                                    const int16_t *x) {{\n"
              "    const uint16_t k = RE_RD_U16(ptr + row);\n"
              "    uint16_t n = (uint16_t)(RE_RD_U16(ptr + row + 1) - k);\n"
              "    int32_t acc = 0;\n    e += k;\n")
_TAIL = "    return acc;\n}\n"

# The AVR multiply-accumulate of RE_MAC_I8 (see there), as assembler text for the loops below.
_AVR_MAC = ('            "mulsu %[w], %A[xv]\\n\\t" "sbc %[t], %[t]\\n\\t"\n'
            '            "add %A[acc], r0\\n\\t" "adc %B[acc], r1\\n\\t" '
            '"adc %C[acc], %[t]\\n\\t" "adc %D[acc], %[t]\\n\\t"\n'
            '            "muls %[w], %B[xv]\\n\\t" "sbc %[t], %[t]\\n\\t"\n'
            '            "add %B[acc], r0\\n\\t" "adc %C[acc], r1\\n\\t" '
            '"adc %D[acc], %[t]\\n\\t"\n')

# AVR, weights in flash (progmem): the whole non-saturating loop in assembler. Dense: per term
# LPM Z+ (weight), LD X+ (input) twice and the MAC, 18 cycles; one term (n odd) and two (bit 1 of
# n) first, then by four terms with one SBIW/BREQ/RJMP per four (5 cycles): about 19.3 cycles per
# term (26 for the loop by one).
_AVR_DENSE_I8_BODY = ('            "lpm %[w], Z+\\n\\t" "ld %A[xv], X+\\n\\t" '
                      '"ld %B[xv], X+\\n\\t"\n' + _AVR_MAC)
_AVR_DENSE_I8 = (
    "#if defined(__AVR__) && defined(RE_PGM)\n"
    "    if (n) {\n"
    "        int8_t wv;\n        int16_t xv;\n        uint8_t t;\n"
    '        __asm__ ("sbrs %A[n], 0\\n\\t" "rjmp 2f\\n\\t"\n'
    + _AVR_DENSE_I8_BODY +
    '            "2:\\n\\t" "sbrs %A[n], 1\\n\\t" "rjmp 4f\\n\\t"\n'
    + _AVR_DENSE_I8_BODY * 2 +
    '            "4:\\n\\t" "lsr %B[n]\\n\\t" "ror %A[n]\\n\\t" "lsr %B[n]\\n\\t" '
    '"ror %A[n]\\n\\t"\n'
    '            "sbiw %[n], 0\\n\\t" "brne 1f\\n\\t" "rjmp 3f\\n"\n'
    '            "1:\\n\\t"\n'
    + _AVR_DENSE_I8_BODY * 4 +
    '            "sbiw %[n], 1\\n\\t" "breq 3f\\n\\t" "rjmp 1b\\n"\n'
    '            "3:\\n\\t" "clr r1"\n'
    '            : [acc] "+r"(acc), [wp] "+z"(w), [xp] "+x"(x), [n] "+w"(n), [w] "=&a"(wv),\n'
    '              [xv] "=&a"(xv), [t] "=&r"(t)\n'
    '            :\n            : "r0", "memory");\n'
    "    }\n"
    "#else\n")

# CSR (column, value) pairs: LPM Z+ twice, X = x + 2 column (x + the byte offset for c8o), LD
# X+, LD X, the MAC; the loop runs by four non-zeros after one (n odd) and two (bit 1 of n)
# first: 28 cycles per non-zero (26 for c8o)
# plus the loop test, 5 cycles per 4 non-zeros (SBIW, BREQ, RJMP: BRNE cannot reach back over
# four copies of the body).
_AVR_COL_SHIFT = '"lsl r26\\n\\t" "rol r27\\n\\t" '  # absent with byte offsets (c8o)
_AVR_CSR8_BODY = ('            "lpm r26, Z+\\n\\t" "lpm %[w], Z+\\n\\t" "clr r27\\n\\t"\n'
                  '            ' + _AVR_COL_SHIFT + '"add r26, %A[x]\\n\\t" '
                  '"adc r27, %B[x]\\n\\t"\n'
                  '            "ld %A[xv], X+\\n\\t" "ld %B[xv], X\\n\\t"\n'
                  + _AVR_MAC)
_AVR_CSR8 = (
    "#if defined(__AVR__) && defined(RE_PGM)\n"
    "    if (n) {\n"
    "        int8_t w;\n        int16_t xv;\n        uint8_t t;\n"
    '        __asm__ ("sbrs %A[n], 0\\n\\t" "rjmp 2f\\n\\t"\n'
    + _AVR_CSR8_BODY +
    '            "2:\\n\\t" "sbrs %A[n], 1\\n\\t" "rjmp 4f\\n\\t"\n'
    + _AVR_CSR8_BODY + _AVR_CSR8_BODY +
    '            "4:\\n\\t" "lsr %B[n]\\n\\t" "ror %A[n]\\n\\t" "lsr %B[n]\\n\\t" '
    '"ror %A[n]\\n\\t"\n'
    '            "sbiw %[n], 0\\n\\t" "brne 1f\\n\\t" "rjmp 3f\\n"\n'
    '            "1:\\n\\t"\n'
    + _AVR_CSR8_BODY * 4 +
    '            "sbiw %[n], 1\\n\\t" "breq 3f\\n\\t" "rjmp 1b\\n"\n'
    '            "3:\\n\\t" "clr r1"\n'
    '            : [acc] "+r"(acc), [ep] "+z"(e), [n] "+w"(n), [w] "=&a"(w), [xv] "=&a"(xv),\n'
    '              [t] "=&r"(t)\n'
    '            : [x] "r"(x)\n            : "r0", "r26", "r27", "memory");\n'
    "    }\n"
    "#else\n")

# Cortex-M4 (ARM DSP extension), int8 weights: 8 MACs per iteration. Four int8 weights
# w0..w3 (one word) become the halfword pairs (w0, w2) (SXTB16) and (w1, w3) (SXTB16 of the word
# rotated by 8, one instruction); the inputs (x0, x1) and (x2, x3) are two words, and the four
# halfword multiply-accumulates SMLABB, SMLATB, SMLABT, SMLATT pick the matching halves, so the
# inputs are never repacked: per 4 MACs, 3 loads, 2 SXTB16 and 4 MACs (measured 2.8 executed
# instructions per MAC on an 80-term row, loop included, against 3.8 for two SMLAD after
# repacking the inputs). int16 weights: four SMLAD per 8 MACs. The multiply-accumulates wrap modulo
# 2^32; on these rows every partial sum lies within the bound of _row_fits, so they are exact.
# Words are read with __builtin_memcpy (unaligned LDR, which the Cortex-M4 allows).
_DSP_DENSE = {
    8: ("    for (; n >= 8; n = (uint16_t)(n - 8)) {\n"
        "        uint32_t wa, wb, x01, x23, x45, x67;\n"
        "        __builtin_memcpy(&wa, w, 4);\n        __builtin_memcpy(&wb, w + 4, 4);\n"
        "        __builtin_memcpy(&x01, x, 4);\n        __builtin_memcpy(&x23, x + 2, 4);\n"
        "        __builtin_memcpy(&x45, x + 4, 4);\n        __builtin_memcpy(&x67, x + 6, 4);\n"
        "        RE_DSP_MAC4_I8(acc, wa, x01, x23);\n        RE_DSP_MAC4_I8(acc, wb, x45, x67);\n"
        "        w += 8;\n        x += 8;\n    }\n"
        "    if (n >= 4) {\n"
        "        uint32_t wq, x01, x23;\n"
        "        __builtin_memcpy(&wq, w, 4);\n        __builtin_memcpy(&x01, x, 4);\n"
        "        __builtin_memcpy(&x23, x + 2, 4);\n"
        "        RE_DSP_MAC4_I8(acc, wq, x01, x23);\n"
        "        w += 4;\n        x += 4;\n        n = (uint16_t)(n - 4);\n    }\n"),
    16: ("    for (; n >= 8; n = (uint16_t)(n - 8)) {\n"
         "        uint32_t w01, w23, w45, w67, x01, x23, x45, x67;\n"
         "        __builtin_memcpy(&w01, w, 4);\n        __builtin_memcpy(&w23, w + 2, 4);\n"
         "        __builtin_memcpy(&w45, w + 4, 4);\n        __builtin_memcpy(&w67, w + 6, 4);\n"
         "        __builtin_memcpy(&x01, x, 4);\n        __builtin_memcpy(&x23, x + 2, 4);\n"
         "        __builtin_memcpy(&x45, x + 4, 4);\n        __builtin_memcpy(&x67, x + 6, 4);\n"
         "        acc = __smlad((int32_t)w01, (int32_t)x01, acc);\n"
         "        acc = __smlad((int32_t)w23, (int32_t)x23, acc);\n"
         "        acc = __smlad((int32_t)w45, (int32_t)x45, acc);\n"
         "        acc = __smlad((int32_t)w67, (int32_t)x67, acc);\n"
         "        w += 8;\n        x += 8;\n    }\n"
         "    if (n >= 4) {\n"
         "        uint32_t w01, w23, x01, x23;\n"
         "        __builtin_memcpy(&w01, w, 4);\n        __builtin_memcpy(&w23, w + 2, 4);\n"
         "        __builtin_memcpy(&x01, x, 4);\n        __builtin_memcpy(&x23, x + 2, 4);\n"
         "        acc = __smlad((int32_t)w01, (int32_t)x01, acc);\n"
         "        acc = __smlad((int32_t)w23, (int32_t)x23, acc);\n"
         "        w += 4;\n        x += 4;\n        n = (uint16_t)(n - 4);\n    }\n"),
}


# CSR loops (gathers) are unrolled by 16 where RE_UNROLL: with the switch for the last terms,
# a row of n non-zeros costs one jump and n/16 loop tests (measured on the Cortex-M4 for the
# HAR-2 FastGRNN: 4 -> 16 saves about 1,700 of 21,200 instructions per step).
_CSR_UNROLL = 16


def _unrolled(mac: str, step: str, single: str, dsp: str | None = None, by: int = 4) -> str:
    """The non-saturating loop: by ``by`` terms (``RE_UNROLL``; ``dsp``: the SMLAD loop by 4
    with ``RE_DSP``), then the last ``n % by`` terms without a loop (a switch falling through,
    entered at the right term: a jump table); else one by one. ``mac`` has ``{o}`` for the
    offset of the term; ``step`` advances the pointers by ``{by}``."""
    def tail(k: int) -> str:
        cases = "".join(f"    case {c}: {mac.format(o=c - 1)}; RE_FALLTHROUGH;\n"
                        for c in range(k - 1, 0, -1))
        return (f"    switch (n) {{ /* the last n < {k} terms */\n{cases}"
                "    default: break;\n    }\n")

    terms = "".join(f"        {mac.format(o=o)};\n" for o in range(by))
    loop = (f"    for (; n >= {by}; n = (uint16_t)(n - {by})) {{\n{terms}"
            f"        {step.format(by=by)}\n    }}\n")
    return ((f"#if RE_DSP\n{dsp}{tail(4)}#elif RE_UNROLL\n" if dsp else "#if RE_UNROLL\n")
            + loop + tail(by) + f"#else\n{single}#endif\n")


def _byte_offsets(code: str) -> str:
    """A ``csr8`` kernel's code turned into the ``csr8o`` one (pairs hold 2 column)."""
    code = code.replace("re_mv_csr_i8_c8_", "re_mv_csr_i8_c8o_")
    code = re.sub(r"x\[RE_RD_U8\((&e(?:\[\d+\]\.|->)col)\)\]", r"RE_XB(x, RE_RD_U8(\1))", code)
    return code.replace(_AVR_CSR8_BODY, _AVR_CSR8_BODY.replace(_AVR_COL_SHIFT, ""))


def _kernel_code(storage: str, bits: int, col_bits: int, mode: str) -> tuple[str, str]:
    """``(name, C definition)`` of a row kernel (``storage``: ``dense``, ``csr``, ``csr8`` or
    ``csr8o``; ``mode``: ``sat``, ``nosat``, or ``short``: ``nosat`` as a plain loop, inlined,
    for matrices with fewer than 4 terms per row, where a call would cost more than the
    terms)."""
    if storage == "csr8o":
        name, code = _kernel_code("csr8", bits, col_bits, mode)
        return _byte_offsets(name), _byte_offsets(code)
    t, T, ct = f"i{bits}", f"I{bits}", f"int{bits}_t"
    if mode == "short":
        name, code = _kernel_code(storage, bits, col_bits, "sat")
        head, _, _ = code.partition("    while (n--)")
        loop = {"dense": f"    while (n--) RE_MAC_{T}(acc, RE_RD_{T}(w++), *x++);\n",
                "csr8": ("    while (n--) {\n        RE_MAC_I8(acc, RE_RD_I8(&e->val), "
                         "x[RE_RD_U8(&e->col)]);\n        ++e;\n    }\n"),
                "csr": (f"    while (n--) RE_MAC_{T}(acc, RE_RD_{T}(v++), "
                        f"x[RE_RD_U{col_bits}(cp++)]);\n")}[storage]
        name = name[:-len("sat")] + "short"
        head = head.replace("RE_KERNEL int32_t", "RE_INLINE int32_t", 1)
        sig, _, body = head.replace("_sat(", "_short(", 1).partition("{\n")
        code = sig + "{\n" + body + loop + "    return acc;\n"
        if storage == "csr8" or (storage == "dense" and bits == 8):
            # AVR with weights in flash: call the assembler kernel (inline assembler needs
            # registers r16-r23, which a large caller may not have free)
            args = "w, n, x" if storage == "dense" else "e, ptr, row, x"
            code = (sig + "{\n#if defined(__AVR__) && defined(RE_PGM)\n    return "
                    f"{name[:-len('short')]}nosat({args});\n#else\n" + body + loop
                    + "    return acc;\n#endif\n")
        return name, code + "}\n"

    if storage == "dense":
        name = f"re_mv_dense_{t}_{mode}"
        code = _DENSE_HEAD.format(t=t, ct=ct, mode=mode)
        if mode == "sat":
            code += (f"    while (n--) acc = re_sat_add32(acc, (int32_t)RE_RD_{T}(w++) * "
                     "(int32_t)*x++);\n")
        else:
            plain = _unrolled(f"RE_MAC_{T}(acc, RE_RD_{T}(w + {{o}}), x[{{o}}])",
                              "w += {by};\n        x += {by};",
                              f"    while (n--) RE_MAC_{T}(acc, RE_RD_{T}(w++), *x++);\n",
                              _DSP_DENSE[bits])
            if bits == 8:
                plain = _AVR_DENSE_I8 + plain + "#endif\n"
            code += plain
        return name, code + _TAIL
    if storage == "csr8":
        name = f"re_mv_csr_i8_c8_{mode}"
        code = _CSR8_HEAD.format(mode=mode)
        mac = "RE_MAC_I8(acc, RE_RD_I8(&e[{o}].val), x[RE_RD_U8(&e[{o}].col)])"
        if mode == "sat":
            code += ("    while (n--) {\n        acc = re_sat_add32(acc, "
                     "(int32_t)RE_RD_I8(&e->val) * (int32_t)x[RE_RD_U8(&e->col)]);\n"
                     "        ++e;\n    }\n")
        else:
            code += (_AVR_CSR8 + _unrolled(mac, "e += {by};", "    while (n--) {\n        "
                                           + mac.format(o=0) + ";\n        ++e;\n    }\n",
                                           by=_CSR_UNROLL)
                     + "#endif\n")
        return name, code + _TAIL
    name = f"re_mv_csr_{t}_c{col_bits}_{mode}"
    code = _CSR_HEAD.format(t=t, ct=ct, c=col_bits, mode=mode)
    if mode == "sat":
        code += (f"    while (n--) acc = re_sat_add32(acc, (int32_t)RE_RD_{T}(v++) * "
                 f"(int32_t)x[RE_RD_U{col_bits}(cp++)]);\n")
    else:
        mac = f"RE_MAC_{T}(acc, RE_RD_{T}(v + {{o}}), x[RE_RD_U{col_bits}(cp + {{o}})])"
        code += _unrolled(mac, "v += {by};\n        cp += {by};",
                          f"    while (n--) RE_MAC_{T}(acc, RE_RD_{T}(v++), "
                          f"x[RE_RD_U{col_bits}(cp++)]);\n", by=_CSR_UNROLL)
    return name, code + _TAIL

# The largest |x| of an int16 input.
_X_ABS_MAX = 1 << 15


def _row_fits(values: np.ndarray) -> np.ndarray:
    """Per row: may the row be accumulated without saturation, bit-exactly?

    Proof. Let ``B = sum_j |w_j| * 2**15`` over the stored row (the inputs are int16, so
    ``|x_j| <= 2**15``). The oracle computes ``s_k = sat32(s_{k-1} + w_k x_k)`` from ``s_0 = 0``;
    the plain loop computes ``p_k = p_{k-1} + w_k x_k``. By induction ``|p_k| <= sum_{j<=k}
    |w_j x_j| <= B``; if ``B <= INT32_MAX`` then every ``p_k`` (and every product ``w_k x_k``)
    lies in ``[INT32_MIN, INT32_MAX]``, so ``sat32`` is the identity at every step,
    ``s_k = p_k`` for all ``k``, and no C ``int32_t`` operation overflows (no undefined
    behaviour). The bound does not depend on the order of the terms, so any summation order
    is exact as well. Zeros (skipped by CSR) add nothing to ``B``.
    """
    bound = np.abs(np.asarray(values, np.int64)).sum(axis=1) * _X_ABS_MAX
    return bound <= INT32_MAX


_READS_PLAIN = _runtime_text("rnnedge_reads_plain.h")

_READS_PROGMEM = _runtime_text("rnnedge_reads_progmem.h") + _READS_PLAIN + "#endif\n"


def _i32(v: int) -> str:
    v = int(v)
    return "INT32_MIN" if v == INT32_MIN else f"INT32_C({v})"


class _Emitter:
    def __init__(self, progmem: bool, saturate_all: bool = False):
        self.saturate_all = saturate_all
        self.attr = " PROGMEM" if progmem else ""
        self.arrays: list[str] = []
        self.matrices: dict[str, dict] = {}
        self.kernels: dict[str, str] = {}  # function name -> C definition, in order of use
        self.progmem = progmem
        # kernels only the AVR (weights in flash) calls, from a short kernel: emitted there only
        self.avr_only: set[str] = set()
        self.csr8 = False  # re_csr8_t is used
        self.rows_fast = 0  # rows emitted with the non-saturating kernels
        self.rows_sat = 0

    def array(self, ctype: str, symbol: str, values, per_line: int = 16) -> str:
        values = [int(v) for v in np.asarray(values).ravel()] or [0]  # C99: no empty arrays
        fmt = _i32 if ctype == "int32_t" else str
        lines = [", ".join(fmt(v) for v in values[i:i + per_line])
                 for i in range(0, len(values), per_line)]
        body = ",\n    ".join(lines)
        self.arrays.append(f"static const {ctype} {symbol}[{len(values)}]{self.attr} = {{\n"
                           f"    {body}\n}};\n")
        return symbol

    def pairs(self, symbol: str, cols, vals, per_line: int = 8) -> str:
        """A ``re_csr8_t`` array of (column, value) pairs."""
        items = [f"{{{int(c)}, {int(v)}}}" for c, v in zip(cols, vals)] or ["{0, 0}"]
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        body = ",\n    ".join(lines)
        self.arrays.append(f"static const re_csr8_t {symbol}[{len(items)}]{self.attr} = {{\n"
                           f"    {body}\n}};\n")
        self.csr8 = True
        return symbol

    def matrix(self, m: IntMatrix, symbol: str) -> dict:
        """Declares the arrays of ``m`` (once per symbol); returns how to call its row kernels."""
        if symbol in self.matrices:
            return self.matrices[symbol]
        rows, cols = m.shape
        ct = f"int{m.bits}_t"
        self.arrays.append(f"/* {comment_text(m.name)}: {rows}x{cols} (transposed), "
                           f"{m.nnz} non-zeros, scale 2^-{m.frac}, "
                           f"{'CSR' if m.sparse else 'dense'} {m.nbytes} bytes */\n")
        fits = np.zeros(rows, bool) if self.saturate_all else _row_fits(m.values)
        if fits.any():  # the generator's own check of the bound proven in _row_fits
            bound = int(np.abs(m.values[fits].astype(np.int64)).sum(axis=1).max())
            if bound * _X_ABS_MAX > INT32_MAX:  # never: _row_fits proved it; refuse to emit
                raise RuntimeError(f"internal error: a row of {m.name} could overflow int32 "
                                   f"(bound {bound}); please report it")
        self.rows_fast += int(fits.sum())
        self.rows_sat += rows - int(fits.sum())
        # rows inlined as plain loops: CSR rows of fewer than 4 non-zeros on average, dense
        # rows of fewer than 8 terms (a call and its 4-term block cost more than the loop)
        short = 4 if m.sparse else 8
        fast = "short" if m.nnz < short * rows and m.compact is None else "nosat"
        info: dict = {"m": m, "modes": [fast] if fits.all() else ["sat"] if not fits.any()
                      else [fast, "sat"]}
        if m.compact is not None:  # the family's own form: its parameters and row kernel
            info.update(storage="compact", arr=self.array(ct, symbol, m.compact.params))
        elif not m.sparse:
            info.update(storage="dense", arr=self.array(ct, symbol, m.values), cols=cols)
        else:
            vals, cols_idx, ptr = m.csr()
            c = m.col_bits
            if m.bits == 8 and c == 8 and cols <= 128:  # byte offsets 2 column (< 256)
                info.update(storage="csr8o", e=self.pairs(f"{symbol}_e",
                                                          2 * np.asarray(cols_idx), vals))
            elif m.bits == 8 and c == 8:
                info.update(storage="csr8", e=self.pairs(f"{symbol}_e", cols_idx, vals))
            else:
                info.update(storage="csr", val=self.array(ct, f"{symbol}_val", vals),
                            col=self.array(f"uint{c}_t", f"{symbol}_col", cols_idx))
            info["ptr"] = self.array("uint16_t", f"{symbol}_ptr", ptr)
        if len(info["modes"]) == 2:  # rows of both kinds: a bit per row (1: non-saturating)
            bits = np.zeros((rows + 7) // 8, np.int64)
            for i in np.flatnonzero(fits):
                bits[i >> 3] |= 1 << (i & 7)
            info["fit"] = self.array("uint8_t", f"{symbol}_fit", bits)
        self.matrices[symbol] = info
        return info

    def row(self, m: IntMatrix, symbol: str, x: str, row: str, length: str | None = None
            ) -> str:
        """A C expression: the int32 dot product of row ``row`` (a C expression) of ``m`` with
        the int16 vector ``x`` (``matvec(m, x)[row]``, bit for bit). ``length``: a C
        expression bounding the terms of a dense row (``x`` is zero beyond it: a flexible
        cell's inactive units); other storages read the whole row."""
        info = self.matrix(m, symbol)
        calls = []
        for mode in info["modes"]:
            if info["storage"] == "compact":
                dense, code = _kernel_code("dense", m.bits, m.col_bits, mode)
                fn, own = m.compact.c_kernel(m.bits, mode, dense)
                if fn == dense or dense in own:  # the family's kernel calls the dense one
                    self.kernels.setdefault(dense, code)
                    self.avr_only.discard(dense)
                if own:
                    self.kernels.setdefault(fn, own)
                    self.avr_only.discard(fn)
                calls.append(m.compact.c_call(fn, info["arr"], row, x))
                continue
            if mode == "short" and (info["storage"] in ("csr8", "csr8o") or m.bits == 8):
                # on the AVR the short kernel calls the non-saturating one: defined first
                dep, code = _kernel_code(info["storage"], m.bits, m.col_bits, "nosat")
                if dep not in self.kernels:
                    self.kernels[dep] = code
                    self.avr_only.add(dep)
            fn, code = _kernel_code(info["storage"], m.bits, m.col_bits, mode)
            self.kernels.setdefault(fn, code)
            self.avr_only.discard(fn)
            if info["storage"] == "dense":
                rows, cols = m.shape
                wide = "uint16_t" if rows * cols <= 65535 else "uint32_t"
                base = (info["arr"] if row == "0"
                        else f"{info['arr']} + ({wide})({row}) * {cols}u")
                calls.append(f"{fn}({base}, {length or cols}, {x})")
            elif info["storage"] in ("csr8", "csr8o"):
                calls.append(f"{fn}({info['e']}, {info['ptr']}, {row}, {x})")
            else:
                calls.append(f"{fn}({info['val']}, {info['col']}, {info['ptr']}, {row}, {x})")
        if len(calls) == 1:
            return calls[0]
        return (f"((RE_RD_U8(&{info['fit']}[({row}) >> 3]) >> (({row}) & 7)) & 1u ? {calls[0]} "
                f": {calls[1]})")


def _shift(expr: str, s: int) -> str:
    if s == 0:
        return expr
    if s >= 32:  # |v| < 2^31 <= 2^(s-1): rounds to 0
        return "0"
    if s > 0:
        return f"re_rsh({expr}, {s})"
    if -s > 30:
        raise ValueError(f"Left shift by {-s} bits is beyond the runtime's range (30).")
    return f"re_lshift_sat({expr}, {-s})"


def _stage_symbol(lin: IntLinear, symbol: str, k: int) -> str:
    """The C symbol of stage ``k``'s matrix: ``symbol`` for a dense matrix, ``symbol_u`` /
    ``symbol_v`` for a low-rank one, else the weight's suffix (``symbol_factor_1``...)."""
    if len(lin.stages) == 1:
        return symbol
    found = factor_suffix().search(lin.stages[k].matrix.name)
    return f"{symbol}{found.group(0) if found else f'_s{k}'}"


def _stage_source(src: str, m: int, blocks: int, row: str) -> tuple[str, str]:
    """``(input pointer, matrix row)`` of output position ``row`` of a last stage with
    ``blocks`` input blocks of ``m`` values (``inner`` is 1 for a last stage)."""
    if blocks == 1:
        return src, row
    return (f"{src} + (uint16_t)(({row}) % {blocks}u) * {m}u",
            f"(uint16_t)(({row}) / {blocks}u)")


def _mid(em: _Emitter, lin: IntLinear, symbol: str, x: str, x_frac: int,
         tmp: str, length: str | None = None) -> tuple[list[str], list[str], str]:
    """``(declarations, lines, vector)``: lines computing the int16 intermediates of every
    stage of ``lin`` but the last (``v = sat16(shift(stage(v), ...))``: a low-rank matrix's
    rank-``r`` vector ``tmp``; a Kronecker or TT chain's vectors ``tmp1``, ``tmp2``...) and the
    vector the rows of :func:`_row` then read (``x`` itself for a dense ``lin``). ``length``:
    the active length of ``x`` (see :meth:`_Emitter.row`), for the first stage."""
    if len(lin.stages) == 1:
        return [], [], x
    decls, lines, src, frac = [], [], x, x_frac
    last = len(lin.stages) - 2
    for k, (stage, mid) in enumerate(zip(lin.stages[:-1], lin.mid_fracs)):
        dst = tmp if last == 0 else f"{tmp}{k + 1}"
        n, m = stage.matrix.shape
        sym = _stage_symbol(lin, symbol, k)
        decls.append(f"int16_t {dst}[{stage.out_size}];")
        if stage.blocks == 1 and stage.inner == 1:
            value = _shift(em.row(stage.matrix, sym, src, "j", length if k == 0 else None),
                           stage.matrix.frac + frac - mid)
            lines.append(f"{{ uint16_t j; for (j = 0; j < {n}; ++j) {dst}[j] = "
                         f"re_sat16({value}); }}")
        else:
            b, r = stage.blocks, stage.inner
            value = _shift(em.row(stage.matrix, sym, f"{src} + b * {m}u", "j"),
                           stage.matrix.frac + frac - mid)
            at = ("j * " + f"{b}u + b" if r == 1
                  else f"(uint16_t)(j / {r}u) * {b * r}u + b * {r}u + (uint16_t)(j % {r}u)")
            lines.append(f"{{ uint16_t b, j; for (b = 0; b < {b}; ++b)\n"
                         f"    for (j = 0; j < {n}; ++j) {dst}[{at}] = "
                         f"re_sat16({value}); }}")
        src, frac = dst, mid
    return decls, lines, src


def _row(em: _Emitter, lin: IntLinear, symbol: str, src: str, row: str, x_frac: int,
         y_frac: int, length: str | None = None) -> str:
    """A C expression: ``linear(lin, x, x_frac -> y_frac)[row]`` (int32), ``src`` being what
    :func:`_mid` returned; ``length`` as in :func:`_mid`, for a one-stage ``lin``."""
    last = lin.stages[-1]
    frac = lin.mid_fracs[-1] if lin.mid_fracs else x_frac
    pointer, matrix_row = _stage_source(src, last.matrix.shape[1], last.blocks, row)
    return _shift(em.row(last.matrix, _stage_symbol(lin, symbol, len(lin.stages) - 1), pointer,
                         matrix_row, length if len(lin.stages) == 1 and last.blocks == 1
                         else None), last.matrix.frac + frac - y_frac)


def _mulsh(a: str, b: str, s: int, b16: bool = False) -> str:
    """``rshift(a * b, s)`` (``shift`` for ``s`` outside ``[1, 31]``); ``b16``: ``b`` is an
    int16 (a state element or a constant). The product fits int32, as in the oracle."""
    if not 0 < s < 32:
        return _shift(f"re_mul16({a}, {b})" if b16 else f"re_mul({a}, {b})", s)
    return f"re_mulsh16({a}, {b}, {s})" if b16 else f"re_mulsh({a}, {b}, {s})"


def _mulk(k: int, expr: str, s: int) -> str:
    """``rshift(k * expr, s)`` for a constant ``k``."""
    k = int(k)
    if -32768 <= k <= 32767:
        return _mulsh(expr, str(k), s, True)
    return _mulsh(_i32(k), expr, s)


def _runtime(progmem: bool) -> str:
    """The runtime with the tanh table (``TANH_TABLE``; in ``PROGMEM`` with ``progmem``)."""
    knots = [int(v) for v in TANH_TABLE]
    rows = ",\n".join("        " + ", ".join(f"{v}u" for v in knots[i:i + 12])
                       for i in range(0, len(knots), 12))
    if (TANH_STEP_BITS, TANH_LIMIT) != (5, 6):
        raise ValueError("The C runtime's tanh is written for a knot every 1/32 on [0, 6].")
    return (_RUNTIME.replace("RE_TANH_TABLE", rows)
            .replace("RE_TANH_KNOTS", str(len(knots)))
            .replace("RE_TANH_ATTR", " PROGMEM" if progmem else ""))


# ---- fitting the runtime to a model --------------------------------------------------------
# A model calls a subset of the runtime, and which subset depends on the target (the AVR paths
# call helpers of their own). Every compiler must build the result warning-free, clang with
# -Weverything included: so a macro nothing refers to is not emitted (-Wunused-macros), and a
# helper the model does not call on a non-AVR target is marked RE_UNUSED (clang's
# -Wunused-function; gcc never warns about an unused static inline function). The helpers stay
# in the file, so the runtime is the same library in every model. Helpers that do run are not
# marked (clang's -Wused-but-marked-unused). Only what is provably AVR-only (a branch under a
# conjunction with defined(__AVR__)) is left out of the non-AVR analysis; any other branch
# counts as compiled.

_DIRECTIVE = re.compile(r"\s*#\s*(\w+)\s*(.*)", re.S)
_NAMED = re.compile(r"\b(?!__attribute__\b)([A-Za-z_]\w*)\s*([(\[])")
_WORD = re.compile(r"[A-Za-z_]\w*")
_NOT_CODE = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_OPENERS = ("if", "ifdef", "ifndef")


def _code_lines(text: str) -> list[str]:
    """``text``'s lines with comments and string literals blanked (line structure kept)."""
    return _NOT_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text).split("\n")


def _words(text: str) -> set[str]:
    return set(_WORD.findall("\n".join(_code_lines(text))))


def _off_avr(kind: str, condition: str) -> bool:
    """May this ``#if``/``#elif``/``#ifdef``/``#else`` branch be compiled for a non-AVR
    target? ``False`` only for a conjunction with ``defined(__AVR__)`` (or ``#ifdef
    __AVR__``)."""
    condition = condition.replace("\\\n", " ").strip()
    if kind == "ifdef":
        return condition != "__AVR__"
    if kind in ("if", "elif") and "||" not in condition:
        return not any(re.fullmatch(r"defined\s*\(?\s*__AVR__\s*\)?", term.strip())
                       for term in condition.split("&&"))
    return True


def _off_avr_text(text: str, conditions: bool = False) -> str:
    """The lines of ``text`` that a non-AVR build may compile (see :func:`_off_avr`); with
    ``conditions``, also the ``#if``/``#elif`` lines such a build evaluates (their macros are
    used there)."""
    out, stack = [], []
    for line, code in zip(text.split("\n"), _code_lines(text)):
        m = _DIRECTIVE.fullmatch(code) if code.lstrip().startswith("#") else None
        kind = m.group(1) if m else ""
        if kind in _OPENERS:
            if conditions and all(stack):
                out.append(line)
            stack.append(_off_avr(kind, m.group(2)))
        elif kind in ("elif", "else") and stack:
            if conditions and all(stack[:-1]):
                out.append(line)
            stack[-1] = _off_avr(kind, m.group(2))
        elif kind == "endif" and stack:
            stack.pop()
        elif all(stack):
            out.append(line)
    return "\n".join(out)


def _runtime_items(text: str) -> list[dict]:
    """The top-level items of runtime ``text``: preprocessor lines (``kind`` the directive;
    ``name`` the macro of a ``#define``) and definitions (``kind`` ``"code"``, ``name`` what
    they define, ``function``), each with the comments and blank lines before it
    (``lines[lead:]`` is the item itself) and ``off_avr``: every enclosing branch may be
    compiled for a non-AVR target."""
    lines, code = text.split("\n"), _code_lines(text)
    items, pending, stack, i = [], [], [], 0
    while i < len(lines):
        if not code[i].strip():  # blank, or comment only
            pending.append(lines[i])
            i += 1
            continue
        j = i
        m = _DIRECTIVE.fullmatch(code[i]) if code[i].lstrip().startswith("#") else None
        if m:
            while lines[j].endswith("\\"):
                j += 1
            kind, arg = m.group(1), " ".join(c.rstrip("\\") for c in code[i:j + 1])
            arg = _DIRECTIVE.fullmatch(arg).group(2)
            name = _WORD.match(arg).group(0) if kind == "define" else None
            if kind in ("elif", "else", "endif") and stack:
                stack.pop()
            item = {"kind": kind, "name": name, "arg": arg, "off_avr": all(stack),
                    "function": False}
            if kind in _OPENERS or kind in ("elif", "else"):
                stack.append(_off_avr(kind, arg))
        else:
            depth, opened = 0, False
            while True:
                depth += code[j].count("{") - code[j].count("}")
                opened = opened or "{" in code[j]
                if (opened and depth == 0) or (not opened and code[j].rstrip().endswith(";")):
                    break
                j += 1
            own = " ".join(code[i:j + 1])
            named = _NAMED.search(own)
            name = named.group(1) if named else _WORD.findall(own)[-1]
            item = {"kind": "code", "name": name, "off_avr": all(stack),
                    "function": bool(named) and named.group(2) == "(" and "{" in own}
        item.update(lines=pending + lines[i:j + 1], lead=len(pending))
        items.append(item)
        pending, i = [], j + 1
    items.append({"kind": "tail", "name": None, "off_avr": True, "function": False,
                  "lines": pending, "lead": len(pending)})
    return items


def _fit_runtime(runtime: str, code: str, unused: str = "RE_UNUSED") -> str:
    """``runtime`` (C text: macros, helpers) fitted to the model whose own C is ``code``: the
    helpers ``code`` does not call off the AVR marked ``unused`` (an attribute macro that
    ``runtime`` defines), the macros nothing refers to removed with their comments, and the
    conditionals left empty removed."""
    items = _runtime_items(runtime)

    def own(item) -> str:
        return "\n".join(item["lines"][item["lead"]:])

    # helpers a non-AVR build calls: from the model's code, through helpers and macros
    named = {}
    for item in items:
        if item["kind"] in ("code", "define") and item["off_avr"]:
            named.setdefault(item["name"], []).append(item)
    called, todo = set(), _words(_off_avr_text(code))
    while todo:
        word = todo.pop()
        if word in called:
            continue
        called.add(word)
        for item in named.get(word, ()):
            todo |= _words(_off_avr_text(own(item))) - {word}
    for item in items:
        if item["function"] and item["off_avr"] and item["name"] not in called:
            k = item["lead"]
            item["lines"][k] = f"{unused} {item['lines'][k]}"

    # macros nothing refers to; a guard #ifndef NAME is not a reference. A definition that a
    # non-AVR build may compile must be referred to by what such a build compiles (else clang
    # warns there: a kernel called by the AVR only uses RE_KERNEL and RE_UNROLL on the AVR only);
    # an AVR-only definition, by anything.
    keep = [True] * len(items)
    off_code = _words(_off_avr_text(code, conditions=True))
    changed = True
    while changed:
        changed = False
        used, used_off = _words(code), set(off_code)
        for n, item in enumerate(items):
            if keep[n]:
                words = _words(own(item))
                if item["kind"] == "define":
                    words -= {item["name"]}
                elif item["kind"] == "ifndef":
                    continue
                used |= words
                if item["off_avr"]:
                    used_off |= (_words(_off_avr_text(own(item), conditions=True))
                                 - {item["name"]})
        for n, item in enumerate(items):
            if keep[n] and item["kind"] == "define" and item["name"] not in (
                    used_off if item["off_avr"] else used):
                keep[n], changed = False, True

    # conditionals left empty
    out, stack = [], []  # stack: [index in out of the opening directive, has content]
    for n, item in enumerate(items):
        if not keep[n]:
            continue
        if item["kind"] in _OPENERS:
            stack.append([len(out), False])
        elif item["kind"] == "endif" and stack:
            start, content = stack.pop()
            if not content:
                del out[start:]
                continue
            if stack:
                stack[-1][1] = True
        elif item["kind"] not in ("elif", "else") and stack:
            stack[-1][1] = True
        out.append(item)
    return "\n".join(line for item in out for line in item["lines"])


def _frac_of(one: str) -> int:
    """``f`` of a ``one`` argument of :func:`_act` (``INT32_C(2**f)``, as ``_i32`` writes it)."""
    match = re.fullmatch(r"INT32_C\((\d+)\)", one.strip())
    value = int(match.group(1)) if match else 0
    if value <= 0 or value & (value - 1) or value > 1 << 15:
        raise ValueError(f"Expected one to be INT32_C(2**f) with 0 <= f <= 15, but got {one!r}.")
    return value.bit_length() - 1


def _act(name: str, v: str, one: str) -> str:
    if name == "quantized_tanh":
        return f"re_qtanh({v}, {one})"
    if name == "tanh":
        return f"re_tanh({v}, {_frac_of(one)})"
    if name == "quantized_sigmoid":
        return f"re_qsigmoid({v}, {one})"
    if name == "sigmoid":
        return f"re_sigmoid({v}, {_frac_of(one)})"
    if name == "hard_sigmoid":
        return f"re_hsigmoid({v}, {one})"
    if name == "relu":
        return f"re_relu({v})"
    if name == "saturating_relu":  # relu of a FastGRNN/FastRNN candidate, clipped at ONE
        return f"re_clip32({v}, 0, {one})"
    return v




def _bounds(layer: IntRecurrent) -> dict[int, tuple[int, int]]:
    """The range of every node's integer value in ``layer``'s step (interval arithmetic on the
    oracle's operations): where it proves that a ``sat32`` cannot act, or that a product fits
    ``int32``, the C code skips the saturation or the 64-bit product (the same integers)."""
    fr = layer.node_fracs
    out: dict[int, tuple[int, int]] = {}
    i16 = (INT16_MIN, INT16_MAX)

    def clip32(lo, hi):
        return max(lo, INT32_MIN), min(hi, INT32_MAX)

    for node in layer.graph.nodes:
        a = [out[arg.index] for arg in node.args]
        op = node.op
        if op in ("input", "state", "vector", "sat16"):
            v = i16 if op != "sat16" else (max(a[0][0], INT16_MIN), min(a[0][1], INT16_MAX))
        elif op == "product":
            v = (INT32_MIN, INT32_MAX)
        elif op == "bias":
            w = node.width
            values = layer.biases[node.key][node.gate * w:(node.gate + 1) * w]
            v = (int(values.min()), int(values.max())) if values.size else (0, 0)
        elif op == "scalar":
            v = (layer.scalars[node.key],) * 2
        elif op == "one":
            v = (1 << layer.frac,) * 2
        elif op == "add":
            v = clip32(a[0][0] + a[1][0], a[0][1] + a[1][1])
        elif op == "sub":
            v = clip32(a[0][0] - a[1][1], a[0][1] - a[1][0])
        elif op == "mul":
            s = fr[node.args[0].index] + fr[node.args[1].index] - fr[node.index]
            corners = [int(shift(x * y, s)) for x in a[0] for y in a[1]]
            v = clip32(min(corners), max(corners))
        elif op == "act":
            one = 1 << fr[node.index]
            name = layer.act_name(node)
            lo, hi = (0.0, 1.0) if name == "saturating_relu" else ACTIVATION_TABLE[name].range
            low = int(lo * one) if np.isfinite(lo) else a[0][0]
            v = (low, int(hi * one) if np.isfinite(hi) else max(a[0][1], low))
        else:  # rescale
            s = fr[node.args[0].index] - fr[node.index]
            v = clip32(int(shift(a[0][0], s)), int(shift(a[0][1], s)))
        out[node.index] = v
    return out


def _fits32(lo: int, hi: int) -> bool:
    return INT32_MIN <= lo and hi <= INT32_MAX


def _layer_step(em: _Emitter, layer: IntRecurrent, n: int, x: str, q: int,
                level: str | None = None) -> list[str]:
    """The block of ``<id>_step`` updating layer ``n``'s state from input ``x``: its declared
    step (:mod:`keras_rnnedge.cells.step`), expression for expression the oracle's
    (:meth:`IntRecurrent.step`).

    One loop over the units computes, per unit ``i``, the rows of every gate (dot products of
    the stored rows, or of a structured matrix's last stage with the int16 intermediates
    computed before the loop), the element-wise operations and the new state: no int32 vector
    is kept unless a value crosses into a later loop (a ``vector`` node, GRU's ``r * h``, ends
    a loop; see :mod:`~keras_rnnedge.converters.c.schedule`). The new state is written in place
    unless a product of the last loop reads that state vector row by row (then into an int16
    buffer copied at the end). Interval arithmetic over the integer values (:func:`_bounds`)
    drops the saturations that cannot act and picks the product kernels: ``re_mulq15`` for a
    ``[0, 2^15]`` times ``[-2^15, 2^15]`` product in Q15, the 16-bit multiplies where a factor
    is an int16, a 64-bit product only where ``int32`` may overflow.

    A flexible layer (``layer.levels``; ``level`` the C expression of the step's level, already
    clipped) first zeroes its per-unit state vectors beyond the level's active units ``na``,
    then runs its per-unit loops over ``na`` units and its dense rows reading a per-unit vector
    over ``na`` terms; the per-unit vectors a later product reads are zeroed beyond ``na``.
    """
    graph, fr, sym = layer.graph, layer.node_fracs, f"l{n}"
    flexible = layer.levels is not None and level is not None
    bounds = _bounds(layer)
    sched = schedule(graph, lambda matrix, src: len(layer.matrices[matrix].stages) == 1)
    names, taken = {}, set()
    for node in graph.nodes:
        if node.index in sched.used and node.op not in ("input", "state", "bias", "scalar",
                                                          "one", "product"):
            name = node.name if node.name and node.name not in taken else f"t{node.index}"
            taken.add(name)
            names[node.index] = name
    bias = {name: em.array("int32_t", f"{sym}_{name}", values)
            for name, values in layer.biases.items()}
    decls: list[str] = []
    lines: list[str] = []
    sources: dict[tuple, str] = {}  # (matrix, source index) -> what _row reads
    lengths: dict[tuple, str | None] = {}  # (matrix, source index) -> active terms of its rows
    if flexible:
        table = em.array("int16_t", f"{sym}_levels", layer.levels)
        decls.append(f"const uint16_t na = (uint16_t)RE_RD_I16(&{table}[{level}]);")
        for vector in graph.state:
            if vector.per_unit:
                lines.append(f"for (i = na; i < {vector.size}; ++i) state->{vector.name}{n}[i] "
                             "= 0;")

    def symbol(matrix: str) -> str:
        return f"{sym}_{'recurrent' if matrix == 'recurrent_kernel' else matrix}"

    def int16_typed(node: Node) -> bool:
        return node.op in ("state", "vector") or (
            node.op in ("scalar", "one") and INT16_MIN <= bounds[node.index][0]
            and bounds[node.index][1] <= INT16_MAX)

    def vec(node: Node) -> str:
        if node.op == "input":
            return x
        if node.op == "state":
            return f"state->{node.key}{n}"
        if node.op == "vector":
            return names[node.index]
        raise ValueError(f"Layer {layer.name!r}: a matrix product reads {node!r}; only the "
                         "input, a state vector or a vector node can be read whole.")

    local: dict[int, str] = {}  # vector/kept values of the current loop, stored at its end

    def expr(node: Node) -> str:
        op = node.op
        if node.index in local:
            return local[node.index]
        if op == "vector" or node.index in sched.kept:
            return f"{names[node.index]}[i]"
        if node.index in names:
            return names[node.index]
        if op == "state":
            return f"state->{node.key}{n}[i]"
        if op == "product":
            src = node.args[0]
            row = "i" if node.gate == 0 else f"{node.gate * node.width} + i"
            return _row(em, layer.matrices[node.key], symbol(node.key),
                        sources[(node.key, src.index)], row, fr[src.index], q,
                        lengths[(node.key, src.index)])
        if op == "bias":
            row = "i" if node.gate == 0 else f"{node.gate * node.width} + i"
            return f"RE_RD_I32(&{bias[node.key]}[{row}])"
        if op in ("scalar", "one"):
            return _i32(bounds[node.index][0])
        raise ValueError(f"Layer {layer.name!r}: {node!r} cannot be read per unit.")

    def value(node: Node) -> str:
        op, args = node.op, node.args
        a = [expr(arg) for arg in args]
        if op in ("add", "sub"):
            (alo, ahi), (blo, bhi) = bounds[args[0].index], bounds[args[1].index]
            lo, hi = (alo + blo, ahi + bhi) if op == "add" else (alo - bhi, ahi - blo)
            sign = "+" if op == "add" else "-"
            if _fits32(lo, hi):
                return f"(int32_t){a[0]} {sign} {a[1]}"
            if op == "sub":
                if blo == INT32_MIN:
                    raise ValueError(f"Layer {layer.name!r}: {node!r} may negate INT32_MIN.")
                return f"re_sat_add32({a[0]}, -{a[1]})"
            return f"re_sat_add32({a[0]}, {a[1]})"
        if op == "mul":
            s = fr[args[0].index] + fr[args[1].index] - fr[node.index]
            ba, bb = bounds[args[0].index], bounds[args[1].index]
            peak = max(abs(u) * abs(v) for u in ba for v in bb)
            for (p, pb), (o, ob) in (((0, ba), (1, bb)), ((1, bb), (0, ba))):
                if (s == 15 and 0 <= pb[0] and pb[1] <= 1 << 15 and -(1 << 15) <= ob[0]
                        and ob[1] <= 1 << 15):
                    return f"re_mulq15((uint16_t){_paren(a[p])}, {a[o]})"
            if peak <= INT32_MAX:
                if int16_typed(args[1]):
                    return _mulsh(a[0], a[1], s, True)
                if int16_typed(args[0]):
                    return _mulsh(a[1], a[0], s, True)
                return _mulsh(a[0], a[1], s)
            if not 0 < s < 32:
                raise ValueError(f"Layer {layer.name!r}: {node!r} needs a 64-bit product "
                                 f"shifted by {s}; the runtime shifts by 1..31.")
            return f"re_mul_rshift64({a[0]}, {a[1]}, {s})"
        if op == "act":
            return _act(layer.act_name(node), a[0], _i32(1 << fr[node.index]))
        if op == "rescale":
            return _shift(a[0], fr[args[0].index] - fr[node.index])
        # sat16, vector (a calibrated vector first rescaled to its format)
        lo, hi = bounds[args[0].index]
        s = fr[args[0].index] - fr[node.index]
        if s:
            a[0] = _shift(a[0], s)
            lo, hi = int(shift(lo, s)), int(shift(hi, s))
        if not (INT16_MIN <= lo and hi <= INT16_MAX):
            return f"re_sat16({a[0]})"
        return f"(int16_t){_paren(a[0])}" if op == "vector" else a[0]

    for index in sorted(sched.kept):
        decls.append(f"int32_t {names[index]}[{graph.nodes[index].width}];")
    for node in graph.nodes:
        if node.op == "vector" and node.index in sched.used:
            decls.append(f"int16_t {names[node.index]}[{node.width}];")
    out_name = {}
    for vector in graph.state:
        if sched.inplace[vector.name]:
            out_name[vector.name] = f"state->{vector.name}{n}"
        else:
            out_name[vector.name] = f"{vector.name}n"
            decls.append(f"int16_t {vector.name}n[{vector.size}];")
    for p in range(sched.phases):
        for k, (matrix, src) in enumerate(sched.sources[p]):
            tmp = ("wm" if matrix == "kernel" else "um") + (f"{p}{k}" if p or k > 1 else "")
            length = "na" if flexible and src.per_unit else None
            d, code, read = _mid(em, layer.matrices[matrix], symbol(matrix), vec(src),
                                 fr[src.index], tmp, length)
            decls += d
            lines += code
            sources[(matrix, src.index)] = read
            lengths[(matrix, src.index)] = length
        body, stores = [], []
        local.clear()
        for node in sched.nodes(graph, p):
            if node.op == "vector" or node.index in sched.kept:
                # declared here, stored after the loop body's declarations (C89 order)
                kind = "int16_t" if node.op == "vector" else "int32_t"
                body.append(f"const {kind} v{node.index} = {value(node)};")
                stores.append(f"{names[node.index]}[i] = v{node.index};")
                local[node.index] = f"v{node.index}"
            else:
                body.append(f"const int32_t {names[node.index]} = {value(node)};")
        body += stores
        for vector in graph.state:
            if vector.name in sched.writes[p]:
                out = graph.outputs[vector.name]
                v = _shift(expr(out), fr[out.index] - layer.formats[vector.name])
                lo, hi = bounds[out.index]
                if fr[out.index] == layer.formats[vector.name] and INT16_MIN <= lo \
                        and hi <= INT16_MAX:
                    v = f"(int16_t){v}"
                else:
                    v = f"re_sat16({v})"
                body.append(f"{out_name[vector.name]}[i] = {v};")
        unit_loop = flexible and any(node.per_unit for node in sched.nodes(graph, p))
        lines += [f"for (i = 0; i < {'na' if unit_loop else sched.widths[p]}; ++i) {{",
                  *("    " + s for s in body), "}"]
        if unit_loop:
            for node in sched.nodes(graph, p):
                if node.op == "vector" and node.per_unit:
                    lines.append(f"for (i = na; i < {node.width}; ++i) {names[node.index]}[i] "
                                 "= 0;")
    for vector in graph.state:
        if not sched.inplace[vector.name]:
            count = "na" if flexible and vector.per_unit else vector.size
            lines.append(f"for (i = 0; i < {count}; ++i) state->{vector.name}{n}[i] = "
                         f"{vector.name}n[i];")
    head = (f"/* layer {comment_text(layer.name)}: {layer.kind}, {layer.input_dim} -> "
            f"{layer.output_size} */")
    return [head, "{"] + ["    " + s for s in decls + lines] + ["}"]


def _paren(e: str) -> str:
    return e if re.fullmatch(r"[\w\[\]+ >.-]*", e) and " " not in e else f"({e})"


def generate_c(int_model: IntModel, name: str, *, progmem: bool = False,
               saturate_all: bool = False) -> dict[str, str]:
    """C99 source of ``int_model``: ``{"<id>.h": header, "<id>.c": source}``.

    Args:
        int_model: from :func:`~keras_rnnedge.converters.c.intmodel.quantize_model`.
        name: the model name; :func:`~keras_rnnedge.converters.carray.c_identifier` makes the
            ``<id>`` of files and symbols.
        progmem: put constant data in AVR flash (``PROGMEM`` + ``pgm_read_*``).
        saturate_all: accumulate every matrix row with the saturating kernels, also where the
            row bound proves that no partial sum can overflow (the same results, slower: what
            the benchmarks and the fuzzer compare the fast kernels with).

    Raises:
        TypeError: ``int_model`` is not an ``IntModel``.
    """
    from keras_rnnedge.converters.c.switching import SwitchingIntModel, generate_switching_c

    if isinstance(int_model, SwitchingIntModel):
        return generate_switching_c(int_model, name, progmem=progmem, saturate_all=saturate_all)
    if not isinstance(int_model, IntModel):
        raise TypeError(f"Expected int_model to be an IntModel, but got "
                        f"{type(int_model).__name__}.")
    ident = c_identifier(name)
    up = ident.upper()
    q = int_model.frac_bits
    em = _Emitter(progmem, saturate_all)
    feats, outs = int_model.features, int_model.num_outputs

    num_levels = int_model.num_levels
    step: list[str] = []
    x = "x_q"
    if num_levels is not None:
        step.append(f"if (level >= {num_levels}u) level = {num_levels - 1}u;")
    for n, layer in enumerate(int_model.recurrent):
        step += _layer_step(em, layer, n, x, q, "level" if num_levels is not None else None)
        x = f"state->h{n}"

    predict: list[str] = []
    if not int_model.head:
        predict.append(f"for (i = 0; i < {outs}; ++i) scores[i] = {x}[i];")
    for n, layer in enumerate(int_model.head):
        sym = f"d{n}"
        rows = layer.kernel.u.shape[0]
        dst = "scores" if layer.last else f"y{n}"
        block = [f"/* layer {comment_text(layer.name)}: Dense {layer.kernel.u.shape[1]} -> "
                 f"{rows}, {layer.activation} */", "{"]
        if not layer.last:
            predict.insert(0, f"int16_t {dst}_out[{rows}];")
        decls, lines, src = _mid(em, layer.kernel, f"{sym}_kernel", x, layer.in_frac, "m")
        block += ["    " + s for s in decls]
        em.array("int32_t", f"{sym}_bias", layer.bias)
        pre = _row(em, layer.kernel, f"{sym}_kernel", src, "i", layer.in_frac, layer.out_frac)
        value = _act(layer.activation, f"re_sat_add32({pre}, RE_RD_I32(&{sym}_bias[i]))",
                     _i32(1 << layer.out_frac))
        if layer.last:
            lines.append(f"for (i = 0; i < {rows}; ++i) scores[i] = {value};")
        else:
            lines.append(f"for (i = 0; i < {rows}; ++i) {dst}_out[i] = re_sat16({value});")
            x = f"{dst}_out"
        predict += block + ["    " + s for s in lines] + ["}"]

    kernels = []
    for fn, code in em.kernels.items():
        if fn not in em.avr_only:
            kernels.append(code)
        elif progmem:  # called by a short kernel on the AVR only (see _kernel_code)
            kernels.append(f"#if defined(__AVR__) && defined(RE_PGM)\n{code}#endif\n")

    banner = (f"/* {comment_text(int_model.name)}: integer inference (int{int_model.weight_bits} "
              f"weights, Q{q} state), {int_model.weight_bytes()} bytes of weights.\n"
              " * Generated by keras_rnnedge.converters.c.cgen. Do not edit. */\n")
    fields = []
    for n, layer in enumerate(int_model.recurrent):
        for vector in layer.state:
            doc = f"{vector.doc}, " if vector.doc else ""
            fields.append(f"    int16_t {vector.name}{n}[{vector.size}]; /* {doc}"
                          f"Q{layer.formats[vector.name]} */")
    state = "\n".join(fields)
    guard = f"{up}_H_"
    top_note, level_api = "", ""
    if num_levels is not None:
        widths = "; ".join(f"layer {n}: {', '.join(map(str, layer.levels))}"
                           for n, layer in enumerate(int_model.recurrent) if layer.levels)
        top_note = f" at the top level ({num_levels - 1})"
        level_api = (
            f"/* Flexible width: level l runs the first units of each flexible layer ({widths})"
            "; a level above the top runs the top; the state carries across a switch. */\n"
            f"#define {up}_NUM_LEVELS {num_levels}\n"
            f"void {ident}_step_level({ident}_state_t *state, "
            f"const int16_t x_q[{up}_NUM_FEATURES], uint8_t level);\n")
    header = (
        f"{banner}\n#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        f"#define {up}_NUM_FEATURES {feats}\n#define {up}_NUM_OUTPUTS {outs}\n"
        f"#define {up}_FRAC_BITS {q}\n\n"
        "/* Recurrent state (int16): per recurrent layer n, its vectors <name>n (h first). */\n"
        f"typedef struct {{\n{state}\n}} {ident}_state_t;\n\n"
        f"void {ident}_reset({ident}_state_t *state);\n"
        f"/* One time step; x_q[i] = sat16(round((x[i] - offset[i]) * scale[i]))"
        f"{top_note}. */\n"
        f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]);\n"
        f"{level_api}"
        f"/* Scores in Q{q} (pre-softmax outputs times 2^{q}). */\n"
        f"void {ident}_predict(const {ident}_state_t *state, int32_t scores[{up}_NUM_OUTPUTS]);\n"
        "\n#ifdef RNNEDGE_WITH_FLOAT_INPUT\n"
        f"extern const float {ident}_input_offset[{up}_NUM_FEATURES];\n"
        f"extern const float {ident}_input_scale[{up}_NUM_FEATURES];\n"
        f"void {ident}_quantize_input(const float x[{up}_NUM_FEATURES], "
        f"int16_t x_q[{up}_NUM_FEATURES]);\n#endif\n\n"
        "#ifdef __cplusplus\n}\n#endif\n\n"
        f"#endif /* {guard} */\n")

    def floats(values) -> str:
        return ", ".join(f"{float(np.float32(v))!r}f" for v in values)

    body = (
        "".join(kernels)
        + "\n"
        + "\n".join(em.arrays) + "\n"
        f"void {ident}_reset({ident}_state_t *state) {{\n    uint16_t i;\n"
        + "".join(f"    for (i = 0; i < {vector.size}; ++i) state->{vector.name}{n}[i] = 0;\n"
                  for n, layer in enumerate(int_model.recurrent) for vector in layer.state)
        + "}\n\n"
        + (f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]) {{\n"
           "    uint16_t i;\n" + "".join(f"    {s}\n" for s in step) + "}\n\n"
           if num_levels is None else
           f"void {ident}_step_level({ident}_state_t *state, "
           f"const int16_t x_q[{up}_NUM_FEATURES], uint8_t level) {{\n"
           "    uint16_t i;\n" + "".join(f"    {s}\n" for s in step) + "}\n\n"
           f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]) {{\n"
           f"    {ident}_step_level(state, x_q, {num_levels - 1}u);\n}}\n\n") +
        f"void {ident}_predict(const {ident}_state_t *state, "
        f"int32_t scores[{up}_NUM_OUTPUTS]) {{\n"
        "    uint16_t i;\n" + "".join(f"    {s}\n" for s in predict) + "}\n\n"
        "#ifdef RNNEDGE_WITH_FLOAT_INPUT\n"
        f"const float {ident}_input_offset[{up}_NUM_FEATURES] = "
        f"{{{floats(int_model.input_offset)}}};\n"
        f"const float {ident}_input_scale[{up}_NUM_FEATURES] = "
        f"{{{floats(int_model.input_scale)}}};\n\n"
        f"void {ident}_quantize_input(const float x[{up}_NUM_FEATURES], "
        f"int16_t x_q[{up}_NUM_FEATURES]) {{\n"
        "    uint16_t i;\n"
        f"    for (i = 0; i < {up}_NUM_FEATURES; ++i) {{\n"
        f"        float v = (x[i] - {ident}_input_offset[i]) * {ident}_input_scale[i];\n"
        "        if (v != v) v = 0.0f; /* NaN */\n"
        "        if (v > 32767.0f) v = 32767.0f;\n"
        "        if (v < -32768.0f) v = -32768.0f;\n"
        "        x_q[i] = (int16_t)(v >= 0.0f ? v + 0.5f : v - 0.5f);\n"
        "    }\n}\n#endif\n")
    runtime = ((_READS_PROGMEM if progmem else _READS_PLAIN) + _runtime(progmem)
               + (_RE_CSR8 if em.csr8 else ""))
    source = f"{banner}\n#include \"{ident}.h\"\n\n" + _fit_runtime(runtime, body) + body
    return {f"{ident}.h": header, f"{ident}.c": source}


def kernel_source(kernels: Sequence[tuple[str, int, int, str]], *,
                  progmem: bool = False) -> str:
    """C source with the runtime and the row kernels ``kernels`` on their own, for measuring
    them (``benchmarks/c_targets.py``'s kernel table): each item is ``(storage, bits,
    col_bits, mode)`` as the generator picks them (``storage``: ``dense``, ``csr``, ``csr8``
    or ``csr8o``; ``mode``: ``sat`` or ``nosat``). Include it after ``<stdint.h>``; the kernels
    are ``static`` functions named as in generated models (``re_mv_dense_i8_nosat``, ...)."""
    runtime = (_READS_PROGMEM if progmem else _READS_PLAIN) + _runtime(progmem) + _RE_CSR8
    codes = {}
    for storage, bits, col_bits, mode in kernels:
        name, code = _kernel_code(storage, bits, col_bits, mode)
        codes[name] = code
    return runtime + "\n" + "".join(codes.values())
