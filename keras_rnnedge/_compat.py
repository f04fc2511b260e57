"""The one module that imports TensorFlow, tf_keras, tfmot and t3f.

keras-rnnedge builds on Keras 2 (``tf_keras``): tensorflow-model-optimization refuses Keras 3
models. ``TF_USE_LEGACY_KERAS=1`` is set (only if unset) before TensorFlow is imported so that
``tf.keras`` inside TensorFlow and tfmot resolves to the same Keras 2. This is the only
environment change the package makes at import.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras.src import backend as _keras_backend  # noqa: E402
from tf_keras.src.layers.rnn.dropout_rnn_cell_mixin import (  # noqa: E402
    DropoutRNNCellMixin,
)

# Keras 2's own variational RNN dropout (what its LSTMCell uses): masks drawn once per sequence
# and reset by keras.layers.RNN at every call; not exported by tf_keras.
ContextValueCache = _keras_backend.ContextValueCache
RandomGenerator = _keras_backend.RandomGenerator

__all__ = ["ContextValueCache", "DropoutRNNCellMixin", "RandomGenerator", "keras", "np", "tf",
           "tfmot", "import_t3f", "register"]

PACKAGE = "keras_rnnedge"


def register(obj):
    """Register a class or function for Keras serialization as ``keras_rnnedge>Name``."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)


def import_t3f():
    """Import t3f 1.2.0, which still uses ``np.int`` (removed in NumPy 1.24)."""
    if not hasattr(np, "int"):
        np.int = int  # t3f/initializers.py uses np.int
    import t3f

    return t3f


# Whatever reaches TensorFlow through this package registers its cells (and their constraint)
# with Keras, so that a model saved with them loads after any such import; a bare
# ``import keras_rnnedge`` stays light (``rnnedge --help`` needs no TensorFlow).
# (When the matrix families are being imported first, they import the cells at their end.)
if "keras_rnnedge.matrices" not in sys.modules:
    import keras_rnnedge.cells  # noqa: E402,F401  (registration, at the end: cells import this)
