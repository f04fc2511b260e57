"""Sequence-classification datasets for training and checking small recurrent models.

Every loader returns a :class:`Dataset`: float32 inputs of shape (N, time steps, features),
int32 class ids, an optional validation split taken from the training set, and the class names.

- :func:`load_har`: human activity recognition, 128 x 9 inertial windows, 6 classes or the binary
  HAR-2 task. Bundled with the package (non-commercial licence, see ``data/README.md``).
- :func:`load_speech_commands`: 12-keyword spotting, 49 x 10 MFCC. Not bundled.
- :func:`load_mnist`: pixel-by-pixel (optionally permuted) MNIST, 784 x 1. Not bundled.

The loaders of data that is not bundled read it from ``path=`` (the file, or the directory
holding it) or else from the directory named by the environment variable ``RNNEDGE_DATA_DIR``.
This subpackage needs only numpy.

:func:`save_npz` writes any :class:`Dataset` as the ``.npz`` the ``rnnedge`` command reads (its
arrays: :data:`NPZ_KEYS`); :func:`balanced_sample` draws a few examples across the classes.

Example:
    >>> from keras_rnnedge.datasets import load_har
    >>> ds = load_har(num_classes=2, validation_split=0.1, seed=0)
    >>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape
    ((6673, 128, 9), (742, 128, 9), (2996, 128, 9))
"""

from ._core import DATA_DIR_ENV, NPZ_KEYS, Dataset, balanced_sample, save_npz
from .har import HAR2_CLASS_NAMES, HAR_MOVING, HAR_STATIC, load_har
from .mnist import MNIST_FILE, load_mnist
from .speech_commands import SPEECH_COMMANDS_FILE, load_speech_commands

__all__ = [
    "DATA_DIR_ENV",
    "HAR2_CLASS_NAMES",
    "HAR_MOVING",
    "HAR_STATIC",
    "MNIST_FILE",
    "NPZ_KEYS",
    "SPEECH_COMMANDS_FILE",
    "Dataset",
    "balanced_sample",
    "load_har",
    "load_mnist",
    "load_speech_commands",
    "save_npz",
]
