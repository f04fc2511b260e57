"""Lowering: a trained Keras model → a batch-1 model made only of TFLite builtin ops.

The trained model must be a chain ``Input → [Normalization] → RNN … RNN → head``: an optional
stock ``keras.layers.Normalization`` standardising each input feature (:class:`Standardization`;
the lowered models apply it, so they take the raw feature vectors the Keras model takes), one or
more recurrent layers (``keras.layers.RNN`` over a registered cell, or stock ``SimpleRNN``/``GRU``/
``LSTM``), the last returning its final output, then ``Dense``/``Activation``/``Dropout``
layers. Pruning and QAT wrappers are stripped: the lowered model carries the float weights
(pruned zeros included); a QAT model's trained weights are used, and in an int8 conversion its
trained input and output ranges (:func:`~keras_rnnedge.converters.tflite.flatbuffer.qat_ranges`);
the other activation ranges are calibrated from the representative data.

Three modes:

* ``"step"``: one time step, with every recurrent state as an explicit input (``state_<i>``) and
  output (``state_<i>_out``); the caller loops over time and feeds the state back.
* ``"unrolled"``: the whole sequence of a fixed length, unrolled (no control flow).
* ``"fused"``: stock ``LSTM`` layers as TFLite's ``UNIDIRECTIONAL_SEQUENCE_LSTM``.

Each cell class has a lowering in :data:`LOWERINGS`; low-rank factors are kept factored or
folded into one matrix, whichever has fewer non-zeros (the smaller to store and to compute).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from keras_rnnedge._compat import keras, np, tf
from keras_rnnedge.cells import CELL_REGISTRY, CompressedCell
from keras_rnnedge.cells.base import TRAINING_AIDS
from keras_rnnedge.cells.step import step_of
from keras_rnnedge.flexible import SwitchingCell, WithLevel
from keras_rnnedge.micro_targets.validate import check_positive_int, check_sequences
from keras_rnnedge.optimize import is_quantize_input, is_quantize_wrapper, strip_pruning, unwrap

__all__ = [
    "LOWERINGS",
    "MODES",
    "ConversionError",
    "LoweredModel",
    "ModelPlan",
    "Standardization",
    "check_inputs",
    "is_qat",
    "lower",
    "plan_model",
    "without_masking",
    "strip_wrappers",
    "supported_layers",
]

MODES = ("step", "unrolled", "fused")


class ConversionError(ValueError):
    """The model or an option cannot be converted; the message says what and how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class Standardization:
    """Per-feature input standardisation ``x' = (x - offset) * scale``: a leading
    ``keras.layers.Normalization(axis=-1)`` read as constants.

    Keras computes ``(x - mean) / maximum(sqrt(variance), keras.backend.epsilon())`` (in
    float32); ``offset`` is ``mean`` and ``scale`` the reciprocal of that float32 denominator,
    so ``scale > 0`` always. Every export applies it to the raw input: the TFLite models as
    SUB and MUL by per-feature constants right after ``x`` (the TFLite converter folds the MUL
    into the first FULLY_CONNECTED's weights where it can), the float C at the start of
    ``<id>_step``, the integer C folded into its per-feature input quantization (no run-time
    cost).

    Attributes:
        offset: per-feature ``float64`` offsets (the layer's ``mean``), shape ``(features,)``.
        scale: per-feature ``float64`` scales (``1 / max(sqrt(variance), epsilon)``).
    """

    offset: np.ndarray
    scale: np.ndarray

    def __post_init__(self):
        for field in ("offset", "scale"):
            values = np.array(getattr(self, field), np.float64).reshape(-1)
            values.setflags(write=False)
            object.__setattr__(self, field, values)
        if self.offset.shape != self.scale.shape:
            raise ValueError(f"Expected offset and scale of one shape, but got "
                             f"{self.offset.shape} and {self.scale.shape}.")

    @classmethod
    def of_layer(cls, layer) -> Standardization:
        """The constants of a built ``Normalization`` layer, as its ``call`` uses them."""
        mean = np.asarray(layer.mean, np.float32).reshape(-1)
        denominator = np.maximum(np.sqrt(np.asarray(layer.variance, np.float32).reshape(-1)),
                                 np.float32(keras.backend.epsilon()))
        return cls(offset=mean, scale=1.0 / denominator.astype(np.float64))

    def apply(self, x) -> np.ndarray:
        """``(x - offset) * scale`` over the last axis of ``x``, in float64."""
        return (np.asarray(x, np.float64) - self.offset) * self.scale


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """The trained model read as ``[standardisation →] recurrent layers → head``.

    ``standardization`` is the leading ``Normalization`` layer's :class:`Standardization`
    (``None`` without one): the recurrent layers read ``standardization.apply(x)``.
    """

    name: str
    timesteps: int | None
    features: int
    recurrent: tuple[keras.layers.Layer, ...]
    head: tuple[keras.layers.Layer, ...]
    num_outputs: int
    standardization: Standardization | None = None


@dataclasses.dataclass(frozen=True)
class LoweredModel:
    """A batch-1 Keras model ready for the TFLite converter, and how to drive it.

    Attributes:
        model: the Keras model.
        mode: ``"step"``, ``"unrolled"`` or ``"fused"``.
        inputs: input names in the model's order (``x`` then ``state_<i>``).
        outputs: output names (``y`` then ``state_<i>_out``).
        state_sizes: length of each recurrent state vector (step mode).
        timesteps: sequence length of unrolled/fused models (``None`` in step mode).
        features: input features per time step.
        folded: names of factored matrices folded into one (``layer/kernel``...).
        standardization: the trained model's input :class:`Standardization`, which the model
            applies right after ``x`` (``None`` without a ``Normalization`` layer).
        standardized_input: ``True`` when ``model`` leaves ``standardization`` to its caller
            (``lower(..., standardize="caller")``): its ``x`` is the standardised features,
            and :meth:`prepare` turns raw windows into them.
        num_levels: a flexible model's number of levels (:mod:`keras_rnnedge.flexible`): its
            step model takes the step's level as the int32 input ``level`` (after ``x``; a
            level above the top runs the top); ``None`` otherwise, and for unrolled/fused
            models (the top level).
    """

    model: keras.Model
    mode: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    state_sizes: tuple[int, ...]
    timesteps: int | None
    features: int
    folded: tuple[str, ...] = ()
    standardization: Standardization | None = None
    standardized_input: bool = False
    num_levels: int | None = None

    def step_inputs(self, x_t, states, level: int | None = None) -> list:
        """The inputs of one call of a step model, in its order: ``x_t`` ``(1, F)``, a flexible
        model's level (``None``: the top level), the states."""
        if self.num_levels is None:
            return [x_t, *states]
        top = self.num_levels - 1 if level is None else int(level)
        return [x_t, np.array([[top]], np.int32), *states]

    def prepare(self, x) -> np.ndarray:
        """Raw input windows as :attr:`model` takes them (float32): standardised when the
        model leaves the standardisation to its caller, ``x`` itself otherwise."""
        if self.standardized_input and self.standardization is not None:
            return self.standardization.apply(x).astype(np.float32)
        return np.asarray(x, np.float32)


#: Where a lowered model standardises its input: ``"graph"`` (SUB and MUL after ``x``) or
#: ``"caller"`` (``x`` is already standardised: the int8 TFLite models, whose one input scale
#: cannot resolve raw features of different ranges).
STANDARDIZE = ("graph", "caller")


# -- reading the trained model ------------------------------------------------------------------

_HEAD_LAYERS = (keras.layers.Dense, keras.layers.Activation, keras.layers.Dropout)
_SKIPPED = (keras.layers.InputLayer, keras.layers.Dropout, WithLevel)
_STOCK_RNN = {keras.layers.LSTM: keras.layers.LSTMCell, keras.layers.GRU: keras.layers.GRUCell,
              keras.layers.SimpleRNN: keras.layers.SimpleRNNCell}


#: Front ends that take something other than feature vectors (token ids): no lowering.
_FRONT_ENDS = (keras.layers.Embedding,)
_FRONT_END_WHY = ("a front end that maps token ids to vectors has no lowering (the converted "
                  "models take float feature vectors). Compute the embedding outside the model "
                  "(layer.get_weights()[0][ids]) and convert the model from the recurrent layer "
                  "on, with keras.Input((timesteps, embedding size))")


def supported_layers() -> list[str]:
    """Names of everything a model to convert may contain."""
    cells = sorted(CELL_REGISTRY) + ["LSTMCell", "GRUCell", "SimpleRNNCell"]
    return ([f"RNN({c})" for c in cells] + ["LSTM", "GRU", "SimpleRNN", "Dense", "Activation",
                                            "Dropout", "InputLayer",
                                            "Normalization (first layer, axis=-1)"])


def _unsupported(layer, why: str) -> ConversionError:
    return ConversionError(
        f"Cannot convert layer {layer.name!r} ({type(layer).__name__}): {why}. Supported: "
        f"{', '.join(supported_layers())}. Replace the layer, or convert the part of the model "
        "up to it.")


def _masking_refusal(layer) -> ConversionError:
    return ConversionError(
        f"Cannot convert layer {layer.name!r} (Masking, mask_value={layer.mask_value!r}): the "
        "converted models have no mask input, so they would run the padded steps as data "
        "and change the state (on padded sequences the outputs would differ from Keras'). "
        "On a device the step model sees only the samples you stream, so stream the real "
        "samples of each sequence (no padding) and convert the model without the layer: "
        "convert(keras_rnnedge.converters.without_masking(model), ...) (same weights; on "
        "unpadded sequences its outputs equal the Keras model's). Calibrate with unpadded "
        "sequences too.")


def _standardization(layer, model, *, after: keras.layers.Layer | None,
                     seen: Standardization | None) -> Standardization:
    """The :class:`Standardization` of a ``Normalization`` layer of ``model``, or a
    :class:`ConversionError` saying what is wrong with it and what to do.

    ``after``: the recurrent or head layer before it (``None`` when it comes first); ``seen``:
    the standardisation of an earlier ``Normalization`` layer.
    """
    axis = tuple(layer.axis)
    received = f"Normalization, axis={axis if axis else None}, invert={layer.invert}"
    expected = ("expected at most one Normalization, as the first layer, per feature "
                "(keras.layers.Normalization(axis=-1), invert=False) adapted on the raw inputs")
    if after is not None:
        raise ConversionError(
            f"Cannot convert layer {layer.name!r} ({received}): it comes after layer "
            f"{after.name!r}; {expected}. The converted models standardise only their input: "
            "move the Normalization before the first recurrent layer, or remove it.")
    if seen is not None:
        raise ConversionError(
            f"Cannot convert layer {layer.name!r} ({received}): a second Normalization; "
            f"{expected}. Merge the two into one (mean and variance of the composition) or "
            "remove one.")
    rank = model.inputs[0].shape.rank
    last = {-1} | ({rank - 1} if rank is not None else set())
    if layer.invert or len(axis) != 1 or axis[0] not in last:
        raise ConversionError(
            f"Cannot convert layer {layer.name!r} ({received}): {expected}, i.e. one mean and "
            "variance per input feature (the last axis), nothing else. Rebuild it as "
            "keras.layers.Normalization(axis=-1), adapt it on the training inputs and retrain, "
            "or standardise the data outside the model.")
    if not layer.built or getattr(layer, "mean", None) is None:
        raise ConversionError(
            f"Cannot convert layer {layer.name!r} ({received}): it is not built. Build the "
            "model with keras.Input((timesteps, features)) and adapt the layer on the training "
            "inputs before converting.")
    std = Standardization.of_layer(layer)
    features = model.inputs[0].shape[-1]
    if std.offset.size != features:
        raise ConversionError(
            f"Cannot convert layer {layer.name!r} ({received}): it holds {std.offset.size} "
            f"means for {features} input features; {expected}.")
    if not (np.all(np.isfinite(std.offset)) and np.all(np.isfinite(std.scale))):
        raise ConversionError(
            f"Layer {layer.name!r} (Normalization) has NaN or Inf in its mean or variance; "
            "adapt it again on finite training inputs.")
    return std


def without_masking(model: keras.Model) -> keras.Model:
    """The model without its ``Masking`` layers, sharing the same (trained) layers.

    On unpadded sequences its outputs equal ``model``'s; this is what a step model streaming
    only real samples computes. Converters refuse a model with a ``Masking`` layer and point
    here.

    Raises:
        ConversionError: the model is not a chain of layers with one input.
    """
    if not isinstance(model, keras.Model) or not model.inputs or len(model.inputs) != 1:
        raise ConversionError(f"Received {type(model).__name__}, expected a built tf_keras "
                              "Model with one input (batch, timesteps, features).")
    x = inputs = keras.Input(model.inputs[0].shape[1:], name="x")
    for layer in _flatten(model):
        if isinstance(unwrap(layer), (keras.layers.Masking, keras.layers.InputLayer)):
            continue
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _flatten(model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers.extend(_flatten(layer))
        else:
            layers.append(layer)
    return layers


def _cell_of(layer):
    layer = unwrap(layer)
    if isinstance(layer, keras.layers.RNN):  # LSTM, GRU, SimpleRNN and their subclasses too
        return layer.cell
    return None


def plan_model(model: keras.Model) -> ModelPlan:
    """Read a trained model as an optional leading ``Normalization`` (its
    :class:`Standardization`), recurrent layers and a head, or explain why not."""
    if not isinstance(model, keras.Model):
        raise ConversionError(f"Received {type(model).__name__}, expected a tf_keras Model "
                              "(keras_rnnedge.keras, i.e. tf_keras, not Keras 3).")
    if not model.built or not model.inputs:
        raise ConversionError(f"Model {model.name!r} has no defined input: build it with "
                              "keras.Input((timesteps, features)) before converting.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(
            f"Model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; expected one input (batch, timesteps, features) and one output.")
    recurrent, head = [], []
    standardization = None
    for layer in _flatten(model):  # the layers first: a front end also changes the input shape
        inner = unwrap(layer)
        if isinstance(inner, keras.layers.Normalization):
            standardization = _standardization(
                inner, model, after=(head or recurrent or [None])[-1], seen=standardization)
            continue
        if isinstance(inner, _FRONT_ENDS):
            raise ConversionError(
                f"Cannot convert layer {inner.name!r} ({type(inner).__name__}): "
                f"{_FRONT_END_WHY}. Supported layers: {', '.join(supported_layers())}.")
        if isinstance(inner, keras.layers.Masking):
            raise _masking_refusal(inner)
        cell = _cell_of(layer)
        if cell is not None:
            if head:
                raise _unsupported(inner, "a recurrent layer after the head")
            if isinstance(cell, keras.layers.StackedRNNCells) or not (
                    isinstance(cell, (CompressedCell, SwitchingCell)) or _has_lowering(cell)):
                raise _unsupported(inner, f"no lowering for cell {type(cell).__name__}")
            if getattr(inner, "go_backwards", False) or getattr(inner, "return_state", False):
                raise _unsupported(inner, "go_backwards/return_state are not supported")
            recurrent.append(inner)
        elif isinstance(inner, _HEAD_LAYERS) or isinstance(inner, _SKIPPED):
            if isinstance(inner, _HEAD_LAYERS) and not isinstance(inner, keras.layers.Dropout):
                if not recurrent:
                    raise _unsupported(inner, "a head layer before the recurrent layers")
                head.append(inner)
        else:
            raise _unsupported(inner, "no lowering for this layer type")
    shape = model.inputs[0].shape
    if shape.rank != 3 or shape[-1] is None:
        raise ConversionError(f"Model {model.name!r} input shape {tuple(shape)}: expected "
                              "(batch, timesteps, features) with a known number of features.")
    if not recurrent:
        raise ConversionError(f"Model {model.name!r} has no recurrent layer; expected RNN(cell), "
                              "LSTM, GRU or SimpleRNN followed by Dense layers.")
    for layer in recurrent[:-1]:
        if not layer.return_sequences:
            raise _unsupported(layer, "a stacked recurrent layer must return sequences")
    if recurrent[-1].return_sequences:
        raise _unsupported(recurrent[-1], "the last recurrent layer must return only its last "
                           "output (return_sequences=False)")
    return ModelPlan(name=model.name, timesteps=shape[1], features=int(shape[-1]),
                     recurrent=tuple(recurrent), head=tuple(head),
                     num_outputs=int(model.outputs[0].shape[-1]),
                     standardization=standardization)


def check_inputs(model: keras.Model, representative_data=None, *, mode: str,
                 timesteps: int | None = None, class_names=None
                 ) -> tuple[ModelPlan, np.ndarray | None]:
    """Check a model and the data to convert it with, before any conversion work.

    The model is read first (:func:`plan_model`: an unsupported layer is named with the
    supported ones), then the options and the data against it. Sequence length: an
    ``"unrolled"``/``"fused"`` model is built for one length (``timesteps``, else the model's
    own); a ``"step"`` model or standalone C (``mode="c"``) runs any length, but the data must
    have the trained model's length when its input fixes one (the stages are compared with it).
    The number of features always has to match.

    Args:
        model: the trained model (wrappers are stripped for the check).
        representative_data: ``(N, T, F)`` windows, or ``None``.
        mode: one of :data:`MODES`, or ``"c"`` (standalone C).
        timesteps: the window length asked for (``None``: the model's).
        class_names: one name per output, or ``None``.

    Returns:
        The :class:`ModelPlan`, and the data as ``float32`` (``None`` without data).

    Raises:
        ConversionError: naming what was received and what was expected.
    """
    plan = plan_model(strip_wrappers(model) if isinstance(model, keras.Model) else model)
    if mode == "step" and not plan.head:
        raise ConversionError(
            f"Model {plan.name!r} ends with recurrent layer {plan.recurrent[-1].name!r} (no "
            "Dense head): in step mode its output y would be the state output itself, which "
            "the TFLite converter merges into one tensor that the sketch cannot address. Add "
            "a Dense head, convert with mode='unrolled', or convert to standalone C "
            "(convert_c), which takes a model without a head.")
    if timesteps is not None:
        timesteps = check_positive_int(timesteps, "timesteps", error=ConversionError)
        if plan.timesteps is not None and timesteps != plan.timesteps:
            raise ConversionError(
                f"Received timesteps={timesteps}, but model {plan.name!r} takes windows of "
                f"{plan.timesteps} steps (keras.Input(({plan.timesteps}, {plan.features}))). "
                "Leave timesteps unset, or build the model with keras.Input((None, "
                f"{plan.features})) to choose the length at conversion.")
    sequence = mode in ("unrolled", "fused")
    length = (timesteps or plan.timesteps) if sequence else plan.timesteps
    if sequence and length is None:
        raise ConversionError(f"Mode {mode!r} needs a fixed sequence length: model "
                              f"{plan.name!r} has input length None; pass timesteps=.")
    if class_names is not None:
        names = [str(c) for c in class_names]
        if names and len(names) != plan.num_outputs:
            raise ConversionError(
                f"Received {len(names)} class_names {names!r} for model {plan.name!r} with "
                f"{plan.num_outputs} outputs; give one name per output.")
    if representative_data is None:
        return plan, None
    if plan.timesteps is not None:
        note = (f"Model {plan.name!r} was built with keras.Input(({plan.timesteps}, "
                f"{plan.features})): cut or split the windows to {plan.timesteps} steps. "
                + ("To convert windows of any length, build the model with keras.Input((None, "
                   f"{plan.features})), copy the weights, and convert with mode='step' or to "
                   "standalone C." if not sequence else
                   "A step model (mode='step') of a model built with keras.Input((None, "
                   f"{plan.features})) runs windows of any length."))
    else:
        note = (f"timesteps={length} sets the length of the {mode} model: pass windows of "
                f"{length} steps, or set timesteps to their length.")
    data = check_sequences(representative_data, features=plan.features, timesteps=length,
                           name="representative_data", finite=True, length_note=note,
                           error=ConversionError)
    return plan, data.astype(np.float32)


# -- lowering each cell --------------------------------------------------------------------------

def _fold_or_keep(cell) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """Config and weights of a copy of ``cell`` with each structured matrix folded into one
    dense matrix when that has no more non-zeros than its factors (sparse low-rank factors
    usually stay factored, Kronecker factors and TT cores almost always do), or when TFLite
    has no builtin for the family's structure (``tflite_dense``: block-circulant, Toeplitz,
    hashed; the flatbuffer holds the dense matrix, the report says so)."""
    config = cell.get_config()
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in cell.weights}
    folded = []
    for base, structure in cell.structures.items():
        if structure.is_dense:
            continue
        names = structure.weight_names(base)
        parts = [weights[n] for n in names]
        product = structure.to_dense(parts).astype(np.float32)
        if (structure.tflite_dense
                or np.count_nonzero(product) <= sum(np.count_nonzero(p) for p in parts)):
            for n in names:
                del weights[n]
            weights[base] = product
            config = cell.dense_config(config, base)
            folded.append(f"{base} ({structure.family}: no TFLite builtin, stored dense; the "
                          "standalone C keeps the structure)" if structure.tflite_dense
                          else base)
    return config, weights, folded


def _copy_cell(cell, name: str):
    """A fresh cell equal to ``cell`` (low-rank factors folded where smaller), named ``name``.

    Every layer the lowering makes gets a name fixed by its position in the model, never a
    Keras auto-name (``fast_grnn_cell_3``): those count the layers made before in the process,
    and would make the flatbuffer's tensor names, its size and the C array depend on how many
    conversions ran before.
    """
    if isinstance(cell, CompressedCell):
        config, weights, folded = _fold_or_keep(cell)
        config["name"] = name
        for aid in TRAINING_AIDS:  # training only: the inference-mode cell is the plain one
            config[aid] = 0.0
        copy = type(cell).from_config(config)
        return copy, weights, folded
    config = cell.get_config()
    config["name"] = name
    for key in ("dropout", "recurrent_dropout"):
        if key in config:
            config[key] = 0.0
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in cell.weights}
    return type(cell).from_config(config), weights, []


def _set_cell_weights(copy, weights: dict[str, np.ndarray]) -> None:
    for var in copy.weights:
        var.assign(weights[var.name.split("/")[-1].split(":")[0]])


def _state_sizes(cell) -> list[int]:
    return [int(s) for s in np.atleast_1d(cell.state_size)]


def lower_cell_step(layer, x, states: list, *, name: str = "cell"):
    """Apply one step of ``layer``'s cell to Keras tensors; returns (output, new states, folded).

    ``name`` names the copied cell (the lowering passes a name fixed by the layer's position).
    """
    copy, weights, folded = _copy_cell(layer.cell, name)
    out, new_states = copy(x, states if len(states) > 1 else states[0])
    _set_cell_weights(copy, weights)
    if not isinstance(new_states, (list, tuple)):
        new_states = [new_states]
    return out, list(new_states), [f"{layer.name}/{f}" for f in folded]


#: Cell class → step lowering. A cell class missing here cannot be converted.
LOWERINGS: dict[type, Callable] = {cls: lower_cell_step for cls in CELL_REGISTRY.values()}
LOWERINGS.update({keras.layers.LSTMCell: lower_cell_step, keras.layers.GRUCell: lower_cell_step,
                  keras.layers.SimpleRNNCell: lower_cell_step})


def _has_lowering(cell) -> bool:
    """A cell class (or a base) in :data:`LOWERINGS`, or with a declared step
    (:func:`keras_rnnedge.cells.step.register_step`): a Keras cell the step lowering traces."""
    return (any(k in LOWERINGS for k in type(cell).__mro__) or step_of(cell) is not None)


def _lowering_for(layer):
    if isinstance(layer.cell, SwitchingCell):
        raise ConversionError(
            f"Layer {layer.name!r} runs a SwitchingCell (a different model at each level): it "
            "converts to standalone C only (convert_c, rnnedge convert --format c), which runs "
            "one model per level. A TFLite model has no per-step choice of model; for TFLite use "
            "one flexible cell (levels=), whose step model takes the level as an input.")
    fn = next((LOWERINGS[k] for k in type(layer.cell).__mro__ if k in LOWERINGS), None)
    if fn is None and step_of(layer.cell) is not None:
        fn = lower_cell_step
    if fn is None:
        raise ConversionError(
            f"No lowering for cell {type(layer.cell).__name__} of layer {layer.name!r}. "
            f"Cells with a lowering: {', '.join(sorted(c.__name__ for c in LOWERINGS))}.")
    return fn


def _copy_head(plan: ModelPlan, h):
    for i, layer in enumerate(plan.head):
        if isinstance(layer, keras.layers.Dropout):
            continue
        config = layer.get_config()
        config["name"] = f"head_{i}"
        copy = type(layer).from_config(config)
        h = copy(h)
        copy.set_weights(layer.get_weights())
    return h


def _check_finite(model: keras.Model) -> None:
    for var in model.weights:
        values = var.numpy()
        if not np.all(np.isfinite(values)):
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise ConversionError(
                f"Weight {var.name!r} has {bad} NaN or Inf values; a model with non-finite "
                "weights would convert to a model that computes garbage. Retrain (lower the "
                "learning rate, add gradient clipping) or restore a good checkpoint.")


def lower(model: keras.Model, mode: str = "step", *, timesteps: int | None = None,
          standardize: str = "graph") -> LoweredModel:
    """Lower a trained model to a batch-1 model for the TFLite converter.

    Args:
        model: a trained model (pruning and QAT wrappers are stripped).
        mode: ``"step"``, ``"unrolled"`` or ``"fused"`` (stock LSTM layers only).
        timesteps: the sequence length of an unrolled/fused model when the trained model's
            input does not fix it.
        standardize: one of :data:`STANDARDIZE`: where the model's input standardisation (a
            leading ``Normalization``) happens.

    Returns:
        The :class:`LoweredModel`.

    Raises:
        ConversionError: for an unsupported layer or cell, a bad mode, non-finite weights.
    """
    if mode not in MODES:
        raise ConversionError(f'Expected mode to be one of {", ".join(map(repr, MODES))}, but '
                              f"got {mode!r}.")
    if standardize not in STANDARDIZE:
        raise ConversionError(f"Expected standardize to be one of "
                              f"{', '.join(map(repr, STANDARDIZE))}, but got {standardize!r}.")
    model = strip_wrappers(model)
    plan = plan_model(model)
    _check_finite(model)
    for layer in plan.recurrent:
        _lowering_for(layer)
    if standardize == "caller" and plan.standardization is not None:
        lowered = _lower(dataclasses.replace(plan, standardization=None), mode, timesteps)
        return dataclasses.replace(lowered, standardization=plan.standardization,
                                   standardized_input=True)
    return _lower(plan, mode, timesteps)


def _lower(plan: ModelPlan, mode: str, timesteps: int | None) -> LoweredModel:
    if mode == "step":
        return _lower_step(plan)
    steps = timesteps or plan.timesteps
    if steps is None:
        raise ConversionError(f"Mode {mode!r} needs a fixed sequence length: model "
                              f"{plan.name!r} has input length None; pass timesteps=.")
    if mode == "fused":
        bad = [layer for layer in plan.recurrent if type(layer) is not keras.layers.LSTM]
        if bad:
            raise ConversionError(
                f"Mode 'fused' lowers only stock keras.layers.LSTM layers to "
                f"UNIDIRECTIONAL_SEQUENCE_LSTM; layer {bad[0].name!r} is "
                f"{type(bad[0]).__name__}({type(bad[0].cell).__name__}). Use mode='step' or "
                "'unrolled'.")
    return _lower_sequence(plan, steps, unroll=(mode == "unrolled"), mode=mode)


def strip_wrappers(model: keras.Model) -> keras.Model:
    """The model without tfmot pruning or QAT wrappers (float weights kept), and without the
    level input of a flexible model (:func:`without_level_input`)."""
    if is_qat(model):
        return without_level_input(_strip_qat(model))
    return without_level_input(strip_pruning(model))


def without_level_input(model: keras.Model) -> keras.Model:
    """A flexible model (:mod:`keras_rnnedge.flexible`) taking only ``x``: the same (trained)
    layers, every step at the top level. The converters read the levels from the cells and give
    the level input back to the exports (the integer oracle and C take a level per step).
    Models without a :class:`~keras_rnnedge.flexible.WithLevel` layer are returned as they are.
    """
    if not isinstance(model, keras.Model) or not model.inputs or len(model.inputs) == 1:
        return model
    layers = _flatten(model)
    if not any(isinstance(unwrap(layer), WithLevel) for layer in layers):
        return model
    if len(model.inputs) != 2:
        raise ConversionError(f"Flexible model {model.name!r} has {len(model.inputs)} inputs; "
                              "expected two: x (batch, timesteps, features) and the level of "
                              "every step (batch, timesteps).")
    x = inputs = keras.Input(model.inputs[0].shape[1:], name="x")
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _qat_weight_values(layer) -> dict[str, np.ndarray]:
    """Weight values of a QAT-wrapped layer by name, the quantized ones as QAT used them.

    A QAT model computes with fake-quantized weights (on the int8 grid of their trained range);
    lowering those values makes the converter's weight quantization reproduce them exactly.
    """
    values = {}
    for var in layer.weights:
        short = var.name.split("/")[-1].split(":")[0]
        if short.endswith(("_min", "_max")) or short in ("optimizer_step",):
            continue
        values[short] = var.numpy()
    for weight, quantizer, quantizer_vars in getattr(layer, "_weight_vars", []):
        short = weight.name.split("/")[-1].split(":")[0]
        values[short] = quantizer(weight, False, weights=quantizer_vars).numpy()
    return values


def _strip_qat(model: keras.Model) -> keras.Model:
    """Rebuild a QAT model without its wrappers, with the weights QAT computed with."""
    x = inputs = keras.Input(model.inputs[0].shape[1:], name="x")
    for layer in _flatten(model):
        if is_quantize_input(layer) or isinstance(layer, keras.layers.InputLayer):
            continue
        inner = unwrap(layer)
        config = inner.get_config()
        activation = config.get("activation")
        if isinstance(activation, dict) and activation.get("class_name") == \
                "QuantizeAwareActivation":  # tfmot swaps a Dense activation for its wrapper
            config["activation"] = activation["config"]["activation"]
        copy = type(inner).from_config(config)
        x = copy(x)
        values = _qat_weight_values(layer)
        for var in copy.weights:
            var.assign(values[var.name.split("/")[-1].split(":")[0]])
        copy.finalize_state()  # a Normalization's mean/variance tensors from the new weights
    return keras.Model(inputs, x, name=model.name)


def is_qat(model: keras.Model) -> bool:
    """Whether the model carries tfmot quantization-aware-training wrappers."""
    return any(is_quantize_wrapper(layer) or is_quantize_input(layer)
               for layer in _flatten(model))


class _Standardize(keras.layers.Layer):
    """``(x - offset) * scale`` over the last axis with per-feature float32 constants: TFLite's
    SUB and MUL builtins (float and int8 in TFLite Micro), which the converter may fold into
    the first FULLY_CONNECTED."""

    def __init__(self, standardization: Standardization, **kwargs):
        super().__init__(**kwargs)
        self.offset = np.asarray(standardization.offset, np.float32)
        self.scale = np.asarray(standardization.scale, np.float32)

    def call(self, inputs):
        return (inputs - tf.constant(self.offset)) * tf.constant(self.scale)


def _standardize(plan: ModelPlan, x):
    """``x`` standardised as the trained model does (``x`` itself without a Normalization)."""
    if plan.standardization is None:
        return x
    return _Standardize(plan.standardization, name="standardize")(x)


def plan_levels(plan: ModelPlan) -> int | None:
    """The number of levels of a flexible model (``None``: no flexible layer); every flexible
    layer must have the same number (one level index drives them all)."""
    counts = {len(layer.cell.levels) for layer in plan.recurrent
              if getattr(layer.cell, "levels", None) is not None}
    if len(counts) > 1:
        raise ConversionError(f"Model {plan.name!r} has flexible layers with different numbers "
                              f"of levels {sorted(counts)}; one level index drives them all: "
                              "give every flexible cell as many levels.")
    return counts.pop() if counts else None


def _lower_step(plan: ModelPlan) -> LoweredModel:
    x = keras.Input((plan.features,), batch_size=1, name="x")
    inputs, state_inputs, state_outputs, folded, sizes = [x], [], [], [], []
    num_levels = plan_levels(plan)
    level = None
    if num_levels is not None:
        level = keras.Input((1,), batch_size=1, name="level", dtype="int32")
        inputs.append(level)
    h = _standardize(plan, x)
    for i, layer in enumerate(plan.recurrent):
        states = []
        for size in _state_sizes(layer.cell):
            s = keras.Input((size,), batch_size=1, name=f"state_{len(sizes)}")
            states.append(s)
            state_inputs.append(s)
            sizes.append(size)
        flexible = level is not None and getattr(layer.cell, "levels", None) is not None
        h, new_states, f = _lowering_for(layer)(layer, [h, level] if flexible else h, states,
                                                name=f"cell_{i}")
        folded += f
        state_outputs += new_states
    y = _copy_head(plan, h)
    y = keras.layers.Activation("linear", name="y")(y)
    outs = [y] + [keras.layers.Activation("linear", name=f"state_{i}_out")(s)
                  for i, s in enumerate(state_outputs)]
    lowered = keras.Model(inputs + state_inputs, outs, name="step")
    return LoweredModel(model=lowered, mode="step",
                        inputs=("x",) + (("level",) if level is not None else ())
                        + tuple(f"state_{i}" for i in range(len(sizes))),
                        outputs=("y",) + tuple(f"state_{i}_out" for i in range(len(sizes))),
                        state_sizes=tuple(sizes), timesteps=None, features=plan.features,
                        folded=tuple(folded), standardization=plan.standardization,
                        num_levels=num_levels)


def _lower_sequence(plan: ModelPlan, steps: int, *, unroll: bool, mode: str) -> LoweredModel:
    x = keras.Input((steps, plan.features), batch_size=1, name="x")
    h, folded = _standardize(plan, x), []
    for i, layer in enumerate(plan.recurrent):
        if mode == "fused":
            config = layer.get_config()
            config.update(name=f"recurrent_{i}", unroll=False, dropout=0.0,
                          recurrent_dropout=0.0, stateful=False)
            copy = type(layer).from_config(config)
            h = copy(h)
            copy.set_weights(layer.get_weights())
            continue
        cell, weights, f = _copy_cell(layer.cell, f"cell_{i}")
        folded += [f"{layer.name}/{name}" for name in f]
        rnn = keras.layers.RNN(cell, return_sequences=layer.return_sequences, unroll=unroll,
                               name=f"recurrent_{i}")
        h = rnn(h)
        _set_cell_weights(cell, weights)
    y = keras.layers.Activation("linear", name="y")(_copy_head(plan, h))
    lowered = keras.Model(x, y, name=mode)
    return LoweredModel(model=lowered, mode=mode, inputs=("x",), outputs=("y",),
                        state_sizes=(), timesteps=steps, features=plan.features,
                        folded=tuple(folded), standardization=plan.standardization)

