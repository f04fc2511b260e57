"""Constraints on cell weights that travel with a saved model.

:class:`SupportMask` keeps the zeros of a sparse weight: the optimizer applies a variable's
constraint after every update, and a cell's ``*_constraint`` arguments are part of its config,
so the support is saved in ``.keras`` and ``.h5`` files and kept in any later training.
:class:`~keras_rnnedge.optimize.HardThresholding` installs it when it freezes a support; it lives
here, beside the cells, so that loading such a model needs only ``import keras_rnnedge``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras_rnnedge._compat import keras, np, register, tf
from keras_rnnedge.cells.base import register_alias

__all__ = ["SupportMask"]


def _short_name(variable) -> str | None:
    name = getattr(variable, "name", None)  # an eager tensor has no name
    return name.split(":")[0].split("/")[-1] if isinstance(name, str) else None


def _encode_mask(mask: np.ndarray) -> dict[str, Any]:
    return {"shape": [int(d) for d in mask.shape],
            "bits": np.packbits(mask.ravel().astype(bool)).tobytes().hex()}


def _decode_mask(name: str, value) -> np.ndarray:
    if isinstance(value, Mapping) and set(value) == {"shape", "bits"}:
        shape = tuple(int(d) for d in value["shape"])
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(value["bits"]), np.uint8))
        size = int(np.prod(shape))
        if bits.size < size:
            raise ValueError(f"Received a SupportMask for {name!r} with {bits.size} bits, "
                             f"expected at least {size} for the shape {shape}.")
        return bits[:size].astype(bool).reshape(shape)
    mask = np.asarray(value)
    if mask.dtype != bool:
        raise ValueError(f"Received a SupportMask for {name!r} of dtype {mask.dtype}, expected a "
                         "boolean array (or {'shape': [...], 'bits': hex} from get_config()).")
    return mask


@register
class SupportMask(keras.constraints.Constraint):
    """Keeps the frozen support of thresholded weights: entries outside the mask are set to zero.

    :class:`HardThresholding` installs it as a cell's ``kernel_constraint`` or
    ``recurrent_constraint`` when the sparse fine-tuning phase begins. Keras optimizers apply a
    variable's constraint after every update, and the cell's config carries it into ``.keras``
    and ``.h5`` files, so a model keeps its zeros in any later training.

    One constraint may serve several weights (the low-rank factors ``kernel_u`` and ``kernel_v``
    share ``kernel_constraint``): the masks are keyed by weight name, matched against the last
    component of the variable's name; a weight without a mask is left as it is.

    Args:
        masks: ``{weight name: boolean array}`` (``True`` = kept), or the encoded form that
            :meth:`get_config` writes.
        constraint: the constraint the weight had before (applied first), or ``None``.
    """

    def __init__(self, masks: Mapping[str, Any], constraint=None):
        if not isinstance(masks, Mapping) or not masks:
            raise ValueError(f"Received masks={masks!r}, expected a non-empty dict from weight "
                             "names to boolean arrays.")
        self.masks = {str(k): _decode_mask(k, v) for k, v in masks.items()}
        self.constraint = keras.constraints.get(constraint)

    def mask_for(self, w) -> np.ndarray | None:
        """The mask of the variable ``w``: by its name, else the only mask of its shape."""
        name = _short_name(w)
        if name is not None:
            return self.masks.get(name)
        shape = tuple(w.shape)
        matches = [m for m in self.masks.values() if m.shape == shape]
        return matches[0] if len(matches) == 1 else None

    def __call__(self, w):
        mask = self.mask_for(w)
        out = self.constraint(w) if self.constraint is not None else w
        if mask is None:
            return out
        if tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"Received a weight {_short_name(w)!r} of shape {tuple(w.shape)}, "
                             f"but its SupportMask has the shape {mask.shape}. The model's "
                             "weights no longer match the support it was frozen with.")
        return tf.where(tf.constant(mask), out, tf.zeros_like(out))

    def get_config(self) -> dict[str, Any]:
        return {"masks": {k: _encode_mask(m) for k, m in self.masks.items()},
                "constraint": None if self.constraint is None
                else keras.constraints.serialize(self.constraint)}


register_alias(SupportMask)
