"""Flexible RNNs: the computational cost switched at run time, within a sequence.

Lambert, Le Bolzer and Schnitzler, "Flexible Recurrent Neural Networks" (ECML PKDD 2020), method
1: one cell trained to run at several widths, switchable at any time step with no new weights.
Every cell of the project takes ``levels=(k_0, ..., units)``: at level ``l`` only its first
``k_l`` units are active (their state vectors zeroed beyond ``k_l``; see
:class:`~keras_rnnedge.cells.CompressedCell`), so a deployment computes only the active rows of
each matrix (and, of a dense matrix reading ``h``, the active columns).

A model takes the level of every step as a second input::

    x = keras.Input((T, F)); level = keras.Input((T,))
    cell = FastGRNNCell(64, levels=(16, 32, 64))
    h = FlexibleRNN(cell)(WithLevel()([x, level]))
    model = keras.Model([x, level], keras.layers.Dense(6, activation="softmax")(h))
    model.fit(ScheduleSequence(x_train, y_train, num_levels=3, batch_size=64), epochs=20)
    model.evaluate([x_test, switch_schedule(len(x_test), T, t=40, start=0, end=2)], y_test)

Training draws, per sequence, a random level and a random switch point to another (slimmable
training over widths, with switches, so that any level can take over mid-sequence:
:func:`random_schedules`, :class:`ScheduleSequence`). The converters take the model with or
without its level input (without it, every step runs the top level); the integer oracle and the
generated C take a level per step (``IntModel.run(x, levels=...)``, ``<id>_step_level``).
"""

from __future__ import annotations

from keras_rnnedge._compat import keras, np, register, tf
from keras_rnnedge.cells.base import CompressedCell, fresh
from keras_rnnedge.cells.step import step_of

__all__ = [
    "FlexibleRNN",
    "ScheduleSequence",
    "SwitchingCell",
    "WithLevel",
    "level_macs",
    "random_schedules",
    "switch_schedule",
    "with_level_input",
]

#: The level a :class:`WithLevel` appends when it gets no level input (cells clip it to their
#: top level).
TOP_LEVEL = 255.0


@register
class WithLevel(keras.layers.Layer):
    """Append the level of every step to the features: ``[x, level]`` → ``(B, T, F + 1)``.

    ``level`` is ``(B, T)`` or ``(B, T, 1)`` (integers or floats; rounded, and clipped to the
    cell's levels). Given ``x`` alone, every step runs the top level. Its output feeds a
    :class:`FlexibleRNN`, whose cell splits the level off again.
    """

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise ValueError(f"WithLevel received {len(inputs)} inputs; expected x or "
                                 "[x, level].")
            x, level = inputs
            level = tf.cast(level, x.dtype)
            if level.shape.rank == 2:
                level = level[..., None]
            if level.shape.rank != 3:
                raise ValueError(f"WithLevel expected level of shape (batch, timesteps) or "
                                 f"(batch, timesteps, 1), but got {level.shape}.")
        else:
            x = inputs
            level = tf.fill(tf.concat([tf.shape(x)[:-1], [1]], 0), tf.constant(TOP_LEVEL,
                                                                               x.dtype))
        return tf.concat([x, level], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        shape = tf.TensorShape(shape)
        return shape[:-1].concatenate([None if shape[-1] is None else shape[-1] + 1])


@register
class FlexibleRNN(keras.layers.RNN):
    """``keras.layers.RNN`` of a flexible cell (``levels=``) whose input carries the level of
    every step as its last channel (the output of :class:`WithLevel`)."""

    def __init__(self, cell, **kwargs):
        if not isinstance(cell, SwitchingCell) and (
                not isinstance(cell, CompressedCell) or cell.levels is None):
            raise ValueError(
                f"FlexibleRNN received {type(cell).__name__}"
                f"{'' if not isinstance(cell, CompressedCell) else ' with levels=None'}; "
                "expected a keras_rnnedge cell created with levels=(...), for example "
                "FastGRNNCell(64, levels=(16, 32, 64)), or a SwitchingCell.")
        object.__setattr__(cell, "_level_channel", True)
        super().__init__(cell, **kwargs)


def _state_sizes(cell) -> list[int]:
    return [int(v) for v in np.atleast_1d(cell.state_size)]


@register
class SwitchingCell(keras.layers.Layer):
    """Method 2 of Lambert et al. (2020): cells of different cost that take over from one
    another within a sequence, through a learned state mapping.

    Level ``l`` runs ``cells[l]`` alone (order them by cost). When the level switches from
    ``p`` to ``l``, the state of ``cells[p]`` (its state vectors concatenated) is mapped into
    the state of ``cells[l]`` by a learned affine map ``s_l = s_p M_pl + b_pl`` (one per ordered
    pair), then ``cells[l]`` steps from it; the inactive cells hold zeros. Train it in a
    :class:`FlexibleRNN` with random switch points (:class:`ScheduleSequence`), which teach the
    maps. The output is every cell's ``h`` concatenated, the inactive ones zero, so a Dense
    head after it keeps one block of output weights per cell.

    The standalone C (:func:`keras_rnnedge.converters.convert_c`) runs one integer model per
    cell and the integer maps at a switch (:mod:`keras_rnnedge.converters.c.switching`).

    Args:
        cells: two or more keras_rnnedge cells (not flexible themselves), any kinds and sizes.
        map_initializer: initializer of the map matrices (biases start at zero).
    """

    def __init__(self, cells, *, map_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        cells = [keras.layers.deserialize(c) if isinstance(c, dict) else c for c in cells]
        if len(cells) < 2 or any(not isinstance(c, CompressedCell) or c.levels is not None
                                 for c in cells):
            raise ValueError(
                f"SwitchingCell received {[type(c).__name__ for c in cells]}; expected two or "
                "more keras_rnnedge cells without levels= (one per level, by cost), for example "
                "[FastGRNNCell(16), LowRankGRUCell(64)].")
        self.cells = cells
        self.levels = tuple(range(len(cells)))
        self.map_initializer = keras.initializers.get(map_initializer)
        object.__setattr__(self, "_level_channel", False)

    @property
    def state_size(self):
        return [n for c in self.cells for n in _state_sizes(c)] + [1]

    @property
    def output_size(self):
        return sum(int(c.output_size) for c in self.cells)

    def pairs(self) -> list[tuple[int, int]]:
        """The ``(from, to)`` level pairs, each with its map."""
        return [(p, k) for p in self.levels for k in self.levels if p != k]

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
                input_shape[0], (list, tuple, tf.TensorShape)):
            dim = int(input_shape[0][-1])
        else:
            dim = int(input_shape[-1]) - (1 if self._level_channel else 0)
        for cell in self.cells:
            if not cell.built:
                cell.build(tf.TensorShape([None, dim]))
        self.maps = {}
        for p, k in self.pairs():
            size_p, size_k = sum(_state_sizes(self.cells[p])), sum(_state_sizes(self.cells[k]))
            self.maps[(p, k)] = (
                self.add_weight(name=f"map_{p}_{k}", shape=(size_p, size_k),
                                initializer=fresh(self.map_initializer)),
                self.add_weight(name=f"map_bias_{p}_{k}", shape=(size_k,),
                                initializer="zeros"))
        self.built = True

    def map_weights(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        """``(from, to)`` → ``(M, b)`` as NumPy arrays."""
        return {pair: (m.numpy(), b.numpy()) for pair, (m, b) in self.maps.items()}

    def call(self, inputs, states, training=None):
        if isinstance(inputs, (list, tuple)):
            x, level = inputs
        elif self._level_channel:
            x, level = inputs[..., :-1], inputs[..., -1]
        else:
            x, level = inputs, None
        states = list(states)
        prev_code = states[-1]  # 0: no step yet, else the previous level + 1
        groups, at = [], 0
        for cell in self.cells:
            n = len(_state_sizes(cell))
            groups.append(states[at:at + n])
            at += n
        top = len(self.cells) - 1
        if level is None:
            index = tf.fill(tf.shape(x)[:1], top)
        else:
            level = tf.reshape(level, [-1])
            if not level.dtype.is_integer:
                level = tf.round(level)
            index = tf.clip_by_value(tf.cast(level, tf.int32), 0, top)
        prev = tf.cast(tf.round(tf.reshape(prev_code, [-1])), tf.int32) - 1
        flat = [tf.concat(g, axis=-1) for g in groups]
        new_states, outputs = [], []
        for k, cell in enumerate(self.cells):
            keep = tf.cast((prev == k) | (prev < 0), x.dtype)[:, None]
            start = flat[k] * keep
            for p in self.levels:
                if p != k:
                    m, b = self.maps[(p, k)]
                    came = tf.cast(prev == p, x.dtype)[:, None]
                    start = start + came * (tf.matmul(flat[p], m) + b)
            sizes = _state_sizes(cell)
            parts = tf.split(start, sizes, axis=-1)
            out, new = cell(x, parts if len(parts) > 1 else parts[0], training=training)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            active = tf.cast(tf.equal(index, k), x.dtype)[:, None]
            new_states += [s * active for s in new]
            outputs.append(out * active)
        new_states.append(tf.cast(index + 1, x.dtype)[:, None])
        return tf.concat(outputs, axis=-1), new_states

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        dtype = dtype or self.compute_dtype or tf.float32
        return [tf.zeros([batch_size, n], dtype=dtype) for n in self.state_size]

    def get_config(self):
        return {**super().get_config(),
                "cells": [keras.layers.serialize(c) for c in self.cells],
                "map_initializer": keras.initializers.serialize(self.map_initializer)}


def with_level_input(model: keras.Model) -> keras.Model:
    """A flexible model (a chain of layers with :class:`WithLevel`) taking ``[x, level]``: the
    same layers, every :class:`WithLevel` given the level input (``(batch, timesteps)``). A
    model that already takes both inputs is returned as it is."""
    layers = []
    for layer in model.layers:
        layers += layer.layers if isinstance(layer, keras.Model) else [layer]
    if not any(isinstance(layer, WithLevel) for layer in layers):
        raise ValueError(f"Model {model.name!r} has no WithLevel layer: it is not flexible.")
    if len(model.inputs) == 2:
        return model
    x = inputs = keras.Input(model.inputs[0].shape[1:], name="x")
    level = keras.Input(model.inputs[0].shape[1:2], name="level")
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer([x, level]) if isinstance(layer, WithLevel) else layer(x)
    return keras.Model([inputs, level], x, name=model.name)


def random_schedules(n: int, timesteps: int, num_levels: int, *, seed: int | None = 0,
                     switch_fraction: float = 0.5) -> np.ndarray:
    """Level schedules for slimmable training with switches: ``(n, timesteps)`` int32.

    Each sequence runs one level drawn uniformly; ``switch_fraction`` of them switch, at a
    step drawn uniformly in ``[1, timesteps)``, to another level drawn uniformly.
    """
    n, timesteps, num_levels = int(n), int(timesteps), int(num_levels)
    if n < 0 or timesteps < 1 or num_levels < 1:
        raise ValueError(f"Expected n >= 0, timesteps >= 1 and num_levels >= 1, but got n={n}, "
                         f"timesteps={timesteps}, num_levels={num_levels}.")
    if not 0.0 <= float(switch_fraction) <= 1.0:
        raise ValueError(f"Expected switch_fraction in [0, 1], but got {switch_fraction!r}.")
    rng = np.random.default_rng(seed)
    start = rng.integers(0, num_levels, n)
    end = rng.integers(0, num_levels, n)
    switch = rng.random(n) < switch_fraction
    at = rng.integers(1, max(timesteps, 2), n)
    t = np.arange(timesteps)[None, :]
    out = np.where(switch[:, None] & (t >= at[:, None]), end[:, None], start[:, None])
    return out.astype(np.int32)


def switch_schedule(n: int, timesteps: int, t: int, start: int, end: int) -> np.ndarray:
    """``(n, timesteps)`` int32: level ``start`` before step ``t``, ``end`` from step ``t`` on
    (``t = 0``: ``end`` throughout; ``t = timesteps``: ``start`` throughout)."""
    if not 0 <= int(t) <= int(timesteps):
        raise ValueError(f"Expected the switch step t in [0, {timesteps}], but got {t!r}.")
    row = np.where(np.arange(int(timesteps)) < int(t), int(start), int(end)).astype(np.int32)
    return np.tile(row, (int(n), 1))


class ScheduleSequence(keras.utils.Sequence):
    """``([x, levels], y)`` batches with fresh :func:`random_schedules` every epoch (what
    ``model.fit`` of a flexible model takes for slimmable training with switches)."""

    def __init__(self, x, y, *, num_levels: int, batch_size: int = 64, seed: int = 0,
                 switch_fraction: float = 0.5, shuffle: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = np.asarray(x, np.float32), np.asarray(y)
        if self.x.ndim != 3 or len(self.x) != len(self.y):
            raise ValueError(f"Expected x of shape (N, T, F) and N labels, but got x "
                             f"{self.x.shape} and y {self.y.shape}.")
        self.num_levels, self.batch_size = int(num_levels), int(batch_size)
        self.switch_fraction, self.shuffle = float(switch_fraction), bool(shuffle)
        self._rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i):
        at = self._order[i * self.batch_size:(i + 1) * self.batch_size]
        return [self.x[at], self._levels[at]], self.y[at]

    def on_epoch_end(self):
        n = len(self.x)
        self._order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        self._levels = random_schedules(n, self.x.shape[1], self.num_levels,
                                        seed=int(self._rng.integers(2**31)),
                                        switch_fraction=self.switch_fraction)


def level_macs(cell: CompressedCell, level: int) -> int:
    """Multiply-accumulates of one step of ``cell`` (built) at ``level``: each matrix product
    over its active inputs (a per-unit source vector has ``levels[level]`` non-zero values) and
    its needed outputs (the gate rows of active units), as its family computes it
    (:meth:`~keras_rnnedge.matrices.MatrixStructure.level_macs`; families that cannot skip
    rows or columns count their whole product)."""
    if isinstance(cell, SwitchingCell):
        if not 0 <= int(level) < len(cell.levels):
            raise ValueError(f"Expected a level in [0, {len(cell.levels) - 1}], but got "
                             f"{level!r}.")
        return int(cell.cells[int(level)].compression_stats().macs_per_step)
    if not isinstance(cell, CompressedCell) or cell.levels is None:
        raise ValueError(f"Expected a flexible keras_rnnedge cell (levels=...), but got "
                         f"{type(cell).__name__}.")
    if not 0 <= int(level) < len(cell.levels):
        raise ValueError(f"Expected a level in [0, {len(cell.levels) - 1}], but got {level!r}.")
    cell._require_built()
    k = cell.levels[int(level)]
    graph = step_of(cell).graph(cell)
    gates: dict[tuple, set] = {}  # (matrix, source) -> the gate blocks read from it
    for node in graph.products():
        gates.setdefault((node.key, node.args[0]), set()).add(node)
    total = 0
    for (matrix, src), nodes in gates.items():
        rows, cols = cell.matrix_shapes[matrix]
        width = next(iter(nodes)).width
        read = len({n.gate for n in nodes}) * width
        active = len({n.gate for n in nodes}) * (k if next(iter(nodes)).per_unit else width)
        total += cell.structures[matrix].level_macs(rows, cols, k if src.per_unit else rows,
                                                    active, read)
    return int(total)
