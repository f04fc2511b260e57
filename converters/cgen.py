"""Standalone C99 for an :class:`~keras_rnnedge.converters.intmodel.IntModel`.

:func:`generate_c` emits ``<id>.h`` and ``<id>.c``: dependency-free C99 (``<stdint.h>`` only),
no ``malloc``, and no floating point unless ``RNNEDGE_WITH_FLOAT_INPUT`` is defined (which adds
``<id>_quantize_input`` and the input scale constants). The arithmetic is that of the module
docstring of :mod:`~keras_rnnedge.converters.intmodel`, whose NumPy oracle it matches bit for
bit. Weights are ``const``; with ``progmem=True`` they carry ``PROGMEM`` and are read with
``pgm_read_byte``/``pgm_read_word``/``pgm_read_dword`` on AVR, and with plain reads elsewhere, so
the same source compiles on the host.

API (``<id>`` is ``c_identifier(name)``)::

    typedef struct { int16_t h0[H0]; ... } <id>_state_t;      // caller-provided state
    void <id>_reset(<id>_state_t *state);
    void <id>_step(<id>_state_t *state, const int16_t x_q[<ID>_NUM_FEATURES]);
    void <id>_predict(const <id>_state_t *state, int32_t scores[<ID>_NUM_OUTPUTS]);
    #ifdef RNNEDGE_WITH_FLOAT_INPUT
    void <id>_quantize_input(const float x[<ID>_NUM_FEATURES], int16_t x_q[<ID>_NUM_FEATURES]);
    #endif

Scores are ``int32`` in ``Q<ID>_FRAC_BITS`` (the head's pre-softmax outputs times ``2**Q``).

Arithmetic right shifts of negative values are assumed (gcc, clang, avr-gcc, arm-none-eabi-gcc).
The float build (``float_build=True``) is not implemented in this version.
"""

from __future__ import annotations

import numpy as np

from keras_rnnedge.converters.carray import c_identifier, comment_text
from keras_rnnedge.converters.intmodel import INT32_MIN, IntLinear, IntMatrix, IntModel

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
static inline int32_t re_tanh(int32_t v, int32_t one) { return re_clip32(v, -one, one); }
static inline int32_t re_qsigmoid(int32_t v, int32_t one) {
    return re_rshift(re_clip32(v, -one, one) + one, 1);
}
static inline int32_t re_sigmoid(int32_t v, int32_t one) {
    return re_clip32(re_rshift(re_clip32(v, -4 * one, 4 * one), 2) + one / 2, 0, one);
}
static inline int32_t re_relu(int32_t v) { return v > 0 ? v : 0; }
"""

_MV_DENSE = """
static inline void re_mv_dense_{t}(const {ct} *w, uint16_t rows, uint16_t cols,
                                   const int16_t *x, int32_t *y) {{
    uint16_t i, j;
    for (i = 0; i < rows; ++i) {{
        const {ct} *r = w + (uint32_t)i * cols;
        int32_t acc = 0;
        for (j = 0; j < cols; ++j)
            acc = re_sat_add32(acc, (int32_t)RE_RD_{T}(r + j) * (int32_t)x[j]);
        y[i] = acc;
    }}
}}
"""

_MV_CSR = """
static inline void re_mv_csr_{t}_c{c}(const {ct} *val, const uint{c}_t *col, const uint16_t *ptr,
                                     uint16_t rows, const int16_t *x, int32_t *y) {{
    uint16_t i, k;
    for (i = 0; i < rows; ++i) {{
        const uint16_t end = RE_RD_U16(ptr + i + 1);
        int32_t acc = 0;
        for (k = RE_RD_U16(ptr + i); k < end; ++k)
            acc = re_sat_add32(acc, (int32_t)RE_RD_{T}(val + k) * (int32_t)x[RE_RD_U{c}(col + k)]);
        y[i] = acc;
    }}
}}
"""

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

    def array(self, ctype: str, symbol: str, values, per_line: int = 16) -> str:
        values = [int(v) for v in np.asarray(values).ravel()] or [0]  # C99: no empty arrays
        fmt = _i32 if ctype == "int32_t" else str
        lines = [", ".join(fmt(v) for v in values[i:i + per_line])
                 for i in range(0, len(values), per_line)]
        body = ",\n    ".join(lines)
        self.arrays.append(f"static const {ctype} {symbol}[{len(values)}]{self.attr} = {{\n"
                           f"    {body}\n}};\n")
        return symbol

    def matrix(self, m: IntMatrix, symbol: str) -> tuple[str, list[str]]:
        """Declares the arrays of ``m``; returns the matvec function and its leading arguments."""
        t = f"i{m.bits}"
        ct = f"int{m.bits}_t"
        rows, cols = m.shape
        self.arrays.append(f"/* {comment_text(m.name)}: {rows}x{cols} (transposed), "
                           f"{m.nnz} non-zeros, scale 2^-{m.frac}, "
                           f"{'CSR' if m.sparse else 'dense'} {m.nbytes} bytes */\n")
        if not m.sparse:
            return f"re_mv_dense_{t}", [self.array(ct, symbol, m.values), str(rows), str(cols)]
        vals, cols_idx, ptr = m.csr()
        c = m.col_bits
        return f"re_mv_csr_{t}_c{c}", [self.array(ct, f"{symbol}_val", vals),
                                       self.array(f"uint{c}_t", f"{symbol}_col", cols_idx),
                                       self.array("uint16_t", f"{symbol}_ptr", ptr), str(rows)]


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
            dst: str, tmp: str) -> list[str]:
    """Lines computing ``dst[i] = linear(lin, x)`` (int32); ``tmp`` is an int32 scratch prefix."""
    fn, args = em.matrix(lin.u, symbol if lin.v is None else f"{symbol}_u")
    rows = lin.u.shape[0]
    if lin.v is None:
        scaled = _shift(f"{dst}[i]", lin.u.frac + x_frac - y_frac)
        return [f"{fn}({', '.join(args)}, {x}, {dst});",
                f"for (i = 0; i < {rows}; ++i) {dst}[i] = {scaled};"]
    fn_v, args_v = em.matrix(lin.v, f"{symbol}_v")
    s1 = lin.u.frac + x_frac - lin.mid_frac
    s2 = lin.v.frac + lin.mid_frac - y_frac
    return [f"{fn}({', '.join(args)}, {x}, {tmp}_acc);",
            f"for (i = 0; i < {rows}; ++i) {tmp}_mid[i] = re_sat16({_shift(f'{tmp}_acc[i]', s1)});",
            f"{fn_v}({', '.join(args_v)}, {tmp}_mid, {dst});",
            f"for (i = 0; i < {lin.v.shape[0]}; ++i) {dst}[i] = {_shift(f'{dst}[i]', s2)};"]


def _act(name: str, v: str, one: str) -> str:
    if name in ("tanh", "quantized_tanh"):
        return f"re_tanh({v}, {one})"
    if name == "quantized_sigmoid":
        return f"re_qsigmoid({v}, {one})"
    if name == "sigmoid":
        return f"re_sigmoid({v}, {one})"
    if name == "relu":
        return f"re_relu({v})"
    return v


def _scratch(lin: IntLinear, tmp: str) -> list[str]:
    if lin.v is None:
        return []
    return [f"int32_t {tmp}_acc[{lin.mid_size}];", f"int16_t {tmp}_mid[{lin.mid_size}];"]


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
    one = _i32(1 << q)
    em = _Emitter(progmem)
    feats, outs = int_model.features, int_model.num_outputs

    step: list[str] = []
    x = "x_q"
    for n, layer in enumerate(int_model.recurrent):
        h = f"state->h{n}"
        sym = f"l{n}"
        body = [f"/* layer {comment_text(layer.name)}: {layer.kind}, {layer.input_dim} -> "
                f"{layer.units} */", "{",
                f"    int32_t a[{layer.units}];", f"    int32_t u[{layer.units}];"]
        body += ["    " + s for s in _scratch(layer.kernel, "w") + _scratch(layer.recurrent, "r")]
        lines = _linear(em, layer.kernel, f"{sym}_kernel", x, layer.in_frac, q, "a", "w")
        lines += _linear(em, layer.recurrent, f"{sym}_recurrent", h, q, q, "u", "r")
        lines.append(f"for (i = 0; i < {layer.units}; ++i) a[i] = re_sat_add32(a[i], u[i]);")
        for bname, bias in layer.biases.items():
            em.array("int32_t", f"{sym}_{bname}", bias)
        if layer.kind == "fastgrnn":
            zeta, nu = _i32(layer.scalars["zeta"]), _i32(layer.scalars["nu"])
            gate = _act(layer.recurrent_activation,
                        f"re_sat_add32(a[i], RE_RD_I32(&{sym}_gate_bias[i]))", one)
            cand = _act(layer.activation,
                        f"re_sat_add32(a[i], RE_RD_I32(&{sym}_update_bias[i]))", one)
            lines += [
                f"for (i = 0; i < {layer.units}; ++i) {{",
                f"    const int32_t z = {gate};",
                f"    const int32_t c = {cand};",
                f"    const int32_t k = re_rshift({zeta} * ({one} - z), {q});",
                f"    const int32_t t = re_sat_add32(re_rshift(k * c, {q}), "
                f"re_rshift({nu} * c, {q}));",
                f"    {h}[i] = re_sat16(re_sat_add32(t, re_rshift(z * (int32_t){h}[i], {q})));",
                "}"]
        else:
            alpha, beta = _i32(layer.scalars["alpha"]), _i32(layer.scalars["beta"])
            cand = _act(layer.activation, f"re_sat_add32(a[i], RE_RD_I32(&{sym}_bias[i]))", one)
            lines += [
                f"for (i = 0; i < {layer.units}; ++i) {{",
                f"    const int32_t c = {cand};",
                f"    {h}[i] = re_sat16(re_sat_add32(re_rshift({alpha} * c, {q}), "
                f"re_rshift({beta} * (int32_t){h}[i], {q})));",
                "}"]
        step += body + ["    " + s for s in lines] + ["}"]
        x = h

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

    matrices = [m for layer in int_model.recurrent
                for m in layer.kernel.matrices() + layer.recurrent.matrices()]
    matrices += [m for layer in int_model.head for m in layer.kernel.matrices()]
    kinds = sorted({(m.bits, m.sparse, m.col_bits) for m in matrices})
    kernels = []
    for bits, sparse, col_bits in kinds:
        fmt = {"t": f"i{bits}", "T": f"I{bits}", "ct": f"int{bits}_t", "c": col_bits}
        kernels.append((_MV_CSR if sparse else _MV_DENSE).format(**fmt))
    kernels = list(dict.fromkeys(kernels))

    banner = (f"/* {comment_text(int_model.name)}: integer inference (int{int_model.weight_bits} "
              f"weights, Q{q} state), {int_model.weight_bytes()} bytes of weights.\n"
              " * Generated by keras_rnnedge.converters.cgen. Do not edit. */\n")
    state = "\n".join(f"    int16_t h{n}[{size}];" for n, size in enumerate(int_model.state_sizes))
    guard = f"{up}_H_"
    header = (
        f"{banner}\n#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        f"#define {up}_NUM_FEATURES {feats}\n#define {up}_NUM_OUTPUTS {outs}\n"
        f"#define {up}_FRAC_BITS {q}\n\n"
        f"/* Recurrent state (int16, Q{q}), one vector per recurrent layer. */\n"
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
        + (_READS_PROGMEM if progmem else _READS_PLAIN) + _RUNTIME + "".join(kernels) + "\n"
        + "\n".join(em.arrays) + "\n"
        f"void {ident}_reset({ident}_state_t *state) {{\n    uint16_t i;\n"
        + "".join(f"    for (i = 0; i < {size}; ++i) state->h{n}[i] = 0;\n"
                  for n, size in enumerate(int_model.state_sizes))
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
