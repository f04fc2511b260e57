"""The conversion pipeline and its result object."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

from keras_rnnedge._compat import keras, np
from keras_rnnedge.converters.carray import c_array, c_identifier
from keras_rnnedge.converters.lowering import (
    MODES,
    ConversionError,
    LoweredModel,
    check_inputs,
    is_qat,
    lower,
    strip_wrappers,
)
from keras_rnnedge.converters.quality import (
    CalibrationWarning,
    DeploymentCheck,
    QualityReport,
    calibration_sample,
    check_validation_data,
    coverage,
    diagnose,
    enforce,
    measure,
    warn_coverage,
)
from keras_rnnedge.converters.result import (
    MANIFEST,
    ConversionOutput,
    OutputExistsError,
    check_output_directory,
    check_stage,
    is_conversion_output,
)
from keras_rnnedge.converters.tflite.compression import (
    COMPRESSIONS,
    DECODE_OVERHEAD_BYTES,
    CompressionReport,
    CompressionWarning,
    compress_pruned,
)
from keras_rnnedge.converters.tflite.flatbuffer import (
    CALIBRATION_SEQUENCES,
    TensorInfo,
    TFLiteModel,
    check_quantization,
    check_weight_scales,
    qat_ranges,
    to_tflite,
)
from keras_rnnedge.converters.tflite.flatbuffer import (
    strip_strings as strip_flatbuffer_strings,
)
from keras_rnnedge.converters.tflite.sketch import (
    SketchSpec,
    arduino_sketch,
    model_io_header,
    platformio_project,
)
from keras_rnnedge.micro_targets.audit import (
    AuditReport,
    UnsupportedTargetError,
    audit,
    target_refusal,
)
from keras_rnnedge.micro_targets.boards import Board, get_board
from keras_rnnedge.progress import ProgressArg, stage, with_stages

__all__ = ["ConversionResult", "OutputExistsError", "SavedConversion", "check_output_directory",
           "convert", "is_conversion_output", "load_result"]

#: Float lowering vs the trained model: the same float32 arithmetic, reassociated by the
#: converter's graph optimizations (fused matmul + bias), over at most a few hundred steps.
LOWERING_ATOL = 1e-4
#: Float32 flatbuffer vs the lowered model: the same float32 arithmetic in TFLite's kernels
#: (other summation order, its own tanh/logistic), over at most a few hundred steps.
TFLITE_FLOAT_ATOL = 1e-3
_CHECK_SEQUENCES = 2
#: Calibration windows the deployed model is checked on when no validation data are given.
_QUALITY_WINDOWS = 32
#: Quantizations whose weights can be stored compressed (int8 weights, run by TFLite Micro).
_COMPRESSIBLE = ("int8", "int16x8")


@dataclasses.dataclass(frozen=True)
class ConversionResult(ConversionOutput):
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
        quality: float against deployed (TFLite Micro) accuracy and agreement, on the
            validation data (or, without them, agreement on calibration windows).
        compression: what ``compression="prune"`` stored compressed (``None`` without
            compression); the same as ``tflite.compression``.
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
    quality: QualityReport | None = None

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

    @property
    def compression(self) -> CompressionReport | None:
        return self.tflite.compression

    def report(self) -> str:
        """A human-readable account of the conversion."""
        lines = [
            f"model          {self.name} ({self.mode} mode, {self.quantization})",
            f"target         {self.target.display_name} ({self.target.key})",
            f"flatbuffer     {len(self.flatbuffer):,} bytes",
            "inputs         " + ", ".join(_describe(t) for t in self.inputs),
            "outputs        " + ", ".join(_describe(t) for t in self.outputs),
        ]
        if self.quantization in ("dynamic", "int8", "int16x8"):
            lines.append(f"weights        int8, {self.tflite.weight_scales} scales")
        if self.compression is not None:
            lines += _compression_lines(self.compression)
        if self.lowered.folded:
            lines.append("folded         " + ", ".join(self.lowered.folded))
        for key, value in self.tflite.calibration.items():
            lo, hi = value["range"]
            lines.append(f"range          {key}: [{lo:.4g}, {hi:.4g}] ({value['estimator']})")
        lines += self.report_checks("max |diff| {:.3g}")
        if self.audit is not None:
            lines += ["", self.audit.to_text()]
        return "\n".join(lines + self.report_files())

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target.key,
            "quantization": self.quantization,
            "mode": self.mode,
            "features": self.lowered.features,
            "timesteps": self.lowered.timesteps,
            "state_sizes": list(self.state_sizes),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "class_names": list(self.class_names),
            "arena_bytes": None if self.audit is None else self.audit.arena_bytes,
            "checks": self.checks,
            "calibration": self.tflite.calibration,
            "weight_scales": self.tflite.weight_scales,
            "quality": None if self.quality is None else self.quality.to_dict(),
            "compression": None if self.compression is None else self.compression.to_dict(),
        }


def _describe(t: TensorInfo) -> str:
    q = f" scale {t.scale:.6g} zp {t.zero_point}" if t.quantized else ""
    std = (" of standardised features (the caller standardises: manifest, metadata, "
           "model_io.h)" if t.standardization is not None else "")
    return f"{t.name}[{t.position}] {t.dtype}{list(t.shape)}{q}{std}"


def _compression_lines(report: CompressionReport) -> list[str]:
    """The report's lines on compression (the audit lists the bytes stored per weight)."""
    encoded = report.encoded
    arena = ("" if report.dense_arena_bytes is None or report.arena_bytes is None else
             f"; TFLite Micro arena {report.dense_arena_bytes:,} -> {report.arena_bytes:,} B "
             "(the arena holds each decoded weight while its operator runs)")
    lines = [f"compression    {report.method}: {len(encoded)} of {len(report.tensors)} weight "
             f"tensors stored compressed (TFLM_DECODE, TFLite Micro only); flatbuffer "
             f"{report.dense_flatbuffer_bytes:,} -> {report.flatbuffer_bytes:,} B{arena}"]
    lines += [f"kept dense     {t.name or '?'} {list(t.shape)}: {t.reason}"
              for t in report.tensors if not t.encoded]
    return lines


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
    #: what ``compression="prune"`` stored compressed (``None``: not compressed).
    compression: CompressionReport | None = None

    def source_model(self) -> keras.Model:
        from keras_rnnedge.optimize import load_model

        return load_model(self.path / "model.keras", compile=False)


def load_result(path: str | os.PathLike):
    """Read a directory written by :meth:`ConversionResult.save` (a :class:`SavedConversion`)
    or by :meth:`~keras_rnnedge.converters.c.cexport.CConversionResult.save` (a
    :class:`~keras_rnnedge.converters.c.cexport.SavedC`).

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
            from keras_rnnedge.converters.c.cexport import load_c_result

            return load_c_result(root, manifest)
    for p in (manifest_path, tflite_path):
        if not p.is_file():
            raise ConversionError(f"{str(p)!r} is missing: expected a directory written by "
                                  "`rnnedge convert` (manifest.json, model.tflite, ...).")
    try:
        m = json.loads(manifest_path.read_text())
        inputs = tuple(TensorInfo.from_dict(t) for t in m["inputs"])
        outputs = tuple(TensorInfo.from_dict(t) for t in m["outputs"])
        compression = m.get("compression")
        result = SavedConversion(
            path=root, name=m["name"], target=m["target"], quantization=m["quantization"],
            mode=m["mode"], flatbuffer=tflite_path.read_bytes(), inputs=inputs, outputs=outputs,
            state_sizes=tuple(m["state_sizes"]), timesteps=m["timesteps"],
            features=m["features"], class_names=tuple(m.get("class_names", ())),
            compression=None if compression is None else CompressionReport.from_dict(compression))
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

@with_stages("converting", 4)
def convert(model: keras.Model, *, target: str, quantization: str, mode: str = "step",
            compression: str | None = None, weight_scales: str = "per-channel",
            strip_strings: bool = False, representative_data=None, name: str | None = None,
            timesteps: int | None = None,
            class_names=None, validation_data=None, checks: str = "raise",
            max_accuracy_drop: float = 2.0, min_agreement: float = 0.9,
            calibration_size: int | None = None, calibration_seed: int = 0,
            progress: ProgressArg = True) -> ConversionResult:
    """Convert a trained model for a microcontroller.

    Args:
        model: a trained tf_keras model: an optional leading ``Normalization(axis=-1)``
            (applied inside a float converted model, which takes the raw features; an int8 or
            int16x8 model takes standardised features, standardised by its caller: the
            emulator and the sketch, with the constants the flatbuffer, ``manifest.json`` and
            ``<id>_model_io.h`` record), recurrent layers (our cells, or stock
            SimpleRNN/GRU/LSTM) then Dense layers; pruning/QAT wrappers are stripped.
        target: a board key of :data:`keras_rnnedge.micro_targets.boards.BOARDS` (``"nano33ble"``,
            ``"uno"``, ..., or ``"host"`` for emulation only).
        quantization: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"`` or ``"int16x8"``.
        mode: ``"step"`` (one time step, state in and out; the default), ``"unrolled"`` or
            ``"fused"`` (stock LSTM only).
        compression: ``None`` (default) or ``"prune"``: store the pruned int8 weights
            (``FULLY_CONNECTED`` and ``BATCH_MATMUL`` operands) as a bit mask plus their
            non-zeros, decoded at run time by TFLite Micro's ``TFLM_DECODE`` operator
            (:mod:`~keras_rnnedge.converters.tflite.compression`), where that makes the
            flatbuffer smaller; lossless: the compressed model is checked bit for bit against
            the uncompressed one in TFLite Micro. ``int8`` and ``int16x8`` only. The flatbuffer
            shrinks, the arena grows by about the largest decoded weight, and the model runs in
            TFLite Micro only (October 2025 or later: not the ``Arduino_TensorFlowLite`` library
            of tflite-micro-arduino-examples); LiteRT cannot run it. When no weight is worth
            it, the flatbuffer stays as it is, with a
            :class:`~keras_rnnedge.converters.tflite.compression.CompressionWarning`.
        weight_scales: ``"per-channel"`` (default: one scale per output channel) or
            ``"per-tensor"`` (one scale per weight matrix: smaller flatbuffer and TFLite
            Micro arena, about 24 bytes less per output channel of each weight, at some
            accuracy; ``int8``, ``int16x8`` and ``dynamic``).
        strip_strings: drop the strings no interpreter needs (tensor names, the description,
            the converter's metadata; :func:`~keras_rnnedge.converters.tflite.flatbuffer.
            strip_strings`) from the flatbuffer: fewer bytes of flash, the same model; the
            reports then show no weight names.
        representative_data: input sequences (N, T, F) for calibration; required for int8 and
            int16x8; also used to check each stage against the previous one. Pass the whole
            training set: ``calibration_size`` sequences are sampled across it (seeded), so
            an ordered training set does not calibrate on one class.
        name: model name for files and C symbols (default: the Keras model's name).
        timesteps: window length for unrolled/fused models whose input length is not fixed.
        class_names: names printed by the generated sketch.
        validation_data: ``(x, y)`` (``y`` optional: without labels only the agreement is
            checked): the deployed model runs in TFLite Micro (LiteRT for ``float16`` and
            ``dynamic``, which TFLite Micro does not run) on every window of ``x`` and is
            compared with the float model (:attr:`ConversionResult.quality`). Without it the
            agreement is checked on up to 32 calibration windows.
        checks: ``"raise"`` (default): a deployment loss beyond the thresholds, or a stage
            check that fails or gives NaN, raises; ``"warn"``: it warns
            (:class:`~keras_rnnedge.converters.quality.DeploymentQualityWarning`) instead.
        max_accuracy_drop: most accuracy points the deployed model may lose (default 2).
        min_agreement: least argmax agreement with the float model (default 0.9).
        calibration_size: sequences sampled from ``representative_data`` for calibration
            (default 128); fewer than 32 available warn
            (:class:`~keras_rnnedge.converters.quality.CalibrationWarning`).
        calibration_seed: seed of that sample.
        progress: a bar over the stages (and the calibration and TFLite Micro runs inside
            them) on stderr when it is a terminal; ``False`` for none
            (:mod:`keras_rnnedge.progress`).

    Returns:
        A :class:`ConversionResult` (nothing written yet).

    Raises:
        ConversionError: an option, a layer or a weight that cannot be converted (also
            ``compression`` with a quantization other than ``int8``/``int16x8``).
        keras_rnnedge.converters.quality.DeploymentQualityError: the deployed model loses more
            than ``max_accuracy_drop`` points or agrees less than ``min_agreement``.
        keras_rnnedge.converters.quality.StageCheckError: a stage differs from the one before
            it, or a check gives NaN.
        keras_rnnedge.micro_targets.audit.TargetFitError: the model does not fit the target.
    """
    board = _check_target(target)
    if not board.tflm and board.key != "host":
        raise UnsupportedTargetError(target_refusal(board))
    check_quantization(quantization, representative_data)
    check_weight_scales(weight_scales, quantization)
    _check_compression(compression, quantization)
    if mode not in MODES:
        raise ConversionError(f'Expected mode to be one of {", ".join(map(repr, MODES))}, but '
                              f"got {mode!r}.")
    if not isinstance(model, keras.Model):
        raise ConversionError(f"Received {type(model).__name__}, expected a tf_keras Model "
                              "(from keras_rnnedge import keras).")
    policy = DeploymentCheck(checks, max_accuracy_drop, min_agreement)
    _, representative_data = check_inputs(model, representative_data, mode=mode,
                                          timesteps=timesteps, class_names=class_names)
    ident = c_identifier(name or model.name)
    stage("lowering")
    lowered = lower(model, mode, timesteps=timesteps,
                    standardize="caller" if quantization in ("int8", "int16x8") else "graph")
    validation = check_validation_data(validation_data, lowered.features)
    stage(f"converting ({quantization})")
    tfl = to_tflite(lowered, quantization, representative_data,
                    calibration_size=calibration_size, calibration_seed=calibration_seed,
                    trained_ranges=qat_ranges(model) if is_qat(model) else None,
                    weight_scales=weight_scales)
    if strip_strings:
        tfl = dataclasses.replace(tfl, flatbuffer=strip_flatbuffer_strings(tfl.flatbuffer))
    dense = None
    if compression is not None:
        dense, tfl = tfl, _compress(tfl)
    sample = None
    if representative_data is not None:
        with warnings.catch_warnings():  # to_tflite warned already about this sample
            if tfl.calibration or quantization in ("int8", "int16x8"):
                warnings.simplefilter("ignore", CalibrationWarning)
            sample = calibration_sample(np.asarray(representative_data, np.float32),
                                        calibration_size or CALIBRATION_SEQUENCES,
                                        calibration_seed)
    stage("checking")
    checks, quality, tfl = _stage_checks(model, lowered, tfl, sample, policy, validation, dense)
    report = None
    if board.key != "host":
        stage(f"auditing for {board.key}")
        arena = None if tfl.compression is None else tfl.compression.arena_bytes
        report = audit(tfl.flatbuffer, board, arena_bytes=arena)
    names = tuple(str(c) for c in (class_names or ()))
    window = timesteps or lowered.timesteps or model.inputs[0].shape[1]
    if window is None and representative_data is not None:
        window = np.asarray(representative_data).shape[1]
    files = _files(ident, board, quantization, lowered, tfl, report, names, window)
    return ConversionResult(name=ident, target=board, quantization=quantization, mode=mode,
                            tflite=tfl, lowered=lowered, source_model=strip_wrappers(model),
                            audit=report, files=files, checks=checks, class_names=names,
                            quality=quality)


def _check_compression(compression, quantization: str) -> None:
    if compression is None:
        return
    if compression not in COMPRESSIONS:
        raise ConversionError(f"Expected compression to be None or one of "
                              f"{', '.join(map(repr, COMPRESSIONS))}, but got {compression!r}.")
    if quantization not in _COMPRESSIBLE:
        raise ConversionError(
            f"compression={compression!r} stores int8 weights compressed for TFLite Micro's "
            f"TFLM_DECODE operator; it needs quantization='int8' or 'int16x8', but got "
            f"quantization={quantization!r}. TFLite Micro does not run float16 or dynamic-range "
            "models, LiteRT has no TFLM_DECODE kernel, and float32 weights are not stored "
            "compressed: convert with quantization='int8' (or 'int16x8'), or without "
            "compression.")


def _compress(tfl: TFLiteModel) -> TFLiteModel:
    """``tfl`` with its pruned weights stored for TFLM_DECODE (:func:`compress_pruned`); a
    warning when no weight is worth it (the flatbuffer then stays as it is)."""
    packed = compress_pruned(tfl.flatbuffer)
    if not packed.report.encoded:
        reasons = "; ".join(f"{t.name or '?'} {list(t.shape)}: {t.reason}"
                            for t in packed.report.tensors)
        reasons = reasons or "the model has no int8 weight of FULLY_CONNECTED or BATCH_MATMUL"
        warnings.warn(f"compression='prune' stored no weight compressed: {reasons}. A weight "
                      "of n int8 values takes n/8 + its non-zeros + 16 bytes compressed, and "
                      f"each TFLM_DECODE about {DECODE_OVERHEAD_BYTES} bytes more: prune the "
                      "model further "
                      "(HardThresholding, GrowAndPrune, tfmot), or convert without compression.",
                      CompressionWarning, stacklevel=3)
    return dataclasses.replace(tfl, flatbuffer=packed.flatbuffer, compression=packed.report)


def _check_target(target) -> Board:
    try:
        return get_board(target)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc


def _stage_checks(model, lowered: LoweredModel, tfl: TFLiteModel, data, policy: DeploymentCheck,
                  validation, dense: TFLiteModel | None = None
                  ) -> tuple[dict[str, float], QualityReport | None, TFLiteModel]:
    """Lowered vs trained model, and float flatbuffer vs lowered model, on a few calibration
    sequences; a compressed flatbuffer against ``dense``, the same model uncompressed, both in
    TFLite Micro (identical at every output of every step: the encoding is lossless); then the
    deployed model (TFLite Micro) against the float model on the validation data, or on
    calibration windows without them.

    A check that fails or cannot be computed (NaN) raises (``checks="raise"``) or warns.

    Returns:
        The checks, the quality report, and ``tfl`` (with the TFLite Micro arenas of the
        compressed and uncompressed models in its compression report, when compressed).
    """
    if data is None and validation is None:
        return {}, None, tfl
    reference = strip_wrappers(model)  # a QAT model's weights as QAT used them, float compute
    checks: dict[str, float] = {}
    if data is not None:
        x = np.asarray(data, np.float32)[:_CHECK_SEQUENCES]
        if lowered.timesteps is not None:
            x = x[:, :lowered.timesteps]
        want = reference.predict(x, verbose=0)
        got = _run_lowered(lowered, x)
        diff = float(np.max(np.abs(got - want)))
        check_stage(
            checks, "lowered vs keras", diff, policy=policy, limit=LOWERING_ATOL,
            message=f"The check 'lowered vs keras' gives {diff} on the first {len(x)} "
            "calibration sequences: the float model computes NaN/Inf on representative_data "
            f"(inputs up to {float(np.max(np.abs(x))):.3g}). Pass data in the range the model "
            "was trained on.",
            bug=f"The lowered {lowered.mode} model differs from the trained model by {diff:.3g} "
            f"(tolerance {LOWERING_ATOL}); this is a bug in the lowering of this model, please "
            "report it with the model.")
        if tfl.quantization == "float32":
            from keras_rnnedge.micro_targets.emulate import emulate

            tflite_out = emulate(_Shim(tfl, lowered), x, runtime="litert").outputs
            diff = float(np.max(np.abs(tflite_out - got)))
            check_stage(checks, "tflite float32 vs lowered", diff, policy=policy,
                        limit=TFLITE_FLOAT_ATOL, message=(
                            f"The float32 flatbuffer differs from the lowered model by {diff:.3g} "
                            f"(tolerance {TFLITE_FLOAT_ATOL}) on the first {len(x)} calibration "
                            "sequences."))
    deployed = None
    if dense is not None and tfl.compression is not None and tfl.compression.encoded:
        deployed, tfl = _check_compressed(lowered, tfl, dense, data, policy, validation, checks)
    return checks, _quality(reference, lowered, tfl, data, policy, validation, deployed), tfl


def _check_compressed(lowered: LoweredModel, tfl: TFLiteModel, dense: TFLiteModel, data,
                      policy: DeploymentCheck, validation, checks: dict[str, float]):
    """Run the compressed and the uncompressed flatbuffer side by side in TFLite Micro on the
    windows the deployed model is measured on; any difference fails the check 'tflm compressed
    vs uncompressed' (in LSB). Returns the compressed model's emulation (for the quality
    measure) and ``tfl`` with both arenas in its compression report."""
    from keras_rnnedge.micro_targets.emulate import emulate_against, measure_arena

    x, _, source = _quality_windows(lowered, data, validation)
    result, diff = emulate_against(_Shim(tfl, lowered), dense.flatbuffer, x, runtime="tflm")
    check_stage(checks, "tflm compressed vs uncompressed", diff, policy=policy, limit=0.0,
                message=(
                    f"The flatbuffer with compressed weights (TFLM_DECODE) differs from the "
                    f"uncompressed one by {diff:g} LSB in TFLite Micro on {len(x)} {source}; "
                    "the encoding is lossless, so this is a bug in keras_rnnedge's compression "
                    "or in the installed TFLite Micro's DECODE kernel. Convert without "
                    "compression, and please report it with the model."))
    report = dataclasses.replace(tfl.compression, arena_bytes=result.arena_bytes,
                                 dense_arena_bytes=measure_arena(dense.flatbuffer))
    return result.outputs, dataclasses.replace(tfl, compression=report)


def _quality_windows(lowered: LoweredModel, data, validation):
    """``(x, y, source)``: the windows the deployed model is measured on."""
    if validation is not None:
        x, y = validation
        source = "validation data"
    else:
        x, y = np.asarray(data, np.float32)[:_QUALITY_WINDOWS], None
        source = "calibration windows"
    if lowered.timesteps is not None:
        x = x[:, :lowered.timesteps]
    return x, y, source


def _quality(reference, lowered: LoweredModel, tfl: TFLiteModel, data, policy: DeploymentCheck,
             validation, deployed: np.ndarray | None = None) -> QualityReport:
    """The deployed model against the float model (see :mod:`.quality`); ``deployed``: its
    outputs on the quality windows when already computed."""
    from keras_rnnedge.micro_targets.emulate import emulate

    x, y, source = _quality_windows(lowered, data, validation)
    runtime = "tflm" if tfl.quantization in ("float32", "int8", "int16x8") else "litert"
    if deployed is None:
        deployed = emulate(_Shim(tfl, lowered), x, runtime=runtime).outputs
    float_out = reference.predict(x, verbose=0)
    what = f"{'TFLite Micro' if runtime == 'tflm' else 'LiteRT'} {tfl.quantization}"
    report = measure(float_out, deployed, y, policy, what, source)
    cov = None
    if validation is not None and data is not None:
        cal = np.asarray(data, np.float32)
        cov = coverage(cal, x, np.argmax(reference.predict(cal, verbose=0), -1),
                       np.argmax(float_out, -1))
        warn_coverage(cov)
    saturated = {}
    x_info = tfl.input("x")
    if x_info.quantized:
        q = x_info.quantize(x)
        info = np.iinfo(x_info.dtype)
        saturated["input x"] = float(np.mean((q == info.min) | (q == info.max)))
    advice = ("quantization='int16x8' (16-bit activations and state), quantization-aware "
              "training, or a larger calibration_size")
    report = diagnose(report, cov, saturated, advice)
    enforce(report)
    if lowered.num_levels is not None and validation is not None:
        # a flexible model's levels below the top, with the same thresholds
        from keras_rnnedge.flexible import with_level_input

        both = with_level_input(reference)
        for level in range(lowered.num_levels - 1):
            levels = np.full(x.shape[:2], level)
            float_level = both.predict([x, levels.astype(np.float32)], verbose=0)
            got = emulate(_Shim(tfl, lowered), x, runtime=runtime, levels=levels).outputs
            enforce(measure(float_level, got, y, policy, f"{what} at level {level}", source))
    return report


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
    x = lowered.prepare(x)
    if lowered.mode != "step":
        return np.concatenate([lowered.model.predict(seq[None], verbose=0) for seq in x])
    outs = []
    for seq in x:
        states = [np.zeros((1, s), np.float32) for s in lowered.state_sizes]
        y = None
        for t in range(seq.shape[0]):
            result = lowered.model(lowered.step_inputs(seq[t:t + 1], states))
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

