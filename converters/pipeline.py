"""The conversion pipeline and its result object."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.converters.carray import c_array, c_identifier
from keras_rnnedge.converters.lowering import (
    MODES,
    ConversionError,
    LoweredModel,
    lower,
    strip_wrappers,
)
from keras_rnnedge.converters.sketch import (
    SketchSpec,
    arduino_sketch,
    model_io_header,
    platformio_project,
)
from keras_rnnedge.converters.tflite import (
    TensorInfo,
    TFLiteModel,
    check_quantization,
    to_tflite,
)
from keras_rnnedge.micro_targets.audit import (
    AuditReport,
    UnsupportedTargetError,
    audit,
    target_refusal,
)
from keras_rnnedge.micro_targets.boards import Board, get_board

__all__ = ["ConversionResult", "OutputExistsError", "SavedConversion", "convert", "load_result"]

MANIFEST = "manifest.json"
#: Float lowering vs the trained model: the same float32 arithmetic, reassociated by the
#: converter's graph optimizations (fused matmul + bias), over at most a few hundred steps.
LOWERING_ATOL = 1e-4
_CHECK_SEQUENCES = 2


class OutputExistsError(FileExistsError):
    """The output directory exists and ``force`` was not given."""


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """Everything :func:`convert` made, in memory until :meth:`save`.

    Attributes:
        name: C identifier of the model (file and symbol names derive from it).
        target: the board converted for.
        quantization, mode: the options used.
        tflite: flatbuffer bytes and the I/O map.
        lowered: the batch-1 Keras model that was converted.
        source_model: the trained model (wrappers stripped), for agreement checks.
        audit: ops, arena and fit against the target (``None`` for the host target).
        files: relative path → text or bytes of every file :meth:`save` writes.
        checks: stage-against-stage differences measured during conversion.
        class_names: optional names of the output classes.
    """

    name: str
    target: Board
    quantization: str
    mode: str
    tflite: TFLiteModel
    lowered: LoweredModel
    source_model: keras.Model
    audit: AuditReport | None
    files: dict[str, str | bytes]
    checks: dict[str, float]
    class_names: tuple[str, ...] = ()

    # the attributes micro_targets.emulate reads
    @property
    def flatbuffer(self) -> bytes:
        return self.tflite.flatbuffer

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return self.tflite.inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return self.tflite.outputs

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return self.lowered.state_sizes

    @property
    def timesteps(self) -> int | None:
        return self.lowered.timesteps

    def report(self) -> str:
        """A human-readable account of the conversion."""
        lines = [
            f"model          {self.name} ({self.mode} mode, {self.quantization})",
            f"target         {self.target.display_name} ({self.target.key})",
            f"flatbuffer     {len(self.flatbuffer):,} bytes",
            "inputs         " + ", ".join(_describe(t) for t in self.inputs),
            "outputs        " + ", ".join(_describe(t) for t in self.outputs),
        ]
        if self.lowered.folded:
            lines.append("folded         " + ", ".join(self.lowered.folded))
        for key, value in self.checks.items():
            lines.append(f"check          {key}: max |diff| {value:.3g}")
        if self.audit is not None:
            lines += ["", self.audit.to_text()]
        lines += ["", "files          " + ", ".join(sorted(self.files))]
        return "\n".join(lines)

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target.key,
            "quantization": self.quantization,
            "mode": self.mode,
            "features": self.lowered.features,
            "timesteps": self.lowered.timesteps,
            "state_sizes": list(self.state_sizes),
            "inputs": [dataclasses.asdict(t) for t in self.inputs],
            "outputs": [dataclasses.asdict(t) for t in self.outputs],
            "class_names": list(self.class_names),
            "arena_bytes": None if self.audit is None else self.audit.arena_bytes,
            "checks": self.checks,
        }

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write every file under ``path`` (a directory), all or nothing.

        Files are written to a temporary directory beside ``path`` and moved into place at
        the end, so an error leaves no half-written output.

        Raises:
            OutputExistsError: ``path`` exists and ``force`` is false.
            ConversionError: ``path``'s parent cannot be written.
        """
        files = {**self.files, MANIFEST: json.dumps(self.manifest(), indent=2) + "\n",
                 "REPORT.txt": self.report() + "\n"}
        return save_directory(path, files, force=force, model=self.source_model)


def save_directory(path: str | os.PathLike, files: dict[str, str | bytes], *, force: bool,
                   model: keras.Model | None = None) -> Path:
    """Write ``files`` (relative path → text or bytes) and ``model`` (as ``model.keras``) under
    the directory ``path``, all or nothing.

    Files are written to a temporary directory beside ``path`` and moved into place at the end,
    so an error leaves no half-written output.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false.
        ConversionError: ``path`` is a file, or its parent cannot be written.
    """
    out = Path(path)
    if out.exists() and not force:
        raise OutputExistsError(f"Output directory {str(out)!r} exists; pass force=True "
                                "(--force) to replace it, or choose another directory.")
    if out.exists() and not out.is_dir():
        raise ConversionError(f"Output path {str(out)!r} is a file; expected a directory.")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as exc:
        raise ConversionError(f"Cannot write to {str(parent)!r}: {exc.strerror or exc}. "
                              "Choose a writable output directory.") from exc
    try:
        for rel, content in sorted(files.items()):
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                dest.write_text(content)
        if model is not None:
            model.save(staging / "model.keras")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _describe(t: TensorInfo) -> str:
    q = f" scale {t.scale:.6g} zp {t.zero_point}" if t.quantized else ""
    return f"{t.name}[{t.position}] {t.dtype}{list(t.shape)}{q}"


@dataclasses.dataclass(frozen=True)
class SavedConversion:
    """A conversion read back from a saved directory (what emulation needs)."""

    path: Path
    name: str
    target: str
    quantization: str
    mode: str
    flatbuffer: bytes
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    state_sizes: tuple[int, ...]
    timesteps: int | None
    features: int
    class_names: tuple[str, ...]

    def source_model(self) -> keras.Model:
        from keras_rnnedge.optimize import load_model

        return load_model(self.path / "model.keras", compile=False)


def load_result(path: str | os.PathLike):
    """Read a directory written by :meth:`ConversionResult.save` (a :class:`SavedConversion`)
    or by :meth:`~keras_rnnedge.converters.cexport.CConversionResult.save` (a
    :class:`~keras_rnnedge.converters.cexport.SavedC`).

    Raises:
        ConversionError: naming the file that is missing or corrupt.
    """
    root = Path(path)
    manifest_path, tflite_path = root / MANIFEST, root / "model.tflite"
    if manifest_path.is_file() and not tflite_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConversionError(f"{str(manifest_path)!r} is corrupt ({exc}); re-run "
                                  "`rnnedge convert`.") from exc
        if isinstance(manifest, dict) and manifest.get("format") == "c":
            from keras_rnnedge.converters.cexport import load_c_result

            return load_c_result(root, manifest)
    for p in (manifest_path, tflite_path):
        if not p.is_file():
            raise ConversionError(f"{str(p)!r} is missing: expected a directory written by "
                                  "`rnnedge convert` (manifest.json, model.tflite, ...).")
    try:
        m = json.loads(manifest_path.read_text())
        inputs = tuple(TensorInfo(**{**t, "shape": tuple(t["shape"])}) for t in m["inputs"])
        outputs = tuple(TensorInfo(**{**t, "shape": tuple(t["shape"])}) for t in m["outputs"])
        result = SavedConversion(
            path=root, name=m["name"], target=m["target"], quantization=m["quantization"],
            mode=m["mode"], flatbuffer=tflite_path.read_bytes(), inputs=inputs, outputs=outputs,
            state_sizes=tuple(m["state_sizes"]), timesteps=m["timesteps"],
            features=m["features"], class_names=tuple(m.get("class_names", ())))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"{str(manifest_path)!r} is corrupt ({type(exc).__name__}: "
                              f"{exc}); re-run `rnnedge convert`.") from exc
    _check_flatbuffer(result.flatbuffer, tflite_path)
    return result


def _check_flatbuffer(flatbuffer: bytes, where) -> None:
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ConversionError(f"{str(where)!r} is not a TFLite flatbuffer (no 'TFL3' "
                              "identifier at byte 4); the file is corrupt or of another kind.")


# -- convert ---------------------------------------------------------------------------------------

def convert(model: keras.Model, *, target: str, quantization: str, mode: str = "step",
            representative_data=None, name: str | None = None, timesteps: int | None = None,
            class_names=None) -> ConversionResult:
    """Convert a trained model for a microcontroller.

    Args:
        model: a trained tf_keras model: recurrent layers (our cells, or stock
            SimpleRNN/GRU/LSTM) then Dense layers; pruning/QAT wrappers are stripped.
        target: a board key of :data:`keras_rnnedge.micro_targets.boards.BOARDS` (``"nano33ble"``,
            ``"uno"``, ..., or ``"host"`` for emulation only).
        quantization: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"`` or ``"int16x8"``.
        mode: ``"step"`` (one time step, state in and out; the default), ``"unrolled"`` or
            ``"fused"`` (stock LSTM only).
        representative_data: input sequences (N, T, F) for calibration; required for int8 and
            int16x8; also used to check each stage against the previous one.
        name: model name for files and C symbols (default: the Keras model's name).
        timesteps: window length for unrolled/fused models whose input length is not fixed.
        class_names: names printed by the generated sketch.

    Returns:
        A :class:`ConversionResult` (nothing written yet).

    Raises:
        ConversionError: an option, a layer or a weight that cannot be converted.
        keras_rnnedge.micro_targets.audit.TargetFitError: the model does not fit the target.
    """
    board = _check_target(target)
    if not board.tflm and board.key != "host":
        raise UnsupportedTargetError(target_refusal(board))
    check_quantization(quantization, representative_data)
    if mode not in MODES:
        raise ConversionError(f'Expected mode to be one of {", ".join(map(repr, MODES))}, but '
                              f"got {mode!r}.")
    if not isinstance(model, keras.Model):
        raise ConversionError(f"Received {type(model).__name__}, expected a tf_keras Model "
                              "(from keras_rnnedge import keras).")
    ident = c_identifier(name or model.name)
    lowered = lower(model, mode, timesteps=timesteps)
    tfl = to_tflite(lowered, quantization, representative_data)
    checks = _stage_checks(model, lowered, tfl, representative_data)
    report = None
    if board.key != "host":
        report = audit(tfl.flatbuffer, board)
    names = tuple(str(c) for c in (class_names or ()))
    window = timesteps or lowered.timesteps or model.inputs[0].shape[1]
    if window is None and representative_data is not None:
        window = np.asarray(representative_data).shape[1]
    files = _files(ident, board, quantization, lowered, tfl, report, names, window)
    return ConversionResult(name=ident, target=board, quantization=quantization, mode=mode,
                            tflite=tfl, lowered=lowered, source_model=strip_wrappers(model),
                            audit=report, files=files, checks=checks, class_names=names)


def _check_target(target) -> Board:
    try:
        return get_board(target)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc


def _stage_checks(model, lowered: LoweredModel, tfl: TFLiteModel, data) -> dict[str, float]:
    """Lowered vs trained model, and float flatbuffer vs lowered model, on a few sequences."""
    if data is None:
        return {}
    x = np.asarray(data, np.float32)[:_CHECK_SEQUENCES]
    if lowered.timesteps is not None:
        x = x[:, :lowered.timesteps]
    reference = strip_wrappers(model)  # a QAT model's weights as QAT used them, float compute
    want = reference.predict(x, verbose=0)
    got = _run_lowered(lowered, x)
    diff = float(np.max(np.abs(got - want)))
    if diff > LOWERING_ATOL:
        raise ConversionError(
            f"The lowered {lowered.mode} model differs from the trained model by {diff:.3g} "
            f"(tolerance {LOWERING_ATOL}); this is a bug in the lowering of this model, please "
            "report it with the model.")
    checks = {"lowered vs keras": diff}
    if tfl.quantization == "float32":
        from keras_rnnedge.micro_targets.emulate import emulate

        tflite_out = emulate(_Shim(tfl, lowered), x, runtime="litert").outputs
        checks["tflite float32 vs lowered"] = float(np.max(np.abs(tflite_out - got)))
    return checks


@dataclasses.dataclass(frozen=True)
class _Shim:
    tfl: TFLiteModel
    lowered: LoweredModel

    @property
    def flatbuffer(self):
        return self.tfl.flatbuffer

    @property
    def inputs(self):
        return self.tfl.inputs

    @property
    def outputs(self):
        return self.tfl.outputs

    @property
    def mode(self):
        return self.lowered.mode

    @property
    def state_sizes(self):
        return self.lowered.state_sizes


def _run_lowered(lowered: LoweredModel, x: np.ndarray) -> np.ndarray:
    if lowered.mode != "step":
        return np.concatenate([lowered.model.predict(seq[None], verbose=0) for seq in x])
    outs = []
    for seq in x:
        states = [np.zeros((1, s), np.float32) for s in lowered.state_sizes]
        y = None
        for t in range(seq.shape[0]):
            result = lowered.model([seq[t:t + 1], *states])
            y, states = result[0].numpy(), [r.numpy() for r in result[1:]]
        outs.append(y)
    return np.concatenate(outs)


def _files(ident: str, board: Board, quantization: str, lowered: LoweredModel, tfl: TFLiteModel,
           report: AuditReport | None, class_names: tuple[str, ...],
           window: int | None) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {"model.tflite": tfl.flatbuffer}
    for rel, text in c_array(tfl.flatbuffer, ident, progmem=board.progmem,
                             quantization=quantization).items():
        files[f"c/{rel}"] = text
    if report is None:
        return files
    spec = SketchSpec(
        name=ident, flatbuffer=tfl.flatbuffer, quantization=quantization, mode=lowered.mode,
        features=lowered.features, timesteps=window, state_sizes=lowered.state_sizes,
        inputs=tfl.inputs, outputs=tfl.outputs, resolver_methods=tuple(report.resolver_methods),
        arena_bytes=report.arena_with_margin, class_names=class_names,
        board_name=board.display_name, fqbn=board.arduino_fqbn,
        platformio_board=board.platformio_board, platformio_platform=board.platformio_platform,
        progmem=board.progmem)
    files[f"c/{ident}_model_io.h"] = model_io_header(spec)
    for rel, text in arduino_sketch(spec).items():
        files[f"arduino/{rel}"] = text
    if board.platformio_board and board.platformio_platform:
        for rel, text in platformio_project(spec).items():
            files[f"platformio/{rel}"] = text
    return files

