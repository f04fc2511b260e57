"""Magnitude pruning of recurrent layers with a target sparsity per weight.

tfmot's ``PruneLowMagnitude`` gives every weight of a layer the same schedule. The recurrent
matrices of a cell tolerate different sparsities (FastGRNN keeps more of ``U`` than of ``W``),
so :class:`PruneLowMagnitudePerWeight` subclasses it: a pruning object looks up the schedule of
each weight it masks. tfmot's ``UpdatePruningStep`` and ``strip_pruning`` recognise the subclass
(they test ``isinstance``), and it saves to ``.keras`` and loads with
:func:`keras_rnnedge.optimize.load_model`.

Each mask update keeps exactly ``max(1, round(size * (1 - sparsity)))`` entries of a weight,
those of largest magnitude, ties going to the lower flat index (tfmot's own mask keeps every
entry tied with the threshold, which can leave more non-zeros than the target).

Example:
    >>> from keras_rnnedge import keras
    >>> from keras_rnnedge.cells import FastGRNNCell
    >>> from keras_rnnedge import optimize
    >>> model = keras.Sequential([keras.Input((10, 3)), keras.layers.RNN(FastGRNNCell(8)),
    ...                           keras.layers.Dense(2)])
    >>> pruned = optimize.prune_low_magnitude(
    ...     model, {"kernel": 0.5, "recurrent_kernel": 0.75})
    >>> # pruned.compile(...); pruned.fit(..., callbacks=[optimize.UpdatePruningStep()])
    >>> # deployed = optimize.strip_pruning(pruned); or pruned.save("m.keras") and
    >>> # optimize.load_model("m.keras")
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from keras_rnnedge._compat import keras, register, tf, tfmot
from keras_rnnedge.optimize._tfmot import PruneLowMagnitude, Pruning
from keras_rnnedge.optimize.recurrent import (
    recurrent_cell,
    resolve_weight_values,
    select_recurrent_layers,
    unwrap,
    weight_names,
)

__all__ = [
    "PerWeightPruning",
    "PruneLowMagnitudePerWeight",
    "UpdatePruningStep",
    "magnitude_mask",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
]

ConstantSparsity = tfmot.sparsity.keras.ConstantSparsity
PolynomialDecay = tfmot.sparsity.keras.PolynomialDecay
PruningSchedule = tfmot.sparsity.keras.PruningSchedule
#: tfmot's callback that advances the pruning step; required by ``fit`` on a pruned model.
UpdatePruningStep = tfmot.sparsity.keras.UpdatePruningStep
_SCHEDULES = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def magnitude_mask(weights: tf.Tensor, sparsity: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mask keeping the ``max(1, round(size * (1 - sparsity)))`` largest-magnitude entries.

    Ties go to the lower flat index (``tf.math.top_k`` is stable), so the count is exact.

    Args:
        weights: a tensor with a static shape.
        sparsity: the fraction of zeros wanted (scalar tensor or float).

    Returns:
        ``(threshold, mask)``: the smallest kept magnitude and a 0/1 mask of ``weights.dtype``.
    """
    size = weights.shape.num_elements()
    flat = tf.reshape(tf.math.abs(weights), [-1])
    density = 1.0 - tf.cast(sparsity, tf.float32)
    keep = tf.cast(tf.math.maximum(tf.math.round(float(size) * density), 1.0), tf.int32)
    values, order = tf.math.top_k(flat, k=size, sorted=True)
    rank = tf.math.invert_permutation(order)
    mask = tf.reshape(tf.cast(rank < keep, weights.dtype), weights.shape)
    return tf.cast(tf.gather(values, keep - 1), weights.dtype), mask


class PerWeightPruning(Pruning):
    """tfmot's ``Pruning`` with one schedule per weight variable and an exact-count mask.

    The layer-level schedule decides *when* masks are updated (all weights together); the
    schedule of each weight gives its target sparsity.

    Args:
        weight_schedules: ``{variable.ref(): PruningSchedule}``; variables not in it use
            ``pruning_schedule``.
        **kwargs: the arguments of tfmot's ``Pruning``.
    """

    def __init__(self, *, weight_schedules: Mapping[Any, PruningSchedule], **kwargs):
        super().__init__(**kwargs)
        self._weight_schedules = dict(weight_schedules)

    def schedule_for(self, weights) -> PruningSchedule:
        """The schedule of one weight variable (the layer's schedule if it has none)."""
        try:
            return self._weight_schedules.get(weights.ref(), self._pruning_schedule)
        except (AttributeError, TypeError):
            return self._pruning_schedule

    def _update_mask(self, weights):
        sparsity = self.schedule_for(weights)(self._step_fn())[1]
        with tf.name_scope("pruning_ops"):
            return magnitude_mask(weights, sparsity)


def _deserialize_schedule(config) -> PruningSchedule:
    if isinstance(config, PruningSchedule):
        return config
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise TypeError(f"Received the pruning schedule config {config!r}, expected a dict "
                        "{'class_name': ..., 'config': {...}} as PruningSchedule.get_config() "
                        "returns.")
    name = config["class_name"]
    cls = _SCHEDULES.get(name) or keras.saving.get_registered_object(name)
    if cls is None:
        raise ValueError(f"Received the unknown pruning schedule class {name!r}. Expected one of "
                         f"{sorted(_SCHEDULES)} or a class registered with "
                         "keras.saving.register_keras_serializable.")
    return cls.from_config(config["config"])


def _short_name(variable) -> str:
    return variable.name.split(":")[0].split("/")[-1]


def _check_schedule(value, argument):
    if not isinstance(value, PruningSchedule):
        raise TypeError(f"Received {argument}={value!r}, expected a "
                        "tfmot.sparsity.keras.PruningSchedule.")
    return value


@register
class PruneLowMagnitudePerWeight(PruneLowMagnitude):
    """tfmot's pruning wrapper for a recurrent layer, with a target sparsity per weight.

    Build one with :func:`prune_low_magnitude`. It is a ``PruneLowMagnitude``, so tfmot's
    ``UpdatePruningStep`` drives it and ``strip_pruning`` removes it.

    Args:
        layer: a supported recurrent layer (``RNN(cell)`` with a keras_rnnedge cell, ``LSTM``,
            ``GRU``, ``SimpleRNN``).
        pruning_schedule: schedule of the weights that ``weight_schedules`` does not name; it
            also decides at which steps the masks are updated.
        weight_schedules: ``{weight name or base name: PruningSchedule}``. A base name
            (``"kernel"``) covers the low-rank factors (``kernel_u``, ``kernel_v``); an exact
            name wins over its base name. Only the sparsity of these schedules is used.
        **kwargs: passed to ``PruneLowMagnitude`` (block and m-by-n sparsity are not supported).

    Raises:
        ValueError: for a layer that is not a supported recurrent layer, a weight name the cell
            lacks, or block / m-by-n sparsity options.
    """

    def __init__(self, layer: keras.layers.Layer,
                 pruning_schedule: PruningSchedule | None = None,
                 weight_schedules: Mapping[str, PruningSchedule] | None = None, **kwargs):
        block_size = tuple(kwargs.get("block_size", (1, 1)))
        if block_size != (1, 1) or kwargs.get("sparsity_m_by_n"):
            raise ValueError(
                f"Received block_size={block_size} / sparsity_m_by_n="
                f"{kwargs.get('sparsity_m_by_n')!r}; PruneLowMagnitudePerWeight supports only "
                "element-wise pruning (block_size=(1, 1), sparsity_m_by_n=None). Use tfmot's "
                "prune_low_magnitude for structured sparsity.")
        cell = recurrent_cell(layer)
        if not hasattr(layer, "get_prunable_weights"):
            # tfmot's registry knows RNN, LSTM, GRU and SimpleRNN by exact class only; this
            # accessor (what the registry would attach) also covers subclasses of RNN.
            def get_prunable_weights():
                return [getattr(cell, n) for n in weight_names(cell, "prunable")]

            layer.get_prunable_weights = get_prunable_weights
        if pruning_schedule is None:
            pruning_schedule = ConstantSparsity(0.0, 0, frequency=1)
        _check_schedule(pruning_schedule, "pruning_schedule")
        weight_schedules = dict(weight_schedules or {})
        # Validates the names (against the declared names while the cell is unbuilt).
        resolve_weight_values(cell, weight_schedules, argument="weight_schedules",
                              check=_check_schedule, layer_name=layer.name)
        super().__init__(layer, pruning_schedule=pruning_schedule, **kwargs)
        self.weight_schedules = weight_schedules

    def add_weight(self, name=None, *args, **kwargs):
        # tfmot names the mask and threshold of every pruned weight "mask" and "threshold". A
        # recurrent layer has several pruned weights, and HDF5 stores a layer's weights by name,
        # so the .h5 save failed ("name already exists"). Prefix them with the weight's name.
        # (.keras files and checkpoints address variables by position, so nothing else changes.)
        if getattr(self, "_naming_pruning_vars", False) and name in ("mask", "threshold"):
            weights = getattr(self, "prunable_weights", None) or []
            done = sum(1 for w in self._non_trainable_weights
                       if _short_name(w).endswith(f"_{name}"))
            if done < len(weights):
                name = f"{_short_name(weights[done])}_{name}"
        return super().add_weight(name, *args, **kwargs)

    def build(self, input_shape):
        self._naming_pruning_vars = True
        try:
            super().build(input_shape)
        finally:
            self._naming_pruning_vars = False
        cell = recurrent_cell(self.layer)
        by_name = resolve_weight_values(cell, self.weight_schedules, argument="weight_schedules",
                                        check=_check_schedule, layer_name=self.layer.name)
        by_ref = {}
        for name in weight_names(cell, "prunable"):
            variable = getattr(cell, name)
            by_ref[variable.ref()] = by_name.get(name, self.pruning_schedule)

        def training_step_fn():
            return self.pruning_step

        self.pruning_obj = PerWeightPruning(
            weight_schedules=by_ref,
            training_step_fn=training_step_fn,
            pruning_vars=self.pruning_vars,
            pruning_schedule=self.pruning_schedule,
            block_size=self.block_size,
            sparsity_m_by_n=self.sparsity_m_by_n,
            block_pooling_type=self.block_pooling_type)

    def masks(self) -> dict[str, tf.Variable]:
        """``{weight name: mask variable}`` of the wrapped cell (after the wrapper is built)."""
        cell = recurrent_cell(self.layer)
        refs = {getattr(cell, n).ref(): n for n in weight_names(cell, "prunable")}
        return {refs[w.ref()]: m for w, m, _ in self.pruning_vars if w.ref() in refs}

    def get_config(self):
        return {**super().get_config(),
                "weight_schedules": {k: s.get_config() for k, s in self.weight_schedules.items()}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        pruning_schedule = _deserialize_schedule(config.pop("pruning_schedule"))
        weight_schedules = {k: _deserialize_schedule(v)
                            for k, v in config.pop("weight_schedules", {}).items()}
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, pruning_schedule=pruning_schedule, weight_schedules=weight_schedules,
                   **config)


def _check_sparsity(value, argument):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"Received {argument}={value!r}, expected a float in [0, 1) (the "
                         "fraction of zeros). Pass e.g. 0.8 to keep 20 % of the entries.")
    return float(value)


def _check_step(value, argument, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Received {argument}={value!r}, expected an integer >= {minimum}.")
    return int(value)


def prune_low_magnitude(
    layer_or_model: keras.layers.Layer,
    sparsity: float | Mapping[str, float] = 0.5,
    *,
    schedule: str = "constant",
    begin_step: int = 0,
    end_step: int = -1,
    frequency: int = 1,
    initial_sparsity: float = 0.0,
    power: float = 3.0,
    layers: Sequence[str] | None = None,
) -> keras.layers.Layer:
    """Wrap recurrent layers for magnitude pruning with a target sparsity per weight.

    Train the result with ``callbacks=[UpdatePruningStep()]``, then :func:`strip_pruning`.

    Args:
        layer_or_model: a supported recurrent layer, or a Sequential/functional model whose
            recurrent layers get wrapped (other layers are shared unchanged, as in tfmot).
        sparsity: target fraction of zeros in [0, 1), for every prunable weight, or a dict from
            weight names to targets, e.g. ``{"kernel": 0.8, "recurrent_kernel": 0.7}``. A base
            name covers its low-rank factors; weights a dict does not name are not pruned.
        schedule: ``"constant"`` (tfmot's ``ConstantSparsity``: the target from ``begin_step``)
            or ``"polynomial"`` (``PolynomialDecay`` from ``initial_sparsity`` at
            ``begin_step`` to the target at ``end_step``).
        begin_step: first training step (batch) at which masks are updated.
        end_step: last step of mask updates; -1 means until training ends (constant only).
        frequency: update the masks every ``frequency`` steps. tfmot's ``ConstantSparsity``
            defaults to 100, which prunes nothing in a short run; here the default is 1.
        initial_sparsity: starting sparsity of the polynomial schedule.
        power: exponent of the polynomial schedule.
        layers: names of the recurrent layers to prune in a model (default: all of them).

    Returns:
        The wrapped layer (a :class:`PruneLowMagnitudePerWeight`) or a new model sharing the
        original layers (uncompiled).

    Raises:
        ValueError: for a non-recurrent layer (or a model without recurrent layers), a sparsity
            outside [0, 1), a weight name the cell lacks (the message lists the valid names), bad
            steps, an unknown schedule, or a layer that is already wrapped for pruning.
        TypeError: for an argument of the wrong type.
    """
    if schedule not in ("constant", "polynomial"):
        raise ValueError(f"Received schedule={schedule!r}, expected 'constant' or 'polynomial'.")
    begin_step = _check_step(begin_step, "begin_step", 0)
    frequency = _check_step(frequency, "frequency", 1)
    if schedule == "polynomial":
        end_step = _check_step(end_step, "end_step", begin_step + 1)
        initial_sparsity = _check_sparsity(initial_sparsity, "initial_sparsity")
    elif end_step != -1:
        end_step = _check_step(end_step, "end_step", begin_step)
    if isinstance(sparsity, Mapping):
        for key, value in sparsity.items():
            _check_sparsity(value, f"sparsity[{key!r}]")
    else:
        _check_sparsity(sparsity, "sparsity")

    def make(target: float) -> PruningSchedule:
        if schedule == "constant":
            return ConstantSparsity(target, begin_step, end_step=end_step, frequency=frequency)
        if initial_sparsity > target:
            raise ValueError(f"Received initial_sparsity={initial_sparsity} above the target "
                             f"sparsity {target}; expected initial_sparsity <= every target.")
        return PolynomialDecay(initial_sparsity, target, begin_step, end_step, power=power,
                               frequency=frequency)

    def wrap(layer):
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(f"Received the layer {layer.name!r}, which is already wrapped for "
                             "pruning. Expected an unwrapped layer: call strip_pruning first.")
        cell = recurrent_cell(layer)  # raises for a non-recurrent layer
        if isinstance(sparsity, Mapping):
            resolve_weight_values(cell, sparsity, argument="sparsity", check=_check_sparsity,
                                  layer_name=layer.name)
            return PruneLowMagnitudePerWeight(
                layer, pruning_schedule=ConstantSparsity(0.0, begin_step, end_step=end_step,
                                                         frequency=frequency),
                weight_schedules={k: make(float(v)) for k, v in sparsity.items()})
        return PruneLowMagnitudePerWeight(layer, pruning_schedule=make(float(sparsity)))

    if not isinstance(layer_or_model, keras.Model):
        if not isinstance(layer_or_model, keras.layers.Layer):
            raise TypeError(f"Received {layer_or_model!r}, expected a keras layer or model "
                            "(tf_keras; Keras 3 objects are not supported by tfmot).")
        if layers is not None:
            raise ValueError(f"Received layers={layers!r} with a single layer; pass layers only "
                             "with a model.")
        return wrap(layer_or_model)

    targets = {id(rnn): rnn.name for _, rnn in select_recurrent_layers(layer_or_model, layers)}
    if not targets:
        raise ValueError(
            f"Received the model {layer_or_model.name!r}, which has no supported recurrent layer "
            "to prune. Expected a model with RNN(cell) layers using keras_rnnedge cells, or "
            "LSTM/GRU/SimpleRNN layers; use tfmot's prune_low_magnitude for other layers.")
    wrapped: set[int] = set()

    def clone_function(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, input_tensors=None,
                                            clone_function=clone_function)
        if id(unwrap(layer)) in targets:
            wrapped.add(id(unwrap(layer)))
            return wrap(layer)
        return layer

    model = keras.models.clone_model(layer_or_model, input_tensors=None,
                                     clone_function=clone_function)
    missed = [name for key, name in targets.items() if key not in wrapped]
    if layers is not None and missed:
        raise ValueError(f"Received layers={list(layers)!r}, but {missed} could not be wrapped "
                         "(a direction of a Bidirectional layer?). Expected layers of the model "
                         "itself or of a nested model.")
    return model


def strip_pruning(model_or_layer: keras.layers.Layer) -> keras.layers.Layer:
    """Remove the pruning wrappers (tfmot's ``strip_pruning``; also accepts a single layer).

    The result shares the wrapped layers, whose weights ``UpdatePruningStep`` left masked.

    Args:
        model_or_layer: a model with pruning wrappers, or one ``PruneLowMagnitude`` layer.

    Returns:
        The model without wrappers, or the wrapped layer.

    Raises:
        TypeError: if ``model_or_layer`` is neither a model nor a pruning wrapper.
    """
    if isinstance(model_or_layer, keras.Model):
        return tfmot.sparsity.keras.strip_pruning(model_or_layer)
    if isinstance(model_or_layer, PruneLowMagnitude):
        return model_or_layer.layer
    raise TypeError(f"Received {model_or_layer!r}, expected a keras Model or a "
                    "PruneLowMagnitude layer.")


def prune_scope():
    """tfmot's ``prune_scope``: deserialization scope for pruned models (``.h5``, configs)."""
    return tfmot.sparsity.keras.prune_scope()
