"""The float build of the standalone C: the same API as :mod:`~keras_rnnedge.converters.c.cgen`,
in ``float`` arithmetic, for boards with an FPU (Cortex-M4F/M7, ESP32).

:func:`generate_float_c` reads the trained Keras model (no quantization: the weights are the
float32 values the model holds) and emits ``<id>.h``/``<id>.c``, C99 with ``<math.h>`` (``expf``,
``tanhf``) and no ``malloc``::

    typedef struct { float h0[H0]; [float c0[H0];] ... } <id>_state_t;
    void <id>_reset(<id>_state_t *state);
    void <id>_step(<id>_state_t *state, const float x[<ID>_NUM_FEATURES]);   // raw inputs
    void <id>_predict(const <id>_state_t *state, float scores[<ID>_NUM_OUTPUTS]);

Scores are the head's pre-softmax outputs (the argmax is the class). The structure is that of the
integer build: low-rank factors stay factored, a matrix is stored as CSR (``float`` values,
``uint8``/``uint16`` column indices, ``uint16`` row pointers) when that is smaller than dense,
``PROGMEM`` on AVR. The activations are the exact ones (``tanhf``, ``1 / (1 + expf(-x))``,
Keras' ``hard_sigmoid``, ...), so the oracle is the Keras model itself: the outputs agree to
float32 rounding (the order of the sums differs from TensorFlow's). A leading ``Normalization``
layer becomes per-feature offset and scale constants applied to the raw ``x`` at the start of
``<id>_step``, so ``x`` is the raw input the Keras model takes either way.
"""

from __future__ import annotations

import numpy as np

from keras_rnnedge._compat import keras
from keras_rnnedge.cells.step import ACTIVATION_TABLE, Node, step_of
from keras_rnnedge.converters.c import runtime_text as _runtime_text
from keras_rnnedge.converters.c.cgen import _fit_runtime
from keras_rnnedge.converters.c.intmodel import (
    _LAYER_TYPES,
    _act,
    _act_name,
    _dense_weights,
    _float_stages,
    _unsupported,
    _weights,
    head_layers,
)
from keras_rnnedge.converters.c.schedule import schedule
from keras_rnnedge.converters.carray import c_identifier, comment_text
from keras_rnnedge.converters.lowering import plan_model, strip_wrappers
from keras_rnnedge.summary import csr_bytes

__all__ = ["generate_float_c"]

_RUNTIME = _runtime_text("rnnedge_float.h")

_CSR = _runtime_text("rnnedge_float_csr.h")

_ACT = {name: a.c_float for name, a in ACTIVATION_TABLE.items()}


def _f(v) -> str:
    text = repr(float(np.float32(v)))
    if "inf" in text or "nan" in text:
        raise ValueError(f"Expected finite weights, but got {text}.")
    return f"{text}f"


class _Emitter:
    def __init__(self):
        self.arrays: list[str] = []
        self.symbols: set[str] = set()
        self.csr_kernels: dict[int, str] = {}

    def array(self, ctype: str, symbol: str, values, fmt=str) -> str:
        self.symbols.add(symbol)
        values = list(np.asarray(values).ravel()) or [0]
        lines = [", ".join(fmt(v) for v in values[i:i + 8]) for i in range(0, len(values), 8)]
        body = ",\n    ".join(lines)
        self.arrays.append(f"static const {ctype} {symbol}[{len(values)}] PROGMEM = {{\n"
                           f"    {body}\n}};\n")
        return symbol

    def matvec(self, w: np.ndarray, name: str, symbol: str, x: str, dst: str,
               rows: tuple[int, int] | None = None) -> str:
        """``dst[k] = (x @ w)[start + k]``; ``w`` is ``(inputs, outputs)`` as Keras holds it."""
        if not np.all(np.isfinite(w)):
            raise ValueError(f"Weight {name!r} has NaN or Inf values; retrain or restore a good "
                             "checkpoint.")
        m = np.asarray(w, np.float32).T  # (outputs, inputs)
        start, stop = rows if rows is not None else (0, m.shape[0])
        nnz = int(np.count_nonzero(m))
        c = 8 if m.shape[1] <= 256 else 16
        sparse = csr_bytes(tuple(np.shape(w)), nnz, 4)  # the summary's rule, at float32
        if sparse is not None and sparse < 4 * m.size:
            if symbol + "_val" not in self.symbols:
                r, cols = np.nonzero(m)
                ptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=m.shape[0]))])
                self.arrays.append(f"/* {comment_text(name)}: {m.shape[0]}x{m.shape[1]} "
                                   f"(transposed), {nnz} non-zeros, CSR */\n")
                self.array("float", f"{symbol}_val", m[r, cols], _f)
                self.array(f"uint{c}_t", f"{symbol}_col", cols)
                self.array("uint16_t", f"{symbol}_ptr", ptr)
            self.csr_kernels.setdefault(c, _CSR.format(c=c))
            base = f"{symbol}_ptr + {start}" if start else f"{symbol}_ptr"
            return (f"rf_mv_csr_c{c}({symbol}_val, {symbol}_col, {base}, {stop - start}, {x}, "
                    f"{dst});")
        if symbol not in self.symbols:
            self.arrays.append(f"/* {comment_text(name)}: {m.shape[0]}x{m.shape[1]} "
                               "(transposed), dense */\n")
            self.array("float", symbol, m, _f)
        base = f"{symbol} + {start * m.shape[1]}" if start else symbol
        return f"rf_mv_dense({base}, {stop - start}, {m.shape[1]}, {x}, {dst});"


def _linear(em: _Emitter, w: dict, base: str, lname: str, sym: str, x: str, dst: str,
            rows=None, cell=None) -> tuple[list[str], list[str]]:
    """(scratch declarations, lines) computing ``dst = (x @ W)[rows]``: dense, low rank, or
    stage by stage for the other families (``cell.structures``)."""
    structure = getattr(cell, "structures", {}).get(base)
    if structure is not None and not (structure.is_dense or f"{base}_u" in w):
        return _stages(em, w, cell, base, lname, sym, x, dst, rows)
    if base in w:
        return [], [em.matvec(w[base], f"{lname}/{base}", f"{sym}_{base}", x, dst, rows)]
    u, v = w[f"{base}_u"], w[f"{base}_v"]
    mid = f"{sym}_{base}_mid"
    return [f"float {mid}[{u.shape[1]}];"], [
        em.matvec(u, f"{lname}/{base}_u", f"{sym}_{base}_u", x, mid),
        em.matvec(v, f"{lname}/{base}_v", f"{sym}_{base}_v", mid, dst, rows)]


def _stages(em: _Emitter, w: dict, cell, base: str, lname: str, sym: str, x: str, dst: str,
            rows) -> tuple[list[str], list[str]]:
    """The product as its family's stages (:class:`keras_rnnedge.matrices.base.Stage`): each
    stage's small matrix over the blocks of the previous vector, outputs interleaved."""
    stages, names = _float_stages(cell, w, base)
    decls, lines, src = [], [], x
    for k, (stage, name) in enumerate(zip(stages, names)):
        m, n = stage.matrix.shape
        last = k == len(stages) - 1
        out = f"{sym}_{base}_v{k}"
        decls.append(f"float {out}[{stage.blocks * n}];")
        tmp = f"{sym}_{base}_t{k}"
        decls.append(f"float {tmp}[{n}];")
        call = em.matvec(stage.matrix, f"{lname}/{name}", f"{sym}_{name}", f"{src} + b * {m}u",
                         tmp)
        at = (f"j * {stage.blocks}u + b" if stage.inner == 1 else
              f"(j / {stage.inner}u) * {stage.blocks * stage.inner}u + b * {stage.inner}u "
              f"+ j % {stage.inner}u")
        lines.append(f"{{ uint16_t b, j; for (b = 0; b < {stage.blocks}u; ++b) {{ {call} "
                     f"for (j = 0; j < {n}u; ++j) {out}[{at}] = {tmp}[j]; }} }}")
        src = out
        if last:
            start, stop = rows if rows is not None else (0, stage.blocks * n)
            lines.append(f"{{ uint16_t j; for (j = 0; j < {stop - start}u; ++j) "
                         f"{dst}[j] = {src}[{start}u + j]; }}")
    return decls, lines


def _names(graph, sched) -> dict[int, str]:
    """A C name for every used element-wise node (its declared name where unique)."""
    names, taken = {}, set()
    for node in graph.nodes:
        if node.index in sched.used and node.op not in ("input", "state", "bias", "scalar",
                                                          "one", "product"):
            name = node.name if node.name and node.name not in taken else f"t{node.index}"
            taken.add(name)
            names[node.index] = name
    return names


def layer_float_step(em: _Emitter, layer, n: int, x: str) -> tuple[list[str], list[str]]:
    """``(lines of <id>_step, state struct fields)`` of recurrent layer ``n`` reading ``x``:
    its declared step (:mod:`keras_rnnedge.cells.step`) in float."""
    cell = layer.cell
    declared = step_of(cell)
    graph = declared.graph(cell)
    w = _weights(cell)
    acts = {role: _act(layer, _act_name(getattr(cell, role)), allowed, role)
            for role, allowed in declared.activations.items()}
    biases = {k: em.array("float", f"l{n}_{k}", v, _f)
              for k, (v, _) in declared.biases(cell, w).items()}
    scalars = declared.scalars(cell, w)
    sched = schedule(graph)
    names = _names(graph, sched)
    sym = f"l{n}"
    decls, lines = [], []
    arrays: dict[tuple, tuple[str, int]] = {}  # (matrix, source) -> (array, first row)

    def vec(node: Node) -> str:  # a whole vector: the input, a state vector, a vector node
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
        if node.index in names and op != "vector":
            return (f"{names[node.index]}[i]" if node.index in sched.kept
                    else names[node.index])
        if op == "vector":
            return f"{names[node.index]}[i]"
        if op == "state":
            return f"state->{node.key}{n}[i]"
        if op == "product":
            array, first = arrays[(node.key, node.args[0].index)]
            off = (node.gate - first) * node.width
            return f"{array}[{off} + i]" if off else f"{array}[i]"
        if op == "bias":
            return f"RF_RD(&{biases[node.key]}[{node.gate * node.width} + i])" if node.gate else \
                f"RF_RD(&{biases[node.key]}[i])"
        if op == "scalar":
            return _f(scalars[node.key])
        if op == "one":
            return "1.0f"
        raise ValueError(f"Layer {layer.name!r}: {node!r} cannot be read per unit.")

    def value(node: Node) -> str:
        a = [expr(arg) for arg in node.args]
        if node.op == "add":
            return f"{a[0]} + {a[1]}"
        if node.op == "sub":
            return f"{a[0]} - ({a[1]})"
        if node.op == "mul":
            return f"({a[0]}) * ({a[1]})"
        if node.op == "act":
            return _ACT[acts[node.key]].format(a[0])
        return a[0]  # rescale, sat16, vector: the identity in float

    for index in sorted(sched.kept):
        decls.append(f"float {names[index]}[{graph.nodes[index].width}];")
    for node in graph.nodes:
        if node.op == "vector" and node.index in sched.used:
            decls.append(f"float {names[node.index]}[{node.width}];")
    for p in range(sched.phases):
        for k, (matrix, src) in enumerate(sched.sources[p]):
            gates = sorted({nd.gate for nd in graph.products() if nd.key == matrix
                            and nd.args[0] is src and nd.index in sched.used})
            dst = f"{sym}_{'w' if matrix == 'kernel' else 'u'}{p}{k}"
            gw = next(nd.width for nd in graph.products() if nd.key == matrix)
            rows = (gates[0] * gw, (gates[-1] + 1) * gw)
            decls.append(f"float {dst}[{rows[1] - rows[0]}];")
            whole = rows == (0, declared.matrices(cell)[matrix] * gw)
            d, code = _linear(em, w, matrix, layer.name, sym, vec(src), dst,
                              None if whole else rows, cell)
            decls += [s for s in d if s not in decls]  # a matrix's scratch, reused
            lines += code
            arrays[(matrix, src.index)] = (dst, gates[0])
        body, stores = [], []
        local.clear()
        for node in sched.nodes(graph, p):
            if node.op == "vector" or node.index in sched.kept:
                # declared here, stored after the loop body's declarations (C89 order)
                body.append(f"const float v{node.index} = {value(node)};")
                stores.append(f"{names[node.index]}[i] = v{node.index};")
                local[node.index] = f"v{node.index}"
            else:
                body.append(f"const float {names[node.index]} = {value(node)};")
        body += stores
        for vector in graph.state:
            if vector.name in sched.writes[p]:
                out = graph.outputs[vector.name]
                body.append(f"state->{vector.name}{n}[i] = {expr(out)};")
        lines += [f"for (i = 0; i < {sched.widths[p]}; ++i) {{", *("    " + s for s in body),
                  "}"]
    fields = [f"    float {v.name}{n}[{v.size}];" + (f" /* {v.doc} */" if v.doc else "")
              for v in graph.state]
    block = ["{", *("    " + d for d in decls), *("    " + s for s in lines), "}"]
    return block, fields


def generate_float_c(model: keras.Model, name: str) -> dict[str, str]:
    """Float C99 of a trained model: ``{"<id>.h": header, "<id>.c": source}``.

    Args:
        model: the layers :func:`~keras_rnnedge.converters.c.intmodel.quantize_model` accepts
            (an optional leading ``Normalization``, recurrent layers, then
            ``Dense``/``Activation``/``Dropout``); wrappers stripped. A ``Normalization`` is
            emitted as per-feature ``in_offset``/``in_scale`` constants applied to the raw
            ``x`` at the start of ``<id>_step`` (``(x - offset) * scale`` into a local buffer
            that the first layer reads).
        name: the model name (``<id>`` is its C identifier).

    Raises:
        ValueError: an unsupported layer, cell or activation (named), NaN/Inf weights.
    """
    model = strip_wrappers(model)
    plan = plan_model(model)
    ident, up = c_identifier(name), c_identifier(name).upper()
    em = _Emitter()
    step, fields, x = [], [], "x"
    std = plan.standardization
    if std is not None:  # a leading Normalization: standardise the raw x into a local buffer
        offset = em.array("float", "in_offset", std.offset, _f)
        scale = em.array("float", "in_scale", std.scale, _f)
        step += [f"float xs[{plan.features}]; /* (x - mean) / max(sqrt(variance), eps) */",
                 f"for (i = 0; i < {plan.features}; ++i) "
                 f"xs[i] = (x[i] - RF_RD(&{offset}[i])) * RF_RD(&{scale}[i]);"]
        x = "xs"
    for n, layer in enumerate(plan.recurrent):
        if not isinstance(layer, _LAYER_TYPES) or step_of(getattr(layer, "cell", None)) is None:
            raise _unsupported(layer, "no C implementation for this layer")
        block, layer_fields = layer_float_step(em, layer, n, x)
        step += [f"/* layer {comment_text(layer.name)} */", *block]
        fields += layer_fields
        x = f"state->h{n}"
    dense = head_layers(plan)
    predict = []
    last_cell = plan.recurrent[-1].cell
    outputs = step_of(last_cell).state(last_cell)[0].size if not dense else None
    if not dense:
        predict.append(f"for (i = 0; i < {outputs}; ++i) scores[i] = {x}[i];")
    for n, (layer, act) in enumerate(dense):
        kernel, bias = _dense_weights(layer)
        last = n == len(dense) - 1
        dst = "scores" if last else f"y{n}"
        bsym = em.array("float", f"d{n}_bias", bias, _f)
        if not last:
            predict.insert(0, f"float {dst}[{kernel.shape[1]}];")
        predict += [em.matvec(kernel, f"{layer.name}/kernel", f"d{n}_kernel", x, dst),
                    f"for (i = 0; i < {kernel.shape[1]}; ++i) {dst}[i] = "
                    f"{_ACT[act].format(f'{dst}[i] + RF_RD(&{bsym}[i])')};"]
        x, outputs = dst, kernel.shape[1]
    banner = (f"/* {comment_text(plan.name)}: float inference (float32 weights and state).\n"
              " * Generated by keras_rnnedge.converters.c.cgen_float. Do not edit. */\n")
    state = "\n".join(fields)
    header = (
        f"{banner}\n#ifndef {up}_H_\n#define {up}_H_\n\n#include <stdint.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        f"#define {up}_NUM_FEATURES {plan.features}\n#define {up}_NUM_OUTPUTS {outputs}\n"
        f"#define {up}_FLOAT 1\n\n"
        f"typedef struct {{\n{state}\n}} {ident}_state_t;\n\n"
        f"void {ident}_reset({ident}_state_t *state);\n"
        f"/* One time step on the raw inputs (the Keras model's). */\n"
        f"void {ident}_step({ident}_state_t *state, const float x[{up}_NUM_FEATURES]);\n"
        "/* The head's pre-softmax outputs. */\n"
        f"void {ident}_predict(const {ident}_state_t *state, float scores[{up}_NUM_OUTPUTS]);\n"
        "\n#ifdef __cplusplus\n}\n#endif\n\n"
        f"#endif /* {up}_H_ */\n")
    resets = "".join(
        f"    for (i = 0; i < {v.size}; ++i) state->{v.name}{n}[i] = 0.0f;\n"
        for n, layer in enumerate(plan.recurrent) for v in step_of(layer.cell).state(layer.cell))
    body = (
        "".join(em.csr_kernels[c] for c in sorted(em.csr_kernels)) + "\n"
        + "\n".join(em.arrays) + "\n"
        f"void {ident}_reset({ident}_state_t *state) {{\n    uint16_t i;\n{resets}}}\n\n"
        f"void {ident}_step({ident}_state_t *state, const float x[{up}_NUM_FEATURES]) {{\n"
        "    uint16_t i;\n" + "".join(f"    {s}\n" for s in step) + "}\n\n"
        f"void {ident}_predict(const {ident}_state_t *state, float scores[{up}_NUM_OUTPUTS]) "
        "{\n    uint16_t i;\n" + "".join(f"    {s}\n" for s in predict) + "}\n")
    source = (f"{banner}\n#include <math.h>\n#include \"{ident}.h\"\n"
              + _fit_runtime(_RUNTIME, body, "RF_UNUSED") + body)
    return {f"{ident}.h": header, f"{ident}.c": source}
