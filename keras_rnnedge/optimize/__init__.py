"""tfmot glue for recurrent models: pruning, iterative hard thresholding and QAT.

* :func:`prune_low_magnitude` wraps recurrent layers for magnitude pruning with a target
  sparsity per weight (tfmot's wrapper has one per layer); train with
  :class:`UpdatePruningStep`, finish with :func:`strip_pruning`.
* :class:`HardThresholding` is EdgeML's dense → IHT → sparse fine-tuning recipe for FastGRNN as
  a Keras callback, with exact non-zero counts.
* :func:`quantize_model` makes a quantization-aware copy of a model with recurrent layers, which
  tfmot's own ``quantize_model`` refuses; :class:`CellQuantizeConfig` says what is quantized.
* :func:`compress` refits the matrices of a trained model (stock LSTM/GRU/SimpleRNN or our
  cells) in a structured family (SVD by rank or kept energy, nearest Kronecker, TT-SVD...),
  ready to fine-tune.
* :func:`load_model` loads ``.keras`` and ``.h5`` files with cells, pruning and QAT wrappers
  (working around tfmot 0.8.1's ``.keras`` loading bug for QAT models); :func:`save_model` saves
  them all or nothing.
* :class:`Distiller` trains a compressed student on labels and a frozen teacher's soft targets
  with ``model.fit`` (Hinton et al. 2015; temperature and hard-loss weight).
* :class:`RegularizedRNN` is ``keras.layers.RNN`` with activation and temporal activation
  regularization (AR/TAR, Merity et al.) of its outputs in training.
* :class:`SoftOrthogonality` is a soft orthogonality penalty for recurrent matrices (pass it as
  ``recurrent_regularizer``); every cell also takes the training aids ``dropout``,
  ``recurrent_dropout``, ``recurrent_weight_dropout``, ``zoneout_h`` and ``zoneout_c``
  (:class:`keras_rnnedge.cells.CompressedCell`).
* :func:`iter_recurrent_layers` and friends find the recurrent layers and cell weights these act
  on, through nested models and tfmot wrappers.
"""

from keras_rnnedge.optimize.activation_regularization import RegularizedRNN
from keras_rnnedge.optimize.compress import CompressedMatrix, compress, energy_rank
from keras_rnnedge.optimize.distill import Distiller
from keras_rnnedge.optimize.grow_prune import GrowAndPrune, grow_mask, prune_mask
from keras_rnnedge.optimize.pruning import (
    PerWeightPruning,
    PruneLowMagnitudePerWeight,
    UpdatePruningStep,
    prune_low_magnitude,
    prune_scope,
    strip_pruning,
)
from keras_rnnedge.optimize.quantization import (
    CellQuantizeConfig,
    quantize_annotate,
    quantize_apply,
    quantize_model,
    quantize_scope,
)
from keras_rnnedge.optimize.recurrent import (
    STOCK_CELL_WEIGHTS,
    is_quantize_input,
    is_quantize_wrapper,
    is_recurrent,
    iter_recurrent_layers,
    recurrent_cell,
    recurrent_layer_names,
    select_recurrent_layers,
    unwrap,
    weight_names,
)
from keras_rnnedge.optimize.regularizers import SoftOrthogonality
from keras_rnnedge.optimize.saving import load_model, optimize_scope, save_model
from keras_rnnedge.optimize.thresholding import HardThresholding, SupportMask, hard_threshold_mask

__all__ = [
    "STOCK_CELL_WEIGHTS",
    "CellQuantizeConfig",
    "CompressedMatrix",
    "Distiller",
    "GrowAndPrune",
    "HardThresholding",
    "PerWeightPruning",
    "PruneLowMagnitudePerWeight",
    "RegularizedRNN",
    "SoftOrthogonality",
    "SupportMask",
    "UpdatePruningStep",
    "compress",
    "energy_rank",
    "grow_mask",
    "hard_threshold_mask",
    "is_quantize_input",
    "is_quantize_wrapper",
    "is_recurrent",
    "iter_recurrent_layers",
    "load_model",
    "optimize_scope",
    "prune_low_magnitude",
    "prune_mask",
    "prune_scope",
    "quantize_annotate",
    "quantize_apply",
    "quantize_model",
    "quantize_scope",
    "recurrent_cell",
    "recurrent_layer_names",
    "save_model",
    "select_recurrent_layers",
    "strip_pruning",
    "unwrap",
    "weight_names",
]
