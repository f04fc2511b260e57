"""The shared contract of every compressed recurrent cell.

A cell declares, once and at class level, which of its weights are prunable and which are
quantizable. Pruning (tfmot), quantization-aware training, the summary and the converters all
read those declarations, so a new cell only has to list its weights to take part in all four.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

from keras_rnnedge._compat import (
    ContextValueCache,
    DropoutRNNCellMixin,
    RandomGenerator,
    keras,
    np,
    register,
    tf,
    tfmot,
)
from keras_rnnedge.matrices import LowRank, MatrixCost, MatrixStructure, get_structure
from keras_rnnedge.matrices.base import fresh  # noqa: F401  (the cells take it from here)

__all__ = [
    "ACTIVATIONS",
    "CELL_REGISTRY",
    "CellStats",
    "CompressedCell",
    "get_activation",
    "quantized_sigmoid",
    "quantized_tanh",
    "register_cell",
]


@register
def quantized_sigmoid(x):
    """Piecewise-linear sigmoid used for integer inference: ``clip((x + 1) / 2, 0, 1)``.

    This is EdgeML's ``quantSigm``; it is exactly representable in fixed point (a shift and
    a saturation).
    """
    return tf.clip_by_value((x + 1.0) * 0.5, 0.0, 1.0)


@register
def quantized_tanh(x):
    """Piecewise-linear tanh for integer inference: ``clip(x, -1, 1)`` (EdgeML's ``quantTanh``)."""
    return tf.clip_by_value(x, -1.0, 1.0)


# Names a user may pass as ``activation`` / ``recurrent_activation``. The converters and the
# integer C code support exactly these.
ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": keras.activations.sigmoid,
    "tanh": keras.activations.tanh,
    "relu": keras.activations.relu,
    "hard_sigmoid": keras.activations.hard_sigmoid,
    "linear": keras.activations.linear,
    "quantized_sigmoid": quantized_sigmoid,
    "quantized_tanh": quantized_tanh,
}


def get_activation(name: str | Callable | None, argument: str = "activation") -> Callable:
    """Resolve an activation by name, refusing names the deployment path cannot lower."""
    if name is None:
        return ACTIVATIONS["linear"]
    if callable(name):
        for key, fn in ACTIVATIONS.items():
            if fn is name or getattr(name, "__name__", None) == key:
                return fn
        raise ValueError(
            f"Received an unsupported callable for argument {argument}: {name!r}. "
            f"Expected one of the names {sorted(ACTIVATIONS)}."
        )
    if isinstance(name, str) and name in ACTIVATIONS:
        return ACTIVATIONS[name]
    raise ValueError(
        f"Received an unknown value for argument {argument}: {name!r}. "
        f"Expected one of {sorted(ACTIVATIONS)}."
    )


def activation_name(fn: Callable) -> str:
    """The registry name of a resolved activation (inverse of :func:`get_activation`)."""
    for key, value in ACTIVATIONS.items():
        if value is fn:
            return key
    raise ValueError(f"Activation {fn!r} is not one of {sorted(ACTIVATIONS)}.")


def check_positive_int(value, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument {argument}, expected a positive integer, "
            f"got {value!r}."
        )
    return value


def check_bool(value, argument: str) -> bool:
    """A boolean argument: ``True``/``False`` (NumPy booleans too), nothing that merely casts."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(
        f"Received an invalid value for argument {argument}, expected True or False, "
        f"got {value!r}."
    )


def check_finite_float(value, argument: str) -> float:
    """A finite real scalar (an int or float; not a bool, string, NaN or infinity)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number))
            or not np.isfinite(float(value))):
        raise ValueError(
            f"Received an invalid value for argument {argument}, expected a finite float, "
            f"got {value!r}."
        )
    return float(value)


def check_rank(rank, argument: str, limit: int | None = None) -> int | None:
    """Validate a low-rank factorisation rank (``None`` means full rank)."""
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(
            f"Received an invalid value for argument {argument}, expected None or an integer "
            f"in [1, {limit if limit else 'min(rows, cols)'}], got {rank!r}."
        )
    if limit is not None and rank > limit:
        raise ValueError(
            f"Received an invalid value for argument {argument}, expected None or an integer "
            f"in [1, {limit}] (the smaller dimension of the matrix it factorises), got {rank}."
        )
    return rank


@dataclasses.dataclass(frozen=True)
class CellStats:
    """Size and cost of one cell.

    Attributes:
        params: number of scalar parameters the cell stores.
        dense_params: parameters of the same cell without compression (full-rank, unshared).
        macs_per_step: multiply-accumulates per time step (matrix products only).
        state_size: number of scalars of recurrent state carried between steps.
    """

    params: int
    dense_params: int
    macs_per_step: int
    state_size: int

    @property
    def compression_ratio(self) -> float:
        return self.dense_params / max(self.params, 1)


CELL_REGISTRY: dict[str, type] = {}


def register_cell(cls):
    """Class decorator: Keras serialization as ``keras_rnnedge>Name`` and the cell registry.

    Models are saved under ``keras_rnnedge>Name``. The legacy ``.h5`` format stores a cell inside
    ``RNN`` by its bare class name only, so the bare name is also made resolvable (unless some
    other class already holds it); it is an alias for loading, never the saved name.
    """
    register(cls)
    register_alias(cls)
    CELL_REGISTRY[cls.__name__] = cls
    return cls


def register_alias(obj) -> None:
    """Make ``obj`` resolvable by its bare name, for the legacy ``.h5`` format, if that name is
    free (a class the user registered under the same name wins)."""
    keras.saving.get_custom_objects().setdefault(obj.__name__, obj)


def check_levels(levels, units: int) -> tuple[int, ...] | None:
    """A flexible cell's ``levels``: active units per level, strictly increasing, the last
    ``units`` (``None``: not flexible)."""
    if levels is None:
        return None
    expected = (f"expected None or a strictly increasing sequence of unit counts in [1, "
                f"{units}] ending with units={units} (level k runs the first levels[k] units)")
    try:
        values = tuple(levels)
    except TypeError:
        raise ValueError(f"Received an invalid value for argument levels: {levels!r}; "
                         f"{expected}.") from None
    if (not values or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                          for v in values)):
        raise ValueError(f"Received an invalid value for argument levels: {levels!r}; "
                         f"{expected}.")
    values = tuple(int(v) for v in values)
    if (values[-1] != units or values[0] < 1
            or any(b <= a for a, b in zip(values, values[1:]))):
        raise ValueError(f"Received an invalid value for argument levels: {list(values)}; "
                         f"{expected}.")
    if len(values) > 255:
        raise ValueError(f"Received {len(values)} levels; at most 255 (the C step takes the "
                         "level as a uint8_t).")
    return values


def _nested_shape(input_shape) -> bool:
    return (isinstance(input_shape, (list, tuple)) and len(input_shape) > 0
            and isinstance(input_shape[0], (list, tuple, tf.TensorShape)))


def check_rate(value, argument: str) -> float:
    """A dropout-like rate in [0, 1)."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number))
            or not 0.0 <= float(value) < 1.0):
        raise ValueError(f"Received an invalid value for argument {argument}, expected a rate "
                         f"in [0, 1) (0 turns it off), got {value!r}.")
    return float(value)


#: The training aids every cell takes (keyword arguments, default 0 = off). Each acts in
#: training only: at inference the cell computes exactly what it computes without them, so the
#: converters never see them.
TRAINING_AIDS = ("dropout", "recurrent_dropout", "recurrent_weight_dropout", "zoneout_h",
                 "zoneout_c")


class CompressedCell(DropoutRNNCellMixin, keras.layers.Layer,
                     tfmot.sparsity.keras.PrunableLayer):
    """Base class of every keras-rnnedge recurrent cell.

    Subclasses declare ``prunable_weights`` and ``quantizable_weights`` (tuples of attribute
    names of weights created in ``build``) and implement ``build``, :meth:`transition` (the
    step), ``get_config`` and :meth:`compression_stats`. ``transition`` must read weights by
    attribute on every call (tfmot's quantize wrapper swaps them with ``setattr``) and multiply
    matrices with :func:`matmul` / :func:`matmul_columns` (where the training aids act).

    Training aids, for every cell (keyword arguments; 0 turns one off; training only: the
    inference-mode cell, and so every conversion, is the cell without them):

    * ``dropout``: variational dropout of the input ``x_t`` (one mask per sequence, the same at
      every step; Gal & Ghahramani 2016), before the input matrix (``kernel``);
    * ``recurrent_dropout``: the same on the recurrent input (``h_{t-1}``, or the projection
      ``r_{t-1}``) before the recurrent matrix (``recurrent_kernel``);
    * ``recurrent_weight_dropout``: DropConnect on the stored weights of the recurrent matrix
      (its factors for a structured one), one mask per sequence (weight drop, Merity et al.
      2018);
    * ``zoneout_h``, ``zoneout_c``: zoneout (Krueger et al. 2017): each unit of the first state
      (``h``) / of the other states (an LSTM's ``c``) keeps its previous value with this
      probability at every step. Krueger et al. use the expectation at test time; here the
      inference-mode cell is the plain cell, so that zoneout disappears at conversion.

    Dropout masks are scaled by ``1 / (1 - rate)`` (inverted dropout), so the expected
    activations equal the inference-mode ones.

    Flexible width (``levels=(k_0, ..., units)``; Lambert et al., "Flexible Recurrent Neural
    Networks", ECML PKDD 2020, method 1): at level ``l`` only the first ``k_l`` units are
    active, switchable at any step with no new weights. The per-unit state vectors (``h``, an
    LSTM's ``c``; see :class:`~keras_rnnedge.cells.step.StateVector`) are zeroed beyond
    ``k_l`` when read and when written, and so is any per-unit vector a later product of the
    step reads (an LSTMP's ``m``): the inactive units contribute nothing and hold zeros, so a
    deployment computes only the active rows (and, of a dense matrix reading ``h``, the active
    columns). A flexible cell runs in :class:`keras_rnnedge.flexible.FlexibleRNN`, which feeds
    it the level of every step (see :mod:`keras_rnnedge.flexible`); called without a level it
    runs at the top level (all units, the plain cell).
    """

    #: Weights other than the matrices that pruning / QAT act on.
    extra_prunable_weights: ClassVar[tuple[str, ...]] = ()
    extra_quantizable_weights: ClassVar[tuple[str, ...]] = ()

    def __init__(self, units: int, *, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 recurrent_weight_dropout: float = 0.0, zoneout_h: float = 0.0,
                 zoneout_c: float = 0.0, levels=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.levels = check_levels(levels, self.units)
        #: set by FlexibleRNN: the last input channel is the level of the step
        object.__setattr__(self, "_level_channel", False)
        object.__setattr__(self, "_unit_mask", None)
        for name, value in zip(TRAINING_AIDS, (dropout, recurrent_dropout,
                                               recurrent_weight_dropout, zoneout_h, zoneout_c)):
            setattr(self, name, check_rate(value, name))
        self._random_generator = RandomGenerator(None)
        object.__setattr__(self, "_aid_masks", None)
        self.input_dim: int | None = None
        #: matrix base name → its structure (resolved for the matrix's shape once built)
        self.structures: dict[str, MatrixStructure] = {}
        #: matrix base name → the ``__init__`` argument that set its structure (for errors)
        self.structure_arguments: dict[str, str] = {}
        #: matrix base name → (rows, cols), once built
        self.matrix_shapes: dict[str, tuple[int, int]] = {}
        self._matrix_arguments: dict[str, tuple[str, str]] = {}

    def set_structure(self, name: str, rank, rank_argument: str, structure,
                      structure_argument: str, limit: int | None = None) -> None:
        """Declare matrix ``name`` with its structure (see :func:`matrix_structure`)."""
        self.structures[name] = matrix_structure(rank, rank_argument, structure,
                                                      structure_argument, limit)
        self.structure_arguments[name] = (rank_argument if rank is not None
                                          else structure_argument)
        self._matrix_arguments[name] = (rank_argument, structure_argument)

    def dense_config(self, config: dict, name: str) -> dict:
        """``config`` (from :meth:`get_config`) with matrix ``name`` made a dense matrix: its
        rank and structure arguments cleared."""
        out = dict(config)
        for argument in self._matrix_arguments[name]:
            out[argument] = None
        return out

    def matrix_weight_names(self) -> tuple[str, ...]:
        """Every weight of every matrix, in declaration order (``kernel_u``, ``kernel_v``...)."""
        return tuple(w for base, s in self.structures.items() for w in s.weight_names(base))

    @property
    def prunable_weights(self) -> tuple[str, ...]:
        """Names of the weights pruning acts on: every weight of every matrix (a base name
        such as ``"kernel"`` in a pruning target covers all of the matrix's weights)."""
        return self.matrix_weight_names() + self.extra_prunable_weights

    @property
    def quantizable_weights(self) -> tuple[str, ...]:
        """Names of the weights QAT fake-quantizes: every weight of every matrix."""
        return self.matrix_weight_names() + self.extra_quantizable_weights

    def matrix_cost(self) -> MatrixCost:
        """Parameters and MACs per step of all matrices (the cell must be built)."""
        self._require_built()
        costs = [s.cost(*self.matrix_shapes[base]) for base, s in self.structures.items()]
        return MatrixCost(params=sum(c.params for c in costs), macs=sum(c.macs for c in costs))

    # -- tfmot ------------------------------------------------------------------------------
    def get_prunable_weights(self):
        return [w for w in (getattr(self, n, None) for n in self.prunable_weights) if w is not None]

    def present_weights(self, names: tuple[str, ...]) -> list[str]:
        """Those of ``names`` that this instance has (low-rank cells lack the full matrices)."""
        return [n for n in names if getattr(self, n, None) is not None]

    # -- Keras RNN cell protocol ------------------------------------------------------------
    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def transition(self, inputs, states, training=None):
        """One step without the training aids: ``(output, new_states)``."""
        raise NotImplementedError

    # -- flexible width -----------------------------------------------------------------------
    def step_input_dim(self, input_shape) -> int:
        """Input features per step from ``build``'s ``input_shape``: without the level channel
        of a flexible cell in :class:`~keras_rnnedge.flexible.FlexibleRNN`, and the first of a
        nested ``(x, level)`` input (the step lowering's)."""
        if _nested_shape(input_shape):
            return int(input_shape[0][-1])
        dim = int(input_shape[-1])
        return dim - 1 if self.levels is not None and self._level_channel else dim

    def level_masks(self) -> np.ndarray:
        """``(len(levels), units)`` float32: row ``l`` is 1 on the first ``levels[l]`` units."""
        if self.levels is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} is not flexible (levels=None).")
        return (np.arange(self.units)[None, :]
                < np.asarray(self.levels)[:, None]).astype(np.float32)

    def unit_masked(self, v):
        """``v`` (one value per unit) with the inactive units of the current level zeroed (a
        cell applies it to a per-unit vector that a later product of its step reads)."""
        mask = self._unit_mask
        return v if mask is None else v * tf.cast(mask, v.dtype)

    def _split_level(self, inputs):
        """``(x, level or None)`` of a step's inputs."""
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise ValueError(f"{type(self).__name__} {self.name!r} received {len(inputs)} "
                                 "inputs per step; expected x or (x, level).")
            return inputs[0], inputs[1]
        if self.levels is not None and self._level_channel:
            return inputs[..., :-1], inputs[..., -1]
        return inputs, None

    def _per_unit_states(self) -> list[bool]:
        from keras_rnnedge.cells.step import step_of

        return [v.per_unit for v in step_of(self).state(self)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_weight_mask_cache", None)
        state.pop("_unit_mask", None)
        return state

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _create_non_trackable_mask_cache(self):
        super()._create_non_trackable_mask_cache()
        self._weight_mask_cache = ContextValueCache(self._create_weight_masks)

    def reset_recurrent_dropout_mask(self):
        super().reset_recurrent_dropout_mask()
        self._weight_mask_cache.clear()

    def _create_weight_masks(self, inputs, training, count=1):
        del inputs, count
        ones = [tf.ones_like(w) for w in matrix_weights(self, "recurrent_kernel")]
        rate = self.recurrent_weight_dropout
        return [keras.backend.in_train_phase(
            lambda o=o: self._random_generator.dropout(o, rate), o, training=training)
            for o in ones]

    def __setstate__(self, state):
        state["_weight_mask_cache"] = ContextValueCache(self._create_weight_masks)
        state["_unit_mask"] = None
        super().__setstate__(state)

    def call(self, inputs, states, training=None):
        """:meth:`transition` with the training aids and, for a flexible cell, the level's
        unit mask (see the class docstring)."""
        inputs, level = self._split_level(inputs)
        if level is None:
            return self._aided_call(inputs, states, training)
        if self.levels is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} received a level but is not "
                             "flexible; create it with levels=(...).")
        level = tf.reshape(level, [-1])
        if not level.dtype.is_integer:
            level = tf.round(level)
        index = tf.clip_by_value(tf.cast(level, tf.int32), 0, len(self.levels) - 1)
        mask = tf.gather(tf.constant(self.level_masks()), index)
        mask = tf.cast(mask, inputs.dtype)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        per_unit = self._per_unit_states()
        states = [s * mask if unit else s for s, unit in zip(states, per_unit)]
        object.__setattr__(self, "_unit_mask", mask)
        try:
            _, new_states = self._aided_call(inputs, states, training)
        finally:
            object.__setattr__(self, "_unit_mask", None)
        new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
        new_states = [s * mask if unit else s for s, unit in zip(new_states, per_unit)]
        return new_states[0], new_states

    def _aided_call(self, inputs, states, training=None):
        """:meth:`transition` with the training aids (see the class docstring)."""
        if not any(getattr(self, name) for name in TRAINING_AIDS):
            return self.transition(inputs, states, training=training)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        masks = {}
        if self.dropout:
            masks["kernel"] = self.get_dropout_mask_for_cell(inputs, training)[0]
        if self.recurrent_dropout:
            masks["recurrent_kernel"] = self.get_recurrent_dropout_mask_for_cell(
                states[0], training)[0]
        if self.recurrent_weight_dropout:
            masks["recurrent_kernel weights"] = self._weight_mask_cache.setdefault(
                kwargs={"inputs": inputs, "training": training})
        object.__setattr__(self, "_aid_masks", masks)
        try:
            output, new_states = self.transition(inputs, states, training=training)
        finally:
            object.__setattr__(self, "_aid_masks", None)
        if self.zoneout_h or self.zoneout_c:
            if self.zoneout_c and len(states) < 2:
                raise ValueError(f"{type(self).__name__} has one state vector, but zoneout_c="
                                 f"{self.zoneout_c} asks to zone out a second one (an LSTM's "
                                 "c); use zoneout_h.")
            new_states = list(new_states)
            for k, (old, new) in enumerate(zip(states, new_states)):
                rate = self.zoneout_h if k == 0 else self.zoneout_c
                if rate:
                    new_states[k] = keras.backend.in_train_phase(
                        lambda old=old, new=new, rate=rate: self._zone(old, new, rate), new,
                        training=training)
            output = new_states[0]
        return output, new_states

    def _zone(self, old, new, rate: float):
        keep_old = tf.cast(self._random_generator.random_uniform(tf.shape(new)) < rate,
                           new.dtype)
        return keep_old * old + (1.0 - keep_old) * new

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        dtype = dtype or self.compute_dtype or tf.float32
        return tf.zeros([batch_size, self.units], dtype=dtype)

    # -- size and cost ------------------------------------------------------------------------
    def compression_stats(self) -> CellStats:
        raise NotImplementedError

    def _require_built(self) -> int:
        if self.input_dim is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} is not built: compression_stats() needs the "
                "input dimension. Call the layer on data (or build it) first."
            )
        return self.input_dim

    def get_config(self):
        config = {**super().get_config(), "units": self.units,
                  **{name: getattr(self, name) for name in TRAINING_AIDS}}
        if self.levels is not None:
            config["levels"] = list(self.levels)
        return config


def matrix_structure(rank, rank_argument: str, structure, structure_argument: str,
                       limit: int | None = None) -> MatrixStructure:
    """The structure of one matrix from a cell's two arguments for it.

    ``rank`` (``w_rank``, ``u_rank``, ``rank``, ``recurrent_rank``: the short form of the
    low-rank family) and ``structure`` (``kernel_structure``, ``recurrent_structure``: any
    family) may not both be given. ``limit`` is the rank bound known before the cell is built.
    """
    rank = check_rank(rank, rank_argument, limit=limit)
    resolved = get_structure(structure, structure_argument)
    if rank is not None:
        if structure is not None and resolved != LowRank(rank):
            raise ValueError(
                f"Received both {rank_argument}={rank} and {structure_argument}={structure!r}; "
                f"pass one of them ({rank_argument}={rank} is short for {structure_argument}="
                f"{{'family': 'low_rank', 'rank': {rank}}}).")
        return LowRank(rank)
    if isinstance(resolved, LowRank) and limit is not None:
        check_rank(resolved.rank, structure_argument, limit=limit)
    return resolved


def add_matrix(layer, name: str, shape: tuple[int, int], initializer, regularizer, constraint):
    """Create the weights of matrix ``name`` on ``layer`` as its structure stores it.

    ``layer.structures[name]`` (set in ``__init__``) is resolved for ``shape`` and replaced by
    the resolved structure; each weight becomes an attribute of the layer (``kernel``,
    ``kernel_u``/``kernel_v``, ``kernel_factor_0``...); the plain and low-rank attribute names
    the structure does not use are set to ``None``.
    """
    rows, cols = shape
    structure = layer.structures[name].resolve(rows, cols, layer.structure_arguments[name])
    layer.structures[name] = structure
    layer.matrix_shapes[name] = (rows, cols)
    shapes = structure.weight_shapes(name, rows, cols)
    for (weight, weight_shape), init in zip(shapes.items(),
                                            structure.initializers(initializer, rows, cols)):
        setattr(layer, weight, layer.add_weight(name=weight, shape=weight_shape,
                                                initializer=init, regularizer=regularizer,
                                                constraint=constraint))
    for legacy in (name, f"{name}_u", f"{name}_v"):
        if legacy not in shapes:
            setattr(layer, legacy, None)


def matrix_weights(layer, name: str) -> list:
    """The stored weights of matrix ``name``, read by attribute (tfmot's QAT wrapper swaps
    them)."""
    structure = layer.structures[name]
    return [getattr(layer, w) for w in structure.weight_names(name)]


def _aided(layer, x, name: str):
    """``x`` and the weights of matrix ``name`` with the cell's training-aid masks applied
    (dropout of the input, DropConnect of the weights; see :class:`CompressedCell`)."""
    weights = matrix_weights(layer, name)
    masks = getattr(layer, "_aid_masks", None)
    if masks:
        if name in masks:
            x = x * masks[name]
        if f"{name} weights" in masks:
            weights = [w * m for w, m in zip(weights, masks[f"{name} weights"])]
    return x, weights


def matmul(layer, x, name: str):
    """``x @ W`` for matrix ``name`` as its structure computes it (factors never folded).

    Reads the weights by attribute on every call: tfmot's QAT wrapper swaps them.
    """
    x, weights = _aided(layer, x, name)
    return layer.structures[name].matmul(x, weights)


def matmul_columns(layer, x, name: str, start: int, stop: int):
    """``(x @ W)[:, start:stop]`` for matrix ``name`` (see :func:`matmul`)."""
    x, weights = _aided(layer, x, name)
    return layer.structures[name].matmul_columns(x, weights, start, stop)


def structure_config(structure: MatrixStructure):
    """What ``get_config`` stores for a ``*_structure`` argument: ``None`` for dense and
    low-rank matrices (the rank argument says which), else the structure's config."""
    if structure.is_dense or isinstance(structure, LowRank):
        return None
    return structure.get_config()


def rank_of(structure: MatrixStructure) -> int | None:
    return structure.rank if isinstance(structure, LowRank) else None
