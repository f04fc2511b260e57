"""tfmot classes that tfmot does not export, reached through the modules tfmot itself loaded.

``PruneLowMagnitude`` (the pruning wrapper), ``Pruning`` (its mask logic), ``QuantizeAnnotate``
and ``QuantizeLayer`` are not in tfmot's public namespace, but subclassing and recognising them is
how tfmot is extended. This module reads them from the modules behind tfmot's
public functions instead of importing tfmot internals, so that ``keras_rnnedge._compat`` stays
the only module that imports tfmot.
"""

from __future__ import annotations

import sys

from keras_rnnedge._compat import tfmot

_prune = sys.modules[tfmot.sparsity.keras.prune_low_magnitude.__module__]
_quantize = sys.modules[tfmot.quantization.keras.quantize_annotate_layer.__module__]

PruneLowMagnitude = _prune.pruning_wrapper.PruneLowMagnitude
Pruning = _prune.pruning_wrapper.pruning_impl.Pruning
QuantizeAnnotate = _quantize.quantize_annotate_mod.QuantizeAnnotate
QuantizeLayer = _quantize.quantize_layer.QuantizeLayer
QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapper
QuantizeWrapperV2 = tfmot.quantization.keras.QuantizeWrapperV2

__all__ = ["PruneLowMagnitude", "Pruning", "QuantizeAnnotate", "QuantizeLayer", "QuantizeWrapper",
           "QuantizeWrapperV2"]
