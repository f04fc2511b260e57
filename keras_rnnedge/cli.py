"""The ``rnnedge`` command.

Usage::

    rnnedge summary MODEL.keras [--format text|markdown|json]

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

Exit codes: 0 success; 2 a usage error or a :class:`CommandError` (bad input file, invalid
option value), reported as one line ``rnnedge: error: ...`` on stderr without a traceback.
Anything else is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from keras_rnnedge import __version__, optimize
from keras_rnnedge._compat import keras
from keras_rnnedge.summary import summary

__all__ = ["SUBCOMMANDS", "CommandError", "build_parser", "load_model", "main", "subcommand"]

PROG = "rnnedge"
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
    parser.set_defaults(run=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
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
        print(result.to_text())
    return 0


@subcommand
def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a compressed FastGRNN on the bundled HAR data, report and save it",
        description="The main job: train FastGRNN (hidden 80, r_W 5, r_U 40) with hard "
        "thresholding (s_W 0.2, s_U 0.3) on the bundled HAR data, print test accuracy, "
        "model size and the summary table, and save the model.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="directory for the saved model (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=30,
                        help="total epochs, a third each dense / IHT / fine-tune "
                        "(default: %(default)s)")
    parser.add_argument("--classes", type=int, choices=(6, 2), default=6,
                        help="HAR-6 or the paper's binary HAR-2 (default: %(default)s)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="use only this many training windows (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from keras_rnnedge.demo import run_demo

    try:
        result = run_demo(args.out, epochs=args.epochs, num_classes=args.classes,
                          max_train=args.max_train, seed=args.seed,
                          log=lambda line: print(line, flush=True))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print()
    print(result.summary.to_text())
    print()
    totals = result.summary.totals
    print(f"test accuracy     {100 * result.test_accuracy:.2f} % (HAR-{result.num_classes}, "
          f"{result.epochs} epochs, {result.train_seconds:.0f} s)")
    print(f"model size        {totals.bytes_int8 / 1024:.2f} KB at int8, "
          f"{totals.bytes_f32 / 1024:.2f} KB at float32 "
          f"({totals.nonzero_params} of {totals.params} parameters non-zero)")
    print(f"saved             {result.model_path}")
    return 0


# -- entry point -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnedge`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="keras-rnnedge: compressed RNNs from Keras to microcontrollers."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rnnedge`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    try:
        return args.run(args)
    except CommandError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
