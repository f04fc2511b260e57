"""Human activity recognition: UCI HAR windows rebuilt from the HAPT recordings, bundled."""

from __future__ import annotations

from importlib import resources

import numpy as np
from numpy.typing import DTypeLike

from ._core import Dataset, check_arrays, check_validation_split, make_dataset, read_npz
from .make_har_bundle import BUNDLE_KEYS, decode_har_bundle

__all__ = ["HAR2_CLASS_NAMES", "HAR_MOVING", "HAR_STATIC", "load_har"]

HAR_MOVING = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS")
"""The HAR-6 activities that HAR-2 labels 1, "moving"."""

HAR_STATIC = ("SITTING", "STANDING", "LAYING")
"""The HAR-6 activities that HAR-2 labels 0, "static"."""

HAR2_CLASS_NAMES = ("static", "moving")
"""Class names of HAR-2, in class id order."""

_BUNDLE = "uci_har_hapt.npz"
_WINDOW_SHAPE = (128, 9)


def load_har(
    num_classes: int = 6,
    *,
    validation_split: float = 0.0,
    seed: int = 0,
    dtype: DTypeLike = np.float32,
    validation_by: str = "window",
) -> Dataset:
    """Load the bundled human-activity-recognition windows (UCI HAR layout, HAPT recordings).

    Smartphone accelerometer and gyroscope at 50 Hz, 128-sample windows (2.56 s, 50 % overlap)
    of 9 channels: ``body_acc_x/y/z`` (g), ``body_gyro_x/y/z`` (rad/s), ``total_acc_x/y/z`` (g),
    7415 training windows from 21 subjects and 2996 test windows from 9 others (the UCI HAR
    subject split). The windows are the UCI HAR pipeline re-run on the HAPT raw data, not the
    bit-exact UCI HAR release: do not compare accuracies with published UCI HAR figures as if
    equal. They are stored quantized, within 1 % of each channel's std (0.58 % RMS); see
    ``keras_rnnedge/datasets/data/README.md`` for provenance, citations and the licence, which
    prohibits commercial use.

    ``num_classes=6`` keeps the six activities (WALKING, WALKING_UPSTAIRS, WALKING_DOWNSTAIRS,
    SITTING, STANDING, LAYING: ids 0..5). ``num_classes=2`` is the binary HAR-2 task of the
    FastGRNN paper (Kusupati et al., NeurIPS 2018): the three walking activities become 1
    ("moving"), sitting, standing and laying 0 ("static").

    The validation split is drawn per class from the training windows. Consecutive windows share
    half their samples, so a window-level split leaves most validation windows half-seen in
    training and its score is optimistic; ``validation_by="subject"`` holds out whole training
    subjects instead (about ``validation_split`` of the windows), so model selection sees the
    subject shift that the test set has.

    Args:
        num_classes: 6 for the six activities, 2 for HAR-2 (static vs moving).
        validation_split: Fraction of the training windows held out as ``x_val``/``y_val``, in
            [0, 1); 0 leaves them None.
        seed: Seed of the validation split.
        dtype: Floating dtype of the inputs.
        validation_by: ``"window"`` (stratified over the windows) or ``"subject"`` (whole
            subjects held out).

    Returns:
        A Dataset with inputs of shape (N, 128, 9) and int32 labels; ``extras`` holds
        ``subject_train``/``subject_val``/``subject_test`` (int32 subject ids 1..30) and
        ``channel_names``.

    Raises:
        ValueError: If ``num_classes`` is not 6 or 2, ``validation_split`` is outside [0, 1),
            ``dtype`` is not a floating dtype, or the bundled file is damaged.

    Example:
        >>> ds = load_har(num_classes=2, validation_split=0.1)
        >>> ds.input_shape, ds.num_classes, ds.class_names
        ((128, 9), 2, ('static', 'moving'))
    """
    if isinstance(num_classes, bool) or num_classes not in (6, 2):
        raise ValueError(
            "Expected num_classes to be 6 (the six activities) or 2 (HAR-2: static vs moving), "
            f"but got {num_classes!r}."
        )
    check_validation_split(validation_split)
    if validation_by not in ("window", "subject"):
        raise ValueError(
            f"Expected validation_by to be 'window' or 'subject', but got {validation_by!r}."
        )
    try:
        x_dtype = np.dtype(dtype)
    except TypeError as error:
        raise ValueError(f"Expected a floating dtype, but got {dtype!r}.") from error
    if not np.issubdtype(x_dtype, np.floating):
        raise ValueError(f"Expected a floating dtype such as np.float32, but got {dtype!r}.")

    with resources.as_file(resources.files(__package__) / "data" / _BUNDLE) as path:
        arrays = read_npz(path, BUNDLE_KEYS)
        try:
            arrays["x_train"], arrays["x_test"] = decode_har_bundle(arrays)
        except ValueError as error:
            raise ValueError(
                f"{path}: {error} The bundled file is damaged; reinstall keras-rnnedge."
            ) from error
        check_arrays(path, arrays, example_shape=_WINDOW_SHAPE, num_classes=6)

    names = tuple(str(name) for name in arrays["class_names"])
    y_train = arrays["y_train"].astype(np.int32)
    y_test = arrays["y_test"].astype(np.int32)
    if num_classes == 2:
        if sorted(names) != sorted(HAR_MOVING + HAR_STATIC):
            raise ValueError(
                f"Expected the bundled class_names to be {HAR_MOVING + HAR_STATIC} in some "
                f"order, but got {names}."
            )
        to_binary = np.array([name in HAR_MOVING for name in names], dtype=np.int32)
        y_train, y_test, names = to_binary[y_train], to_binary[y_test], HAR2_CLASS_NAMES

    return make_dataset(
        x_train=arrays["x_train"].astype(x_dtype, copy=False),
        y_train=y_train,
        x_test=arrays["x_test"].astype(x_dtype, copy=False),
        y_test=y_test,
        class_names=names,
        validation_split=validation_split,
        seed=seed,
        per_example={
            "subject": (
                arrays["subject_train"].astype(np.int32),
                arrays["subject_test"].astype(np.int32),
            )
        },
        info={"channel_names": tuple(str(name) for name in arrays["channel_names"])},
        split_by="subject" if validation_by == "subject" else None,
    )
