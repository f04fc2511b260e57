"""Method 2 of flexible RNNs in integers: models of different cost that take over from one another.

A :class:`~keras_rnnedge.flexible.SwitchingCell` runs one of its cells per step (the level) and
maps the state at a switch. Its integer form is one ordinary
:class:`~keras_rnnedge.converters.c.intmodel.IntModel` per level (that level's cell and its block
of the head: :func:`level_models`, quantized by :func:`~.intmodel.quantize_model` on the data at
that level) plus one integer map per ordered pair of levels (:class:`IntMap`), so every cell
kind and matrix family the project converts works here unchanged. The C
(:func:`generate_switching_c`) is each level's generated C under its own prefix
(``<id>_m<k>``) and ``<id>.c`` with the same API as any model (``<id>_step``,
``<id>_step_level``, ``<id>_predict``...; :mod:`~.cgen`), whose state holds every level's state
and the level of the last step.

Integer map from level ``p`` to ``k`` (``s_k = s_p M + b`` in float): the state vectors of ``p``
(``int16`` in their formats ``f_i``) are rescaled to their common format ``F = min f_i``
(``rshift`` by ``f_i - F``) and concatenated into ``x``; each state vector ``j`` of ``k`` (format
``f_j``) is ``sat16(sat32(linear(M, x, F -> f_j)[rows of j] + b_j))`` (``b_j``: ``int32`` in
``f_j``); the matrix is quantized like any weight (its rows' L1 norm keeps the sums in ``int32``,
so the C adds without saturating); the state of ``p`` is then zeroed.
"""

from __future__ import annotations

import dataclasses

from keras_rnnedge._compat import keras, np
from keras_rnnedge.converters.c.intmodel import (
    IntLinear,
    IntModel,
    _bias,
    _matrix,
    quantize_model,
    sat16,
    sat32,
    shift,
)
from keras_rnnedge.converters.carray import c_identifier, comment_text
from keras_rnnedge.converters.lowering import ConversionError, _flatten, strip_wrappers
from keras_rnnedge.flexible import SwitchingCell, WithLevel

__all__ = ["IntMap", "SwitchingIntModel", "generate_switching_c", "level_models",
           "quantize_switching", "switching_layer"]


def switching_layer(model: keras.Model):
    """The recurrent layer of ``model`` whose cell is a :class:`SwitchingCell` (``None`` if
    there is none)."""
    if not isinstance(model, keras.Model):
        return None
    for layer in _flatten(model):
        if isinstance(getattr(layer, "cell", None), SwitchingCell):
            return layer
    return None


def level_models(model: keras.Model) -> list[keras.Model]:
    """One Keras model per level of a model with a :class:`SwitchingCell` layer: the same
    layers, with ``RNN(cells[k])`` in place of the switching layer and the first Dense layer
    after it cut to the rows that read ``cells[k]``'s block of the concatenated output (the
    weights are shared with ``model``, the cut Dense copied)."""
    model = strip_wrappers(model)
    layer = switching_layer(model)
    if layer is None:
        raise ConversionError(f"Model {model.name!r} has no SwitchingCell layer.")
    cell = layer.cell
    layers = [item for item in _flatten(model)
              if not isinstance(item, (keras.layers.InputLayer, WithLevel))]
    at = layers.index(layer)
    after = [item for item in layers[at + 1:] if not isinstance(item, keras.layers.Dropout)]
    if not after or not isinstance(after[0], keras.layers.Dense):
        raise ConversionError(
            f"Layer {layer.name!r} (SwitchingCell) must be followed by a Dense layer (each "
            "level's cell keeps its own block of its weights); add a Dense head.")
    if layer.return_sequences or at != len([item for item in layers[:at]
                                            if not isinstance(item, keras.layers.RNN)]):
        raise ConversionError(
            f"Layer {layer.name!r} (SwitchingCell) must be the model's only recurrent layer and "
            "return only its last output (return_sequences=False).")
    dense, rest = after[0], after[1:]
    kernel, *bias = dense.get_weights()
    out = []
    start = 0
    for k, sub in enumerate(cell.cells):
        width = int(sub.output_size)
        x = inputs = keras.Input(model.inputs[0].shape[1:], name="x")
        for item in layers[:at]:
            x = item(x)
        x = keras.layers.RNN(sub, name=f"{layer.name}_level{k}")(x)
        config = dense.get_config()
        config["name"] = f"{dense.name}_level{k}"
        cut = type(dense).from_config(config)
        x = cut(x)
        cut.set_weights([kernel[start:start + width], *bias])
        for item in rest:
            x = item(x)
        out.append(keras.Model(inputs, x, name=f"{model.name}_level{k}"))
        start += width
    return out


@dataclasses.dataclass
class IntMap:
    """The integer state map from level ``source`` to level ``target`` (module docstring).

    Attributes:
        source, target: the levels.
        source_fracs: format of each state vector of ``source``, with its size.
        target_fracs: the same for ``target``.
        frac: ``F``, the common format of the rescaled source state.
        linear: the map matrix (``int8``/``int16``, transposed: rows are target values).
        biases: per target vector, ``int32`` in its format.
    """

    source: int
    target: int
    source_fracs: tuple[tuple[int, int], ...]
    target_fracs: tuple[tuple[int, int], ...]
    frac: int
    linear: IntLinear
    biases: tuple[np.ndarray, ...]

    def apply(self, state) -> np.ndarray:
        """The target state (vectors concatenated) from the source state (batched rows)."""
        state = np.asarray(state, np.int64)
        parts, at = [], 0
        for size, frac in self.source_fracs:
            parts.append(shift(state[..., at:at + size], frac - self.frac))
            at += size
        x = np.concatenate(parts, axis=-1)
        out, at = [], 0
        for (size, frac), bias in zip(self.target_fracs, self.biases):
            y = self.linear.apply(x, self.frac, frac, rows=slice(at, at + size))
            out.append(sat16(sat32(y + bias)))
            at += size
        return np.concatenate(out, axis=-1)

    def weight_bytes(self) -> int:
        return self.linear.u.nbytes + 4 * sum(b.size for b in self.biases)


@dataclasses.dataclass
class SwitchingIntModel:
    """A :class:`SwitchingCell` model in integers: one :class:`IntModel` per level and the
    :class:`IntMap` of every ordered pair of levels; its methods are the oracle of
    :func:`generate_switching_c` (the same interface as :class:`IntModel` where it applies)."""

    name: str
    models: list[IntModel]
    maps: dict[tuple[int, int], IntMap]

    @property
    def num_levels(self) -> int:
        return len(self.models)

    def __getattr__(self, item):  # the shared fields: features, input_offset, frac_bits...
        if item in ("features", "num_outputs", "frac_bits", "weight_bits", "input_offset",
                    "input_scale", "input_estimators"):
            return getattr(self.models[0], item)
        raise AttributeError(item)

    @property
    def recurrent(self) -> list:
        """Every level's recurrent layer."""
        return [layer for m in self.models for layer in m.recurrent]

    @property
    def approximations(self) -> list[str]:
        seen: list[str] = []
        for m in self.models:
            seen += [a for a in m.approximations if a not in seen]
        return seen

    @property
    def state_elements(self) -> int:
        return sum(m.state_elements for m in self.models)

    def weight_bytes(self) -> int:
        return (sum(m.weight_bytes() for m in self.models)
                + sum(m.weight_bytes() for m in self.maps.values()))

    def quantize_input(self, x) -> np.ndarray:
        return self.models[0].quantize_input(x)

    def dequantize(self, scores) -> np.ndarray:
        return self.models[0].dequantize(scores)

    def run(self, x, batch_size: int = 1024, levels=None) -> np.ndarray:
        """Scores (``int64``, in ``Q``) of float sequences ``(T, F)`` or ``(N, T, F)`` at the
        given levels (``(T,)`` or ``(N, T)``; ``None``: the top level)."""
        x = np.asarray(x, np.float32)
        if x.ndim not in (2, 3) or x.shape[-1] != self.features:
            raise ValueError(f"Expected sequences of shape (T, {self.features}) or (N, T, "
                             f"{self.features}), but got {x.shape}.")
        single = x.ndim == 2
        batch = x[None] if single else x
        if levels is None:
            lv = np.full(batch.shape[:2], self.num_levels - 1, np.int64)
        else:
            lv = np.asarray(levels)
            if lv.shape not in ((batch.shape[1],), batch.shape[:2]) or (
                    lv.size and (lv.min() < 0 or lv.max() >= self.num_levels)):
                raise ValueError(f"Expected levels in [0, {self.num_levels - 1}] of shape "
                                 f"({batch.shape[1]},) or {batch.shape[:2]} (one per step), "
                                 f"but got {lv.shape} with values in "
                                 f"[{lv.min(initial=0)}, {lv.max(initial=0)}].")
            lv = np.broadcast_to(lv, batch.shape[:2]).astype(np.int64)
        out = []
        for start in range(0, len(batch), batch_size):
            out.append(self._run(batch[start:start + batch_size], lv[start:start + batch_size]))
        scores = np.concatenate(out) if out else np.zeros((0, self.num_outputs), np.int64)
        return scores[0] if single else scores

    def _run(self, x, levels) -> np.ndarray:
        x_q = self.quantize_input(x)
        n = len(x_q)
        states = [m.initial_state((n,))[0] for m in self.models]
        prev = np.full(n, -1)
        for t in range(x_q.shape[1]):
            level = levels[:, t]
            for (p, k), mapping in self.maps.items():
                rows = (prev == p) & (level == k)
                if rows.any():
                    states[k][rows] = mapping.apply(states[p][rows])
                    states[p][rows] = 0
            for k, m in enumerate(self.models):
                rows = level == k
                if rows.any():
                    states[k][rows] = m.step([states[k][rows]], x_q[rows, t])[0]
            prev = level
        scores = np.zeros((n, self.num_outputs), np.int64)
        last = np.where(prev < 0, self.num_levels - 1, prev)
        for k, m in enumerate(self.models):
            rows = last == k
            if rows.any():
                scores[rows] = m.predict([states[k][rows]])
        return scores


def quantize_switching(model: keras.Model, representative_data, *, weight_bits: int = 8,
                       frac_bits: int = 15, cell_frac_bits: int | None = None,
                       calibration_size: int | None = None,
                       calibration_seed: int = 0) -> SwitchingIntModel:
    """:func:`~.intmodel.quantize_model` of a model with a :class:`SwitchingCell`: each level's
    model (:func:`level_models`) calibrated on ``representative_data`` at that level, and the
    maps between levels (module docstring). The levels must share their input quantization
    (their cells' first input stages of one kind: dense/low-rank, or structured)."""
    options = dict(weight_bits=weight_bits, frac_bits=frac_bits, cell_frac_bits=cell_frac_bits,
                   calibration_size=calibration_size, calibration_seed=calibration_seed)
    stripped = strip_wrappers(model)
    cell = switching_layer(stripped).cell
    models = [quantize_model(sub, representative_data, **options)
              for sub in level_models(stripped)]
    for k, m in enumerate(models[1:], start=1):
        if not (np.array_equal(m.input_offset, models[0].input_offset)
                and np.array_equal(m.input_scale, models[0].input_scale)):
            raise ConversionError(
                f"The cells of levels 0 and {k} ({type(cell.cells[0]).__name__}, "
                f"{type(cell.cells[k]).__name__}) quantize the input differently (a dense or "
                "low-rank input matrix takes one scale per feature, a structured one a single "
                "scale): give every level's cell the same kind of input matrix.")
    maps = {}
    for (p, k), (matrix, bias) in cell.map_weights().items():
        src, dst = models[p].recurrent[0], models[k].recurrent[0]
        source = tuple((v.size, src.formats[v.name]) for v in src.state)
        target = tuple((v.size, dst.formats[v.name]) for v in dst.state)
        name = f"{stripped.name}/map_{p}_{k}"
        biases, at = [], 0
        for size, frac in target:
            biases.append(_bias(bias[at:at + size], frac, f"{name}_bias"))
            at += size
        maps[(p, k)] = IntMap(source=p, target=k, source_fracs=source, target_fracs=target,
                              frac=min(f for _, f in source),
                              linear=IntLinear(_matrix(matrix, weight_bits, name)),
                              biases=tuple(biases))
    return SwitchingIntModel(name=stripped.name, models=models, maps=maps)


def _reads(bits: int, progmem: bool) -> str:
    """The reads of the maps' weights (``int<bits>_t``) and biases (from flash on the AVR with
    ``progmem``)."""
    if not progmem:
        return "#define RS_RD_W(p) (*(p))\n#define RS_RD_I32(p) (*(p))\n"
    weight = ("#define RS_RD_W(p) ((int8_t)pgm_read_byte(p))" if bits == 8
              else "#define RS_RD_W(p) ((int16_t)pgm_read_word(p))")
    return ("#if defined(__AVR__)\n#include <avr/pgmspace.h>\n" + weight + "\n"
            "#define RS_RD_I32(p) ((int32_t)pgm_read_dword(p))\n#else\n#ifndef PROGMEM\n"
            "#define PROGMEM\n#endif\n#define RS_RD_W(p) (*(p))\n"
            "#define RS_RD_I32(p) (*(p))\n#endif\n")


def _c_shift(expr: str, s: int) -> str:
    """The oracle's ``shift`` in C (``s > 0``: rounding right shift; ``s < 0``: saturating
    left shift, in ``int64``)."""
    if s == 0:
        return expr
    if s > 0:
        return f"((({expr}) >> {s}) + ((({expr}) >> {s - 1}) & 1))"
    return f"rs_sat32((int64_t)({expr}) * {1 << -s})"


def generate_switching_c(sim: SwitchingIntModel, name: str, *, progmem: bool = False,
                         saturate_all: bool = False) -> dict[str, str]:
    """C99 of a :class:`SwitchingIntModel`: ``<id>_m<k>.h/.c`` per level
    (:func:`~.cgen.generate_c`) and ``<id>.h/.c``, the model's API over them."""
    from keras_rnnedge.converters.c.cgen import _i32, generate_c

    ident = c_identifier(name)
    up = ident.upper()
    files: dict[str, str] = {}
    for k, m in enumerate(sim.models):
        files.update(generate_c(m, f"{ident}_m{k}", progmem=progmem, saturate_all=saturate_all))
    top = sim.num_levels - 1
    subs = [f"{ident}_m{k}" for k in range(sim.num_levels)]
    header = "\n".join([
        f"/* {comment_text(sim.name)}: {sim.num_levels} models of different cost that take "
        "over from one another",
        f" * (flexible RNN, method 2), int{sim.weight_bits} weights, "
        f"{sim.weight_bytes()} bytes of weights.",
        " * Generated by keras_rnnedge.converters.c.switching. Do not edit. */",
        f"#ifndef {up}_H_", f"#define {up}_H_", "", "#include <stdint.h>",
        *(f'#include "{s}.h"' for s in subs), "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"#define {up}_NUM_FEATURES {sim.features}",
        f"#define {up}_NUM_OUTPUTS {sim.num_outputs}",
        f"#define {up}_FRAC_BITS {sim.frac_bits}",
        f"/* Level l runs model {ident}_m<l>; at a switch the state is mapped. */",
        f"#define {up}_NUM_LEVELS {sim.num_levels}", "",
        "typedef struct {",
        *(f"    {s}_state_t m{k};" for k, s in enumerate(subs)),
        "    uint16_t level; /* the level of the last step, 255 before the first */",
        f"}} {ident}_state_t;", "",
        f"void {ident}_reset({ident}_state_t *state);",
        f"/* One time step at the top level ({top}). */",
        f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]);",
        "/* One time step at level (a level above the top runs the top). */",
        f"void {ident}_step_level({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES], "
        "uint8_t level);",
        f"/* Scores in Q{sim.frac_bits} of the model of the last step. */",
        f"void {ident}_predict(const {ident}_state_t *state, int32_t scores[{up}_NUM_OUTPUTS]);",
        "", "#ifdef RNNEDGE_WITH_FLOAT_INPUT",
        f"void {ident}_quantize_input(const float x[{up}_NUM_FEATURES], "
        f"int16_t x_q[{up}_NUM_FEATURES]);", "#endif", "",
        "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {up}_H_ */", ""])
    attr = " PROGMEM" if progmem else ""
    body = [f'#include "{ident}.h"', "", _reads(sim.weight_bits, progmem),
            "static int32_t rs_sat32(int64_t v) {",
            "    return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);",
            "}", "",
            "static int16_t rs_sat16(int32_t v) {",
            "    return (int16_t)(v > INT16_MAX ? INT16_MAX : (v < INT16_MIN ? INT16_MIN : v));",
            "}", ""]
    for (p, k), mp in sim.maps.items():
        sym = f"map_{p}_{k}"
        w = mp.linear.u
        rows, cols = w.shape
        ctype = f"int{w.bits}_t"
        rd = "RS_RD_W"
        values = ", ".join(str(int(v)) for v in w.values.ravel())
        body.append(f"static const {ctype} {sym}_w[{rows * cols}]{attr} = {{{values}}};")
        bias = np.concatenate(mp.biases)
        body.append(f"static const int32_t {sym}_b[{len(bias)}]{attr} = "
                    f"{{{', '.join(_i32(int(v)) for v in bias)}}};")
        src_fields = [v.name for v in sim.models[p].recurrent[0].state]
        dst_fields = [v.name for v in sim.models[k].recurrent[0].state]
        lines = [f"static void {sym}(const {subs[p]}_state_t *src, {subs[k]}_state_t *dst) {{",
                 f"    int16_t x[{cols}];", "    uint16_t i, j;", "    uint16_t at = 0;"]
        for field, (size, frac) in zip(src_fields, mp.source_fracs):
            value = _c_shift(f"(int32_t)src->{field}0[i]", frac - mp.frac)
            lines.append(f"    for (i = 0; i < {size}; ++i) x[at++] = (int16_t)({value});")
        lines.append("    at = 0;")
        for field, (size, frac) in zip(dst_fields, mp.target_fracs):
            s = w.frac + mp.frac - frac
            lines += [f"    for (i = 0; i < {size}; ++i, ++at) {{",
                      "        int32_t acc = 0;",
                      f"        for (j = 0; j < {cols}; ++j)",
                      f"            acc += (int32_t){rd}(&{sym}_w[(uint32_t)at * {cols}u + j]) "
                      "* x[j];",
                      f"        acc = {_c_shift('acc', s)};",
                      f"        dst->{field}0[i] = rs_sat16(rs_sat32((int64_t)acc + "
                      f"RS_RD_I32(&{sym}_b[at])));",
                      "    }"]
        lines += ["}", ""]
        body += lines
    body += [f"void {ident}_reset({ident}_state_t *state) {{",
             *(f"    {s}_reset(&state->m{k});" for k, s in enumerate(subs)),
             "    state->level = 255;", "}", "",
             f"void {ident}_step_level({ident}_state_t *state, "
             f"const int16_t x_q[{up}_NUM_FEATURES], uint8_t level) {{",
             f"    if (level > {top}u) level = {top}u;",
             "    if (state->level != 255 && state->level != level) {",
             "        switch (state->level * 256u + level) {"]
    for (p, k) in sim.maps:
        body += [f"        case {p * 256 + k}u:",
                 f"            map_{p}_{k}(&state->m{p}, &state->m{k});",
                 f"            {subs[p]}_reset(&state->m{p});",
                 "            break;"]
    body += ["        default:", "            break;", "        }", "    }",
             "    state->level = level;", "    switch (level) {"]
    for k, s in enumerate(subs):
        body += [f"    case {k}u:", f"        {s}_step(&state->m{k}, x_q);", "        break;"]
    body += ["    default:", "        break;", "    }", "}", "",
             f"void {ident}_step({ident}_state_t *state, const int16_t x_q[{up}_NUM_FEATURES]) {{",
             f"    {ident}_step_level(state, x_q, {top}u);", "}", "",
             f"void {ident}_predict(const {ident}_state_t *state, "
             f"int32_t scores[{up}_NUM_OUTPUTS]) {{",
             "    switch (state->level) {"]
    for k, s in enumerate(subs[:-1]):
        body += [f"    case {k}u:", f"        {s}_predict(&state->m{k}, scores);",
                 "        break;"]
    body += ["    default:", f"        {subs[-1]}_predict(&state->m{top}, scores);",
             "        break;", "    }", "}", "",
             "#ifdef RNNEDGE_WITH_FLOAT_INPUT",
             f"void {ident}_quantize_input(const float x[{up}_NUM_FEATURES], "
             f"int16_t x_q[{up}_NUM_FEATURES]) {{",
             f"    {subs[0]}_quantize_input(x, x_q);", "}", "#endif", ""]
    files[f"{ident}.h"] = header
    files[f"{ident}.c"] = "\n".join(body)
    return files
