"""The shared contract of every compressed recurrent cell.

A cell declares, once and at class level, which of its weights are prunable and which are
quantizable. Pruning (tfmot), quantization-aware training, the summary and the converters all
read those declarations, so a new cell only has to list its weights to take part in all four.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

from keras_rnnedge._compat import keras, np, register, tf, tfmot

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
    """Class decorator: Keras serialization as ``keras_rnnedge>Name`` and the cell registry."""
    register(cls)
    CELL_REGISTRY[cls.__name__] = cls
    return cls


class CompressedCell(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """Base class of every keras-rnnedge recurrent cell.

    Subclasses declare ``prunable_weights`` and ``quantizable_weights`` (tuples of attribute
    names of weights created in ``build``) and implement ``build``, ``call``, ``get_config``
    and :meth:`compression_stats`. ``call`` must read weights by attribute on every call:
    tfmot's quantize wrapper swaps them with ``setattr``.
    """

    prunable_weights: ClassVar[tuple[str, ...]] = ()
    quantizable_weights: ClassVar[tuple[str, ...]] = ()

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.input_dim: int | None = None

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
        return {**super().get_config(), "units": self.units}


def fresh(initializer):
    """A new instance of ``initializer``: Keras warns when one unseeded instance is reused."""
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer


def add_matrix(layer, name: str, shape: tuple[int, int], rank: int | None, initializer,
               regularizer, constraint):
    """Create ``name`` (full) or ``name_u`` @ ``name_v`` (low rank) on ``layer``.

    Sets the attributes ``name``, ``name_u`` and ``name_v`` (unused ones to ``None``).
    """
    if rank is None:
        setattr(layer, name, layer.add_weight(name=name, shape=shape, initializer=initializer,
                                              regularizer=regularizer, constraint=constraint))
        setattr(layer, f"{name}_u", None)
        setattr(layer, f"{name}_v", None)
    else:
        setattr(layer, name, None)
        setattr(layer, f"{name}_u", layer.add_weight(
            name=f"{name}_u", shape=(shape[0], rank), initializer=fresh(initializer),
            regularizer=regularizer, constraint=constraint))
        setattr(layer, f"{name}_v", layer.add_weight(
            name=f"{name}_v", shape=(rank, shape[1]), initializer=fresh(initializer),
            regularizer=regularizer, constraint=constraint))


def matmul(layer, x, name: str):
    """``x @ W`` for a full or factored matrix ``name`` (factors stay factored: fewer MACs)."""
    full = getattr(layer, name)
    if full is not None:
        return tf.matmul(x, full)
    return tf.matmul(tf.matmul(x, getattr(layer, f"{name}_u")), getattr(layer, f"{name}_v"))


def matrix_cost(rows: int, cols: int, rank: int | None) -> int:
    """Parameters (= MACs per vector product) of a full or rank-``rank`` matrix."""
    return rows * cols if rank is None else rank * (rows + cols)
