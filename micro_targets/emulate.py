"""Run a converted model on the host: LiteRT or TFLite Micro, step by step or unrolled.

:func:`emulate` takes anything with the attributes of a
:class:`keras_rnnedge.converters.ConversionResult` (``flatbuffer``, ``mode``, ``inputs``,
``outputs``, ``state_sizes``) and a batch of sequences, and returns the float (dequantized)
outputs, the raw outputs in the model's own dtype and per-step timings. Step models run one time
step per invoke with the state carried by the caller, as the generated sketch does; the state
output is re-quantized to the state input's scale when the two differ.

Runtimes:

* ``"litert"``: ``ai_edge_litert`` with the reference kernels (``BUILTIN_REF``), the kernels
  TFLite Micro ports. On identical int8 inputs each kernel agrees with TFLite Micro within one
  LSB (requantization rounding); over a whole model the 1-LSB differences propagate and steep
  sigmoid/tanh regions amplify them, so compare predictions, not raw logits, end to end.
* ``"litert-optimized"``: LiteRT's default (optimized/XNNPACK) kernels.
* ``"tflm"``: the TFLite Micro interpreter (``tflite_micro.runtime``) with a given or measured
  arena. Models with weights stored compressed (``convert(..., compression="prune")``: the
  ``TFLM_DECODE`` operator) run only here; LiteRT refuses them with a clear error.

:func:`emulate_against` runs two flatbuffers with the same inputs and outputs side by side and
reports their largest difference at any output of any step (the pipeline's check that a
lossless rewrite is lossless).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import os
import re
import tempfile
import time
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from keras_rnnedge.micro_targets.validate import (
    check_flatbuffer,
    check_positive_int,
    check_sequences,
)
from keras_rnnedge.progress import ProgressArg, check_progress, progress_bar

__all__ = ["RUNTIMES", "TFLM_ONLY_OPS", "EmulationResult", "emulate", "emulate_against",
           "measure_arena", "open_runtime", "tflm_interpreter"]

RUNTIMES = ("litert", "litert-optimized", "tflm")
#: Operators TFLite Micro runs and LiteRT has no kernel for (as ``audit.list_ops`` names them)
#: → where they come from.
TFLM_ONLY_OPS = {
    "CUSTOM:TFLM_DECODE": "weights stored compressed, from convert(..., compression='prune')",
}
#: Arena for the first TFLite Micro allocation, before the exact need is measured.
PROBE_ARENA_BYTES = 4 * 1024 * 1024


class _Tensor(Protocol):
    name: str
    position: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def quantize(self, values: np.ndarray) -> np.ndarray: ...
    def dequantize(self, values: np.ndarray) -> np.ndarray: ...
    def requantize(self, values: np.ndarray, source: _Tensor) -> np.ndarray: ...


class _Converted(Protocol):
    flatbuffer: bytes
    mode: str
    inputs: tuple[_Tensor, ...]
    outputs: tuple[_Tensor, ...]
    state_sizes: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class EmulationResult:
    """Outputs of an emulated run.

    Attributes:
        outputs: float outputs (dequantized), shape (N, classes).
        raw_outputs: outputs in the model's output dtype (int8 for an int8 model).
        step_seconds: host wall time of each invoke, shape (N, steps) (N, 1 when unrolled).
        runtime: which interpreter ran.
        arena_bytes: the TFLite Micro arena used (``None`` for LiteRT).
    """

    outputs: np.ndarray
    raw_outputs: np.ndarray
    step_seconds: np.ndarray
    runtime: str
    arena_bytes: int | None = None

    @property
    def seconds_per_step(self) -> float:
        return float(np.median(self.step_seconds))

    def predictions(self) -> np.ndarray:
        return np.argmax(self.outputs, axis=-1)


# -- TFLite Micro ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _capture_fd(fd: int) -> Iterator[list[str]]:
    """Capture what C code writes to a file descriptor (TFLM prints allocations to stderr)."""
    out: list[str] = []
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield out
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def tflm_interpreter(flatbuffer: bytes, arena_bytes: int):
    """A TFLite Micro interpreter; a clear error when the arena is too small or an op missing."""
    from tflite_micro import runtime

    try:
        with _capture_fd(2) as log:
            interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=int(arena_bytes))
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in "".join(log).splitlines() if line.strip())
        raise RuntimeError(f"TFLite Micro could not load the model with a {arena_bytes}-byte "
                           f"arena: {exc}. {detail}".strip()) from exc
    return interpreter


_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def _recorded_total(flatbuffer: bytes) -> int:
    interpreter = tflm_interpreter(flatbuffer, PROBE_ARENA_BYTES)
    with _capture_fd(2) as log:
        interpreter.print_allocations()
    match = _ARENA_TOTAL.search("".join(log))
    if match is None:
        raise RuntimeError("TFLite Micro printed no arena total; output was: " + "".join(log))
    return int(match.group(1))


def _fits(flatbuffer: bytes, arena_bytes: int) -> bool:
    """Whether TFLite Micro allocates ``flatbuffer`` in ``arena_bytes``.

    Tried in a forked child: some kernels (UNIDIRECTIONAL_SEQUENCE_LSTM) crash the process
    instead of failing cleanly when the arena is too small.
    """
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            faulthandler.disable()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            tflm_interpreter(flatbuffer, arena_bytes)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def measure_arena(flatbuffer: bytes) -> int:
    """The smallest TFLite Micro arena (to 16 bytes) that ``flatbuffer`` allocates in on this host.

    Starts from the recording allocator's total (what stays allocated) and searches upwards,
    because planning needs temporary memory beyond that total. On a 32-bit microcontroller the
    need is the same or smaller (host pointers are 8 bytes).
    """
    low = _recorded_total(flatbuffer) - 1  # below the total nothing fits
    high = low + 1
    while not _fits(flatbuffer, high):
        low, high = high, int(high * 1.25) + 16
        if high > PROBE_ARENA_BYTES:
            raise RuntimeError(f"TFLite Micro needs more than {PROBE_ARENA_BYTES} bytes of arena")
    while high - low > 16:
        mid = (low + high) // 2
        if _fits(flatbuffer, mid):
            high = mid
        else:
            low = mid
    return high


# -- the runners -----------------------------------------------------------------------------------

class _LiteRT:
    def __init__(self, flatbuffer: bytes, optimized: bool):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if optimized else OpResolverType.BUILTIN_REF
        self.it = Interpreter(model_content=flatbuffer, experimental_op_resolver_type=resolver)
        self.it.allocate_tensors()
        self.inputs = self.it.get_input_details()
        self.outputs = self.it.get_output_details()
        self.arena_bytes = None

    def set(self, position: int, value: np.ndarray) -> None:
        self.it.set_tensor(self.inputs[position]["index"], value)

    def invoke(self) -> None:
        self.it.invoke()

    def get(self, position: int) -> np.ndarray:
        return self.it.get_tensor(self.outputs[position]["index"]).copy()

    def reset(self) -> None:
        self.it.reset_all_variables()


class _TFLM:
    def __init__(self, flatbuffer: bytes, arena_bytes: int):
        self.it = tflm_interpreter(flatbuffer, arena_bytes)
        self.arena_bytes = arena_bytes

    def set(self, position: int, value: np.ndarray) -> None:
        self.it.set_input(value, position)

    def invoke(self) -> None:
        self.it.invoke()

    def get(self, position: int) -> np.ndarray:
        return np.array(self.it.get_output(position), copy=True)

    def reset(self) -> None:
        self.it.reset()


def open_runtime(flatbuffer: bytes, runtime: str = "litert", *, arena_bytes: int | None = None):
    """An interpreter with a uniform ``set(position, value)``, ``invoke()``, ``get(position)``,
    ``reset()`` interface (positions as in :class:`~keras_rnnedge.converters.TensorInfo`)."""
    _check_runtime(runtime, arena_bytes)
    return _open(check_flatbuffer(flatbuffer), runtime, arena_bytes)


def _check_runtime(runtime: str, arena_bytes: int | None) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f'Expected runtime to be one of {", ".join(map(repr, RUNTIMES))}, but '
                         f"got {runtime!r}.")
    if arena_bytes is not None:
        check_positive_int(arena_bytes, "arena_bytes")


def _check_tflm_ops(flatbuffer: bytes) -> None:
    """Refuse, with the audit's advice, a model using ops TFLite Micro has no kernel for (it
    would fail to allocate with only the op's name)."""
    from keras_rnnedge.micro_targets import audit  # audit imports this module

    ops = audit.list_ops(flatbuffer)
    unsupported = tuple(op for op in ops if audit._method(op) is None)
    if unsupported:
        raise audit.UnsupportedOpError(audit._ops_refusal(unsupported, ops), unsupported,
                                       tuple(ops))


def _check_litert_ops(flatbuffer: bytes, runtime: str, where: str) -> None:
    """Refuse a model that uses operators only TFLite Micro has (:data:`TFLM_ONLY_OPS`): LiteRT
    would fail at allocation with only the op's name."""
    from keras_rnnedge.micro_targets import audit  # audit imports this module

    only = [op for op in audit.list_ops(flatbuffer) if op in TFLM_ONLY_OPS]
    if only:
        names = ", ".join(op.split(":", 1)[-1] for op in only)
        origin = "; ".join(TFLM_ONLY_OPS[op] for op in only)
        raise ValueError(f"LiteRT (runtime={runtime!r}) cannot run {where}: it uses the TFLite "
                         f"Micro operator {names} ({origin}), which LiteRT has no kernel for. "
                         "Use runtime='tflm' (rnnedge emulate --runtime tflm), or convert "
                         "without compression to run the model in LiteRT.")


def _open(flatbuffer: bytes, runtime: str, arena_bytes: int | None,
          where: str = "the flatbuffer"):
    """The runner of :func:`open_runtime`, for a flatbuffer already checked."""
    if runtime == "tflm":
        _check_tflm_ops(flatbuffer)
        return _TFLM(flatbuffer, arena_bytes or measure_arena(flatbuffer))
    _check_litert_ops(flatbuffer, runtime, where)
    return _LiteRT(flatbuffer, optimized=(runtime == "litert-optimized"))


class _Lockstep:
    """Two runners fed the same inputs: ``get`` answers from the first, and after every invoke
    each output of the first is compared with the second's (the largest difference, in the
    outputs' own units, is kept in ``max_diff``)."""

    def __init__(self, first, second, positions: tuple[int, ...]):
        self.first, self.second, self.positions = first, second, positions
        self.arena_bytes = first.arena_bytes
        self.max_diff = 0.0

    def set(self, position: int, value: np.ndarray) -> None:
        self.first.set(position, value)
        self.second.set(position, value)

    def invoke(self) -> None:
        self.first.invoke()
        self.second.invoke()
        for p in self.positions:
            a = np.asarray(self.first.get(p), np.float64)
            b = np.asarray(self.second.get(p), np.float64)
            diff = float(np.max(np.abs(a - b))) if a.size else 0.0
            self.max_diff = max(self.max_diff, diff if np.isfinite(diff) else np.inf)

    def get(self, position: int) -> np.ndarray:
        return self.first.get(position)

    def reset(self) -> None:
        self.first.reset()
        self.second.reset()


def emulate(converted: _Converted, x, *, runtime: str = "litert",
            arena_bytes: int | None = None,
            progress: ProgressArg = True, levels=None) -> EmulationResult:
    """Run ``converted`` on every sequence of ``x`` on the host.

    Every input is checked before the first invoke: ``x`` (finite values, the model's
    features; an unrolled or fused model takes exactly its own length, a step model any length:
    callers comparing with the trained model check its length), ``runtime``, ``arena_bytes``
    and the flatbuffer itself (:func:`~keras_rnnedge.micro_targets.validate.check_flatbuffer`:
    TFLite Micro does not verify a model before loading it).

    Args:
        converted: a conversion result (flatbuffer and its I/O map).
        x: float input sequences, shape (N, T, F); T must equal the model's length unless the
            model is a step model.
        runtime: ``"litert"`` (reference kernels), ``"litert-optimized"`` or ``"tflm"``.
        arena_bytes: TFLite Micro arena; default: the measured need.
        progress: a bar over the sequences on stderr (``True``, drawn when stderr is a
            terminal), ``False``, or a callable ``f(done, total)``
            (:mod:`keras_rnnedge.progress`).
        levels: a flexible step model's level of every step (``(T,)`` or ``(N, T)``
            integers; :mod:`keras_rnnedge.flexible`); ``None`` runs the top level.

    Returns:
        An :class:`EmulationResult`.

    Raises:
        ValueError: bad ``x``, ``levels``, ``runtime`` or ``arena_bytes``, a truncated or corrupt
            flatbuffer (the message names the file when ``converted`` was read from one), or a
            LiteRT runtime for a model that uses operators only TFLite Micro has
            (:data:`TFLM_ONLY_OPS`: weights compressed with ``compression="prune"``).
    """
    _check_runtime(runtime, arena_bytes)
    check_progress(progress)
    x = _check_windows(converted, x)
    lv = _check_levels(converted, x, levels)
    where = _where(converted)
    runner = _open(check_flatbuffer(converted.flatbuffer, where), runtime, arena_bytes, where)
    return _emulate(converted, x, runner, runtime, progress, lv)


#: The level a flexible step model runs without a schedule (the graph clips it to the top).
TOP_LEVEL = 255


def _check_levels(converted: _Converted, x: np.ndarray, levels) -> np.ndarray | None:
    """``levels`` as ``(N, T)`` int32, or ``None`` (the top level)."""
    has_level = any(t.name == "level" for t in converted.inputs)
    if levels is None:
        return None
    if not has_level:
        raise ValueError("Received levels, but the model has no level input (it is not a "
                         "flexible step model); run it without levels.")
    lv = np.asarray(levels)
    if lv.shape not in ((x.shape[1],), x.shape[:2]) or not np.issubdtype(lv.dtype, np.integer):
        raise ValueError(f"Expected levels as integers of shape ({x.shape[1]},) or "
                         f"{x.shape[:2]} (one per step), but got {lv.dtype} {lv.shape}.")
    if lv.size and (lv.min() < 0 or lv.max() > TOP_LEVEL):
        raise ValueError(f"Expected levels in [0, {TOP_LEVEL}], but got values in "
                         f"[{lv.min()}, {lv.max()}].")
    return np.broadcast_to(lv, x.shape[:2]).astype(np.int32)


def emulate_against(converted: _Converted, reference: bytes, x, *, runtime: str = "tflm",
                    progress: ProgressArg = True) -> tuple[EmulationResult, float]:
    """Run ``converted`` and ``reference`` (a flatbuffer with the same inputs and outputs, e.g.
    the same model before a lossless rewrite) side by side on every sequence of ``x``.

    Both get the same inputs at every invoke, and the state ``converted`` computes; after each
    invoke every output of the two is compared. ``step_seconds`` counts both invokes.

    Args:
        converted: as for :func:`emulate`.
        reference: the other flatbuffer.
        x: as for :func:`emulate`.
        runtime: as for :func:`emulate` (each flatbuffer gets its own measured arena).
        progress: as for :func:`emulate`.

    Returns:
        ``(result, max_diff)``: the :class:`EmulationResult` of ``converted``, and the largest
        difference between the two at any output of any invoke, in the outputs' own units
        (LSB for an int8 model; ``inf`` for a NaN).

    Raises:
        ValueError: as :func:`emulate`, for either flatbuffer.
    """
    _check_runtime(runtime, None)
    check_progress(progress)
    x = _check_windows(converted, x)
    where = _where(converted)
    first = _open(check_flatbuffer(converted.flatbuffer, where), runtime, None, where)
    second = _open(check_flatbuffer(reference, "the reference flatbuffer"), runtime, None,
                   "the reference flatbuffer")
    runner = _Lockstep(first, second, tuple(t.position for t in converted.outputs))
    result = _emulate(converted, x, runner, runtime, progress)
    return result, runner.max_diff


def _where(converted) -> str:
    path = getattr(converted, "path", None)
    return repr(str(path / "model.tflite")) if path is not None else "the flatbuffer"


def _check_windows(converted: _Converted, x) -> np.ndarray:
    x_info = next(t for t in converted.inputs if t.name == "x")
    steps = None if converted.mode == "step" else x_info.shape[1]
    return check_sequences(x, features=x_info.shape[-1], timesteps=steps, finite=True,
                           length_note=f"The {converted.mode} model is built for one length: cut "
                           f"the windows to {steps} steps, or convert with mode='step', which "
                           "runs windows of any length.").astype(np.float32)


def _emulate(converted: _Converted, x: np.ndarray, runner, runtime: str,
             progress: ProgressArg, levels: np.ndarray | None = None) -> EmulationResult:
    x_info = next(t for t in converted.inputs if t.name == "x")
    y_info = next(t for t in converted.outputs if t.name == "y")
    arena = runner.arena_bytes
    raw, timings = [], []
    with progress_bar(progress, f"emulating ({runtime})", len(x), unit="window") as bar:
        for k, seq in enumerate(x):
            runner.reset()
            if converted.mode == "step":
                y, seconds = _run_steps(converted, runner, seq, x_info,
                                        None if levels is None else levels[k])
            else:
                runner.set(x_info.position, x_info.quantize(seq[None]))
                start = time.perf_counter()
                runner.invoke()
                seconds = [time.perf_counter() - start]
                y = runner.get(y_info.position)
            raw.append(y.reshape(-1))
            timings.append(seconds)
            bar.update(len(raw))
    raw_outputs = np.stack(raw)
    return EmulationResult(outputs=y_info.dequantize(raw_outputs), raw_outputs=raw_outputs,
                           step_seconds=np.asarray(timings), runtime=runtime,
                           arena_bytes=arena)


def _run_steps(converted: _Converted, runner, seq: np.ndarray, x_info: _Tensor,
               levels: np.ndarray | None = None):
    state_in = [next(t for t in converted.inputs if t.name == f"state_{i}")
                for i in range(len(converted.state_sizes))]
    state_out = [next(t for t in converted.outputs if t.name == f"state_{i}_out")
                 for i in range(len(converted.state_sizes))]
    y_info = next(t for t in converted.outputs if t.name == "y")
    level_info = next((t for t in converted.inputs if t.name == "level"), None)
    states = [info.quantize(np.zeros(info.shape, np.float32)) for info in state_in]
    seconds = []
    y = None
    for t in range(seq.shape[0]):
        runner.set(x_info.position, x_info.quantize(seq[t:t + 1]))
        if level_info is not None:
            level = TOP_LEVEL if levels is None else int(levels[t])
            runner.set(level_info.position, np.full(level_info.shape, level, np.int32))
        for info, value in zip(state_in, states):
            runner.set(info.position, value)
        start = time.perf_counter()
        runner.invoke()
        seconds.append(time.perf_counter() - start)
        states = [inp.requantize(runner.get(out.position), out)
                  for inp, out in zip(state_in, state_out)]
        y = runner.get(y_info.position)
    return y, seconds
