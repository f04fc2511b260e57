"""Build the compact HAR bundle shipped as ``keras_rnnedge/datasets/data/uci_har_hapt.npz``.

Usage (numpy only; run it by path so that the package, and with it TensorFlow, is not imported)::

    python keras_rnnedge/datasets/make_har_bundle.py SRC.npz OUT.npz

``SRC.npz`` is ``uci_har_hapt.npz`` (x_train (7415, 128, 9) / x_test (2996, 128, 9) float32,
UCI HAR windows rebuilt from the HAPT recordings; provenance in ``data/README.md``). The script
writes ``OUT.npz``, decodes it again with :func:`decode_har_bundle` (the function the loader
uses), checks every window against the source and writes a report of the reconstruction error to
standard output.

Compression scheme (lossy only in step 3):

1. The windows are 128 samples long with a step of 64, so consecutive windows of one activity
   run share a 64-sample half. Every window is cut into two 64-sample chunks, identical chunks
   are stored once (in order of first appearance, which keeps them in time order), and each
   window keeps the indices of its two chunks (``window_chunks_train`` / ``_test``).
2. The chunks of each channel are laid end to end into one stream per channel.
3. Each channel is quantized uniformly with a step of ``step_fraction`` times its standard
   deviation (over train and test): ``q = rint(x / scale)``, ``scale`` stored as float32. The
   error is at most ``scale / 2`` per sample and about ``scale / sqrt(12)`` RMS.
4. ``q`` is stored losslessly as first differences along the stream, zigzag-mapped to uint16
   (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) and split into a low-byte and a high-byte plane
   (``codes``, uint8, shape (2, 9, n_chunks * 64)); the high plane is almost all zeros, so
   deflate squeezes it to next to nothing.
5. The arrays are written as an ordinary ``.npz`` (deflate level 9) with fixed zip timestamps,
   so the same input gives the same bytes (with the same zlib).
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_VERSION", "STEP_FRACTION", "build", "decode_har_bundle", "encode_har"]

FORMAT_VERSION = 1
"""Version of the bundle layout, stored as ``format_version``; the loader checks it."""

STEP_FRACTION = 0.02
"""Default quantization step as a fraction of each channel's standard deviation.

0.02 gives an RMS error of 0.02 / sqrt(12) = 0.58 % of the channel's std (at most 1 %), far below
the 4-57 % by which the rebuilt windows differ from the original UCI HAR ones.
"""

CHUNK = 64
"""Samples per stored chunk: half a window, the step between consecutive windows."""

_PASSTHROUGH_KEYS = (
    "y_train",
    "y_test",
    "subject_train",
    "subject_test",
    "class_names",
    "channel_names",
)
BUNDLE_KEYS = (
    "format_version",
    "scale",
    "codes",
    "window_chunks_train",
    "window_chunks_test",
    *_PASSTHROUGH_KEYS,
)
"""Keys of a bundle written by :func:`encode_har`."""


def encode_har(
    arrays: Mapping[str, np.ndarray], *, step_fraction: float = STEP_FRACTION
) -> dict[str, np.ndarray]:
    """Compress the source HAR arrays into the bundle layout.

    Args:
        arrays: The source arrays: ``x_train`` and ``x_test`` float32 of shape (N, 128, 9) plus
            ``y_train``, ``y_test``, ``subject_train``, ``subject_test``, ``class_names`` and
            ``channel_names``, which are copied unchanged.
        step_fraction: Quantization step as a fraction of each channel's standard deviation.

    Returns:
        The bundle arrays, keyed as :data:`BUNDLE_KEYS`.

    Raises:
        ValueError: If the windows are not (N, 128, 9)-shaped alike, if ``step_fraction`` is not
            positive, or if a difference of the quantized stream does not fit in 16 bits.
    """
    if not step_fraction > 0:
        raise ValueError(f"Expected step_fraction > 0, but got {step_fraction!r}.")
    x_train = np.asarray(arrays["x_train"], dtype=np.float32)
    x_test = np.asarray(arrays["x_test"], dtype=np.float32)
    if x_train.ndim != 3 or x_train.shape[1] != 2 * CHUNK or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"Expected x_train and x_test of shape (N, {2 * CHUNK}, channels), but got "
            f"{x_train.shape} and {x_test.shape}."
        )
    channels = x_train.shape[2]
    windows = np.concatenate([x_train, x_test])

    # 1. Unique 64-sample chunks, numbered in order of first appearance.
    halves = np.ascontiguousarray(windows.reshape(-1, CHUNK * channels))
    keys = halves.view(np.dtype((np.void, halves.dtype.itemsize * halves.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    renumber = np.empty_like(order)
    renumber[order] = np.arange(order.size)
    window_chunks = renumber[inverse.ravel()].reshape(-1, 2)
    if order.size > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"Expected at most 65536 unique chunks, but got {order.size}.")
    chunks = halves[first[order]].reshape(-1, CHUNK, channels)

    # 2.-3. One stream per channel, uniform quantization with a step relative to the std.
    std = windows.std(axis=(0, 1), dtype=np.float64)
    scale = (std * step_fraction).astype(np.float32)
    stream = chunks.transpose(2, 0, 1).reshape(channels, -1).astype(np.float64)
    q = np.rint(stream / scale.astype(np.float64)[:, None]).astype(np.int64)

    # 4. First differences, zigzag to uint16, split into byte planes.
    diff = np.diff(q, axis=1, prepend=0)
    if np.abs(diff).max() >= 2**15:
        raise ValueError(
            f"A quantized difference of {np.abs(diff).max()} does not fit in 16 bits; "
            f"use a larger step_fraction than {step_fraction}."
        )
    zigzag = ((diff << 1) ^ (diff >> 63)).astype(np.uint16)
    codes = np.stack([zigzag & 0xFF, zigzag >> 8]).astype(np.uint8)

    n_train = len(x_train)
    bundle = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int32),
        "scale": scale,
        "codes": codes,
        "window_chunks_train": window_chunks[:n_train].astype(np.uint16),
        "window_chunks_test": window_chunks[n_train:].astype(np.uint16),
    }
    for key in _PASSTHROUGH_KEYS:
        bundle[key] = np.asarray(arrays[key])
    return bundle


def decode_har_bundle(bundle: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild the float32 windows from a bundle written by :func:`encode_har`.

    Args:
        bundle: The bundle arrays (an open ``np.load`` result or a dict).

    Returns:
        ``(x_train, x_test)``, float32 arrays of shape (N, 128, channels).

    Raises:
        ValueError: If the bundle's format version or array shapes are not the expected ones.
    """
    version = int(np.asarray(bundle["format_version"]))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"Expected HAR bundle format_version {FORMAT_VERSION}, but got {version}; "
            "rebuild the bundle with make_har_bundle.py."
        )
    codes = np.asarray(bundle["codes"])
    scale = np.asarray(bundle["scale"], dtype=np.float32)
    if codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[:2] != (2, scale.size):
        raise ValueError(
            f"Expected codes of dtype uint8 and shape (2, {scale.size}, n), but got "
            f"{codes.dtype} {codes.shape}."
        )
    channels, length = codes.shape[1:]
    if length % CHUNK:
        raise ValueError(f"Expected a stream length divisible by {CHUNK}, but got {length}.")
    zigzag = codes[0].astype(np.uint16) | (codes[1].astype(np.uint16) << 8)
    diff = (zigzag >> 1).astype(np.int32) ^ -(zigzag & 1).astype(np.int32)
    q = np.cumsum(diff, axis=1, dtype=np.int32)
    chunks = q.reshape(channels, -1, CHUNK).transpose(1, 2, 0).astype(np.float32) * scale

    out = []
    for split in ("train", "test"):
        index = np.asarray(bundle[f"window_chunks_{split}"]).astype(np.intp)
        if index.ndim != 2 or index.shape[1] != 2 or (index.size and index.max() >= len(chunks)):
            raise ValueError(
                f"Expected window_chunks_{split} of shape (N, 2) with indices below "
                f"{len(chunks)}, but got shape {index.shape}."
            )
        out.append(chunks[index].reshape(len(index), 2 * CHUNK, channels))
    return out[0], out[1]


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an ``.npz`` like ``np.savez_compressed``, but deflate level 9 and fixed timestamps."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(
                info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9
            )


def build(src: str | Path, out: str | Path, *, step_fraction: float = STEP_FRACTION) -> str:
    """Build the bundle, verify it against the source and describe the result.

    Args:
        src: Path of the source ``uci_har_hapt.npz``.
        out: Path of the bundle to write.
        step_fraction: Quantization step as a fraction of each channel's standard deviation.

    Returns:
        A text report: sizes, chunk counts and the per-channel reconstruction error.

    Raises:
        ValueError: If the decoded bundle differs from the source by more than half a
            quantization step anywhere, or any label, subject id or name differs.
    """
    out = Path(out)
    with np.load(src) as source:
        arrays = {key: source[key] for key in ("x_train", "x_test", *_PASSTHROUGH_KEYS)}
    bundle = encode_har(arrays, step_fraction=step_fraction)
    _write_npz(out, bundle)

    with np.load(out) as written:
        x_train, x_test = decode_har_bundle(written)
        for key in _PASSTHROUGH_KEYS:
            same = written[key].dtype == arrays[key].dtype
            if not (same and np.array_equal(written[key], arrays[key])):
                raise ValueError(f"{key} in {out} differs from {key} in {src}.")
    original = np.concatenate([arrays["x_train"], arrays["x_test"]]).astype(np.float64)
    rebuilt = np.concatenate([x_train, x_test]).astype(np.float64)
    if rebuilt.shape != original.shape:
        raise ValueError(f"Rebuilt windows have shape {rebuilt.shape}, expected {original.shape}.")
    scale = bundle["scale"].astype(np.float64)
    error = rebuilt - original
    # Half a step, plus float32 rounding of the product q * scale (values stay below 2**11 steps).
    bound = scale / 2 * (1 + 1e-3)
    worst = np.abs(error).max(axis=(0, 1))
    if np.any(worst > bound):
        raise ValueError(
            f"Reconstruction error {worst.tolist()} exceeds half a quantization step "
            f"{(scale / 2).tolist()}."
        )

    std = original.std(axis=(0, 1))
    rms = np.sqrt((error**2).mean(axis=(0, 1)))
    n_chunks = bundle["codes"].shape[2] // CHUNK
    lines = [
        f"source: {src} ({Path(src).stat().st_size} bytes)",
        f"bundle: {out} ({out.stat().st_size} bytes)",
        f"windows: train {len(x_train)}, test {len(x_test)}; "
        f"unique {CHUNK}-sample chunks: {n_chunks} of {2 * len(original)}",
        f"step: {step_fraction} x channel std; labels, subjects and names identical",
        "channel           std      step    max|err|/std  rms(err)/std",
    ]
    for c, name in enumerate(arrays["channel_names"]):
        lines.append(
            f"{name:<14} {std[c]:8.5f}  {scale[c]:8.6f}  {worst[c] / std[c]:10.3%}  "
            f"{rms[c] / std[c]:10.3%}"
        )
    lines.append(
        f"all channels: max|err|/std {np.max(worst / std):.3%}, "
        f"rms(err)/std {np.max(rms / std):.3%} (worst channel)"
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``make_har_bundle.py SRC OUT [--step-fraction F]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="source uci_har_hapt.npz")
    parser.add_argument("out", type=Path, help="bundle to write")
    parser.add_argument(
        "--step-fraction",
        type=float,
        default=STEP_FRACTION,
        help=f"quantization step / channel std (default {STEP_FRACTION})",
    )
    args = parser.parse_args(argv)
    sys.stdout.write(build(args.src, args.out, step_fraction=args.step_fraction))
    return 0


if __name__ == "__main__":
    sys.exit(main())
