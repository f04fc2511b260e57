"""What both converter paths return, and how it is saved and checked.

:class:`ConversionOutput` is the base of
:class:`~keras_rnnedge.converters.tflite.pipeline.ConversionResult` (TFLite) and
:class:`~keras_rnnedge.converters.c.cexport.CConversionResult` (standalone C): the files in
memory until :meth:`ConversionOutput.save` writes them all or nothing (:func:`save_directory`:
a marked output directory, a lock against concurrent saves, a clear error on a full disk), the
stage-against-stage figures (:func:`check_stage`) and the shared part of the report.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_rnnedge._compat import keras
from keras_rnnedge.converters.lowering import ConversionError
from keras_rnnedge.converters.quality import (
    DeploymentCheck,
    QualityReport,
    finite_or_nan,
    stage_failure,
)

if TYPE_CHECKING:
    from keras_rnnedge.micro_targets.boards import Board

__all__ = ["MANIFEST", "OUTPUT_MARKER", "ConversionOutput", "OutputExistsError", "check_stage",
           "check_output_directory", "is_conversion_output", "save_directory"]

MANIFEST = "manifest.json"


class OutputExistsError(FileExistsError):
    """The output directory exists and ``force`` was not given."""


def check_stage(checks: dict[str, float], key: str, value: float, *, policy: DeploymentCheck,
                message: str, limit: float | None = None, bug: str | None = None) -> None:
    """Record the figure ``value`` of the stage check ``key`` in ``checks`` and check it.

    A figure that is NaN/Inf fails the check with ``message``
    (:func:`~keras_rnnedge.converters.quality.stage_failure`:
    :class:`~keras_rnnedge.converters.quality.StageCheckError`, or a warning with
    ``checks="warn"``); so does one above ``limit``, unless ``bug`` is given: a figure that
    only a converter bug can push past ``limit`` (the same arithmetic on both sides) raises
    :class:`~keras_rnnedge.converters.lowering.ConversionError` with ``bug`` whatever the
    policy.
    """
    checks[key] = value
    if not finite_or_nan(value):
        stage_failure(policy, message)
    elif limit is not None and value > limit:
        if bug is not None:
            raise ConversionError(bug)
        stage_failure(policy, message)


class ConversionOutput:
    """The base of both converters' results.

    Each subclass is a frozen dataclass that declares the fields below (in its own order, as
    its constructor takes them) and defines :meth:`report` and :meth:`manifest`. :meth:`save`
    writes ``files`` plus ``manifest.json``, ``REPORT.txt`` and ``model.keras`` all or
    nothing; :meth:`report_checks` and :meth:`report_files` are the lines every report shares.

    Attributes:
        name: the C identifier of the model (file and symbol names derive from it).
        target: the board converted for.
        source_model: the trained model, wrappers stripped (saved as ``model.keras``).
        files: relative path → text or bytes of every file :meth:`save` writes.
        checks: stage-against-stage figures (:func:`check_stage`).
        class_names: names of the output classes (empty when not given).
        quality: float against deployed accuracy and agreement (``None`` when not measured).
    """

    # Declared here for readers and type checkers only: this class is no dataclass, so the
    # subclasses' fields (and their order) are their own.
    name: str
    target: Board
    source_model: keras.Model
    files: dict[str, str | bytes]
    checks: dict[str, float]
    class_names: tuple[str, ...]
    quality: QualityReport | None

    def manifest(self) -> dict[str, Any]:  # pragma: no cover - both subclasses define it
        raise NotImplementedError

    def report(self) -> str:  # pragma: no cover - both subclasses define it
        raise NotImplementedError

    def report_checks(self, fmt: str = "{:.4g}") -> list[str]:
        """The lines of the stage checks and of the deployed quality."""
        lines = [f"check          {key}: " + fmt.format(value)
                 for key, value in self.checks.items()]
        if self.quality is not None:
            lines.append(f"quality        {self.quality.to_text()}")
            if self.quality.cause:
                lines.append(f"likely cause   {self.quality.cause}")
        return lines

    def report_files(self) -> list[str]:
        """The last lines of the report: the files :meth:`save` writes (besides its own)."""
        return ["", "files          " + ", ".join(sorted(self.files))]

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write every file under ``path`` (a directory), all or nothing.

        Files are written to a temporary directory beside ``path`` and moved into place at
        the end, so an error leaves no half-written output. ``force`` replaces only an earlier
        output (see :func:`save_directory`).

        Raises:
            OutputExistsError: ``path`` exists and ``force`` is false, or ``path`` is a
                directory that is not an earlier output.
            ConversionError: ``path``'s parent cannot be written, or the disk is full.
        """
        files = {**self.files, MANIFEST: json.dumps(self.manifest(), indent=2) + "\n",
                 "REPORT.txt": self.report() + "\n"}
        return save_directory(path, files, force=force, model=self.source_model)


def save_directory(path: str | os.PathLike, files: dict[str, str | bytes], *, force: bool,
                   model: keras.Model | None = None) -> Path:
    """Write ``files`` (relative path → text or bytes) and ``model`` (as ``model.keras``) under
    the directory ``path``, all or nothing.

    Files are written to a temporary directory beside ``path`` and moved into place at the end,
    so an error leaves no half-written output (and no temporary directory). Every output holds
    a marker file, :data:`OUTPUT_MARKER`; ``force`` replaces only a directory that holds one (or
    an output of an earlier version, recognised by its ``manifest.json``), or an empty one, never
    anything else. The final check and rename happen under a lock on the parent directory, so
    of several saves to one path at the same moment exactly one succeeds without ``force``, and
    with ``force`` the result is one complete output.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false, or ``path`` is a directory
            that is not a keras_rnnedge output.
        ConversionError: ``path`` is a file, its parent cannot be written, or the disk is full.
    """
    out = Path(path)
    check_output_directory(out, force=force)  # fail before writing anything
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = _new_directory(parent, f".{out.name}.")
    except OSError as exc:
        raise _write_error(parent, exc) from exc
    try:
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
            (staging / OUTPUT_MARKER).write_text(_output_marker(files))
        except OSError as exc:
            raise _write_error(out, exc) from exc
        with _directory_lock(parent):
            check_output_directory(out, force=force)  # again: someone may have written it
            _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


#: The file every saved conversion holds; ``force`` replaces only directories that have it.
OUTPUT_MARKER = ".rnnedge-output"
# manifest.json keys of outputs written before the marker existed (TFLite and standalone C).
_TFLITE_MANIFEST_KEYS = frozenset({"name", "target", "quantization", "mode", "inputs", "outputs"})
_C_MANIFEST_KEYS = frozenset({"format", "name", "target", "precision"})


def check_output_directory(path: str | os.PathLike, *, force: bool) -> None:
    """Refuse an output path that ``save(path, force=force)`` would refuse, before converting.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is false, or it is a non-empty
            directory that is not a keras_rnnedge output (see :func:`is_conversion_output`).
        ConversionError: ``path`` is a file.
    """
    out = Path(path)
    if not os.path.lexists(out):
        return
    if not force:
        raise OutputExistsError(f"Output directory {str(out)!r} exists; pass force=True "
                                "(--force) to replace it, or choose another directory.")
    if not out.is_dir():
        raise ConversionError(f"Output path {str(out)!r} is a file; expected a directory.")
    if not is_conversion_output(out) and any(out.iterdir()):
        raise OutputExistsError(
            f"Output directory {str(out)!r} exists and was not written by keras_rnnedge (it has "
            f"no {OUTPUT_MARKER} file); force (--force) replaces only earlier outputs. Remove "
            "it yourself if nothing in it is needed, or choose another directory.")


def is_conversion_output(path: str | os.PathLike) -> bool:
    """Whether the directory ``path`` was written by a conversion's ``save``.

    True if it holds :data:`OUTPUT_MARKER` from keras_rnnedge, or (outputs of earlier versions)
    a ``REPORT.txt`` and a ``manifest.json`` with the keys of a TFLite or standalone C
    conversion.
    """
    root = Path(path)
    marker = root / OUTPUT_MARKER
    try:
        if marker.is_file():
            info = json.loads(marker.read_text())
            return isinstance(info, dict) and info.get("producer") == "keras_rnnedge"
        if not (root / "REPORT.txt").is_file():
            return False
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    keys = set(manifest)
    return keys >= _TFLITE_MANIFEST_KEYS or (manifest.get("format") == "c"
                                             and keys >= _C_MANIFEST_KEYS)


def _output_marker(files: dict[str, str | bytes]) -> str:
    from keras_rnnedge import __version__

    try:
        manifest = json.loads(files.get(MANIFEST, "{}"))
    except ValueError:
        manifest = {}
    kind = manifest.get("format", "tflite") if isinstance(manifest, dict) else "tflite"
    return json.dumps({"producer": "keras_rnnedge", "format": kind,
                       "version": __version__}) + "\n"


def _write_error(where: Path, exc: OSError) -> ConversionError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(where if where.is_dir() else where.parent).free
            free_text = f" ({free / 1e6:.1f} MB free)"
        except OSError:
            free_text = ""
        return ConversionError(f"Cannot write {str(where)!r}: no space left on the device"
                               f"{free_text}; nothing was written. Free disk space or choose "
                               "an output directory on another disk.")
    return ConversionError(f"Cannot write to {str(where)!r}: {exc.strerror or exc}. Choose a "
                           "writable output directory.")


def _new_directory(parent: Path, prefix: str) -> Path:
    """A new empty directory in ``parent`` with the usual permissions (``mkdtemp`` makes it
    owner-only, and the staging directory becomes the output)."""
    while True:
        candidate = parent / f"{prefix}{os.getpid()}.{os.urandom(6).hex()}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


@contextlib.contextmanager
def _directory_lock(directory: Path):
    """An exclusive lock on ``directory`` (``flock``) while the output is checked and renamed.

    Where ``fcntl`` is missing (Windows) there is no lock; the rename itself still refuses an
    existing target there.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``, first moving aside an ``out`` the checks allowed."""
    if not os.path.lexists(out):
        try:
            os.rename(staging, out)
        except OSError as exc:  # created meanwhile by something that takes no lock
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputExistsError(f"Output directory {str(out)!r} was created while "
                                        "saving; choose another directory.") from exc
            raise
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    previous = holder / out.name
    os.rename(out, previous)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(previous, out)  # put the earlier output back
        holder.rmdir()
        raise
    shutil.rmtree(holder, ignore_errors=True)


