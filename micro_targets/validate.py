"""Input checks shared by the converters, the emulators and the ``rnnedge`` command.

Every check runs before any work and raises with a message that names the value received,
what was expected and what to do:

* :func:`check_sequences`: input windows ``(N, timesteps, features)``, with the number of
  features and, when the model fixes it, the number of time steps.
* :func:`check_labels`: one class index per window.
* :func:`check_flatbuffer`: a TFLite flatbuffer that LiteRT's verifier accepts and whose schema
  loads (TFLite Micro does not verify a model: a truncated or corrupt one makes it fail deep in
  its loader, or worse).
* :func:`check_positive_int`: counts such as ``limit`` and ``batch_size``.

Which sequence length a model takes depends on how it runs: an unrolled or fused TFLite model
is built for exactly one length; a step model (TFLite ``mode="step"`` or standalone C) runs
windows of any length by itself, and the callers that compare it with the trained Keras model
(``convert``, ``convert_c``, ``rnnedge emulate``/``run``) require the Keras model's own input
length, unless that model was built with a ``None`` time dimension.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["check_flatbuffer", "check_labels", "check_positive_int", "check_sequences"]

#: The file identifier of a TFLite flatbuffer, at bytes 4..8.
TFLITE_IDENTIFIER = b"TFL3"


def check_positive_int(value, name: str, *, error: type[Exception] = ValueError) -> int:
    """``value`` if it is an integer >= 1 (``bool`` excluded), else ``error``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise error(f"Received {name}={value!r}; expected a positive integer (1 or more).")
    return int(value)


def check_sequences(x, *, features: int, timesteps: int | None = None, name: str = "x",
                    finite: bool = False, length_note: str = "",
                    error: type[Exception] = ValueError) -> np.ndarray:
    """``x`` as an array of shape ``(N, T, features)``, ``N >= 1``, ``T >= 1``.

    Args:
        x: the windows (anything ``np.asarray`` takes).
        features: the model's features per time step.
        timesteps: the one sequence length the model takes (``None``: any length).
        name: how the message calls ``x`` (``"representative_data"``, ``"data 'x.npz'"``...).
        finite: refuse NaN and Inf values.
        length_note: appended to the message of a wrong length (why that length, what to do).
        error: the exception class raised.

    Returns:
        ``np.asarray(x)`` (its dtype unchanged).
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise error(f"Received {name} that is not an array ({exc}); expected numbers of shape "
                    f"(N, timesteps, {features}).") from exc
    if not np.issubdtype(arr.dtype, np.number):
        raise error(f"Received {name} of dtype {arr.dtype}; expected numbers of shape "
                    f"(N, timesteps, {features}).")
    if arr.ndim != 3:
        hint = {2: f" For one window of shape (timesteps, {features}), add a batch axis "
                   "(x[None]); for token ids (N, timesteps), embed them first.",
                1: " Reshape the data to (N, timesteps, features)."}.get(arr.ndim, "")
        raise error(f"Received {name} with shape {arr.shape} ({arr.ndim} dimensions); expected "
                    f"3 dimensions (N, timesteps, {features}).{hint}")
    n, t, f = arr.shape
    if f != features:
        raise error(f"Received {name} with {f} features per time step (shape {arr.shape}); the "
                    f"model takes {features}. Pass the features the model was trained on, "
                    "preprocessed the same way.")
    if n == 0 or t == 0:
        raise error(f"Received {name} with shape {arr.shape}; expected at least one window "
                    "of at least one time step.")
    if timesteps is not None and t != timesteps:
        raise error(f"Received {name} with {t} time steps per window (shape {arr.shape}); the "
                    f"model takes exactly {timesteps}.{' ' + length_note if length_note else ''}")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise error(f"Received {name} with {bad} NaN or Inf values; expected finite values. "
                    "Drop or impute those windows.")
    return arr


def check_labels(y, count: int, *, name: str = "y",
                 error: type[Exception] = ValueError) -> np.ndarray:
    """``y`` as ``count`` integer class indices (shape ``(count,)``).

    Raises ``error`` naming the shape received, with a hint for one-hot labels.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[0] == count and arr.shape[1] > 1:
        raise error(f"Received {name} with shape {arr.shape}; expected {count} class indices, "
                    f"shape ({count},). For one-hot labels, pass {name}.argmax(-1).")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) != count:
        raise error(f"Received {name} with shape {arr.shape} for {count} windows; expected one "
                    f"class index per window, shape ({count},). Take x and y from the same "
                    "split (x_test with y_test).")
    if not (np.issubdtype(arr.dtype, np.integer)
            or (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr))
                and np.array_equal(arr, np.round(arr)))):
        raise error(f"Received {name} of dtype {arr.dtype} with non-integer values; expected "
                    "class indices (0, 1, ...).")
    return arr.astype(np.int64)


def check_flatbuffer(flatbuffer, where: str = "the flatbuffer",
                     error: type[Exception] = ValueError) -> bytes:
    """The bytes of a TFLite flatbuffer that LiteRT's verifier accepts and whose schema loads.

    Checks, in order: bytes-like, at least 8 bytes, the ``TFL3`` identifier at byte 4, a root
    offset inside the buffer, LiteRT's flatbuffer verifier, and the schema objects TFLite
    Micro's Python loader builds.

    Args:
        flatbuffer: the model bytes.
        where: names the source in the message (``"'out/model.tflite'"``).
        error: the exception class raised.

    Returns:
        The bytes.
    """
    try:
        data = bytes(memoryview(flatbuffer))
    except TypeError:
        raise error(f"Received {type(flatbuffer).__name__} for {where}; expected the bytes of "
                    "a TFLite model.") from None
    fix = ("The file is truncated or corrupt, or of another kind: convert the model again "
           "(rnnedge convert, or convert(...).save(...)).")
    if len(data) < 8:
        raise error(f"{where} has {len(data)} bytes; a TFLite flatbuffer has at least 8 (root "
                    f"offset and the 'TFL3' identifier). {fix}")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise error(f"{where} is not a TFLite flatbuffer: bytes 4..8 are {data[4:8]!r}, "
                    f"expected {TFLITE_IDENTIFIER!r}. {fix}")
    (root,) = struct.unpack_from("<I", data, 0)
    if root + 4 > len(data):
        raise error(f"{where} has {len(data)} bytes but its root table is at byte {root}: "
                    f"the flatbuffer is truncated. {fix}")
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=data)
    except (ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise error(f"{where} ({len(data):,} bytes) is not a valid TFLite model: LiteRT "
                    f"refused it ({detail}). {fix}") from exc
    try:
        schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as exc:  # struct.error, TypeError, IndexError...: a damaged table
        raise error(f"{where} ({len(data):,} bytes) is not a valid TFLite model: its schema "
                    f"does not load ({type(exc).__name__}: {exc}). {fix}") from exc
    return data
