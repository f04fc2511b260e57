"""Pixel-by-pixel and permuted MNIST as 784-step sequences (not bundled)."""

from __future__ import annotations

import numpy as np

from ._core import (
    Dataset,
    PathLike,
    check_arrays,
    check_validation_split,
    find_data_file,
    make_dataset,
    read_npz,
)

__all__ = ["MNIST_FILE", "load_mnist"]

MNIST_FILE = "mnist.npz"
"""File name that :func:`load_mnist` looks for."""

_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
_IMAGE_SHAPE = (28, 28)
_PIXELS = 28 * 28
_NUM_CLASSES = 10


def load_mnist(
    path: PathLike | None = None,
    *,
    permuted: bool = False,
    seed: int = 0,
    validation_split: float = 0.0,
    normalize: bool = True,
) -> Dataset:
    """Load MNIST from ``mnist.npz`` as sequences of 784 pixels, one pixel per time step.

    The pixel-by-pixel benchmark for recurrent networks (Le et al., 2015): each 28 x 28 image is
    read row by row into a sequence of shape (784, 1). With ``permuted=True`` every sequence is
    reordered by one fixed permutation, ``np.random.default_rng(seed).permutation(784)``, the
    same for training and test sets (permuted MNIST).

    Expected keys: ``x_train`` (60000, 28, 28) and ``x_test`` (10000, 28, 28) uint8 grey levels
    0..255, ``y_train`` and ``y_test`` integer digits 0..9, optionally ``class_names`` (10,).
    Keras' own ``mnist.npz`` (``~/.keras/datasets/mnist.npz``) has this layout too. MNIST:
    LeCun, Cortes and Burges, CC BY-SA 3.0.

    Args:
        path: The file, or the directory holding it. When None, the directory named by the
            environment variable ``RNNEDGE_DATA_DIR``.
        permuted: Apply the fixed pixel permutation drawn from ``seed``.
        seed: Seed of the permutation and of the validation split.
        validation_split: Fraction of the training images held out as ``x_val``/``y_val``, in
            [0, 1), drawn per class; 0 leaves them None.
        normalize: Scale the grey levels to [0, 1]; if False they stay 0..255 (as float32).

    Returns:
        A Dataset with float32 inputs of shape (N, 784, 1) and int32 labels; ``extras`` holds
        the ``permutation`` applied (None unless ``permuted``).

    Raises:
        FileNotFoundError: If the file is not found; the message lists the places looked.
        ValueError: If ``validation_split`` is outside [0, 1) or the file is unreadable,
            incomplete or holds arrays of the wrong shape or dtype.

    Example:
        >>> ds = load_mnist(permuted=True, validation_split=0.1)  # doctest: +SKIP
        >>> ds.input_shape, ds.num_classes  # doctest: +SKIP
        ((784, 1), 10)
    """
    check_validation_split(validation_split)
    file = find_data_file(MNIST_FILE, path)
    arrays = read_npz(file, _REQUIRED, ("class_names",))
    check_arrays(
        file, arrays, example_shape=_IMAGE_SHAPE, num_classes=_NUM_CLASSES, x_dtype=np.uint8
    )

    permutation = np.random.default_rng(seed).permutation(_PIXELS) if permuted else None

    def to_sequences(images: np.ndarray) -> np.ndarray:
        pixels = images.reshape(len(images), _PIXELS)
        if permutation is not None:
            pixels = pixels[:, permutation]
        sequences = pixels.astype(np.float32).reshape(len(images), _PIXELS, 1)
        if normalize:
            sequences /= 255.0
        return sequences

    if "class_names" in arrays:
        class_names = tuple(str(name) for name in arrays["class_names"])
    else:
        class_names = tuple(str(digit) for digit in range(_NUM_CLASSES))
    return make_dataset(
        x_train=to_sequences(arrays["x_train"]),
        y_train=arrays["y_train"].astype(np.int32),
        x_test=to_sequences(arrays["x_test"]),
        y_test=arrays["y_test"].astype(np.int32),
        class_names=class_names,
        validation_split=validation_split,
        seed=seed,
        info={"permutation": permutation},
    )
