"""Keyword spotting: Google Speech Commands v0.02, 12 classes, 49 x 10 MFCC (not bundled)."""

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

__all__ = ["SPEECH_COMMANDS_FILE", "load_speech_commands"]

SPEECH_COMMANDS_FILE = "speech_commands_v2_test12.npz"
"""File name that :func:`load_speech_commands` looks for."""

_REQUIRED = ("x_train", "y_train", "x_test", "y_test", "class_names")
_PER_EXAMPLE = ("speaker", "file")
_OPTIONAL = (*(f"{name}_{split}" for name in _PER_EXAMPLE for split in ("train", "test")),)
_EXAMPLE_SHAPE = (49, 10)
_NUM_CLASSES = 12


def load_speech_commands(
    path: PathLike | None = None,
    *,
    validation_split: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Load the 12-keyword Speech Commands MFCC set from ``speech_commands_v2_test12.npz``.

    The file holds the 4890 clips of the Speech Commands v0.02 test set (Warden, 2018; CC BY 4.0)
    as 49 frames x 10 MFCC (40 ms frames every 20 ms, the "Hello Edge" front end), split
    speaker-disjoint into 3935 training and 955 test clips. Classes, in id order: ``_silence_
    _unknown_ yes no up down left right on off stop go``. The MFCC are not normalised
    (coefficient 0 has a large negative offset): standardise them with training statistics.
    Accuracies are not comparable with published Speech Commands figures, which train on the
    full 85k-clip training set.

    Expected keys: ``x_train`` (N, 49, 10) and ``x_test`` (M, 49, 10) real numbers, ``y_train``
    (N,) and ``y_test`` (M,) integer class ids 0..11, ``class_names`` (12,); optionally
    ``speaker_train``/``speaker_test`` and ``file_train``/``file_test`` (strings, one per clip)
    and ``feature_params`` (a JSON string), which are passed on in ``extras``.

    The validation split is drawn per class from the training clips; it is not
    speaker-disjoint (select on ``extras["speaker_train"]`` for that).

    Args:
        path: The file, or the directory holding it. When None, the directory named by the
            environment variable ``RNNEDGE_DATA_DIR``.
        validation_split: Fraction of the training clips held out as ``x_val``/``y_val``, in
            [0, 1); 0 leaves them None.
        seed: Seed of the validation split.

    Returns:
        A Dataset with float32 inputs of shape (N, 49, 10) and int32 labels.

    Raises:
        FileNotFoundError: If the file is not found; the message lists the places looked.
        ValueError: If ``validation_split`` is outside [0, 1) or the file is unreadable,
            incomplete or holds arrays of the wrong shape.

    Example:
        >>> ds = load_speech_commands("/data/speech_commands_v2_test12.npz")  # doctest: +SKIP
        >>> ds.input_shape, ds.num_classes  # doctest: +SKIP
        ((49, 10), 12)
    """
    check_validation_split(validation_split)
    file = find_data_file(SPEECH_COMMANDS_FILE, path)
    arrays = read_npz(file, _REQUIRED, (*_OPTIONAL, "feature_params"))
    check_arrays(file, arrays, example_shape=_EXAMPLE_SHAPE, num_classes=_NUM_CLASSES)

    per_example = {}
    for name in _PER_EXAMPLE:
        train, test = arrays.get(f"{name}_train"), arrays.get(f"{name}_test")
        if train is not None and test is not None:
            if train.shape != arrays["y_train"].shape or test.shape != arrays["y_test"].shape:
                raise ValueError(
                    f"{file}: expected {name}_train and {name}_test with one entry per clip, "
                    f"shapes {arrays['y_train'].shape} and {arrays['y_test'].shape}, but got "
                    f"{train.shape} and {test.shape}."
                )
            per_example[name] = (train, test)
    info = {}
    if "feature_params" in arrays:
        info["feature_params"] = str(arrays["feature_params"])

    return make_dataset(
        x_train=arrays["x_train"].astype(np.float32, copy=False),
        y_train=arrays["y_train"].astype(np.int32),
        x_test=arrays["x_test"].astype(np.float32, copy=False),
        y_test=arrays["y_test"].astype(np.int32),
        class_names=tuple(str(name) for name in arrays["class_names"]),
        validation_split=validation_split,
        seed=seed,
        per_example=per_example,
        info=info,
    )
