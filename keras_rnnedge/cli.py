"""The ``rnnedge`` command.

Usage::

    rnnedge demo [--epochs N] [--classes 6|2] [--out DIR]
    rnnedge train --data DATA.npz [--cell fastgrnn] [--units N] [--budget-kb KB] [--target BOARD]
                  --out DIR
    rnnedge data har [--classes 6|2] --out DATA.npz
    rnnedge summary MODEL.keras [--format text|markdown|json] [--wide]
    rnnedge convert MODEL.keras --target BOARD --quantize int8 [--mode step] --data DATA.npz
                    --out DIR [--force]
    rnnedge convert MODEL.keras --target uno [--format c] [--quantize int8|int16] --data DATA.npz
                    --out DIR [--force]
    rnnedge emulate DIR --data DATA.npz [--runtime tflm|litert] [--limit N] [--seed S]
    rnnedge run DIR --target host|cortex-m4|cortex-m0|uno --data DATA.npz [--limit N] [--seed S]

Every subcommand takes ``--verbose``: without it, the logs of TensorFlow, absl and the TFLite
converter (C++ lines on the process's stderr, Python warnings from those libraries) are hidden;
this package's own warnings and errors are always shown. ``--help`` imports no TensorFlow:
each handler imports what it needs.

Each subcommand is one function that adds its parser, decorated with :func:`subcommand`; the
parser's ``run`` default is the handler, which takes the parsed arguments and returns the exit
code. Adding a subcommand (``demo``, ``convert``, ``emulate``, ``run``, ...) is one block here::

    @subcommand
    def _add_demo(subparsers) -> None:
        parser = subparsers.add_parser("demo", help="...", description="...")
        parser.add_argument(...)
        parser.set_defaults(run=_run_demo)

    def _run_demo(args: argparse.Namespace) -> int:
        ...
        return 0

Exit codes: 0 success; 1 an emulated run that is not bit-exact; 2 a usage error or a
:class:`CommandError` (bad input file, invalid option value), reported as one line
``rnnedge: error: ...`` on stderr without a traceback. Anything else is a bug and propagates
with its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from keras_rnnedge import __version__
from keras_rnnedge.micro_targets.validate import check_labels, check_sequences

if TYPE_CHECKING:
    from keras_rnnedge._compat import keras

__all__ = ["SUBCOMMANDS", "CommandError", "build_parser", "load_model", "main", "subcommand"]

PROG = "rnnedge"
#: Columns the output is wrapped to.
WIDTH = 100
EXIT_USAGE = 2

AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: The subcommands, in the order ``rnnedge --help`` lists them.
SUBCOMMANDS: list[AddParser] = []


class CommandError(Exception):
    """A user error: reported as one line on stderr, exit code 2."""


def subcommand(add_parser: AddParser) -> AddParser:
    """Register ``add_parser(subparsers)``, which adds one subcommand and sets ``run``."""
    SUBCOMMANDS.append(add_parser)
    return add_parser


def fit_columns(text: str, width: int = WIDTH) -> str:
    """``text`` with every line longer than ``width`` wrapped at spaces, continuation lines
    indented under the value (after a ``label  `` column of two or more spaces) or by two."""
    import re
    import textwrap

    out = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        label = re.match(r"^(\S[^ ]*(?: [^ ]+)*? {2,})\S", line)
        indent = " " * (len(label.group(1)) if label and len(label.group(1)) < 40 else 2)
        glued = _UNIT.sub("\\1\xa0\\2", line)  # never a number without its unit
        out += [part.replace("\xa0", " ") for part in
                textwrap.wrap(glued, width, subsequent_indent=indent, break_long_words=False,
                              break_on_hyphens=False)] or [line]
    return "\n".join(out)


_UNIT = __import__("re").compile(r"(\d) (us|ms|s|B|KB|MB|MHz|%|windows|cycles|instructions|"
                                 r"steps?|points)\b")


# -- numeric options ---------------------------------------------------------------------------

def _int_option(minimum: int, maximum: int | None = None,
                expected: str | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[minimum, maximum]``, else a usage error (exit 2)
    that quotes the value received and the range expected."""
    expected = expected or (f"an integer of at least {minimum}" if maximum is None
                            else f"an integer from {minimum} to {maximum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"received {text!r}; expected {expected}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"received {value}; expected {expected}")
        return value

    return parse


def _float_option(minimum: float, maximum: float | None = None,
                  expected: str = "") -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[minimum, maximum]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value >= minimum and (maximum is None or value <= maximum)):
            raise argparse.ArgumentTypeError(f"received {text!r}; expected {expected}")
        return value

    return parse


_POSITIVE = _int_option(1, expected="a positive integer (1 or more)")
_NON_NEGATIVE = _int_option(0, expected="an integer of at least 0")
_SEED = _int_option(0, 2**32 - 1)


# -- loading models ------------------------------------------------------------------------------

_EXPECTED = "expected a Keras model saved with model.save('model.keras')"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_KERAS_ARCHIVE_MEMBERS = ("config.json", "metadata.json")


def _check_model_path(path: Path) -> None:
    """Refuse, with a precise message, what ``keras.models.load_model`` would fail on."""
    if not path.exists():
        raise CommandError(f"cannot load model {str(path)!r}: no such file; {_EXPECTED}")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise CommandError(
                f"cannot load model {str(path)!r}: it is a directory without saved_model.pb; "
                f"{_EXPECTED} (or a SavedModel directory)"
            )
        return
    if path.suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise CommandError(
                f"cannot load model {str(path)!r}: the file is not a zip archive (truncated, "
                f"or not a .keras file); {_EXPECTED}"
            )
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise CommandError(
                f"cannot load model {str(path)!r}: unreadable zip archive ({exc}); {_EXPECTED}"
            ) from exc
        missing = [m for m in _KERAS_ARCHIVE_MEMBERS if m not in names]
        if missing:
            raise CommandError(
                f"cannot load model {str(path)!r}: the zip archive has no {', '.join(missing)} "
                f"(not a Keras model archive); {_EXPECTED}"
            )
        return
    if path.suffix in (".h5", ".hdf5"):
        with path.open("rb") as handle:
            if handle.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                raise CommandError(
                    f"cannot load model {str(path)!r}: the file is not HDF5 (truncated or "
                    f"corrupt); {_EXPECTED}"
                )
        return
    raise CommandError(
        f"cannot load model {str(path)!r}: unsupported file type {path.suffix or '(none)'!r}; "
        f"{_EXPECTED} (.keras; .h5 and SavedModel directories are also read)"
    )


def load_model(path: str | Path) -> keras.Model:
    """Load a saved model, including pruned (tfmot) and quantization-aware ones.

    Checks the file first, then loads it with :func:`keras_rnnedge.optimize.load_model`
    (pruning and QAT scopes, ``keras_rnnedge>Name`` classes registered), without compiling.

    Raises:
        CommandError: naming the file, what is wrong with it and what was expected.
    """
    from keras_rnnedge import optimize

    path = Path(path)
    _check_model_path(path)
    try:
        return optimize.load_model(path, compile=False)
    except Exception as exc:  # any failure to deserialize is a bad input file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CommandError(
            f"cannot load model {str(path)!r}: {type(exc).__name__}"
            f"{': ' + detail if detail else ''}; {_EXPECTED}"
        ) from exc


# -- subcommands -------------------------------------------------------------------------------

_SUMMARY_FORMATS = ("text", "markdown", "json")


@subcommand
def _add_summary(subparsers) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="parameters, bytes (float32/int8), MACs and recurrent-state RAM of a saved model",
        description="Print keras_rnnedge.summary.summary() of a saved model: per layer its "
        "parameters and non-zeros, bytes at float32 and int8 (sparse where smaller), "
        "MACs per time step and per inference, and recurrent-state RAM.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL.keras", help="the saved model")
    parser.add_argument(
        "--format",
        choices=_SUMMARY_FORMATS,
        default="text",
        help="output format (default: %(default)s)",
    )
    parser.add_argument("--wide", action="store_true",
                        help="text: every column (float32 bytes and state, MACs per "
                        "inference); the default table fits 100 columns")
    parser.set_defaults(run=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    from keras_rnnedge.summary import summary

    model = load_model(args.model)
    try:
        result = summary(model)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"cannot summarize model {str(args.model)!r}: {exc}") from exc
    if args.format == "markdown":
        print(result.to_markdown())
    elif args.format == "json":
        print(result.to_json(indent=2))
    else:
        print(result.to_text(wide=args.wide))
    return 0


@subcommand
def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a compressed FastGRNN on the bundled HAR data, report and save it",
        description="The main job: train FastGRNN (hidden 80, r_W 5, r_U 40) with hard "
        "thresholding (s_W 0.2, s_U 0.3) on the bundled HAR data, print test accuracy, "
        "model size and the summary table, save the model, export it for --target (int8 "
        "TFLite, emulated in TFLite Micro) and as standalone integer C for --c-target (run "
        "on the host and on the emulated board).",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR",
                        help="directory for the saved model and the exports (TFLite and C "
                        "subdirectories, replaced when they exist; default: %(default)s)")
    parser.add_argument("--epochs", type=_int_option(3, expected="an integer of at least 3 "
                                                     "(a third each dense / IHT / fine-tune)"),
                        default=30,
                        help="total epochs, a third each dense / IHT / fine-tune "
                        "(default: %(default)s)")
    parser.add_argument("--classes", type=int, choices=(6, 2), default=6,
                        help="HAR-6 or the paper's binary HAR-2 (default: %(default)s)")
    parser.add_argument("--max-train", type=_POSITIVE, default=None,
                        help="use only this many training windows (quick runs)")
    parser.add_argument("--seed", type=_SEED, default=0,
                        help="seed of the weights, the data order and the validation split "
                        "(default: %(default)s)")
    parser.add_argument("--target", default="nano33ble",
                        help="board to export for and emulate (default: %(default)s); "
                        "'none' skips the export")
    parser.add_argument("--max-test", type=_POSITIVE, default=None,
                        help="emulate only this many test windows, drawn across the classes "
                        "(seeded by --seed; default: all)")
    parser.add_argument("--c-target", default="uno",
                        help="board to export standalone integer C for (default: %(default)s); "
                        "'none' skips it")
    parser.add_argument("--c-emulated", type=_NON_NEGATIVE, default=2,
                        help="test windows to run on the emulated --c-target (default: "
                        "%(default)s; simavr runs at a few times real time)")
    parser.add_argument("--wide", action="store_true",
                        help="print every column of the summary table")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from keras_rnnedge.demo import run_demo

    try:
        result = run_demo(args.out, epochs=args.epochs, num_classes=args.classes,
                          max_train=args.max_train, seed=args.seed,
                          log=lambda line: print(fit_columns(line), flush=True), progress=True,
                          target=None if args.target == "none" else args.target,
                          max_test=args.max_test,
                          c_target=None if args.c_target == "none" else args.c_target,
                          c_emulated_windows=args.c_emulated)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    def say(line: str) -> None:
        print(fit_columns(line))

    print()
    print(result.summary.to_text(wide=args.wide))
    print()
    totals = result.summary.totals
    say(f"test accuracy     {100 * result.test_accuracy:.2f} % (HAR-{result.num_classes}, "
          f"{result.epochs} epochs, {result.train_seconds:.0f} s)")
    say(f"model size        {totals.bytes_int8 / 1024:.2f} KB at int8, "
          f"{totals.bytes_f32 / 1024:.2f} KB at float32 "
          f"({totals.nonzero_params} of {totals.params} parameters non-zero)")
    say(f"saved             {result.model_path}")
    if result.conversion is not None:
        conv = result.conversion
        audit = conv.audit
        say(f"exported          {result.export_path} (int8, step mode, "
              f"{conv.target.display_name}: flatbuffer {len(conv.flatbuffer):,} B, "
              f"TFLM arena {audit.arena_bytes:,} B, fits: {'yes' if audit.fits else 'no'})")
        say(f"int8 on TFLM      {100 * result.int8_accuracy:.2f} % test accuracy over "
              f"{result.emulated_windows} windows; {100 * result.int8_agreement:.2f} % of "
              f"predictions equal Keras; {1e6 * result.int8_seconds_per_step:.1f} us per "
              "step on this host")
    if result.c_conversion is not None:
        conv = result.c_conversion
        say(f"exported C        {result.c_export_path} (standalone int8 C, "
              f"{conv.target.display_name}: {conv.fit.flash_needed:,} B flash, "
              f"{conv.fit.ram_needed:,} B RAM: state + static data + stack of the step)")
        say(f"C on the host     {100 * result.c_accuracy:.2f} % test accuracy; "
              f"{100 * result.c_agreement:.2f} % of predictions equal Keras")
        em = result.c_emulated
        if em is not None:
            seconds = em.seconds_per_step()
            timing = (f"{em.per_step:,.0f} {em.unit} per step"
                      + (f" = {seconds * conv.timesteps:.2f} s per {conv.timesteps}-step "
                         f"window at "
                         f"{em.clock_hz / 1e6:g} MHz" if seconds is not None else ""))
            say(f"C on {em.target:<12} {len(em.scores)} windows, "
                  f"{'bit-exact with' if result.c_bit_exact else 'DIFFERENT from'} the host "
                  f"build; {timing}")
        elif result.c_skipped:
            say(f"C emulation       skipped: {result.c_skipped}")
    return 0


@subcommand
def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a compressed RNN with the project's recipe, save and convert it",
        description="Train a compressed recurrent classifier on --data with one recipe "
        "(keras_rnnedge.recipe): inputs standardised by a Normalization layer that the exports "
        "take along; dense training, iterative hard thresholding with a cubic ramp to the "
        "target density, sparse fine-tuning with the support frozen, optional int8 QAT; "
        "gradient clipping, the best validation epoch restored in every phase, distillation "
        "from --teacher. --budget-kb chooses the density that fits the int8 size. Prints one "
        "line per epoch, the summary table and test accuracy, then converts the model for "
        "--target (standalone integer C, or int8 TFLite where TFLite Micro runs) and reports "
        "the deployed model's accuracy on the test windows and its fit on the board.")
    parser.add_argument("--data", type=Path, required=True, metavar="DATA.npz",
                        help="x_train/y_train, x_val/y_val (else 10 %% of the training windows, "
                        "stratified, seeded by --seed), x_test/y_test (optional); "
                        "`rnnedge data` writes one")
    parser.add_argument("--cell", default="fastgrnn", choices=TRAIN_CELLS,
                        help="cell kind (default: %(default)s)")
    parser.add_argument("--units", type=_POSITIVE, default=32,
                        help="hidden units (default: %(default)s)")
    parser.add_argument("--kernel-rank", type=_POSITIVE, default=None,
                        help="rank of the input matrix W (default: full)")
    parser.add_argument("--recurrent-rank", type=_POSITIVE, default=None,
                        help="rank of the recurrent matrix U (default: full)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--budget-kb", type=_float_option(0.001, None, "a size in KB above 0"),
                      default=None, help="int8 size to fit (KB of 1,024 bytes): sets the "
                      "density of every recurrent matrix")
    size.add_argument("--density", type=_float_option(0.001, 1.0, "a share in (0, 1]"),
                      default=None, help="fraction of non-zeros kept in every recurrent matrix")
    parser.add_argument("--epochs", type=_int_option(1, expected="a positive integer"),
                        default=30, help="epochs of dense + threshold + sparse training, a "
                        "third each (dense only without --budget-kb/--density; default: "
                        "%(default)s)")
    parser.add_argument("--qat-epochs", type=_NON_NEGATIVE, default=0,
                        help="epochs of int8 quantization-aware training at the end (default: "
                        "%(default)s)")
    parser.add_argument("--learning-rate", type=_float_option(1e-7, 10.0, "a rate above 0"),
                        default=0.01, help="Adam's initial rate (default: %(default)s)")
    parser.add_argument("--batch-size", type=_POSITIVE, default=64,
                        help="default: %(default)s")
    parser.add_argument("--patience", type=_POSITIVE, default=None,
                        help="stop a phase after this many epochs without a better validation "
                        "accuracy (default: run every epoch; the best is restored anyway)")
    parser.add_argument("--teacher", type=Path, default=None, metavar="MODEL.keras",
                        help="a trained model (logits) to distil from")
    parser.add_argument("--no-standardize", action="store_true",
                        help="feed the inputs as they are (no Normalization layer)")
    parser.add_argument("--target", default=None,
                        help="board to convert for and check on (uno, nano33ble, ...; "
                        "default: none)")
    parser.add_argument("--seed", type=_SEED, default=0, help="default: %(default)s")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="directory for model.keras, training.json and the conversion "
                        "(DIR/<target>)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=_run_train)


@subcommand
def _add_search(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search cell, size, matrix family, ranks, sparsity for a board (Ray Tune)",
        description="Train, convert and measure a grid of compressed RNN configurations on Ray "
        "Tune (keras_rnnedge.search): cell kind x hidden size x recurrent matrix family (and "
        "ranks) x density x weight bits. A configuration whose weights or state cannot fit "
        "--target is rejected before training; each trial trains with the project's recipe "
        "(ASHA stops the trailing ones), converts to integer C for the board (flash and RAM "
        "from its cross compiler), runs on the host over the validation windows and is timed "
        "on the board's emulator (simavr cycles, QEMU instructions). Writes a table, a Pareto "
        "plot and the best fitting model with its conversion to --out. Needs Ray Tune: pip "
        "install 'keras-rnnedge[search]'.")
    parser.add_argument("--data", type=Path, required=True, metavar="DATA.npz",
                        help="x_train/y_train, x_val/y_val (else 10 %% of the training windows), "
                        "x_test/y_test (optional, only reported)")
    parser.add_argument("--target", default="uno", help="board key (default: %(default)s)")
    parser.add_argument("--max-latency-ms", type=_float_option(1e-6, None, "milliseconds > 0"),
                        default=None, help="time per step on the board (default: no limit)")
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster (ray://host:10001, or auto); default: a "
                        "local Ray instance")
    parser.add_argument("--cells", default="fastgrnn,gru,lstm",
                        help="cell kinds, comma-separated (default: %(default)s)")
    parser.add_argument("--units", default="16,32,64",
                        help="hidden sizes, comma-separated (default: %(default)s)")
    parser.add_argument("--families", default="dense,low_rank",
                        help="recurrent matrix families, comma-separated (any registered "
                        "family; default: %(default)s)")
    parser.add_argument("--ranks", default="4,8",
                        help="ranks of the low_rank family (default: %(default)s)")
    parser.add_argument("--densities", default="1,0.5,0.25",
                        help="fractions of non-zeros kept, 1 = dense (default: %(default)s)")
    parser.add_argument("--precisions", default="int8",
                        help="weight bits of the integer C: int8, int16 (default: %(default)s)")
    parser.add_argument("--trials", type=_POSITIVE, default=None,
                        help="train at most this many configurations (a seeded random choice; "
                        "default: all that may fit)")
    parser.add_argument("--epochs", type=_POSITIVE, default=12,
                        help="epochs per trial: dense + threshold + sparse, a third each "
                        "(default: %(default)s)")
    parser.add_argument("--learning-rate", type=_float_option(1e-7, 10.0, "a rate above 0"),
                        default=0.01, help="Adam's initial rate (default: %(default)s)")
    parser.add_argument("--batch-size", type=_POSITIVE, default=64, help="default: %(default)s")
    parser.add_argument("--cpus-per-trial", type=_float_option(0.01, None, "CPUs above 0"),
                        default=1.0, help="CPUs Ray reserves per trial (default: %(default)s)")
    parser.add_argument("--no-early-stopping", action="store_true",
                        help="run every trial to the end (no ASHA)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search in --out after a crash")
    parser.add_argument("--seed", type=_SEED, default=0, help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=Path("runs/search"), metavar="DIR",
                        help="results, pareto.png and best/ (default: %(default)s)")
    parser.set_defaults(run=_run_search)


def _csv(text: str, convert, what: str) -> tuple:
    try:
        values = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise CommandError(f"received {text!r}; expected {what}, comma-separated") from None
    if not values:
        raise CommandError(f"received {text!r}; expected at least one of {what}")
    return values


def _run_search(args: argparse.Namespace) -> int:
    from keras_rnnedge.recipe import Recipe
    from keras_rnnedge.search import Constraints, SearchSpace, search

    data = _train_dataset(args.data, args.seed)
    densities = tuple(None if d >= 1.0 else d for d in _csv(
        args.densities, float, "fractions in (0, 1]"))
    third = max(1, args.epochs // 3)
    try:
        space = SearchSpace.of_families(
            _csv(args.families, str, "family names"), _csv(args.ranks, int, "integer ranks"),
            cells=_csv(args.cells, str, "cell kinds"),
            units=_csv(args.units, int, "integer hidden sizes"), densities=densities,
            precisions=_csv(args.precisions, str, "int8 or int16"))
        constraints = Constraints(args.target, max_latency_ms=args.max_latency_ms)
        recipe = Recipe(dense_epochs=third, threshold_epochs=third,
                        sparse_epochs=max(1, args.epochs - 2 * third),
                        learning_rate=args.learning_rate, batch_size=args.batch_size,
                        seed=args.seed)
        result = search(data, space=space, constraints=constraints, recipe=recipe,
                        max_trials=args.trials, seed=args.seed, address=args.address,
                        cpus_per_trial=args.cpus_per_trial,
                        early_stopping=not args.no_early_stopping, out=args.out,
                        resume=args.resume, log=lambda line: print(fit_columns(line),
                                                                    flush=True))
    except (ValueError, ImportError) as exc:
        raise CommandError(str(exc)) from exc
    print()
    print(result.to_text())
    return 0 if result.best is not None else 1


def _train_dataset(path: Path, seed: int):
    """The :class:`~keras_rnnedge.datasets.Dataset` of a training .npz (checked)."""
    from keras_rnnedge.datasets._core import Dataset, read_npz, stratified_split

    try:
        arrays = read_npz(path, ("x_train", "y_train"),
                          ("x_val", "y_val", "x_test", "y_test", "class_names"))
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    out: dict = {}
    features = np.shape(arrays["x_train"])[-1] if np.ndim(arrays["x_train"]) == 3 else None
    for split in ("train", "val", "test"):
        if f"x_{split}" not in arrays:
            continue
        if f"y_{split}" not in arrays:
            raise CommandError(f"data {str(path)!r} has x_{split} but no y_{split}: the recipe "
                               "needs one class index per window")
        x = np.asarray(arrays[f"x_{split}"], np.float32)
        try:
            if features is None:
                raise ValueError(f"x_train of {str(path)!r} has shape "
                                 f"{np.shape(arrays['x_train'])}; expected (windows, time "
                                 "steps, features)")
            x = check_sequences(x, features=features, name=f"x_{split} of {str(path)!r}",
                                finite=True)
            y = check_labels(arrays[f"y_{split}"], len(x),
                             name=f"y_{split} of {str(path)!r}")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        out[split] = (x, y.astype(np.int32))
    x_train, y_train = out["train"]
    if "val" not in out:
        keep, val = stratified_split(y_train, 0.1, seed)
        out["val"] = (x_train[val], y_train[val])
        x_train, y_train = x_train[keep], y_train[keep]
    labels = np.concatenate([y for _, y in out.values()])
    classes = int(labels.max()) + 1
    names = arrays.get("class_names")
    names = tuple(str(n) for n in names) if names is not None and len(names) == classes else \
        tuple(str(c) for c in range(classes))
    x_test, y_test = out.get("test", (None, None))
    return Dataset(x_train=x_train, y_train=y_train, x_val=out["val"][0], y_val=out["val"][1],
                   x_test=x_test, y_test=y_test, class_names=names, extras={})


def _run_train(args: argparse.Namespace) -> int:
    import json

    from keras_rnnedge.micro_targets.boards import get_board
    from keras_rnnedge.recipe import Recipe, build_classifier, describe, make_cell, train
    from keras_rnnedge.summary import summary

    board = None
    if args.target is not None:
        try:
            board = get_board(args.target)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    if args.out.exists() and not args.force:
        raise CommandError(f"output directory {str(args.out)!r} exists; pass --force to "
                           "replace it, or choose another --out")
    data = _train_dataset(args.data, args.seed)
    teacher = load_model(args.teacher) if args.teacher is not None else None
    sparse = args.budget_kb is not None or args.density is not None
    third = max(1, args.epochs // 3) if sparse else args.epochs
    recipe_args = dict(learning_rate=args.learning_rate, batch_size=args.batch_size,
                       patience=args.patience, qat_epochs=args.qat_epochs, seed=args.seed)
    if sparse:
        recipe_args.update(dense_epochs=third, threshold_epochs=third,
                           sparse_epochs=max(1, args.epochs - 2 * third))
    else:
        recipe_args.update(dense_epochs=args.epochs, threshold_epochs=0, sparse_epochs=0)
    try:
        recipe = Recipe(**recipe_args)
        from keras_rnnedge._compat import keras

        keras.utils.set_random_seed(args.seed)
        cell = make_cell(args.cell, args.units, kernel_rank=args.kernel_rank,
                         recurrent_rank=args.recurrent_rank)
        model = build_classifier(cell, data.x_train, len(data.class_names),
                                 standardize=not args.no_standardize)
        budget = None if args.budget_kb is None else int(args.budget_kb * 1024)
        print(fit_columns(f"{args.cell}, {args.units} units: {len(data.y_train)} training, "
                          f"{len(data.y_val)} validation, "
                          f"{0 if data.y_test is None else len(data.y_test)} test windows of "
                          f"{data.x_train.shape[1]} x {data.x_train.shape[2]}, "
                          f"{len(data.class_names)} classes"), flush=True)
        result = train(model, data, recipe, density=args.density, budget_bytes=budget,
                       teacher=teacher, log=lambda line: print(fit_columns(line), flush=True))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "model.keras"
    result.model.save(path)
    table = summary(result.model)
    print()
    print(table.to_text())
    print()
    totals = table.totals
    print(fit_columns(f"validation        {100 * result.val_accuracy:.2f} %"))
    if result.test_accuracy is not None:
        print(fit_columns(f"test accuracy     {100 * result.test_accuracy:.2f} % (float, "
                          f"Keras; {result.seconds:.0f} s of training)"))
    print(fit_columns(f"model size        {totals.bytes_int8 / 1024:.2f} KB at int8 "
                      f"({totals.nonzero_params:,} of {totals.params:,} parameters non-zero)"))
    print(fit_columns(f"saved             {path}"))
    record = {"command": "rnnedge train", "cell": args.cell, "units": args.units,
              "kernel_rank": args.kernel_rank, "recurrent_rank": args.recurrent_rank,
              "budget_kb": args.budget_kb, "bytes_int8": totals.bytes_int8,
              "recipe": {k: v for k, v in vars(recipe).items()}, **describe(result),
              "history": list(result.history)}
    if board is not None:
        record["deployed"] = _deploy_check(result.model, data, board, args)
    (args.out / "training.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    return 0


def _deploy_check(model, data, board, args: argparse.Namespace) -> dict:
    """Convert for ``board`` (int8 TFLite where TFLite Micro runs, else integer C), save the
    conversion in ``--out/<target>``, report its accuracy on the test windows and its fit."""
    from keras_rnnedge.converters import convert, convert_c
    from keras_rnnedge.micro_targets.crun import run_c
    from keras_rnnedge.micro_targets.emulate import emulate

    fmt = "tflite" if board.tflm else "c"
    out = args.out / args.target
    x_eval, y_eval = (data.x_test, data.y_test) if data.y_test is not None else \
        (data.x_val, data.y_val)
    which = "test" if data.y_test is not None else "validation"
    what = "int8 TFLite, step mode" if fmt == "tflite" else "standalone integer C"
    print(f"\nconverting for {args.target} ({what})...", file=sys.stderr, flush=True)
    quality = {"validation_data": (data.x_val, data.y_val), "checks": "warn"}
    try:
        if fmt == "c":
            result = convert_c(model, target=args.target, representative_data=data.x_train,
                               class_names=data.class_names, **quality)
            predictions = run_c(result, result.quantize_input(x_eval), target="host",
                                progress=True).predictions()
        else:
            result = convert(model, target=args.target, quantization="int8", mode="step",
                             representative_data=data.x_train, class_names=data.class_names,
                             **quality)
            predictions = emulate(result, x_eval, runtime="tflm", progress=True).predictions()
        result.save(out, force=True)
    except ValueError as exc:  # ConversionError, TargetFitError, ...
        raise CommandError(f"{exc} (the trained model is saved in {str(args.out)!r})") from exc
    accuracy = float(np.mean(predictions == y_eval))
    print(fit_columns(result.report()))
    runtime = "TensorFlow Lite Micro" if fmt == "tflite" else "the integer C on the host"
    print(fit_columns(f"\ndeployed accuracy {100 * accuracy:.2f} % on {len(y_eval)} {which} "
                      f"windows ({runtime}, int8)"))
    print(fit_columns(f"written to        {out}"))
    return {"target": args.target, "format": fmt, "accuracy": accuracy, "windows": len(y_eval),
            "split": which}


#: ``rnnedge train --cell`` choices: the keys of :data:`keras_rnnedge.recipe.CELL_KINDS`, here
#: so that ``--help`` imports no TensorFlow (a test checks they are the same).
TRAIN_CELLS = ("fastgrnn", "fastrnn", "lstm", "gru", "rnn", "projection_lstm", "hlstm")

_NPY_MAGIC = b"\x93NUMPY"


def _load_npz(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) from an .npz: ``x_test``/``y_test`` for evaluation, ``x_train`` for calibration,
    else ``x``/``y``. Checked before any work: an .npz archive (not a .npy file), the arrays
    present, ``x`` of shape (N, timesteps, features), and for evaluation one class index per
    window in ``y``."""
    where = repr(str(path))
    if not path.is_file():
        raise CommandError(f"cannot read data {where}: no such file; expected an .npz "
                           "with x (N, timesteps, features) and optionally y")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as handle:
            npy = handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC
        if npy:
            raise CommandError(
                f"data {where} is a .npy file (one array); expected an .npz archive of named "
                f"arrays: save it with np.savez({str(path.with_suffix('.npz'))!r}, x=x, y=y) "
                "(y: one class index per window, optional)")
        raise CommandError(f"cannot read data {where}: not an .npz archive (truncated, or "
                           "another format); expected arrays saved with np.savez(path, x=x, "
                           "y=y)")
    order = ("x_test", "x", "x_train") if kind == "eval" else ("x_train", "x", "x_test")
    try:
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in order if k in data.files), None)
            if key is None:
                pairs = ", ".join(f"{k} (with {k.replace('x', 'y', 1)})" for k in order)
                raise CommandError(f"data {where} has arrays {sorted(data.files)}; expected one "
                                   f"of {pairs}. Save the windows under one of those names, "
                                   "e.g. np.savez(path, x=x, y=y)")
            x = np.asarray(data[key], np.float32)
            label = key.replace("x", "y", 1)
            y = np.asarray(data[label]) if label in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CommandError(f"cannot read data {where}: {exc}; expected an .npz file") \
            from exc
    if x.ndim != 3:
        raise CommandError(f"data {where}: {key} has shape {x.shape}; expected "
                           "(N, timesteps, features)")
    if y is not None and kind == "eval":
        try:
            y = check_labels(y, len(x), name=f"{label} of data {where}")
        except ValueError as exc:
            raise CommandError(f"{exc} ({key} has shape {x.shape})") from exc
    return x, y


def _source_model(directory: Path) -> keras.Model:
    """The trained model saved beside a conversion (``model.keras``), checked as
    :func:`load_model` does."""
    try:
        return load_model(directory / "model.keras")
    except CommandError as exc:
        raise CommandError(f"{exc}. The predictions are compared with this trained model, "
                           f"saved by `rnnedge convert` in {str(directory)!r}: convert again to "
                           "rewrite the directory") from exc


def _check_windows(x: np.ndarray, path: Path, directory: Path, *, features: int,
                   timesteps: int | None, source: keras.Model, mode: str) -> np.ndarray:
    """The windows of ``--data`` against the converted model and the trained one, before any
    work: the features always; the length of an unrolled/fused model (``timesteps``), or of
    the trained model when its input fixes one (step models and C run any length, but each
    window is also run through the trained model)."""
    keras_steps = source.inputs[0].shape[1] if source.inputs else None
    if timesteps is not None:
        note = (f"The {mode} model in {str(directory)!r} is built for one length: cut the "
                f"windows to {timesteps} steps, or convert with --mode step.")
    else:
        timesteps = keras_steps
        note = (f"The trained model in {str(directory)!r} takes windows of {keras_steps} steps "
                f"(keras.Input(({keras_steps}, {features}))) and every window is compared with "
                f"it: cut the windows to {keras_steps} steps (a model built with "
                f"keras.Input((None, {features})) takes windows of any length).")
    try:
        return check_sequences(x, features=features, timesteps=timesteps, finite=True,
                               name=f"data {str(path)!r}", length_note=note)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _validation_npz(path: Path):
    """``(x, y)`` of an .npz's ``x_val``/``y_val``, else ``x_test``/``y_test`` (``y`` may be
    ``None``), or ``None`` when it has neither."""
    with np.load(path, allow_pickle=False) as data:
        for x_key in ("x_val", "x_test"):
            if x_key in data.files:
                y_key = x_key.replace("x", "y", 1)
                return (np.asarray(data[x_key], np.float32),
                        np.asarray(data[y_key]) if y_key in data.files else None)
    return None


_DATASETS = ("har", "speech-commands", "mnist")


@subcommand
def _add_data(subparsers) -> None:
    from keras_rnnedge.datasets._core import NPZ_KEYS

    keys = "; ".join(f"{k}: {v}" for k, v in NPZ_KEYS.items())
    parser = subparsers.add_parser(
        "data", help="write a dataset as the .npz that convert, emulate and run read",
        description="Write the bundled HAR windows (or Speech Commands / MNIST, read from "
        "--path or RNNEDGE_DATA_DIR) as one .npz with the arrays the other commands read. "
        f"Keys: {keys}. Any arrays saved with np.savez under these names work the same.")
    parser.add_argument("dataset", choices=_DATASETS,
                        help="har: bundled (UCI HAR layout, 128 x 9); speech-commands, mnist: "
                        "not bundled, see --path")
    parser.add_argument("--out", type=Path, required=True, metavar="DATA.npz",
                        help="the file to write")
    parser.add_argument("--classes", type=int, choices=(6, 2), default=6,
                        help="har: HAR-6 or the binary HAR-2 (default: %(default)s)")
    parser.add_argument("--path", type=Path, default=None,
                        help="speech-commands, mnist: the file or its directory (default: "
                        "$RNNEDGE_DATA_DIR)")
    parser.add_argument("--validation-split", type=_float_option(0.0, 0.99, "a fraction "
                        "from 0 to 0.99"), default=0.1,
                        help="share of the training windows held out as x_val/y_val, per "
                        "class (default: %(default)s; 0: none)")
    parser.add_argument("--validation-by", choices=("window", "subject"), default="window",
                        help="har: hold out windows (stratified per class) or whole subjects, "
                        "so that model selection sees the subject shift of the test set "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=_SEED, default=0,
                        help="seed of the validation split (default: %(default)s)")
    parser.add_argument("--max-train", type=_POSITIVE, default=None, metavar="N",
                        help="keep N training windows, sampled across the classes")
    parser.add_argument("--max-test", type=_POSITIVE, default=None, metavar="N",
                        help="keep N test windows, sampled across the classes")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=_run_data)


def _run_data(args: argparse.Namespace) -> int:
    import dataclasses

    from keras_rnnedge import datasets

    out = args.out if args.out.suffix == ".npz" else args.out.with_name(args.out.name + ".npz")
    if out.exists() and not args.force:
        raise CommandError(f"{str(out)!r} exists; pass --force to replace it, or choose "
                           "another --out")
    try:
        if args.dataset == "har":
            ds = datasets.load_har(args.classes, validation_split=args.validation_split,
                                   seed=args.seed, validation_by=args.validation_by)
        elif args.validation_by != "window":
            raise CommandError(f"--validation-by {args.validation_by} needs subject ids, which "
                               f"only har has; {args.dataset} splits by window")
        elif args.dataset == "speech-commands":
            ds = datasets.load_speech_commands(args.path, validation_split=args.validation_split,
                                               seed=args.seed)
        else:
            ds = datasets.load_mnist(args.path, validation_split=args.validation_split,
                                     seed=args.seed)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    for split, limit in (("train", args.max_train), ("test", args.max_test)):
        if limit is not None and limit < len(getattr(ds, f"y_{split}")):
            index = datasets.balanced_sample(getattr(ds, f"y_{split}"), limit, args.seed)
            ds = dataclasses.replace(ds, **{f"x_{split}": getattr(ds, f"x_{split}")[index],
                                            f"y_{split}": getattr(ds, f"y_{split}")[index]})
    path = datasets.save_npz(ds, out)
    for key in ("train", "val", "test"):
        x = getattr(ds, f"x_{key}")
        if x is not None:
            print(f"x_{key:<6} {x.shape[0]:>6,} windows of {x.shape[1]} x {x.shape[2]}")
    print(f"classes     {', '.join(ds.class_names)}")
    print(f"written to  {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


#: The converters' QUANTIZATIONS, C_PRECISIONS and MODES, repeated here so that ``--help``
#: imports no TensorFlow (tests/test_cli.py checks that they are equal).
_QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
_C_PRECISIONS = ("int8", "int16", "float32")
_MODES = ("step", "unrolled", "fused")


@subcommand
def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a saved model to TFLite or standalone C, with an Arduino sketch",
        description="TFLite (--format tflite): lower a trained model (step / unrolled / fused), "
        "convert it to a flatbuffer, audit it against the target board (TFLite Micro ops, "
        "measured arena, flash and RAM) and write the flatbuffer, the C array, an Arduino sketch "
        "and a PlatformIO project to --out. Standalone C (--format c, the default for boards "
        "without TFLite Micro such as the Uno): quantize to integer arithmetic, generate C99 "
        "checked bit for bit against the integer oracle, measure flash and RAM with the "
        "board's compiler, and write the C, an Arduino sketch and (Arm boards) a Cortex-M "
        "project; `rnnedge run` runs it.")
    parser.add_argument("model", type=Path, metavar="MODEL.keras",
                        help="the trained model (model.save('model.keras'))")
    parser.add_argument("--target", required=True, help="board: nano33ble, uno, due, mkrzero, "
                        "mkr1000, pico, stm32f746disco, esp32 or host")
    parser.add_argument("--format", default=None, choices=("tflite", "c"),
                        help="tflite (TFLite Micro) or c (standalone C); default: tflite where "
                        "TFLite Micro runs, else c")
    parser.add_argument("--quantize", default="int8",
                        help=f"tflite: {', '.join(_QUANTIZATIONS)}; c: "
                        f"{', '.join(_C_PRECISIONS)} "
                        "weights (default: %(default)s)")
    parser.add_argument("--mode", default="step", choices=_MODES,
                        help="tflite only (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help=".npz with x_train (or x): representative sequences, needed for "
                        "int8 and int16x8 and for --format c; its x_val/y_val (else "
                        "x_test/y_test) check the deployed model against the float model")
    parser.add_argument("--calibration", type=_POSITIVE, default=None,
                        help="number of sequences sampled (seeded) across x_train for "
                        "calibration (default: 128 for tflite, 512 for c)")
    parser.add_argument("--compression", default=None, choices=("prune",),
                        help="tflite int8/int16x8: store pruned weights as TFLite Micro DECODE "
                        "pruning encodings (bit mask + non-zero values; less flash, the "
                        "decoded matrix in the arena); default: dense")
    parser.add_argument("--weight-scales", default="per-channel",
                        choices=("per-channel", "per-tensor"),
                        help="tflite int8/int16x8: one scale per output channel (default) or "
                        "per weight matrix (smaller flatbuffer and arena)")
    parser.add_argument("--strip-strings", action="store_true",
                        help="tflite: drop tensor names and the converter's metadata from the "
                        "flatbuffer (fewer bytes of flash, the same model)")
    parser.add_argument("--calibration-seed", type=_SEED, default=0,
                        help="seed of the calibration sample (default: %(default)s)")
    parser.add_argument("--checks", default="raise", choices=("raise", "warn"),
                        help="what a deployment loss beyond the thresholds, or a failed stage "
                        "check, does (default: %(default)s)")
    parser.add_argument("--max-accuracy-drop", default=2.0,
                        type=_float_option(0.0, 100.0, "accuracy points from 0 to 100"),
                        help="accuracy points the deployed model may lose against the float "
                        "model on the validation data (default: %(default)s)")
    parser.add_argument("--min-agreement", default=0.9,
                        type=_float_option(0.0, 1.0, "a share from 0 to 1"),
                        help="least share of windows where the deployed and float models agree "
                        "(default: %(default)s)")
    parser.add_argument("--name", default=None, help="C name of the model (default: its name)")
    parser.add_argument("--class-names", default=None,
                        help="comma-separated class names printed by the sketch")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output directory (created; `rnnedge emulate` and `rnnedge run` "
                        "read it)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from keras_rnnedge.converters import (
        C_PRECISIONS,
        QUANTIZATIONS,
        OutputExistsError,
        convert,
        convert_c,
    )
    from keras_rnnedge.converters.carray import identifier_note
    from keras_rnnedge.micro_targets.boards import get_board

    try:
        board = get_board(args.target)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    fmt = args.format or ("tflite" if board.tflm or board.arch == "host" else "c")
    allowed = C_PRECISIONS if fmt == "c" else QUANTIZATIONS
    if args.quantize not in allowed:
        raise CommandError(f"--quantize {args.quantize!r} is not available with --format {fmt}; "
                           f"choose one of {', '.join(allowed)}")
    if args.compression is not None and fmt != "tflite":
        raise CommandError(f"--compression {args.compression} applies to --format tflite; the "
                           "standalone C already stores pruned matrices as CSR")
    if args.strip_strings and fmt != "tflite":
        raise CommandError("--strip-strings applies to --format tflite; the standalone C has no "
                           "strings in its model")
    if args.weight_scales != "per-channel" and fmt != "tflite":
        raise CommandError(f"--weight-scales {args.weight_scales} applies to --format tflite; "
                           "the standalone C scales each matrix as its integer model needs")
    if args.out.exists() and not args.force:
        raise CommandError(f"output directory {str(args.out)!r} exists; pass --force to "
                           "replace it, or choose another --out")
    model = load_model(args.model)
    x = validation = None
    if args.data is not None:
        x, _ = _load_npz(args.data, "calibrate")
        validation = _validation_npz(args.data)
    elif fmt == "c":
        raise CommandError("--format c needs --data (an .npz with x_train): representative "
                           "sequences set the input scaling of the integer model")
    names = args.class_names.split(",") if args.class_names else None
    what = f"standalone C, {args.quantize} weights" if fmt == "c" else \
        f"{args.quantize}, {args.mode} mode"
    print(f"converting {args.model} for {args.target} ({what})...", file=sys.stderr, flush=True)
    note = identifier_note(args.name if args.name is not None else model.name)
    if note is not None:
        print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
    quality = {"validation_data": validation, "checks": args.checks,
               "max_accuracy_drop": args.max_accuracy_drop, "min_agreement": args.min_agreement,
               "calibration_size": args.calibration, "calibration_seed": args.calibration_seed}
    try:
        if fmt == "c":
            result = convert_c(model, target=args.target, representative_data=x,
                               precision=args.quantize, name=args.name, class_names=names,
                               **quality)
        else:
            result = convert(model, target=args.target, quantization=args.quantize,
                             mode=args.mode, representative_data=x, name=args.name,
                             class_names=names, compression=args.compression,
                             weight_scales=args.weight_scales,
                             strip_strings=args.strip_strings, **quality)
        out = result.save(args.out, force=args.force)
    except OutputExistsError as exc:
        raise CommandError(str(exc)) from exc
    except ValueError as exc:  # ConversionError, TargetFitError, UnsupportedOpError, ...
        raise CommandError(str(exc)) from exc
    print(fit_columns(result.report()))
    print(f"\nwritten to {out}")
    return 0


@subcommand
def _add_emulate(subparsers) -> None:
    parser = subparsers.add_parser(
        "emulate", help="run a converted model on the host (TFLite Micro or LiteRT)",
        description="Run the model written by `rnnedge convert` on every sequence of --data, "
        "step by step as a microcontroller would, and report accuracy, agreement with the "
        "Keras model and time per step.")
    parser.add_argument("directory", type=Path, metavar="DIR",
                        help="a directory written by `rnnedge convert` (TFLite)")
    parser.add_argument("--data", type=Path, required=True,
                        help=".npz with x_test/y_test (or x/y); `rnnedge data` writes one")
    parser.add_argument("--runtime", default="tflm", choices=("tflm", "litert",
                                                             "litert-optimized"),
                        help="tflm: the TensorFlow Lite Micro interpreter (as on the board); "
                        "litert: LiteRT with the reference kernels TFLite Micro ports; "
                        "litert-optimized: LiteRT's default kernels (default: %(default)s)")
    _add_level(parser)
    _add_sampling(parser, default="all")
    parser.set_defaults(run=_run_emulate)


def _add_level(parser) -> None:
    parser.add_argument("--level", type=int, default=None, metavar="L",
                        help="a flexible model (keras_rnnedge.flexible): run every step at level "
                        "L (0 = the cheapest; default: the top level)")


def _keras_predict(source: keras.Model, x: np.ndarray, level: int | None) -> np.ndarray:
    """The Keras model's outputs, a flexible model's at ``level`` (``None``: the top)."""
    from keras_rnnedge.flexible import WithLevel, with_level_input

    if level is not None and any(isinstance(layer, WithLevel) for layer in source.layers):
        both = with_level_input(source)  # x and the level of every step
        return both.predict([x, np.full(x.shape[:2], level, np.float32)], verbose=0)
    if len(source.inputs) == 2:
        return source.predict([x, np.full(x.shape[:2], 255, np.float32)], verbose=0)
    if level is not None:
        raise CommandError(f"--level {level}: model {source.name!r} is not flexible (it has "
                           "no level input); leave --level out.")
    return source.predict(x, verbose=0)


def _levels(level: int | None, x: np.ndarray):
    if level is None:
        return None
    if level < 0:
        raise CommandError(f"--level {level}: expected a level >= 0.")
    return np.full(x.shape[:2], level, np.int64)


def _add_sampling(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--limit", type=_POSITIVE, default=None, metavar="N",
                        help="use N windows sampled across the classes of y (as evenly as they "
                        "allow; seeded; uniformly without labels) instead of all; the report "
                        f"gives the count per class (default: {default})")
    parser.add_argument("--seed", type=_SEED, default=0,
                        help="seed of that sample (default: %(default)s)")


def _sample_windows(x: np.ndarray, y: np.ndarray | None, limit: int | None,
                    seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``limit`` windows drawn across the classes (``balanced_sample``), or all of them."""
    from keras_rnnedge.datasets import balanced_sample

    if limit is None or limit >= len(x):
        return x, y
    if y is None:
        index = np.sort(np.random.default_rng(seed).permutation(len(x))[:limit])
    else:
        index = balanced_sample(y, limit, seed)
    return x[index], None if y is None else y[index]


def _class_counts(y: np.ndarray | None, path: Path) -> str | None:
    """``per class  WALKING 2, ...`` (names from the .npz's ``class_names``), wrapped at 100."""
    import textwrap

    if y is None:
        return None
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["class_names"]] if "class_names" in data.files else []
    values, counts = np.unique(y, return_counts=True)
    parts = [f"{names[v] if 0 <= v < len(names) else f'class {v}'}\xa0{c}"
             for v, c in zip(values.tolist(), counts.tolist())]  # \xa0: keep name and count
    return "\n".join(textwrap.wrap("per class        " + ", ".join(parts), WIDTH,
                                    subsequent_indent=" " * 17)).replace("\xa0", " ")


def _load_converted(directory: Path, kind: str):
    """A directory written by ``rnnedge convert``, of ``kind`` ``"tflite"`` or ``"c"``."""
    from keras_rnnedge.converters import ConversionError, load_result

    try:
        converted = load_result(directory)
    except ConversionError as exc:
        raise CommandError(str(exc)) from exc
    if kind == "tflite" and not hasattr(converted, "flatbuffer"):
        raise CommandError(f"{str(directory)!r} holds standalone C (rnnedge convert --format c), "
                           f"not a TFLite model; run it with `rnnedge run {directory} --target "
                           "host|cortex-m4|cortex-m0|uno --data ...`")
    if kind == "c" and not hasattr(converted, "c_sources"):
        raise CommandError(f"{str(directory)!r} holds a TFLite model, not standalone C; convert "
                           "with `rnnedge convert ... --format c`, or run this one with "
                           "`rnnedge emulate`")
    return converted


def _run_emulate(args: argparse.Namespace) -> int:
    from keras_rnnedge.micro_targets.emulate import emulate

    converted = _load_converted(args.directory, "tflite")
    x, y = _load_npz(args.data, "eval")
    x, y = _sample_windows(x, y, args.limit, args.seed)
    source = _source_model(args.directory)
    x = _check_windows(x, args.data, args.directory, features=converted.features,
                       timesteps=None if converted.mode == "step" else converted.timesteps,
                       source=source, mode=converted.mode)
    try:  # checks the flatbuffer first (TFLite Micro does not verify a model it loads)
        result = emulate(converted, x, runtime=args.runtime, progress=True,
                         levels=_levels(args.level, x))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    keras_out = _keras_predict(source, x, args.level)
    pred = result.predictions()
    print(f"model            {converted.name} ({converted.mode}, {converted.quantization}) "
          f"on {args.runtime}" + ("" if args.level is None else f", level {args.level}"))
    _print_windows(x, y, args)
    if y is not None:
        print(f"accuracy         {100 * np.mean(pred == y):.2f} % (Keras: "
              f"{100 * np.mean(keras_out.argmax(-1) == y):.2f} %)")
    print(f"agreement        {100 * np.mean(pred == keras_out.argmax(-1)):.2f} % of predictions "
          "equal the Keras model's")
    span = float(np.max(keras_out) - np.min(keras_out))
    diff = float(np.max(np.abs(result.outputs - keras_out)))
    print(f"max |diff|       {diff:.4g} (dequantized outputs vs Keras; Keras's outputs span "
          f"{span:.4g}: {100 * diff / span if span else 0:.1f} % of it)")
    print(f"time per step    {1e6 * result.seconds_per_step:.1f} us (host, median)")
    if result.arena_bytes:
        print(f"arena            {result.arena_bytes:,} bytes")
    return 0


def _print_windows(x: np.ndarray, y: np.ndarray | None, args: argparse.Namespace) -> None:
    with np.load(args.data, allow_pickle=False) as data:
        available = next(len(data[k]) for k in ("x_test", "x", "x_train") if k in data.files)
    how = ("all of --data" if len(x) == available else
           f"of {available:,} in --data, sampled across the classes (seed {args.seed})"
           if y is not None else f"of {available:,} in --data, sampled (seed {args.seed})")
    print(f"windows          {len(x):,} of {x.shape[1]} steps, {how}")
    counts = _class_counts(y, args.data)
    if counts:
        print(counts)


@subcommand
def _add_run(subparsers) -> None:
    from keras_rnnedge.micro_targets.crun import RUN_TARGETS

    parser = subparsers.add_parser(
        "run", help="run standalone C on the host, a Cortex-M4 or M0 (QEMU) or an Uno (simavr)",
        epilog="RAM: the 'program' line gives the static RAM of the whole test program "
        "(.data + .bss: the model's state, the harness's buffers and the C library's; no "
        "stack); `rnnedge convert` gives the model's own need on the board: recurrent state + "
        "static data + the stack frame of its step function, measured with the board's "
        "compiler. The two figures count different things and differ.",
        description="Build the C written by `rnnedge convert --format c` for --target, run the "
        "windows of --data through it step by step (host: gcc; cortex-m4: arm-none-eabi-gcc in "
        "QEMU mps2-an386; cortex-m0: the same for the Cortex-M0 in QEMU microbit; uno: avr-gcc "
        "for the ATmega328P in simavr at 16 MHz) and report "
        "accuracy, agreement with the Keras model, bit-exactness against the host build, the "
        "cost per step and the program's flash and RAM.")
    parser.add_argument("directory", type=Path, metavar="DIR",
                        help="a directory written by `rnnedge convert --format c`")
    parser.add_argument("--target", required=True, choices=tuple(RUN_TARGETS),
                        help="host: gcc on this machine (time per step); cortex-m4: "
                        "arm-none-eabi-gcc in QEMU mps2-an386 (executed instructions); "
                        "cortex-m0: the Cortex-M0 in QEMU microbit (executed instructions); uno: "
                        "avr-gcc in simavr, ATmega328P at 16 MHz (exact cycles)")
    parser.add_argument("--data", type=Path, required=True,
                        help=".npz with x_test/y_test (or x/y); `rnnedge data` writes one")
    _add_level(parser)
    _add_sampling(parser, default="all on the host; 8 on cortex-m4, cortex-m0 and uno, which "
                  "run at emulation speed")
    parser.set_defaults(run=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from keras_rnnedge.micro_targets.crun import run_c
    from keras_rnnedge.micro_targets.harness import CompileError

    converted = _load_converted(args.directory, "c")
    x, y = _load_npz(args.data, "eval")
    limit = args.limit if args.limit is not None else (None if args.target == "host" else 8)
    x, y = _sample_windows(x, y, limit, args.seed)
    source = _source_model(args.directory)
    x = _check_windows(x, args.data, args.directory, features=converted.features,
                       timesteps=None, source=source, mode="standalone C")
    x_q = converted.quantize_input(x)
    try:
        levels = _levels(args.level, x)
        result = run_c(converted, x_q, target=args.target, progress=True, levels=levels)
        host = result if args.target == "host" else run_c(converted, x_q, target="host",
                                                          progress=True, levels=levels)
    except (ValueError, FileNotFoundError, CompileError) as exc:  # ToolchainMissingError...
        raise CommandError(str(exc)) from exc
    pred = result.predictions()
    keras_pred = _keras_predict(source, x, args.level).argmax(-1)
    print(f"model            {converted.name} (standalone C, {converted.precision} weights) on "
          f"{args.target}" + ("" if args.level is None else f", level {args.level}"))
    _print_windows(x, y, args)
    if y is not None:
        print(f"accuracy         {100 * np.mean(pred == y):.2f} % (Keras: "
              f"{100 * np.mean(keras_pred == y):.2f} %)")
    print(f"agreement        {100 * np.mean(pred == keras_pred):.2f} % of predictions equal the "
          "Keras model's")
    if args.target != "host":
        same = bool(np.array_equal(result.scores, host.scores))
        print(f"bit-exact        {'yes' if same else 'NO'}: scores "
              f"{'equal' if same else 'differ from'} the host build's")
    if result.unit == "seconds":
        print(f"time per step    {1e6 * result.per_step:.2f} us (host, mean)")
    else:
        line = f"per step         {result.per_step:,.0f} {result.unit}"
        seconds = result.seconds_per_step()
        if seconds is not None:
            line += (f" = {1e3 * seconds:.3f} ms at {result.clock_hz / 1e6:g} MHz; "
                     f"{seconds * x.shape[1]:.3f} s per {x.shape[1]}-step window")
        print(line)
        print(f"program          {result.flash_bytes:,} B flash (test windows included); "
              f"model {result.model_flash_bytes:,} B constants + {result.model_code_bytes:,} B "
              "code")
        print(f"static RAM       {result.ram_bytes:,} B: .data + .bss of the whole test program "
              "(no stack; see --help)")
    if args.target != "host" and not np.array_equal(result.scores, host.scores):
        return 1
    return 0


# -- entry point -------------------------------------------------------------------------------


_VERBOSE_HELP = ("show the logs of TensorFlow, absl and the TFLite converter (hidden by "
                 "default)")

#: Python loggers and warning sources of the libraries whose logs ``--verbose`` shows.
_NOISY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "absl", "keras", "jax",
          "ai_edge_litert", "tflite_micro")


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnedge`` parser with every registered subcommand (each takes ``--verbose``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="keras-rnnedge: compressed RNNs from Keras to microcontrollers.",
        epilog="`rnnedge COMMAND --help` describes each command. First steps: `rnnedge data "
        "har --out har.npz`, then `rnnedge demo` or `rnnedge convert`.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    for sub in subparsers.choices.values():
        if not any("--verbose" in a.option_strings for a in sub._actions):
            sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                             help=_VERBOSE_HELP)
    return parser


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Hide the logs of TensorFlow, absl and the TFLite converter while a command runs.

    Without ``verbose``: ``TF_CPP_MIN_LOG_LEVEL=3`` unless set (before TensorFlow is imported);
    the Python loggers of those libraries at ERROR; their Python warnings ignored (this
    package's own warnings still show); and the process's file descriptor 2, where their C++
    code writes (absl lines, ``fully_quantize: ...``), sent to a temporary file whose last
    lines are shown if the command fails with a traceback. Python's ``sys.stderr`` (errors,
    warnings, progress bars) keeps writing to the terminal.
    """
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    levels = {name: logging.getLogger(name).level for name in _NOISY}
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        real_stderr = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced (pytest's capture, a notebook)
        real_stderr = False
    saved_stream = sys.stderr
    with warnings.catch_warnings(), tempfile.TemporaryFile() as native:
        for name in _NOISY:
            warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
        sys.stderr.flush()
        saved_fd = os.dup(2)
        if real_stderr:
            sys.stderr = open(saved_fd, "w", buffering=1, closefd=False,  # noqa: SIM115
                              encoding=getattr(saved_stream, "encoding", None) or "utf-8",
                              errors="backslashreplace")
        os.dup2(native.fileno(), 2)
        own_crash_handler = real_stderr and not faulthandler.is_enabled()
        if own_crash_handler:  # a crash in native code still shows its Python traceback
            faulthandler.enable(file=sys.stderr)
        failed = False
        try:
            yield
        except BaseException as exc:
            failed = not isinstance(exc, (CommandError, KeyboardInterrupt, SystemExit))
            raise
        finally:
            if real_stderr:
                sys.stderr.flush()
                sys.stderr = saved_stream
            os.dup2(saved_fd, 2)
            if own_crash_handler:
                faulthandler.disable()
            os.close(saved_fd)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            if failed:
                native.seek(0)
                tail = native.read().decode(errors="replace").splitlines()[-40:]
                if tail:
                    print(f"{PROG}: the last lines the libraries logged (all with --verbose):",
                          *tail, sep="\n", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rnnedge`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        with quiet_libraries(getattr(args, "verbose", False)):
            return args.run(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
