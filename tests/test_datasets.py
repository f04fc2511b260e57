"""Tests of keras_rnnedge.datasets: the bundled HAR data and the file-based loaders.

The HAR tests read only the bundled file. The Speech Commands and MNIST loaders are tested on
small synthetic files written in the real layout to tmp_path.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from keras_rnnedge import datasets
from keras_rnnedge.datasets import (
    DATA_DIR_ENV,
    HAR2_CLASS_NAMES,
    HAR_MOVING,
    HAR_STATIC,
    Dataset,
    load_har,
    load_mnist,
    load_speech_commands,
)

HAR_CLASS_NAMES = (
    "WALKING",
    "WALKING_UPSTAIRS",
    "WALKING_DOWNSTAIRS",
    "SITTING",
    "STANDING",
    "LAYING",
)
# Class counts stated in the source's documentation (shared/data/uci_har_hapt.md).
HAR_TRAIN_COUNTS = [1226, 1073, 987, 1293, 1423, 1413]
HAR_TEST_COUNTS = [496, 471, 420, 508, 556, 545]
HAR_TEST_SUBJECTS = {2, 4, 9, 10, 12, 13, 18, 20, 24}

# Per-channel mean and std of the float32 source windows (float64 statistics over all windows and
# time steps, measured on shared/data/uci_har_hapt.npz before quantization), 6 significant digits.
HAR_SOURCE_STATS = {
    "train": (
        [
            -0.000580891,
            -0.000297732,
            -0.000345568,
            0.00498598,
            -0.00229849,
            -0.00823996,
            0.805648,
            0.0282045,
            0.0857264,
        ],
        [0.194174, 0.122208, 0.106621, 0.402948, 0.377697, 0.250275, 0.413241, 0.390715, 0.356987],
    ),
    "test": (
        [
            -0.000697027,
            -0.000415698,
            -0.000162616,
            0.00660987,
            -0.00207822,
            -0.00638221,
            0.817806,
            0.00280993,
            0.0812466,
        ],
        [0.183032, 0.12002, 0.0950867, 0.392688, 0.335522, 0.243592, 0.405463, 0.411488, 0.307355],
    ),
}
# The bundle quantizes with a step of 2 % of each channel's std, an error of at most 1 % of the
# std per sample and zero on average: it moved the means by < 5e-5 std and the stds by < 3e-5
# (relative). 1e-3 leaves room for the 6-digit rounding above, but catches a wrong scale, a
# swapped channel or a wrong chunk index.
HAR_STATS_TOLERANCE = 1e-3
# Consecutive windows of one activity run share 64 samples; in the source, the second half of
# window i equals the first half of window i + 1 for this many pairs (bit for bit).
HAR_SHARED_HALVES = {"train": 6816, "test": 2739}


@pytest.fixture(scope="module")
def har6() -> Dataset:
    return load_har()


@pytest.fixture(scope="module")
def har2_split() -> Dataset:
    return load_har(num_classes=2, validation_split=0.2, seed=0)


def _row_keys(x: np.ndarray) -> np.ndarray:
    """One hashable/sortable key per example (its raw bytes)."""
    rows = np.ascontiguousarray(x).reshape(len(x), -1)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


# --------------------------------------------------------------------------------------------
# HAR, bundled


def test_har6_shapes_dtypes_and_class_counts(har6):
    assert har6.x_train.shape == (7415, 128, 9)
    assert har6.x_test.shape == (2996, 128, 9)
    assert har6.x_train.dtype == har6.x_test.dtype == np.float32
    assert har6.y_train.dtype == har6.y_test.dtype == np.int32
    assert har6.x_val is None and har6.y_val is None
    assert har6.class_names == HAR_CLASS_NAMES
    assert har6.num_classes == 6
    assert har6.input_shape == (128, 9)
    assert np.bincount(har6.y_train).tolist() == HAR_TRAIN_COUNTS
    assert np.bincount(har6.y_test).tolist() == HAR_TEST_COUNTS
    assert np.isfinite(har6.x_train).all() and np.isfinite(har6.x_test).all()


def test_har6_subjects_follow_the_uci_har_split(har6):
    train, test = har6.extras["subject_train"], har6.extras["subject_test"]
    assert train.shape == har6.y_train.shape and test.shape == har6.y_test.shape
    assert set(test.tolist()) == HAR_TEST_SUBJECTS
    assert set(train.tolist()) == set(range(1, 31)) - HAR_TEST_SUBJECTS
    assert har6.extras["channel_names"][:3] == ("body_acc_x", "body_acc_y", "body_acc_z")
    assert har6.extras["channel_names"][6:] == ("total_acc_x", "total_acc_y", "total_acc_z")


@pytest.mark.parametrize("split", ["train", "test"])
def test_har_matches_source_statistics(har6, split):
    x = getattr(har6, f"x_{split}").astype(np.float64)
    mean, std = (np.array(values) for values in HAR_SOURCE_STATS[split])
    np.testing.assert_allclose((x.mean(axis=(0, 1)) - mean) / std, 0, atol=HAR_STATS_TOLERANCE)
    np.testing.assert_allclose(x.std(axis=(0, 1)), std, rtol=HAR_STATS_TOLERANCE)


@pytest.mark.parametrize("split", ["train", "test"])
def test_har_overlapping_halves_are_shared(har6, split):
    halves = getattr(har6, f"x_{split}").reshape(-1, 2, 64, 9)
    shared = np.all(halves[:-1, 1] == halves[1:, 0], axis=(1, 2))
    assert shared.sum() == HAR_SHARED_HALVES[split]


def test_har_is_physically_plausible(har6):
    x, y = har6.x_train, har6.y_train
    # body_acc is total_acc minus its 0.3 Hz low-pass (gravity): about zero on average, in g.
    assert np.abs(x[..., 0:3].mean(axis=(0, 1))).max() < 0.01
    # total_acc carries gravity: the mean acceleration vector of a window is about 1 g long.
    gravity = x[..., 6:9].mean(axis=1)
    for c in range(6):
        assert 0.95 < np.median(np.linalg.norm(gravity[y == c], axis=1)) < 1.06, c
    # Phone upright on the waist when standing (gravity on x), flat when laying.
    standing, laying = gravity[y == 4].mean(axis=0), gravity[y == 5].mean(axis=0)
    assert 0.9 < standing[0] < 1.1
    assert abs(laying[0]) < 0.2 and np.linalg.norm(laying[1:]) > 0.8


def test_har_loads_deterministically(har6):
    again = load_har()
    np.testing.assert_array_equal(again.x_train, har6.x_train)
    np.testing.assert_array_equal(again.x_test, har6.x_test)
    np.testing.assert_array_equal(again.y_train, har6.y_train)
    np.testing.assert_array_equal(again.y_test, har6.y_test)


def test_har2_groups_the_six_activities(har6, har2_split):
    assert HAR2_CLASS_NAMES == ("static", "moving")
    moving = [HAR_CLASS_NAMES.index(name) for name in HAR_MOVING]
    static = [HAR_CLASS_NAMES.index(name) for name in HAR_STATIC]
    assert moving == [0, 1, 2] and static == [3, 4, 5]

    har2 = load_har(num_classes=2)
    assert har2.class_names == HAR2_CLASS_NAMES and har2.num_classes == 2
    assert har2.y_train.dtype == np.int32
    np.testing.assert_array_equal(har2.x_train, har6.x_train)
    np.testing.assert_array_equal(har2.y_train, np.isin(har6.y_train, moving))
    np.testing.assert_array_equal(har2.y_test, np.isin(har6.y_test, moving))
    for har2_counts, har6_counts in [
        (np.bincount(har2.y_train), HAR_TRAIN_COUNTS),
        (np.bincount(har2.y_test), HAR_TEST_COUNTS),
        (np.bincount(np.concatenate([har2_split.y_train, har2_split.y_val])), HAR_TRAIN_COUNTS),
    ]:
        assert har2_counts.tolist() == [
            sum(har6_counts[i] for i in static),
            sum(har6_counts[i] for i in moving),
        ]


def test_har_validation_split_is_seeded_stratified_and_disjoint(har6, har2_split):
    ds = har2_split
    assert len(ds.x_val) == round(0.2 * 7415) and len(ds.x_train) + len(ds.x_val) == 7415
    assert ds.y_val.dtype == np.int32
    assert ds.extras["subject_val"].shape == ds.y_val.shape
    assert ds.extras["subject_train"].shape == ds.y_train.shape
    # Stratified: each class contributes its share, up to rounding.
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_val]))
    assert np.abs(np.bincount(ds.y_val, minlength=2) - 0.2 * counts).max() <= 1
    # Train and validation partition the original training windows (every window is unique).
    union = _row_keys(np.concatenate([ds.x_train, ds.x_val]))
    assert len(np.unique(union)) == 7415
    np.testing.assert_array_equal(np.sort(union), np.sort(_row_keys(har6.x_train)))
    # The test set is untouched.
    np.testing.assert_array_equal(ds.x_test, har6.x_test)

    same = load_har(num_classes=2, validation_split=0.2, seed=0)
    np.testing.assert_array_equal(same.x_val, ds.x_val)
    np.testing.assert_array_equal(same.y_val, ds.y_val)
    other = load_har(num_classes=2, validation_split=0.2, seed=1)
    assert len(other.x_val) == len(ds.x_val)
    assert not np.array_equal(other.x_val, ds.x_val)


def test_har_subject_validation_split_holds_out_whole_subjects(har6):
    ds = load_har(6, validation_split=0.15, seed=3, validation_by="subject")
    held = set(ds.extras["subject_val"].tolist())
    assert held and held.isdisjoint(ds.extras["subject_train"].tolist())
    assert len(ds.y_train) + len(ds.y_val) == 7415
    # as close to 15 % as whole subjects allow (21 subjects of ~350 windows each)
    assert abs(len(ds.y_val) - 0.15 * 7415) < 400
    np.testing.assert_array_equal(ds.x_test, har6.x_test)
    again = load_har(6, validation_split=0.15, seed=3, validation_by="subject")
    np.testing.assert_array_equal(again.y_val, ds.y_val)
    with pytest.raises(ValueError, match="validation_by .*'subject'.*but got 'person'"):
        load_har(validation_split=0.1, validation_by="person")


def test_group_split_keeps_groups_whole_and_needs_two():
    from keras_rnnedge.datasets._core import group_split

    groups = np.repeat(np.arange(10), np.arange(1, 11))
    train, val = group_split(groups, 0.3, seed=0)
    assert set(groups[train]).isdisjoint(groups[val]) and len(train) + len(val) == len(groups)
    assert 0 < len(val) < len(groups)
    with pytest.raises(ValueError, match="at least two groups"):
        group_split(np.zeros(5), 0.5, seed=0)


@pytest.mark.parametrize("num_classes", [0, 1, 3, 12, True, "6"])
def test_har_rejects_other_num_classes(num_classes):
    with pytest.raises(ValueError, match=rf"6 .*or 2 .*but got {num_classes!r}"):
        load_har(num_classes)


@pytest.mark.parametrize("validation_split", [-0.1, 1.0, 1.5, float("nan"), True])
def test_har_rejects_validation_split_outside_unit_interval(validation_split):
    with pytest.raises(ValueError, match=r"validation_split .*\[0, 1\).*but got"):
        load_har(validation_split=validation_split)


def test_har_dtype(har6):
    ds = load_har(dtype=np.float64)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.x_test, har6.x_test.astype(np.float64))
    with pytest.raises(ValueError, match="floating dtype .*int32"):
        load_har(dtype="int32")


# --------------------------------------------------------------------------------------------
# Speech Commands and MNIST, from files

SPEECH_CLASSES = "_silence_ _unknown_ yes no up down left right on off stop go".split()


def _speech_arrays(n_train: int = 48, n_test: int = 24) -> dict[str, np.ndarray]:
    """A small file in the layout of speech_commands_v2_test12.npz; x[i, 0, 0] = i."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.normal(size=(n, 49, 10)).astype(np.float32)
        x[:, 0, 0] = np.arange(n)
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = (np.arange(n) % 12).astype(np.uint8)
        arrays[f"speaker_{split}"] = np.array([f"spk{i % 5}_{split}" for i in range(n)])
        arrays[f"file_{split}"] = np.array([f"yes/{i}.wav" for i in range(n)])
    arrays["class_names"] = np.array(SPEECH_CLASSES)
    arrays["feature_params"] = np.array(json.dumps({"n_mfcc": 10}))
    return arrays


def _mnist_arrays(n_train: int = 30, n_test: int = 20) -> dict[str, np.ndarray]:
    """A small file in the layout of mnist.npz."""
    rng = np.random.default_rng(1)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"x_{split}"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"y_{split}"] = (np.arange(n) % 10).astype(np.uint8)
    arrays["class_names"] = np.array([str(d) for d in range(10)])
    return arrays


LOADERS = {
    "speech_commands": (load_speech_commands, "speech_commands_v2_test12.npz", _speech_arrays),
    "mnist": (load_mnist, "mnist.npz", _mnist_arrays),
}


@pytest.fixture(params=sorted(LOADERS))
def file_loader(request, tmp_path, monkeypatch):
    """(loader, path of a valid synthetic file, its arrays), with RNNEDGE_DATA_DIR unset."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    loader, filename, make_arrays = LOADERS[request.param]
    arrays = make_arrays()
    path = tmp_path / filename
    np.savez_compressed(path, **arrays)
    return loader, path, arrays


def test_file_loader_accepts_file_directory_and_env_var(file_loader, monkeypatch):
    loader, path, arrays = file_loader
    from_file = loader(path)
    from_dir = loader(path.parent)
    from_str = loader(str(path))
    monkeypatch.setenv(DATA_DIR_ENV, str(path.parent))
    from_env = loader()
    for ds in (from_dir, from_str, from_env):
        np.testing.assert_array_equal(ds.x_train, from_file.x_train)
        np.testing.assert_array_equal(ds.y_test, from_file.y_test)
    assert from_file.y_train.dtype == from_file.y_test.dtype == np.int32
    assert from_file.x_train.dtype == from_file.x_test.dtype == np.float32
    np.testing.assert_array_equal(from_file.y_train, arrays["y_train"])
    assert from_file.class_names == tuple(arrays["class_names"].tolist())
    assert from_file.x_val is None and from_file.y_val is None


def test_file_loader_missing_file_lists_places_looked(file_loader, tmp_path, monkeypatch):
    loader, path, _ = file_loader
    name = path.name
    empty = tmp_path / "empty"
    empty.mkdir()

    with pytest.raises(FileNotFoundError) as info:
        loader()
    message = str(info.value)
    assert f"Could not find {name}" in message
    assert "path=None" in message and f"${DATA_DIR_ENV}: not set" in message
    assert "path=" in message and f"export {DATA_DIR_ENV}=" in message

    monkeypatch.setenv(DATA_DIR_ENV, str(empty))
    with pytest.raises(FileNotFoundError, match=DATA_DIR_ENV) as info:
        loader()
    assert str(empty / name) in str(info.value)

    with pytest.raises(FileNotFoundError) as info:
        loader(empty)
    assert str(empty / name) in str(info.value) and "path=" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        loader(tmp_path / "nowhere.npz")
    assert str(tmp_path / "nowhere.npz") in str(info.value)


def test_file_loader_rejects_incomplete_file(file_loader):
    loader, path, arrays = file_loader
    del arrays["y_test"]
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message and "y_test" in message and "x_train" in message


def test_file_loader_rejects_wrong_shapes(file_loader):
    loader, path, arrays = file_loader
    good = dict(arrays)
    expected = "(N, 49, 10)" if loader is load_speech_commands else "(N, 28, 28)"
    arrays["x_train"] = arrays["x_train"][:, :, :-1]
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match="x_train") as info:
        loader(path)
    assert str(path) in str(info.value) and expected in str(info.value)
    assert str(arrays["x_train"].shape) in str(info.value)

    arrays = dict(good, y_test=good["y_test"][:-1])
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match=r"y_test of shape \(\d+,\)"):
        loader(path)

    arrays = dict(good, class_names=good["class_names"][:-1])
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match=r"class_names of shape"):
        loader(path)


def test_file_loader_rejects_labels_out_of_range(file_loader):
    loader, path, arrays = file_loader
    arrays["y_train"] = arrays["y_train"].copy()
    arrays["y_train"][0] = 99
    np.savez_compressed(path, **arrays)
    with pytest.raises(ValueError, match=r"y_train in 0\.\.\d+, but got values 0\.\.99"):
        loader(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "npy"])
def test_file_loader_rejects_corrupt_file(file_loader, damage):
    loader, path, _ = file_loader
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not an npz archive" * 10)
    else:
        with path.open("wb") as fh:
            np.save(fh, np.zeros(3))
    with pytest.raises(ValueError) as info:
        loader(path)
    assert str(path) in str(info.value) and "x_train" in str(info.value)


def test_file_loader_validation_split_is_seeded_and_disjoint(file_loader):
    loader, path, arrays = file_loader
    ds = loader(path, validation_split=0.25, seed=3)
    n = len(arrays["y_train"])
    assert len(ds.x_val) == round(0.25 * n) and len(ds.x_train) + len(ds.x_val) == n
    union = _row_keys(np.concatenate([ds.x_train, ds.x_val]))
    np.testing.assert_array_equal(np.sort(union), np.sort(_row_keys(loader(path).x_train)))
    counts = np.bincount(arrays["y_train"])
    assert np.abs(np.bincount(ds.y_val, minlength=len(counts)) - 0.25 * counts).max() <= 1
    np.testing.assert_array_equal(ds.x_test, loader(path).x_test)

    same = loader(path, validation_split=0.25, seed=3)
    np.testing.assert_array_equal(same.x_val, ds.x_val)
    other = loader(path, validation_split=0.25, seed=4)
    assert not np.array_equal(other.x_val, ds.x_val)

    with pytest.raises(ValueError, match=r"\[0, 1\).*but got 1\.0"):
        loader(path, validation_split=1.0)


def test_speech_commands_contents_and_extras(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    arrays = _speech_arrays()
    np.savez_compressed(tmp_path / "speech_commands_v2_test12.npz", **arrays)
    ds = load_speech_commands(tmp_path, validation_split=0.25)
    assert ds.input_shape == (49, 10) and ds.num_classes == 12
    assert ds.class_names == tuple(SPEECH_CLASSES)
    # x[i, 0, 0] = i in the synthetic file, so every split can be traced back to its rows.
    for split in ("train", "val"):
        rows = getattr(ds, f"x_{split}")[:, 0, 0].astype(int)
        np.testing.assert_array_equal(getattr(ds, f"x_{split}"), arrays["x_train"][rows])
        np.testing.assert_array_equal(getattr(ds, f"y_{split}"), arrays["y_train"][rows])
        np.testing.assert_array_equal(ds.extras[f"speaker_{split}"], arrays["speaker_train"][rows])
        np.testing.assert_array_equal(ds.extras[f"file_{split}"], arrays["file_train"][rows])
    np.testing.assert_array_equal(ds.x_test, arrays["x_test"])
    np.testing.assert_array_equal(ds.extras["speaker_test"], arrays["speaker_test"])
    assert json.loads(ds.extras["feature_params"]) == {"n_mfcc": 10}


def test_mnist_pixel_sequences(tmp_path):
    arrays = _mnist_arrays()
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (30, 784, 1) and ds.x_test.shape == (20, 784, 1)
    assert ds.input_shape == (784, 1) and ds.num_classes == 10
    assert ds.x_train.dtype == np.float32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_allclose(ds.x_test[:, :, 0], arrays["x_test"].reshape(20, 784) / 255.0)
    assert ds.extras["permutation"] is None

    raw = load_mnist(tmp_path, normalize=False)
    assert raw.x_train.dtype == np.float32
    np.testing.assert_array_equal(raw.x_train[:, :, 0], arrays["x_train"].reshape(30, 784))


def test_mnist_permutation_is_fixed_by_seed(tmp_path):
    np.savez_compressed(tmp_path / "mnist.npz", **_mnist_arrays())
    plain = load_mnist(tmp_path)
    permuted = load_mnist(tmp_path, permuted=True, seed=5)
    permutation = np.random.default_rng(5).permutation(784)
    np.testing.assert_array_equal(permuted.extras["permutation"], permutation)
    # One permutation, the same for the training and the test set.
    np.testing.assert_array_equal(permuted.x_train, plain.x_train[:, permutation])
    np.testing.assert_array_equal(permuted.x_test, plain.x_test[:, permutation])
    np.testing.assert_array_equal(permuted.y_train, plain.y_train)
    again = load_mnist(tmp_path, permuted=True, seed=5)
    np.testing.assert_array_equal(again.x_train, permuted.x_train)
    other = load_mnist(tmp_path, permuted=True, seed=6)
    assert not np.array_equal(other.x_train, permuted.x_train)


def test_mnist_accepts_keras_layout_and_rejects_float_pixels(tmp_path):
    arrays = _mnist_arrays()
    del arrays["class_names"]  # Keras' mnist.npz has no class_names
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    assert load_mnist(tmp_path).class_names == tuple("0123456789")

    arrays["x_train"] = arrays["x_train"] / 255.0
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match="x_train of dtype uint8, but got float64"):
        load_mnist(tmp_path)


# --------------------------------------------------------------------------------------------
# Dataset and the package


def test_dataset_container():
    x, y = np.zeros((4, 3, 2), np.float32), np.array([0, 1, 0, 1], np.int32)
    ds = Dataset(x, y, None, None, x[:2], y[:2], ["a", "b"], {"note": "n"})
    assert ds.class_names == ("a", "b") and ds.num_classes == 2 and ds.input_shape == (3, 2)
    assert "x_train=float32(4, 3, 2)" in repr(ds) and "x_val=None" in repr(ds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.x_train = x  # type: ignore[misc]
    with pytest.raises(TypeError):
        ds.extras["note"] = "changed"  # type: ignore[index]
    with pytest.raises(ValueError, match="both arrays or both None"):
        Dataset(x, y, x, None, x, y, ["a", "b"])
    with pytest.raises(ValueError, match="3 labels for 4 inputs"):
        Dataset(x, y[:3], None, None, x, y, ["a", "b"])


def test_public_api_is_listed():
    for name in datasets.__all__:
        assert hasattr(datasets, name), name
    assert {"Dataset", "load_har", "load_speech_commands", "load_mnist"} <= set(datasets.__all__)


def test_subpackage_imports_only_numpy_and_the_standard_library():
    allowed = {"numpy"}
    package_dir = Path(datasets.__file__).parent
    for source in sorted(package_dir.glob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            elif isinstance(node, ast.ImportFrom):
                # Relative imports stay inside this subpackage, away from _compat (TensorFlow).
                assert node.level == 1, f"{source.name} imports from outside datasets/"
                continue
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top in allowed or top in _stdlib(), f"{source.name} imports {module}"


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names) | {"__future__"}


# -- balanced_sample and save_npz ---------------------------------------------------------------

def test_balanced_sample_spreads_over_the_classes():
    y = np.repeat(np.arange(6), [50, 50, 50, 50, 50, 3])  # ordered, one class nearly empty
    index = datasets.balanced_sample(y, 20, seed=0)
    assert len(index) == 20 and len(set(index.tolist())) == 20
    assert np.all(np.diff(index) > 0)
    counts = np.bincount(y[index], minlength=6)
    assert counts[5] == 3  # all it has ...
    assert sorted(counts[:5].tolist()) == [3, 3, 3, 4, 4]  # ... the rest shared out evenly
    assert np.array_equal(index, datasets.balanced_sample(y, 20, seed=0))
    assert not np.array_equal(index, datasets.balanced_sample(y, 20, seed=1))
    assert np.array_equal(datasets.balanced_sample(y, 500), np.arange(len(y)))


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_balanced_sample_refuses_a_bad_count(n):
    with pytest.raises(ValueError, match="positive integer"):
        datasets.balanced_sample(np.zeros(4, int), n)


def test_save_npz_writes_the_documented_keys(tmp_path):
    ds = datasets.load_har(2, validation_split=0.1)
    path = datasets.save_npz(ds, tmp_path / "har")
    assert path.name == "har.npz"
    with np.load(path) as data:
        assert set(data.files) == set(datasets.NPZ_KEYS)
        for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            assert np.array_equal(data[key], getattr(ds, key)), key
        assert tuple(data["class_names"]) == ds.class_names
