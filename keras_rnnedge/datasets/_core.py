"""Shared pieces of the dataset loaders: the Dataset container, the validation split, finding and
reading data files. numpy only."""

from __future__ import annotations

import os
import types
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str]
"""A path given as a string or a path object."""

DATA_DIR_ENV = "RNNEDGE_DATA_DIR"
"""Environment variable naming the directory that holds the data files which are not bundled."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset split into train, optional validation, and test sets.

    Inputs are float arrays of shape (N, *input_shape); labels are int32 class ids (sparse,
    ``0 <= y < num_classes``), ready for ``loss="sparse_categorical_crossentropy"``.

    Attributes:
        x_train: Training inputs.
        y_train: Training labels.
        x_val: Validation inputs, taken out of the training set, or None without a split.
        y_val: Validation labels, or None without a split.
        x_test: Test inputs.
        y_test: Test labels.
        class_names: Name of each class id.
        extras: Side information, read-only: per-example arrays end in ``_train``, ``_val`` and
            ``_test`` and are split like the labels (e.g. HAR's ``subject_train``); other entries
            describe the whole dataset (e.g. ``channel_names``).

    Example:
        >>> from keras_rnnedge.datasets import load_har
        >>> ds = load_har(num_classes=2, validation_split=0.1)
        >>> ds.input_shape, ds.num_classes, ds.y_train.dtype
        ((128, 9), 2, dtype('int32'))
        >>> # model.fit(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val))
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError(
                "Expected x_val and y_val to be both arrays or both None, but got "
                f"{type(self.x_val).__name__} and {type(self.y_val).__name__}."
            )
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x is not None and len(x) != len(y):
                raise ValueError(
                    f"Expected as many labels as inputs in the {split} set, but got "
                    f"{len(y)} labels for {len(x)} inputs."
                )
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "extras", types.MappingProxyType(dict(self.extras)))

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example (without the batch axis), e.g. ``(128, 9)``."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    def __repr__(self) -> str:
        def describe(array: np.ndarray | None) -> str:
            return "None" if array is None else f"{array.dtype}{tuple(array.shape)}"

        arrays = ", ".join(
            f"{name}={describe(getattr(self, name))}"
            for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        )
        return (
            f"Dataset({arrays}, class_names={self.class_names!r}, extras={sorted(self.extras)!r})"
        )


def check_validation_split(validation_split: float) -> float:
    """Return ``validation_split`` as a float, or raise ValueError if it is outside [0, 1)."""
    try:
        fraction = float(validation_split)
    except (TypeError, ValueError):
        fraction = float("nan")
    if isinstance(validation_split, bool) or not 0.0 <= fraction < 1.0:
        raise ValueError(
            "Expected validation_split to be a number in [0, 1) (the fraction of the training "
            f"set held out for validation), but got {validation_split!r}."
        )
    return fraction


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of ``y`` into train and validation parts, class by class.

    The validation part holds ``round(fraction * len(y))`` examples, shared out over the classes
    in proportion to their counts (largest remainders get the leftover examples), each class's
    examples drawn at random with ``np.random.default_rng(seed)``.

    Args:
        y: Class labels, shape (N,).
        fraction: Fraction in (0, 1) to hold out.
        seed: Seed of the random draw.

    Returns:
        ``(train_indices, val_indices)``, disjoint, each in increasing order.

    Raises:
        ValueError: If the split leaves the training or the validation part empty.
    """
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_val_total = int(round(fraction * len(y)))
    if not 0 < n_val_total < len(y):
        raise ValueError(
            f"validation_split={fraction} of {len(y)} training examples leaves "
            f"{n_val_total} for validation; choose a split that leaves at least one example in "
            "each part."
        )
    exact = fraction * counts
    n_val = np.floor(exact).astype(np.int64)
    leftover = n_val_total - int(n_val.sum())
    n_val[np.argsort(-(exact - n_val), kind="stable")[:leftover]] += 1

    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [rng.permutation(np.flatnonzero(inverse == c))[: n_val[c]] for c in range(len(classes))]
    )
    is_val = np.zeros(len(y), dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def group_split(
    groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation parts by whole groups (e.g. subjects).

    Groups are drawn in a seeded random order and held out while that brings the validation
    part closer to ``fraction`` of the examples (at least one group), so no group has examples
    on both sides.

    Args:
        groups: Group id per example, shape (N,).
        fraction: Fraction in (0, 1) to hold out, approximately.
        seed: Seed of the group order.

    Returns:
        ``(train_indices, val_indices)``, disjoint, each in increasing order.

    Raises:
        ValueError: If there are fewer than two groups.
    """
    groups = np.asarray(groups)
    ids, counts = np.unique(groups, return_counts=True)
    if len(ids) < 2:
        raise ValueError(
            f"A split by group needs at least two groups, but the training set has {len(ids)}."
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    target = fraction * len(groups)
    held, total = [], 0
    for index in order:
        if held and abs(total + counts[index] - target) >= abs(total - target):
            break
        if len(held) == len(ids) - 1:
            break
        held.append(ids[index])
        total += counts[index]
    is_val = np.isin(groups, held)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def make_dataset(
    *,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str],
    validation_split: float,
    seed: int,
    per_example: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    info: Mapping[str, Any] | None = None,
    split_by: str | None = None,
) -> Dataset:
    """Assemble a Dataset, holding out a stratified validation split of the training set.

    Args:
        x_train: Training inputs.
        y_train: Training labels (int32).
        x_test: Test inputs.
        y_test: Test labels (int32).
        class_names: Name of each class id.
        validation_split: Fraction of the training set to hold out, in [0, 1).
        seed: Seed of the validation split.
        per_example: ``{name: (train_values, test_values)}``, stored in ``extras`` as
            ``name_train`` / ``name_val`` / ``name_test``.
        info: Dataset-wide entries for ``extras``.
        split_by: ``None`` for a stratified split of the examples, or the name of a
            ``per_example`` entry (e.g. ``"subject"``) to hold out whole groups
            (:func:`group_split`).

    Returns:
        The dataset.
    """
    fraction = check_validation_split(validation_split)
    per_example = dict(per_example or {})
    extras: dict[str, Any] = dict(info or {})
    x_val = y_val = None
    if split_by is not None and split_by not in per_example:
        raise ValueError(
            f"Received split_by={split_by!r}; expected None or one of {sorted(per_example)}."
        )
    if fraction > 0:
        if split_by is None:
            train, val = stratified_split(y_train, fraction, seed)
        else:
            train, val = group_split(per_example[split_by][0], fraction, seed)
        x_val, y_val = x_train[val], y_train[val]
        x_train, y_train = x_train[train], y_train[train]
        for name, (values_train, _) in per_example.items():
            extras[f"{name}_val"] = values_train[val]
        per_example = {
            name: (values_train[train], values_test)
            for name, (values_train, values_test) in per_example.items()
        }
    for name, (values_train, values_test) in per_example.items():
        extras[f"{name}_train"] = values_train
        extras[f"{name}_test"] = values_test
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        class_names=tuple(class_names),
        extras=extras,
    )


def find_data_file(filename: str, path: PathLike | None) -> Path:
    """Locate a data file that is not bundled with the package.

    Looks at ``path`` (the file itself, or a directory holding ``filename``) when given, else in
    the directory named by the environment variable ``RNNEDGE_DATA_DIR``.

    Args:
        filename: Name of the file, e.g. ``"mnist.npz"``.
        path: The file or the directory holding it, or None.

    Returns:
        The path of the file.

    Raises:
        FileNotFoundError: If the file is not there; the message lists every place looked and
            how to point the loader at the file.
    """
    looked: list[str] = []
    if path is not None:
        given = Path(os.fspath(path)).expanduser()
        candidate = given / filename if given.is_dir() else given
        if candidate.is_file():
            return candidate
        looked.append(f"{candidate} (from path={os.fspath(path)!r})")
        looked.append(f"${DATA_DIR_ENV}: not consulted, because path= was given")
    else:
        looked.append("path=None: no path given")
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            candidate = Path(env).expanduser() / filename
            if candidate.is_file():
                return candidate
            looked.append(f"{candidate} (from ${DATA_DIR_ENV}={env!r})")
        else:
            looked.append(f"${DATA_DIR_ENV}: not set")
    places = "\n".join(f"  - {place}" for place in looked)
    raise FileNotFoundError(
        f"Could not find {filename}. Looked in:\n{places}\n"
        f"Pass path= (the file, or the directory holding it), or set the environment variable "
        f"{DATA_DIR_ENV} to the directory holding {filename}, e.g. "
        f"`export {DATA_DIR_ENV}=/path/to/data` with /path/to/data/{filename}."
    )


def read_npz(
    path: PathLike, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Read the named arrays of an ``.npz`` file, without unpickling anything.

    Args:
        path: The file.
        required: Keys that must be present.
        optional: Keys read when present.

    Returns:
        ``{key: array}`` for the required keys and the optional keys present.

    Raises:
        ValueError: If the file is not a readable ``.npz`` archive or lacks a required key.
        OSError: If the file cannot be opened at all (e.g. no permission).
    """
    name = os.fspath(path)
    unreadable = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
    hint = f"expected an .npz archive with the keys {list(required)}. Re-create the file."
    # The file is opened here, not by np.load, which leaks its handle when the zip is damaged.
    with open(path, "rb") as handle:
        try:
            archive = np.load(handle, allow_pickle=False)
        except unreadable as error:
            raise ValueError(
                f"Could not read {name} as an .npz archive ({type(error).__name__}: {error}); "
                f"{hint}"
            ) from error
        if not isinstance(archive, Mapping):
            raise ValueError(f"{name} holds a single array of shape {archive.shape}, but {hint}")
        with archive:
            present = set(archive.files)
            missing = [key for key in required if key not in present]
            if missing:
                raise ValueError(
                    f"{name} is incomplete: it lacks {missing}; it holds {sorted(present)}, "
                    f"but {hint}"
                )
            wanted = [*required, *(key for key in optional if key in present)]
            try:
                return {key: archive[key] for key in wanted}
            except unreadable as error:
                raise ValueError(
                    f"Could not read the arrays of {name} ({type(error).__name__}: {error}); {hint}"
                ) from error


def check_arrays(
    path: PathLike,
    arrays: Mapping[str, np.ndarray],
    *,
    example_shape: tuple[int, ...],
    num_classes: int,
    x_dtype: type[np.generic] | None = None,
) -> None:
    """Check the x/y/class_names arrays of a loaded file against the expected layout.

    Args:
        path: The file, named in error messages.
        arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` and possibly ``class_names``.
        example_shape: Expected shape of one input example.
        num_classes: Expected number of classes.
        x_dtype: Expected dtype of the inputs, or None to accept any real number dtype.

    Raises:
        ValueError: Naming the file, the array, what it holds and what was expected.
    """
    name = os.fspath(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        expected = f"(N, {', '.join(str(n) for n in example_shape)})"
        if x.shape[1:] != example_shape:
            raise ValueError(f"{name}: expected x_{split} of shape {expected}, but got {x.shape}.")
        if x_dtype is not None and x.dtype != x_dtype:
            raise ValueError(
                f"{name}: expected x_{split} of dtype {np.dtype(x_dtype)}, but got {x.dtype}."
            )
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{name}: expected x_{split} of real numbers, but got {x.dtype}.")
        if y.shape != (len(x),):
            raise ValueError(
                f"{name}: expected y_{split} of shape ({len(x)},) (one label per example of "
                f"x_{split}), but got {y.shape}."
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}: expected integer y_{split}, but got {y.dtype}.")
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{name}: expected y_{split} in 0..{num_classes - 1}, but got values "
                f"{y.min()}..{y.max()}."
            )
    if "class_names" in arrays and arrays["class_names"].shape != (num_classes,):
        raise ValueError(
            f"{name}: expected class_names of shape ({num_classes},), but got "
            f"{arrays['class_names'].shape}."
        )


def balanced_sample(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` examples of ``y`` drawn across the classes, as evenly as they allow.

    Each class gets ``n // k`` examples (``k`` classes present); the ``n % k`` left over go to
    classes chosen at random; a class with too few examples gives all it has and the rest is
    shared among the others. Within a class the examples are drawn at random with
    ``np.random.default_rng(seed)``. The first ``n`` rows of a class-ordered test set are one
    class; this sample is not.

    Args:
        y: Class labels, shape (N,).
        n: Number of examples wanted; all of them when ``n >= len(y)``.
        seed: Seed of the draw.

    Returns:
        The indices, in increasing order.

    Raises:
        ValueError: If ``n`` is not a positive integer or ``y`` is not one label per example.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"Expected y of shape (N,), one class id per example, but got shape "
                         f"{y.shape}; pass the labels, not one-hot rows.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"Expected n to be a positive integer, but got {n!r}.")
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(y, return_inverse=True)
    members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
    take = np.zeros(len(classes), np.int64)
    left = int(n)
    while left:
        open_classes = np.flatnonzero(take < [len(m) for m in members])
        share, extra = divmod(left, len(open_classes))
        grant = np.full(len(open_classes), share)
        grant[rng.permutation(len(open_classes))[:extra]] += 1
        room = np.array([len(members[c]) for c in open_classes]) - take[open_classes]
        grant = np.minimum(grant, room)
        take[open_classes] += grant
        left -= int(grant.sum())
    return np.sort(np.concatenate([m[:k] for m, k in zip(members, take)]))


#: The arrays of the ``.npz`` files that ``rnnedge`` reads and :func:`save_npz` writes, one
#: place for all of them. Inputs are float32 (N, time steps, features), labels int32 class ids.
NPZ_KEYS = {
    "x_train": "training windows: representative (calibration) data for `rnnedge convert`",
    "y_train": "their class ids",
    "x_val": "validation windows: `rnnedge convert` checks the deployed model on them "
             "(else on x_test)",
    "y_val": "their class ids",
    "x_test": "test windows: `rnnedge emulate` and `rnnedge run` report accuracy on them",
    "y_test": "their class ids",
    "class_names": "the name of each class id (strings)",
}


def save_npz(dataset: Dataset, path: PathLike, *, compress: bool = True) -> Path:
    """Write ``dataset`` as the ``.npz`` the ``rnnedge`` command reads (keys: :data:`NPZ_KEYS`;
    ``x_val``/``y_val`` only when the dataset has a validation split).

    Args:
        dataset: a :class:`Dataset` from any loader.
        path: the file to write; ``.npz`` is appended when missing (as ``np.savez`` does).
        compress: ``np.savez_compressed`` (default) or ``np.savez``.

    Returns:
        The path written.
    """
    arrays = {key: getattr(dataset, key) for key in NPZ_KEYS if key != "class_names"}
    arrays = {key: value for key, value in arrays.items() if value is not None}
    arrays["class_names"] = np.asarray(dataset.class_names, dtype=str)
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return path
