"""Standalone C99 for an :class:`~keras_rnnedge.converters.intmodel.IntModel`.

:func:`generate_c` emits ``<id>.h`` and ``<id>.c``: dependency-free C99 (``<stdint.h>`` only),
no ``malloc``, and no floating point unless ``RNNEDGE_WITH_FLOAT_INPUT`` is defined (which adds
``<id>_quantize_input`` and the input scale constants). The arithmetic is that of the module
docstring of :mod:`~keras_rnnedge.converters.intmodel`, whose NumPy oracle it matches bit for
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
The float build (``float_build=True``) is not implemented in this version.
"""

from __future__ import annotations

import re

import numpy as np

from keras_rnnedge.converters.carray import c_identifier, comment_text
from keras_rnnedge.converters.intmodel import (
    HARD_SIGMOID_SLOPE,
    INT32_MIN,
    TANH_LIMIT,
    TANH_STEP_BITS,
    TANH_TABLE,
    IntLinear,
    IntMatrix,
    IntModel,
    IntRecurrent,
)

__all__ = ["generate_c"]

_RUNTIME = r"""
/* ---- integer runtime (see keras_rnnedge.converters.intmodel for the exact semantics) ---- */
static inline int32_t re_sat_add32(int32_t a, int32_t b) {
    if (b > 0 && a > INT32_MAX - b) return INT32_MAX;
    if (b < 0 && a < INT32_MIN - b) return INT32_MIN;
    return a + b;
}
static inline int16_t re_sat16(int32_t v) {
    return v > INT16_MAX ? (int16_t)INT16_MAX : v < INT16_MIN ? (int16_t)INT16_MIN : (int16_t)v;
}
static inline int32_t re_clip32(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}
/* round half up: floor(v / 2^s + 1/2), 1 <= s <= 31, without the overflow of v + 2^(s-1) */
static inline int32_t re_rshift(int32_t v, uint8_t s) {
    return (v >> s) + ((v >> (s - 1)) & 1);
}
/* saturating v * 2^k, 1 <= k <= 30 */
static inline int32_t re_lshift_sat(int32_t v, uint8_t k) {
    const int32_t hi = INT32_MAX >> k;
    const int32_t lo = -(int32_t)(((uint32_t)1) << (31 - k));
    if (v > hi) return INT32_MAX;
    if (v < lo) return INT32_MIN;
    return v * (int32_t)(((uint32_t)1) << k);
}
static inline int32_t re_qtanh(int32_t v, int32_t one) { return re_clip32(v, -one, one); }
static inline int32_t re_qsigmoid(int32_t v, int32_t one) {
    return re_rshift(re_clip32(v, -one, one) + one, 1);
}
/* Inlined where called: f and g are constants there, and every shift below becomes a constant
 * shift (a variable 32-bit shift is a loop on the AVR). */
#if defined(__GNUC__)
#define RE_ACT_INLINE static inline __attribute__((always_inline))
#else
#define RE_ACT_INLINE static inline
#endif
/* |tanh(v / 2^g)| in Q16 (0..65536), 0 <= g <= 16 (intmodel.tanh_q16): a table of tanh in
 * Q16 every 1/32 on [0, 6], linear interpolation; 65536 from 6 on. With a = |v| in Q16
 * (< 6 * 2^16): i = a >> 11 (< 192), r = a & 2047, d = T[i + 1] - T[i] (<= 2^11), and
 * rshift(d r, 11) = (t + 1) >> 1 with t = (d r) >> 10 (< 2^12): byte moves and 16-bit
 * shifts instead of 32-bit shift loops on the AVR. */
RE_ACT_INLINE int32_t re_tanh_q16(int32_t v, uint8_t g) {
    static const uint16_t re_tanh_tab[RE_TANH_KNOTS]RE_TANH_ATTR = {
RE_TANH_TABLE
    };
    const int32_t lim = INT32_C(6) << g;
    uint32_t a;
    uint16_t i, r, t0, d, t;
    if (v >= lim || v <= -lim) return INT32_C(65536);
    a = (uint32_t)(v < 0 ? -v : v) << (16 - g);
    i = (uint16_t)((uint16_t)(a >> 8) >> 3);
    r = (uint16_t)((uint16_t)a & 2047u);
    t0 = RE_RD_U16(&re_tanh_tab[i]);
    d = (uint16_t)(RE_RD_U16(&re_tanh_tab[i + 1]) - t0);
    t = (uint16_t)((uint16_t)(((uint32_t)d * r) >> 8) >> 2);
    return (int32_t)t0 + (int32_t)((t + 1u) >> 1);
}
/* tanh in Qf (f <= 15): exactly odd */
RE_ACT_INLINE int32_t re_tanh(int32_t v, uint8_t f) {
    const int32_t y = re_rshift(re_tanh_q16(v, f), (uint8_t)(16 - f));
    return v < 0 ? -y : y;
}
/* sigmoid(x) = (1 + tanh(x / 2)) / 2 in Qf (f <= 15): sigmoid(-x) = 1 - sigmoid(x) exactly */
RE_ACT_INLINE int32_t re_sigmoid(int32_t v, uint8_t f) {
    const int32_t p = re_rshift(INT32_C(65536) + re_tanh_q16(v, (uint8_t)(f + 1)),
                                (uint8_t)(17 - f));
    return v < 0 ? (INT32_C(1) << f) - p : p;
}
static inline int32_t re_hsigmoid(int32_t v, int32_t one) {
    const int32_t lim = (5 * one) >> 1;
    return re_clip32(re_rshift(re_clip32(v, -lim, lim) * HS_SLOPE, 16) + one / 2, 0, one);
}
static inline int32_t re_relu(int32_t v) { return v > 0 ? v : 0; }
/* sat32(rshift(a * b, s)) with a 64-bit product (GRU reset_after: r * (h U + b)) */
static inline int32_t re_mul_rshift64(int32_t a, int32_t b, uint8_t s) {
    const int64_t v = (int64_t)a * (int64_t)b;
    const int64_t r = (v >> s) + ((v >> (s - 1)) & 1);
    return r > INT32_MAX ? INT32_MAX : r < INT32_MIN ? INT32_MIN : (int32_t)r;
}

/* acc += w * x for an int8 w and an int16 x, without saturation (callers guarantee the sum
 * fits int32; see cgen._row_fits). On the AVR: two hardware multiplies and byte adds
 * (MULSU/MULS set C to the sign of the 16-bit product, so SBC t,t is its sign extension),
 * instead of a call to the 16x16->32 multiply; the result is the same integer. */
#if defined(__AVR__)
#define RE_MAC_I8(ACC_, W_, X_) do { \
    const int8_t re_w_ = (int8_t)(W_); \
    const int16_t re_x_ = (int16_t)(X_); \
    uint8_t re_t_; \
    __asm__ ("mulsu %[rw], %A[rx]\n\t" "sbc %[rt], %[rt]\n\t" \
             "add %A[ra], r0\n\t" "adc %B[ra], r1\n\t" "adc %C[ra], %[rt]\n\t" \
             "adc %D[ra], %[rt]\n\t" "muls %[rw], %B[rx]\n\t" "sbc %[rt], %[rt]\n\t" \
             "add %B[ra], r0\n\t" "adc %C[ra], r1\n\t" "adc %D[ra], %[rt]\n\t" "clr r1" \
             : [ra] "+r"(ACC_), [rt] "=&r"(re_t_) : [rw] "a"(re_w_), [rx] "a"(re_x_) : "r0"); \
} while (0)
#else
#define RE_MAC_I8(ACC_, W_, X_) ((ACC_) += (int32_t)(W_) * (int32_t)(X_))
#endif
/* Unroll the non-saturating loops by 4 (default: not on the AVR, where avr-gcc -Os code
 * gets slower). */
#ifndef RE_UNROLL
#if defined(__AVR__)
#define RE_UNROLL 0
#else
#define RE_UNROLL 1
#endif
#endif
#define RE_MAC_I16(ACC_, W_, X_) ((ACC_) += (int32_t)(W_) * (int32_t)(X_))
""".replace("HS_SLOPE", f"INT32_C({HARD_SIGMOID_SLOPE})")

# Matrix-vector kernels. ``_sat`` kernels saturate the int32 accumulator at every step (the
# oracle's matvec, literally). ``_nosat`` kernels accumulate with plain additions; the generator
# uses them only for rows whose worst case provably fits int32 (see ``_row_fits`` below), where
# they give the same result. The loops walk pointers so that gcc -O2/-Os keeps them tight.
_MV_DENSE = """
static void re_mv_dense_{t}_sat(const {ct} *w, uint16_t rows, uint16_t cols,
                                const int16_t *x, int32_t *y) {{
    const int16_t *const xe = x + cols;
    while (rows--) {{
        const int16_t *xp = x;
        int32_t acc = 0;
        while (xp != xe) acc = re_sat_add32(acc, (int32_t)RE_RD_{T}(w++) * (int32_t)*xp++);
        *y++ = acc;
    }}
}}
"""

_MV_DENSE_NOSAT = """
/* rows whose sum of |w| times 2^15 is at most INT32_MAX only (plain int32 sums are exact);
 * unrolled by 4 */
static void re_mv_dense_{t}_nosat(const {ct} *w, uint16_t rows, uint16_t cols,
                                  const int16_t *x, int32_t *y) {{
    while (rows--) {{
        const int16_t *xp = x;
        uint16_t n = cols;
        int32_t acc = 0;
#if RE_UNROLL
        for (; n >= 4; n = (uint16_t)(n - 4)) {{
            RE_MAC_{T}(acc, RE_RD_{T}(w++), *xp++); RE_MAC_{T}(acc, RE_RD_{T}(w++), *xp++);
            RE_MAC_{T}(acc, RE_RD_{T}(w++), *xp++); RE_MAC_{T}(acc, RE_RD_{T}(w++), *xp++);
        }}
#endif
        while (n--) RE_MAC_{T}(acc, RE_RD_{T}(w++), *xp++);
        *y++ = acc;
    }}
}}
"""

_MV_CSR = """
static void re_mv_csr_{t}_c{c}_{mode}(const {ct} *val, const uint{c}_t *col, const uint16_t *ptr,
                                    uint16_t rows, const int16_t *x, int32_t *y) {{
    uint16_t k = RE_RD_U16(ptr);
    const {ct} *v = val + k;
    const uint{c}_t *cp = col + k;
    while (rows--) {{
        const uint16_t end = RE_RD_U16(++ptr);
        uint16_t n = (uint16_t)(end - k);
        int32_t acc = 0;
        k = end;
{LOOP}        *y++ = acc;
    }}
}}
"""
# The non-saturating loop is unrolled by 4 (fewer loop instructions per MAC on both targets).
_CSR_LOOP = {
    "sat": "        while (n--) {ACC};\n",
    "nosat": ("#if RE_UNROLL\n        for (; n >= 4; n = (uint16_t)(n - 4)) {{\n"
              "            {ACC}; {ACC};\n            {ACC}; {ACC};\n        }}\n#endif\n"
              "        while (n--) {ACC};\n"),
}
_CSR_ACC = {
    "sat": "acc = re_sat_add32(acc, (int32_t)RE_RD_{T}(v++) * (int32_t)x[RE_RD_U{c}(cp++)])",
    "nosat": "RE_MAC_{T}(acc, RE_RD_{T}(v++), x[RE_RD_U{c}(cp++)])",
}

# The largest |x| of an int16 input.
_X_ABS_MAX = 1 << 15
INT32_MAX = (1 << 31) - 1
# At most this many kernel calls per matrix when rows alternate between the two kernels;
# beyond it the whole matrix takes the saturating kernel.
_MAX_RUNS = 8
# Benchmarks only (benchmarks/c_targets.py): emit the saturating kernels for every row, to
# measure what the non-saturating ones save. Not part of the API.
_SATURATE_ALL = False


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


_READS_PLAIN = """#define RE_RD_I8(p) (*(p))
#define RE_RD_I16(p) (*(p))
#define RE_RD_I32(p) (*(p))
#define RE_RD_U8(p) (*(p))
#define RE_RD_U16(p) (*(p))
"""

_READS_PROGMEM = """#if defined(__AVR__)
#include <avr/pgmspace.h>
#define RE_RD_I8(p) ((int8_t)pgm_read_byte(p))
#define RE_RD_I16(p) ((int16_t)pgm_read_word(p))
#define RE_RD_I32(p) ((int32_t)pgm_read_dword(p))
#define RE_RD_U8(p) ((uint8_t)pgm_read_byte(p))
#define RE_RD_U16(p) ((uint16_t)pgm_read_word(p))
#else
#ifndef PROGMEM
#define PROGMEM
#endif
""" + _READS_PLAIN + "#endif\n"


def _i32(v: int) -> str:
    v = int(v)
    return "INT32_MIN" if v == INT32_MIN else f"INT32_C({v})"


class _Emitter:
    def __init__(self, progmem: bool):
        self.attr = " PROGMEM" if progmem else ""
        self.arrays: list[str] = []
        self.matrices: dict[str, tuple] = {}
        self.kernels: dict[str, str] = {}  # function name -> C definition, in order of use
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

    def matrix(self, m: IntMatrix, symbol: str) -> tuple:
        """Declares the arrays of ``m`` (once per symbol); returns how to call its matvec."""
        if symbol in self.matrices:
            return self.matrices[symbol]
        t = f"i{m.bits}"
        ct = f"int{m.bits}_t"
        rows, cols = m.shape
        self.arrays.append(f"/* {comment_text(m.name)}: {rows}x{cols} (transposed), "
                           f"{m.nnz} non-zeros, scale 2^-{m.frac}, "
                           f"{'CSR' if m.sparse else 'dense'} {m.nbytes} bytes */\n")
        if not m.sparse:
            info = ("dense", f"re_mv_dense_{t}", self.array(ct, symbol, m.values), cols)
        else:
            vals, cols_idx, ptr = m.csr()
            c = m.col_bits
            info = ("csr", f"re_mv_csr_{t}_c{c}", self.array(ct, f"{symbol}_val", vals),
                    self.array(f"uint{c}_t", f"{symbol}_col", cols_idx),
                    self.array("uint16_t", f"{symbol}_ptr", ptr))
        self.matrices[symbol] = info
        return info

    def kernel(self, m: IntMatrix, mode: str) -> str:
        """The name of the kernel for ``m``'s storage and ``mode`` (``sat``/``nosat``); adds
        its definition on first use."""
        t, ct = f"i{m.bits}", f"int{m.bits}_t"
        if not m.sparse:
            fn = f"re_mv_dense_{t}_{mode}"
            tmpl = _MV_DENSE if mode == "sat" else _MV_DENSE_NOSAT
            code = tmpl.format(t=t, T=f"I{m.bits}", ct=ct)
        else:
            c = m.col_bits
            fn = f"re_mv_csr_{t}_c{c}_{mode}"
            acc = _CSR_ACC[mode].format(T=f"I{m.bits}", c=c)
            loop = _CSR_LOOP[mode].replace("{{", "{").replace("}}", "}").replace("{ACC}", acc)
            code = _MV_CSR.format(t=t, ct=ct, c=c, mode=mode, LOOP="{LOOP}").replace("{LOOP}", loop)
        self.kernels.setdefault(fn, code)
        return fn

    def matvec(self, m: IntMatrix, symbol: str, x: str, dst: str, start: int = 0,
               stop: int | None = None) -> str:
        """Calls computing ``dst[0:stop-start] = matvec(m[start:stop], x)``: one per run of
        consecutive rows of the same kind (non-saturating where :func:`_row_fits`)."""
        info = self.matrix(m, symbol)
        stop = m.shape[0] if stop is None else stop
        fits = _row_fits(m.values)[start:stop]
        runs: list[tuple[int, int, bool]] = []
        for i, ok in enumerate(fits, start):
            if runs and runs[-1][2] == bool(ok):
                runs[-1] = (runs[-1][0], i + 1, bool(ok))
            else:
                runs.append((i, i + 1, bool(ok)))
        if len(runs) > _MAX_RUNS or _SATURATE_ALL:
            runs = [(start, stop, False)]
        calls = []
        for a, b, ok in runs:
            if ok:  # the generator's own check of the bound proven in _row_fits
                bound = int(np.abs(m.values[a:b].astype(np.int64)).sum(axis=1).max())
                if bound * _X_ABS_MAX > INT32_MAX:  # never: _row_fits proved it; refuse to emit
                    raise RuntimeError(f"internal error: rows {a}..{b} of {m.name} could "
                                       f"overflow int32 (bound {bound}); please report it")
                self.rows_fast += b - a
            else:
                self.rows_sat += b - a
            fn = self.kernel(m, "nosat" if ok else "sat")
            out = f"{dst} + {a - start}" if a != start else dst
            if info[0] == "dense":
                _, _, arr, cols = info
                base = f"{arr} + {a * cols}" if a else arr
                calls.append(f"{fn}({base}, {b - a}, {cols}, {x}, {out});")
            else:
                _, _, val, col, ptr = info
                base = f"{ptr} + {a}" if a else ptr
                calls.append(f"{fn}({val}, {col}, {base}, {b - a}, {x}, {out});")
        return " ".join(calls)


def _shift(expr: str, s: int) -> str:
    if s == 0:
        return expr
    if s >= 32:  # |v| < 2^31 <= 2^(s-1): rounds to 0
        return "0"
    if s > 0:
        return f"re_rshift({expr}, {s})"
    if -s > 30:
        raise ValueError(f"Left shift by {-s} bits is beyond the runtime's range (30).")
    return f"re_lshift_sat({expr}, {-s})"


def _linear(em: _Emitter, lin: IntLinear, symbol: str, x: str, x_frac: int, y_frac: int,
            dst: str, tmp: str, rows: tuple[int, int] | None = None) -> list[str]:
    """Lines computing ``dst[k] = linear(lin, x)[start + k]`` (int32) for the output ``rows``
    ``(start, stop)`` (all by default); ``tmp`` is an int32 scratch prefix."""
    start, stop = rows if rows is not None else (0, lin.matrices()[-1].shape[0])
    n = stop - start
    if lin.v is None:
        scaled = _shift(f"{dst}[i]", lin.u.frac + x_frac - y_frac)
        return [em.matvec(lin.u, symbol, x, dst, start, stop),
                f"for (i = 0; i < {n}; ++i) {dst}[i] = {scaled};"]
    s1 = lin.u.frac + x_frac - lin.mid_frac
    s2 = lin.v.frac + lin.mid_frac - y_frac
    return [em.matvec(lin.u, f"{symbol}_u", x, f"{tmp}_acc"),
            f"for (i = 0; i < {lin.u.shape[0]}; ++i) "
            f"{tmp}_mid[i] = re_sat16({_shift(f'{tmp}_acc[i]', s1)});",
            em.matvec(lin.v, f"{symbol}_v", f"{tmp}_mid", dst, start, stop),
            f"for (i = 0; i < {n}; ++i) {dst}[i] = {_shift(f'{dst}[i]', s2)};"]


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
    return v


def _scratch(lin: IntLinear, tmp: str) -> list[str]:
    if lin.v is None:
        return []
    return [f"int32_t {tmp}_acc[{lin.mid_size}];", f"int16_t {tmp}_mid[{lin.mid_size}];"]


def _layer_step(em: _Emitter, layer: IntRecurrent, n: int, x: str, q: int) -> list[str]:
    """The block of ``<id>_step`` updating layer ``n``'s state from input ``x``."""
    h, cs, sym, H = f"state->h{n}", f"state->c{n}", f"l{n}", layer.units
    one = _i32(1 << q)
    sig, phi = layer.recurrent_activation, layer.activation
    width = {"lstm": 4, "gru": 3}.get(layer.kind, 1) * H
    u_width = 2 * H if layer.kind == "gru" and not layer.reset_after else width
    body = [f"/* layer {comment_text(layer.name)}: {layer.kind}"
            f"{' (reset_after)' if layer.reset_after else ''}, {layer.input_dim} -> {H} */", "{",
            f"    int32_t a[{width}];", f"    int32_t u[{u_width}];"]
    if u_width != width:
        body.append(f"    int16_t rh[{H}];")
    body += ["    " + s for s in _scratch(layer.kernel, "w") + _scratch(layer.recurrent, "r")]
    bias = {name: em.array("int32_t", f"{sym}_{name}", values)
            for name, values in layer.biases.items()}

    def b(name: str, index: str = "i") -> str:
        return f"RE_RD_I32(&{bias[name]}[{index}])"

    lines = _linear(em, layer.kernel, f"{sym}_kernel", x, layer.in_frac, q, "a", "w")
    sf = layer.out_frac(q)
    if layer.kind == "gru":
        z_pre, r_pre = "re_sat_add32(a[i], u[i])", f"re_sat_add32(a[{H} + i], u[{H} + i])"
        if layer.reset_after:
            lines += _linear(em, layer.recurrent, f"{sym}_recurrent", h, q, q, "u", "r")
            lines.append(f"for (i = 0; i < {width}; ++i) {{ a[i] = re_sat_add32(a[i], "
                         f"{b('input_bias')}); u[i] = re_sat_add32(u[i], "
                         f"{b('recurrent_bias')}); }}")
            c_pre = f"re_sat_add32(a[{2 * H} + i], re_mul_rshift64(r, u[{2 * H} + i], {q}))"
            lines += [f"for (i = 0; i < {H}; ++i) {{",
                      f"    const int32_t z = {_act(sig, z_pre, one)};",
                      f"    const int32_t r = {_act(sig, r_pre, one)};",
                      f"    const int32_t c = {_act(phi, c_pre, one)};"]
        else:
            lines.append(f"for (i = 0; i < {width}; ++i) a[i] = re_sat_add32(a[i], {b('bias')});")
            lines += _linear(em, layer.recurrent, f"{sym}_recurrent", h, q, q, "u", "r",
                             rows=(0, 2 * H))
            lines += [f"for (i = 0; i < {H}; ++i) {{",
                      f"    const int32_t r = {_act(sig, r_pre, one)};",
                      f"    a[i] = {_act(sig, z_pre, one)};",
                      f"    rh[i] = re_sat16(re_rshift(r * (int32_t){h}[i], {q}));", "}"]
            lines += _linear(em, layer.recurrent, f"{sym}_recurrent", "rh", q, q, "u", "r",
                             rows=(2 * H, 3 * H))
            c_pre = f"re_sat_add32(a[{2 * H} + i], u[i])"
            lines += [f"for (i = 0; i < {H}; ++i) {{",
                      "    const int32_t z = a[i];",
                      f"    const int32_t c = {_act(phi, c_pre, one)};"]
        lines += [f"    {h}[i] = re_sat16(re_sat_add32(re_rshift(z * (int32_t){h}[i], {q}), "
                  f"re_rshift(({one} - z) * c, {q})));", "}"]
        return body + ["    " + s for s in lines] + ["}"]

    lines += _linear(em, layer.recurrent, f"{sym}_recurrent", h, sf, q, "u", "r")
    lines.append(f"for (i = 0; i < {width}; ++i) a[i] = re_sat_add32(a[i], u[i]);")
    if layer.kind == "fastgrnn":
        zeta, nu = _i32(layer.scalars["zeta"]), _i32(layer.scalars["nu"])
        gate = _act(sig, f"re_sat_add32(a[i], {b('gate_bias')})", one)
        cand = _act(phi, f"re_sat_add32(a[i], {b('update_bias')})", one)
        lines += [
            f"for (i = 0; i < {H}; ++i) {{",
            f"    const int32_t z = {gate};",
            f"    const int32_t c = {cand};",
            f"    const int32_t k = re_rshift({zeta} * ({one} - z), {q});",
            f"    const int32_t t = re_sat_add32(re_rshift(k * c, {q}), re_rshift({nu} * c, {q}));",
            f"    {h}[i] = re_sat16(re_sat_add32(t, re_rshift(z * (int32_t){h}[i], {q})));",
            "}"]
    elif layer.kind == "fastrnn":
        alpha, beta = _i32(layer.scalars["alpha"]), _i32(layer.scalars["beta"])
        cand = _act(phi, f"re_sat_add32(a[i], {b('bias')})", one)
        lines += [
            f"for (i = 0; i < {H}; ++i) {{",
            f"    const int32_t c = {cand};",
            f"    {h}[i] = re_sat16(re_sat_add32(re_rshift({alpha} * c, {q}), "
            f"re_rshift({beta} * (int32_t){h}[i], {q})));",
            "}"]
    elif layer.kind == "simplernn":
        value = _act(phi, f"re_sat_add32(a[i], {b('bias')})", one)
        lines.append(f"for (i = 0; i < {H}; ++i) {h}[i] = re_sat16({_shift(value, q - sf)});")
    else:  # lstm
        cf = layer.cell_frac
        lines.append(f"for (i = 0; i < {width}; ++i) a[i] = re_sat_add32(a[i], {b('bias')});")
        tanh_c = _shift(_act(phi, "c", _i32(1 << cf)), cf - q)
        lines += [
            f"for (i = 0; i < {H}; ++i) {{",
            f"    const int32_t ig = {_act(sig, 'a[i]', one)};",
            f"    const int32_t fg = {_act(sig, f'a[{H} + i]', one)};",
            f"    const int32_t g = {_act(phi, f'a[{2 * H} + i]', one)};",
            f"    const int32_t og = {_act(sig, f'a[{3 * H} + i]', one)};",
            f"    const int32_t c = re_sat16(re_sat_add32(re_rshift(fg * (int32_t){cs}[i], {q}), "
            f"re_rshift(ig * g, {2 * q - cf})));",
            f"    {cs}[i] = (int16_t)c;",
            f"    {h}[i] = re_sat16(re_rshift(og * {tanh_c}, {q}));",
            "}"]
    return body + ["    " + s for s in lines] + ["}"]


def generate_c(int_model: IntModel, name: str, *, progmem: bool = False,
               float_build: bool = False) -> dict[str, str]:
    """C99 source of ``int_model``: ``{"<id>.h": header, "<id>.c": source}``.

    Args:
        int_model: from :func:`~keras_rnnedge.converters.intmodel.quantize_model`.
        name: the model name; :func:`~keras_rnnedge.converters.carray.c_identifier` makes the
            ``<id>`` of files and symbols.
        progmem: put constant data in AVR flash (``PROGMEM`` + ``pgm_read_*``).
        float_build: a float variant for FPU boards (not implemented yet).

    Raises:
        TypeError: ``int_model`` is not an ``IntModel``.
        NotImplementedError: ``float_build=True``.
    """
    if not isinstance(int_model, IntModel):
        raise TypeError(f"Expected int_model to be an IntModel, but got "
                        f"{type(int_model).__name__}.")
    if float_build:
        raise NotImplementedError("float_build=True is not implemented yet; use the integer "
                                  "build (float_build=False).")
    ident = c_identifier(name)
    up = ident.upper()
    q = int_model.frac_bits
    em = _Emitter(progmem)
    feats, outs = int_model.features, int_model.num_outputs

    step: list[str] = []
    x = "x_q"
    for n, layer in enumerate(int_model.recurrent):
        step += _layer_step(em, layer, n, x, q)
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
        block.append(f"    int32_t acc[{rows}];")
        block += ["    " + s for s in _scratch(layer.kernel, "m")]
        lines = _linear(em, layer.kernel, f"{sym}_kernel", x, layer.in_frac, layer.out_frac,
                        "acc", "m")
        em.array("int32_t", f"{sym}_bias", layer.bias)
        value = _act(layer.activation, f"re_sat_add32(acc[i], RE_RD_I32(&{sym}_bias[i]))",
                     _i32(1 << layer.out_frac))
        if layer.last:
            lines.append(f"for (i = 0; i < {rows}; ++i) scores[i] = {value};")
        else:
            lines.append(f"for (i = 0; i < {rows}; ++i) {dst}_out[i] = re_sat16({value});")
            x = f"{dst}_out"
        predict += block + ["    " + s for s in lines] + ["}"]

    kernels = list(em.kernels.values())

    banner = (f"/* {comment_text(int_model.name)}: integer inference (int{int_model.weight_bits} "
              f"weights, Q{q} state), {int_model.weight_bytes()} bytes of weights.\n"
              " * Generated by keras_rnnedge.converters.cgen. Do not edit. */\n")
    fields = []
    for n, layer in enumerate(int_model.recurrent):
        fields.append(f"    int16_t h{n}[{layer.units}]; /* Q{layer.out_frac(q)} */")
        if layer.kind == "lstm":
            fields.append(f"    int16_t c{n}[{layer.units}]; /* LSTM cell state, "
                          f"Q{layer.cell_frac} */")
    state = "\n".join(fields)
    guard = f"{up}_H_"
    header = (
        f"{banner}\n#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        f"#define {up}_NUM_FEATURES {feats}\n#define {up}_NUM_OUTPUTS {outs}\n"
        f"#define {up}_FRAC_BITS {q}\n\n"
        "/* Recurrent state (int16), one vector h per recurrent layer (and c per LSTM). */\n"
        f"typedef struct {{\n{state}\n}} {ident}_state_t;\n\n"
        f"void {ident}_reset({ident}_state_t *state);\n"
        f"/* One time step; x_q[i] = sat16(round((x[i] - offset[i]) * scale[i])). */\n"
        f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]);\n"
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

    source = (
        f"{banner}\n#include \"{ident}.h\"\n\n"
        + (_READS_PROGMEM if progmem else _READS_PLAIN) + _runtime(progmem) + "".join(kernels)
        + "\n"
        + "\n".join(em.arrays) + "\n"
        f"void {ident}_reset({ident}_state_t *state) {{\n    uint16_t i;\n"
        + "".join(f"    for (i = 0; i < {layer.units}; ++i) state->h{n}[i] = 0;\n"
                  + (f"    for (i = 0; i < {layer.units}; ++i) state->c{n}[i] = 0;\n"
                     if layer.kind == "lstm" else "")
                  for n, layer in enumerate(int_model.recurrent))
        + "}\n\n"
        f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]) {{\n"
        "    uint16_t i;\n" + "".join(f"    {s}\n" for s in step) + "}\n\n"
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
    return {f"{ident}.h": header, f"{ident}.c": source}
