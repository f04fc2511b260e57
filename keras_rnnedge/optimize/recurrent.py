"""Finding the recurrent layers of a model, their cells and the weights the optimizers act on.

Supported recurrent layers are ``keras.layers.RNN(cell)`` whose cell is a
:class:`~keras_rnnedge.cells.CompressedCell`, and the stock ``LSTM``, ``GRU`` and ``SimpleRNN``
(or ``RNN`` over their cells), whose cells have ``kernel`` and ``recurrent_kernel``. The helpers
see through tfmot's pruning and quantization wrappers (``PruneLowMagnitude``,
``QuantizeWrapper``, ``QuantizeAnnotate``), recurse into nested models and into the two
directions of ``Bidirectional``.

Weights are addressed by the attribute names the cells declare (``kernel``,
``recurrent_kernel``, ``kernel_u``, ...). A *base name* also covers the factors of a factored
matrix: ``"kernel"`` means ``kernel`` on a full-rank cell and both ``kernel_u`` and ``kernel_v``
on a low-rank one, as EdgeML thresholds ``W1, W2, U1, U2`` with the sparsities of ``W`` and ``U``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from keras_rnnedge._compat import keras, tf
from keras_rnnedge.cells.base import CompressedCell
from keras_rnnedge.matrices import factor_suffix
from keras_rnnedge.optimize._tfmot import (
    PruneLowMagnitude,
    QuantizeAnnotate,
    QuantizeLayer,
    QuantizeWrapper,
)

__all__ = [
    "STOCK_CELL_WEIGHTS",
    "cell_variable",
    "is_quantize_input",
    "is_quantize_wrapper",
    "is_recurrent",
    "iter_recurrent_layers",
    "recurrent_cell",
    "recurrent_layer_names",
    "resolve_weight_values",
    "select_recurrent_layers",
    "unwrap",
    "weight_names",
]

#: Weights of the stock tf_keras cells that pruning, thresholding and quantization act on.
STOCK_CELL_WEIGHTS: tuple[str, ...] = ("kernel", "recurrent_kernel")
_STOCK_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)
_WRAPPERS = (PruneLowMagnitude, QuantizeWrapper, QuantizeAnnotate)
_EXPECTED = "an RNN layer (keras.layers.RNN(cell) with a keras_rnnedge cell, or LSTM/GRU/SimpleRNN)"
# Suffixes that name the factors of a matrix (``_u``/``_v``, ``_factor_<i>``, ``_core_<i>``), from
# the matrix families.
_FACTOR = factor_suffix()


def is_quantize_wrapper(layer) -> bool:
    """Whether ``layer`` is a tfmot QAT wrapper (``QuantizeWrapper``/``V2``, subclasses too)."""
    return isinstance(layer, QuantizeWrapper)


def is_quantize_input(layer) -> bool:
    """Whether ``layer`` is tfmot's input ``QuantizeLayer`` (or a subclass: the loadable copy in
    :mod:`keras_rnnedge.optimize.saving`); its variables are ranges, not parameters."""
    return isinstance(layer, QuantizeLayer)


def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer inside tfmot's ``PruneLowMagnitude``, ``QuantizeWrapper`` and ``QuantizeAnnotate``.

    Args:
        layer: any Keras layer, wrapped or not.

    Returns:
        The innermost wrapped layer (``layer`` itself when it is not wrapped).
    """
    while isinstance(layer, _WRAPPERS):
        layer = layer.layer
    return layer


def is_recurrent(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` (seen through tfmot wrappers) is a supported recurrent layer."""
    return _supported_cell(unwrap(layer)) is not None


def _supported_cell(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    if not isinstance(layer, keras.layers.RNN):
        return None
    cell = layer.cell
    if isinstance(cell, (CompressedCell, *_STOCK_CELLS)):
        return cell
    return None


def recurrent_cell(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The cell of a supported recurrent layer (seeing through tfmot wrappers).

    Args:
        layer: ``keras.layers.RNN(cell)``, ``LSTM``, ``GRU`` or ``SimpleRNN``, possibly wrapped by
            tfmot.

    Returns:
        The layer's cell.

    Raises:
        ValueError: if ``layer`` is not a supported recurrent layer.
    """
    inner = unwrap(layer)
    cell = _supported_cell(inner)
    if cell is None:
        if isinstance(inner, keras.layers.RNN):
            raise ValueError(
                f"Received the RNN layer {inner.name!r} whose cell is a "
                f"{type(inner.cell).__name__}, which keras_rnnedge.optimize does not support. "
                "Expected a keras_rnnedge cell (keras_rnnedge.cells.CELL_REGISTRY) or a stock "
                "LSTMCell/GRUCell/SimpleRNNCell; use one of those cells.")
        raise ValueError(
            f"Received the layer {getattr(inner, 'name', inner)!r} of class "
            f"{type(inner).__name__}, expected {_EXPECTED}. Pass a recurrent layer, or a model "
            "that contains one.")
    return cell


def _walk(obj: Any) -> Iterator[tuple[keras.layers.Layer, keras.layers.Layer]]:
    """(outermost layer, supported RNN layer) pairs inside ``obj``."""
    inner = unwrap(obj)
    if isinstance(inner, keras.Model):
        for layer in inner.layers:
            yield from _walk(layer)
    elif isinstance(inner, keras.layers.Bidirectional):
        for direction in (inner.forward_layer, inner.backward_layer):
            if _supported_cell(direction) is not None:
                yield direction, direction
    elif _supported_cell(inner) is not None:
        yield obj, inner


def iter_recurrent_layers(model_or_layer: keras.layers.Layer) -> Iterator[keras.layers.RNN]:
    """The supported recurrent layers of a model, unwrapped, in the order of ``model.layers``.

    Recurses into nested models, sees through tfmot's wrappers and yields both directions of a
    ``Bidirectional``. RNN layers over other cells (``StackedRNNCells``, custom cells) are
    skipped.

    Args:
        model_or_layer: a ``keras.Model`` or a single layer.

    Yields:
        Each supported ``keras.layers.RNN`` (``LSTM``, ``GRU`` and ``SimpleRNN`` included).
    """
    for _, rnn in _walk(model_or_layer):
        yield rnn


def recurrent_layer_names(model_or_layer: keras.layers.Layer) -> list[str]:
    """Names of the supported recurrent layers of a model (see :func:`iter_recurrent_layers`)."""
    return [rnn.name for rnn in iter_recurrent_layers(model_or_layer)]


def select_recurrent_layers(
    model: keras.layers.Layer, layers: Sequence[str] | None = None,
) -> list[tuple[keras.layers.Layer, keras.layers.Layer]]:
    """``(outermost layer, RNN layer)`` pairs of a model, optionally only those named.

    Args:
        model: a model or a layer.
        layers: names of the RNN layers or of their wrappers; ``None`` selects all.

    Returns:
        The pairs, in the order of :func:`iter_recurrent_layers`. The outer layer is the tfmot
        wrapper around the RNN, or the RNN itself.

    Raises:
        ValueError: if a name is not that of a supported recurrent layer of the model.
        TypeError: if ``layers`` is not a list of names.
    """
    pairs = list(_walk(model))
    if layers is None:
        return pairs
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(f"Received layers={layers!r}, expected a list of layer names or None.")
    known = {name for outer, rnn in pairs for name in (outer.name, rnn.name)}
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise ValueError(
            f"Received layers={list(layers)!r}, but {unknown!r} are not recurrent layers of the "
            f"model. Expected names among {sorted(rnn.name for _, rnn in pairs)} (layers "
            "expected: " + _EXPECTED + ").")
    wanted = set(layers)
    return [(outer, rnn) for outer, rnn in pairs if outer.name in wanted or rnn.name in wanted]


def weight_names(layer_or_cell: keras.layers.Layer, kind: str = "prunable") -> tuple[str, ...]:
    """The weights of a cell that pruning (``"prunable"``) or QAT (``"quantizable"``) act on.

    For a keras_rnnedge cell these are the declared names the instance has (a low-rank cell has
    ``kernel_u``/``kernel_v`` and no ``kernel``); for a stock cell, ``kernel`` and
    ``recurrent_kernel``. The cell must be built for a keras_rnnedge cell to know which it has.

    Args:
        layer_or_cell: a supported recurrent layer (possibly wrapped) or its cell.
        kind: ``"prunable"`` or ``"quantizable"``.

    Returns:
        Attribute names of the cell, in declaration order.

    Raises:
        ValueError: if ``kind`` is unknown or the layer is not a supported recurrent layer.
    """
    if kind not in ("prunable", "quantizable"):
        raise ValueError(f"Received kind={kind!r}, expected 'prunable' or 'quantizable'.")
    cell = layer_or_cell
    if not isinstance(cell, (CompressedCell, *_STOCK_CELLS)):
        cell = recurrent_cell(layer_or_cell)
    if isinstance(cell, CompressedCell):
        declared = cell.prunable_weights if kind == "prunable" else cell.quantizable_weights
        return tuple(cell.present_weights(tuple(declared)))
    return STOCK_CELL_WEIGHTS


def _declared_names(cell: keras.layers.Layer, kind: str = "prunable") -> tuple[str, ...]:
    """Names the cell may have: the present ones once built, all declared ones before."""
    if isinstance(cell, CompressedCell) and not cell.built:
        return tuple(cell.prunable_weights if kind == "prunable" else cell.quantizable_weights)
    return weight_names(cell, kind)


def _base(name: str) -> str:
    return _FACTOR.sub("", name)


def _valid_keys(names: Sequence[str]) -> list[str]:
    """Names a user may use for ``names``: the names themselves and their base names."""
    return sorted(set(names) | {_base(n) for n in names})


def resolve_weight_values(
    cell: keras.layers.Layer,
    value: Any,
    *,
    argument: str,
    check: Callable[[Any, str], Any],
    layer_name: str | None = None,
    kind: str = "prunable",
) -> dict[str, Any]:
    """Expand a per-weight specification into ``{attribute name: value}`` for one cell.

    ``value`` is either one value for every weight or a mapping from weight names or base names
    to values (an exact name wins over its base name). Weights the mapping does not mention are
    left out of the result.

    Args:
        cell: the cell (built or not; unbuilt keras_rnnedge cells are checked against every
            weight name they declare).
        value: a single value or a mapping.
        argument: the argument name, for error messages.
        check: validates one value, ``check(value, where)`` returns it (converted) or raises.
        layer_name: the layer's name, for error messages.
        kind: ``"prunable"`` or ``"quantizable"``.

    Returns:
        The value of each weight of the cell that the specification covers.

    Raises:
        ValueError: for a name the cell lacks (the message lists the valid names) or a value
            ``check`` refuses.
        TypeError: if a mapping key is not a string.
    """
    names = _declared_names(cell, kind)
    where = f"layer {layer_name!r}" if layer_name else f"cell {cell.name!r}"
    if not isinstance(value, Mapping):
        checked = check(value, argument)
        return {n: checked for n in names}
    keys = _valid_keys(names)
    out: dict[str, Any] = {}
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"Received the key {key!r} in {argument}, expected weight names "
                            f"(strings) among {keys}.")
        if key not in keys:
            raise ValueError(
                f"Received {argument}={dict(value)!r}, but {where} "
                f"({type(cell).__name__}) has no weight {key!r}. Expected names among {keys} "
                "(a base name such as 'kernel' also covers its low-rank factors kernel_u and "
                "kernel_v).")
    for name in names:
        if name in value:
            out[name] = check(value[name], f"{argument}[{name!r}]")
        elif _base(name) in value:
            out[name] = check(value[_base(name)], f"{argument}[{_base(name)!r}]")
    return out


def cell_variable(cell: keras.layers.Layer, name: str,
                  owner: keras.layers.Layer | None = None) -> tf.Variable:
    """The ``tf.Variable`` behind the cell attribute ``name``.

    tfmot's quantize wrapper replaces the attribute by a fake-quantized tensor, and Keras then
    stops listing the variable among the cell's weights (the wrapper keeps it). The variable is
    then looked up by name among the weights of ``owner`` (the outermost wrapper).

    Args:
        cell: a recurrent cell.
        name: the attribute name (``"kernel"``, ``"recurrent_kernel_u"``, ...).
        owner: the layer that owns the variables when the cell is quantization-wrapped.

    Raises:
        ValueError: if no such variable is found.
    """
    value = getattr(cell, name, None)
    if isinstance(value, tf.Variable):
        return value
    for weight in (owner if owner is not None else cell).weights:
        if weight.name.split(":")[0].split("/")[-1] == name:
            return weight
    raise ValueError(f"Received the weight name {name!r}, but cell {cell.name!r} "
                     f"({type(cell).__name__}) has no such variable. Expected one of "
                     f"{[w.name for w in cell.weights]}.")
