"""The ``rnnedge`` command.

Usage::

    rnnedge demo [--epochs N] [--classes 6|2] [--out DIR]
    rnnedge summary MODEL.keras [--format text|markdown|json]
    rnnedge convert MODEL.keras --target BOARD --quantize int8 [--mode step] --data DATA.npz
                    --out DIR [--force]
    rnnedge convert MODEL.keras --target uno [--format c] [--quantize int8|int16] --data DATA.npz
                    --out DIR [--force]
    rnnedge emulate DIR --data DATA.npz [--runtime tflm|litert] [--limit N]
    rnnedge run DIR --target host|cortex-m4|uno --data DATA.npz [--limit N]

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
from keras_rnnedge._compat import keras, np
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
        "model size and the summary table, save the model, export it for --target (int8 "
        "TFLite, emulated in TFLite Micro) and as standalone integer C for --c-target (run "
        "on the host and on the emulated board).",
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
    parser.add_argument("--target", default="nano33ble",
                        help="board to export for and emulate (default: %(default)s); "
                        "'none' skips the export")
    parser.add_argument("--max-test", type=int, default=None,
                        help="emulate only this many test windows (default: all)")
    parser.add_argument("--c-target", default="uno",
                        help="board to export standalone integer C for (default: %(default)s); "
                        "'none' skips it")
    parser.add_argument("--c-emulated", type=int, default=2,
                        help="test windows to run on the emulated --c-target (default: "
                        "%(default)s; simavr runs at a few times real time)")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from keras_rnnedge.demo import run_demo

    try:
        result = run_demo(args.out, epochs=args.epochs, num_classes=args.classes,
                          max_train=args.max_train, seed=args.seed,
                          log=lambda line: print(line, flush=True),
                          target=None if args.target == "none" else args.target,
                          max_test=args.max_test,
                          c_target=None if args.c_target == "none" else args.c_target,
                          c_emulated_windows=args.c_emulated)
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
    if result.conversion is not None:
        conv = result.conversion
        audit = conv.audit
        print(f"exported          {result.export_path} (int8, step mode, "
              f"{conv.target.display_name}: flatbuffer {len(conv.flatbuffer):,} B, "
              f"TFLM arena {audit.arena_bytes:,} B, fits: {'yes' if audit.fits else 'no'})")
        print(f"int8 on TFLM      {100 * result.int8_accuracy:.2f} % test accuracy over "
              f"{result.emulated_windows} windows; {100 * result.int8_agreement:.2f} % of "
              f"predictions equal Keras; {1e6 * result.int8_seconds_per_step:.1f} us per "
              "step on this host")
    if result.c_conversion is not None:
        conv = result.c_conversion
        print(f"exported C        {result.c_export_path} (standalone int8 C, "
              f"{conv.target.display_name}: {conv.fit.flash_needed:,} B flash, "
              f"{conv.fit.ram_needed:,} B RAM)")
        print(f"C on the host     {100 * result.c_accuracy:.2f} % test accuracy; "
              f"{100 * result.c_agreement:.2f} % of predictions equal Keras")
        em = result.c_emulated
        if em is not None:
            seconds = em.seconds_per_step()
            timing = (f"{em.per_step:,.0f} {em.unit} per step"
                      + (f" = {seconds * conv.timesteps:.2f} s per {conv.timesteps}-step "
                         f"window at "
                         f"{em.clock_hz / 1e6:g} MHz" if seconds is not None else ""))
            print(f"C on {em.target:<12} {len(em.scores)} windows, "
                  f"{'bit-exact with' if result.c_bit_exact else 'DIFFERENT from'} the host "
                  f"build; {timing}")
        elif result.c_skipped:
            print(f"C emulation       skipped: {result.c_skipped}")
    return 0


def _load_npz(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) from an .npz: ``x_test``/``y_test`` for evaluation, ``x_train`` for calibration,
    else ``x``/``y``."""
    if not path.is_file():
        raise CommandError(f"cannot read data {str(path)!r}: no such file; expected an .npz "
                           "with x (N, timesteps, features) and optionally y")
    order = ("x_test", "x", "x_train") if kind == "eval" else ("x_train", "x", "x_test")
    try:
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in order if k in data.files), None)
            if key is None:
                raise CommandError(f"data {str(path)!r} has arrays {sorted(data.files)}; expected "
                                   f"one of {list(order)}")
            x = np.asarray(data[key], np.float32)
            label = key.replace("x", "y", 1)
            y = np.asarray(data[label]) if label in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CommandError(f"cannot read data {str(path)!r}: {exc}; expected an .npz file") \
            from exc
    if x.ndim != 3:
        raise CommandError(f"data {str(path)!r}: {key} has shape {x.shape}; expected "
                           "(N, timesteps, features)")
    return x, y


def _progress(label: str):
    """A one-line progress bar on stderr, for long loops."""
    width = 30

    def update(done: int, total: int) -> None:
        filled = int(width * done / max(total, 1))
        end = "\n" if done >= total else ""
        print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end,
              file=sys.stderr, flush=True)

    return update


@subcommand
def _add_convert(subparsers) -> None:
    from keras_rnnedge.converters import C_PRECISIONS, MODES, QUANTIZATIONS

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
    parser.add_argument("model", type=Path, metavar="MODEL.keras")
    parser.add_argument("--target", required=True, help="board: nano33ble, uno, due, mkrzero, "
                        "mkr1000, pico, stm32f746disco, esp32 or host")
    parser.add_argument("--format", default=None, choices=("tflite", "c"),
                        help="tflite (TFLite Micro) or c (standalone C); default: tflite where "
                        "TFLite Micro runs, else c")
    parser.add_argument("--quantize", default="int8",
                        help=f"tflite: {', '.join(QUANTIZATIONS)}; c: {', '.join(C_PRECISIONS)} "
                        "weights (default: %(default)s)")
    parser.add_argument("--mode", default="step", choices=MODES,
                        help="tflite only (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None,
                        help=".npz with x_train (or x): representative sequences, needed for "
                        "int8 and int16x8 and for --format c")
    parser.add_argument("--calibration", type=int, default=64,
                        help="number of sequences used for calibration (default: %(default)s)")
    parser.add_argument("--name", default=None, help="C name of the model (default: its name)")
    parser.add_argument("--class-names", default=None,
                        help="comma-separated class names printed by the sketch")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
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
    if args.out.exists() and not args.force:
        raise CommandError(f"output directory {str(args.out)!r} exists; pass --force to "
                           "replace it, or choose another --out")
    model = load_model(args.model)
    x = None
    if args.data is not None:
        x, _ = _load_npz(args.data, "calibrate")
        x = x[: max(args.calibration, 1)]
    elif fmt == "c":
        raise CommandError("--format c needs --data (an .npz with x_train): representative "
                           "sequences set the input scaling of the integer model")
    names = args.class_names.split(",") if args.class_names else None
    what = f"standalone C, {args.quantize} weights" if fmt == "c" else \
        f"{args.quantize}, {args.mode} mode"
    print(f"converting {args.model} for {args.target} ({what})...", file=sys.stderr, flush=True)
    try:
        if fmt == "c":
            result = convert_c(model, target=args.target, representative_data=x,
                               precision=args.quantize, name=args.name, class_names=names)
        else:
            result = convert(model, target=args.target, quantization=args.quantize,
                             mode=args.mode, representative_data=x, name=args.name,
                             class_names=names)
        out = result.save(args.out, force=args.force)
    except OutputExistsError as exc:
        raise CommandError(str(exc)) from exc
    except ValueError as exc:  # ConversionError, TargetFitError, UnsupportedOpError, ...
        raise CommandError(str(exc)) from exc
    print(result.report())
    print(f"\nwritten to {out}")
    return 0


@subcommand
def _add_emulate(subparsers) -> None:
    parser = subparsers.add_parser(
        "emulate", help="run a converted model on the host (TFLite Micro or LiteRT)",
        description="Run the model written by `rnnedge convert` on every sequence of --data, "
        "step by step as a microcontroller would, and report accuracy, agreement with the "
        "Keras model and time per step.")
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--data", type=Path, required=True,
                        help=".npz with x_test/y_test (or x/y)")
    parser.add_argument("--runtime", default="tflm", choices=("tflm", "litert",
                                                             "litert-optimized"))
    parser.add_argument("--limit", type=int, default=None, help="use the first N sequences")
    parser.set_defaults(run=_run_emulate)


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
                           "host|cortex-m4|uno --data ...`")
    if kind == "c" and not hasattr(converted, "c_sources"):
        raise CommandError(f"{str(directory)!r} holds a TFLite model, not standalone C; convert "
                           "with `rnnedge convert ... --format c`, or run this one with "
                           "`rnnedge emulate`")
    return converted


def _run_emulate(args: argparse.Namespace) -> int:
    from keras_rnnedge.micro_targets.emulate import emulate

    converted = _load_converted(args.directory, "tflite")
    x, y = _load_npz(args.data, "eval")
    if args.limit:
        x, y = x[: args.limit], None if y is None else y[: args.limit]
    if x.shape[-1] != converted.features:
        raise CommandError(f"data has {x.shape[-1]} features per step; the model takes "
                           f"{converted.features}")
    try:
        result = emulate(converted, x, runtime=args.runtime,
                         progress=_progress(f"{args.runtime}"))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    keras_out = converted.source_model().predict(x, verbose=0)
    pred = result.predictions()
    print(f"model            {converted.name} ({converted.mode}, {converted.quantization}) "
          f"on {args.runtime}")
    print(f"sequences        {len(x)} of {x.shape[1]} steps")
    if y is not None:
        print(f"accuracy         {100 * np.mean(pred == y):.2f} % (Keras: "
              f"{100 * np.mean(keras_out.argmax(-1) == y):.2f} %)")
    print(f"agreement        {100 * np.mean(pred == keras_out.argmax(-1)):.2f} % of predictions "
          "equal the Keras model's")
    print(f"max |diff|       {np.max(np.abs(result.outputs - keras_out)):.4g} (outputs vs Keras)")
    print(f"time per step    {1e6 * result.seconds_per_step:.1f} us (host, median)")
    if result.arena_bytes:
        print(f"arena            {result.arena_bytes:,} bytes")
    return 0


@subcommand
def _add_run(subparsers) -> None:
    from keras_rnnedge.micro_targets.crun import RUN_TARGETS

    parser = subparsers.add_parser(
        "run", help="run standalone C on the host, a Cortex-M4 (QEMU) or an Uno (simavr)",
        description="Build the C written by `rnnedge convert --format c` for --target, run the "
        "windows of --data through it step by step (host: gcc; cortex-m4: arm-none-eabi-gcc in "
        "QEMU mps2-an386; uno: avr-gcc for the ATmega328P in simavr at 16 MHz) and report "
        "accuracy, agreement with the Keras model, bit-exactness against the host build, the "
        "cost per step and the program's flash and RAM.")
    parser.add_argument("directory", type=Path, metavar="DIR")
    parser.add_argument("--target", required=True, choices=tuple(RUN_TARGETS))
    parser.add_argument("--data", type=Path, required=True,
                        help=".npz with x_test/y_test (or x/y)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use the first N sequences (default: all on the host, 8 on the "
                        "emulated targets, which run at emulation speed)")
    parser.set_defaults(run=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from keras_rnnedge.micro_targets.crun import run_c
    from keras_rnnedge.micro_targets.harness import CompileError

    converted = _load_converted(args.directory, "c")
    x, y = _load_npz(args.data, "eval")
    limit = args.limit if args.limit is not None else (None if args.target == "host" else 8)
    if limit is not None:
        if limit < 1:
            raise CommandError(f"--limit must be at least 1, got {limit}")
        x, y = x[:limit], None if y is None else y[:limit]
    if x.shape[-1] != converted.features:
        raise CommandError(f"data has {x.shape[-1]} features per step; the model takes "
                           f"{converted.features}")
    x_q = converted.quantize_input(x)
    try:
        result = run_c(converted, x_q, target=args.target, progress=_progress(args.target))
        host = result if args.target == "host" else run_c(converted, x_q, target="host")
    except (ValueError, FileNotFoundError, CompileError) as exc:  # ToolchainMissingError...
        raise CommandError(str(exc)) from exc
    pred = result.predictions()
    keras_pred = converted.source_model().predict(x, verbose=0).argmax(-1)
    print(f"model            {converted.name} (standalone C, {converted.precision} weights) on "
          f"{args.target}")
    print(f"sequences        {len(x)} of {x.shape[1]} steps")
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
        print(f"program          {result.flash_bytes:,} B flash (test windows included), "
              f"{result.ram_bytes:,} B static RAM; model {result.model_flash_bytes:,} B "
              f"constants + {result.model_code_bytes:,} B code")
    if args.target != "host" and not np.array_equal(result.scores, host.scores):
        return 1
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
