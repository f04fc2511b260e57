"""Compression search under a board's budget, on one machine or a Ray cluster.

Which cell, hidden size, matrix family, ranks, sparsity and weight bits give the best accuracy
that still fits a board and meets a latency per step? :func:`search` answers by trying them:

1. :class:`SearchSpace` spans cell kind x hidden size x input/recurrent matrix structure (any
   family of :data:`keras_rnnedge.matrices.MATRIX_FAMILIES`: a new family joins by registry) x
   density x weight precision of the integer C.
2. Before training, a configuration whose weights alone (``summary()`` int8 bytes at its
   density, twice that for int16 weights) or recurrent state exceed the board's flash or RAM is
   rejected (:func:`precheck`): nothing is trained that cannot fit.
3. Each remaining configuration is a Ray Tune trial (:func:`run_trial`): trained with the
   project's recipe (:func:`keras_rnnedge.recipe.train`, reporting the validation accuracy
   after every epoch so that ASHA stops bad trials early), converted to integer C for the board
   (:func:`~keras_rnnedge.converters.convert_c`: flash and RAM from the board's cross compiler),
   run on the host over every validation (and test) window (the deployed accuracy: the integer
   C, bit-exact with its oracle), and timed on the board's emulator (exact cycles per step in
   simavr for an AVR board; executed instructions per step in QEMU for a Cortex-M board, taken
   as cycles at one instruction per cycle). A converted model that does not fit, or misses the
   latency, is kept in the table as infeasible.
4. The results: a table, the Pareto front of deployed validation accuracy against flash and
   latency (PNG), and the best feasible model (selected on the validation split only) saved
   with its conversion.

Ray Tune runs the trials: a local Ray instance by default (no set-up), an existing cluster with
``address``; one trial per CPU by default; Tune's experiment checkpointing makes a crashed
search resumable (``resume=True``: finished trials are kept, unfinished ones run again).
Ray is an optional dependency: ``pip install "keras-rnnedge[search]"``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keras_rnnedge._compat import keras, np

__all__ = ["Constraints", "SearchResult", "SearchSpace", "TRIAL_STATUSES", "describe_config",
           "pareto_front", "precheck", "run_trial", "search"]

#: What became of a configuration.
TRIAL_STATUSES = ("feasible", "infeasible", "rejected before training", "stopped early",
                  "error")
#: Precisions of the integer C a search may choose (weight bits).
SEARCH_PRECISIONS = ("int8", "int16")
_LOW_RANK = "low_rank"


def _structure_key(spec) -> str:
    if spec is None:
        return "dense"
    if isinstance(spec, str):
        return spec
    params = ",".join(f"{k}={v}" for k, v in sorted(spec.items()) if k != "family")
    return f"{spec['family']}({params})" if params else str(spec["family"])


def describe_config(config: dict) -> str:
    """``fastgrnn-32 W dense U low_rank(rank=8) d 0.50 int8``: one configuration in a line."""
    density = "dense" if config.get("density") is None else f"d {config['density']:.2f}"
    return (f"{config['cell']}-{config['units']} W {_structure_key(config.get('kernel'))} "
            f"U {_structure_key(config.get('recurrent'))} {density} {config['precision']}")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The configurations to try: the Cartesian product of the fields.

    Attributes:
        cells: cell kinds (:data:`keras_rnnedge.recipe.CELL_KINDS`).
        units: hidden sizes.
        kernel, recurrent: structures of the input and recurrent matrices: ``None`` (dense), a
            family name or a dict such as ``{"family": "low_rank", "rank": 8}``
            (:func:`keras_rnnedge.matrices.get_structure`).
        densities: fraction of non-zeros the recipe keeps per thresholded matrix (``None``:
            dense, no thresholding).
        precisions: weight precision of the integer C (``"int8"``, ``"int16"``).
    """

    cells: tuple[str, ...] = ("fastgrnn", "gru", "lstm")
    units: tuple[int, ...] = (16, 32, 64)
    kernel: tuple = (None,)
    recurrent: tuple = (None, {"family": _LOW_RANK, "rank": 4}, {"family": _LOW_RANK, "rank": 8})
    densities: tuple = (None, 0.5, 0.25)
    precisions: tuple[str, ...] = ("int8",)

    def __post_init__(self):
        from keras_rnnedge.matrices import get_structure
        from keras_rnnedge.recipe import CELL_KINDS

        for field in ("cells", "units", "kernel", "recurrent", "densities", "precisions"):
            values = tuple(getattr(self, field))
            if not values:
                raise ValueError(f"SearchSpace.{field} is empty; give at least one value.")
            object.__setattr__(self, field, values)
        for cell in self.cells:
            if str(cell).lower() not in CELL_KINDS:
                raise ValueError(f"SearchSpace.cells: received {cell!r}; expected cell kinds "
                                 f"among {', '.join(CELL_KINDS)}.")
        for units in self.units:
            if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
                raise ValueError(f"SearchSpace.units: received {units!r}; expected positive "
                                 "integers (hidden sizes).")
        for field in ("kernel", "recurrent"):
            for spec in getattr(self, field):
                get_structure(spec, f"SearchSpace.{field}")  # raises naming the families
        for density in self.densities:
            if density is not None and not (isinstance(density, (int, float))
                                            and 0 < density <= 1):
                raise ValueError(f"SearchSpace.densities: received {density!r}; expected None "
                                 "(dense) or a fraction in (0, 1].")
        for precision in self.precisions:
            if precision not in SEARCH_PRECISIONS:
                raise ValueError(f"SearchSpace.precisions: received {precision!r}; expected "
                                 f"{' or '.join(map(repr, SEARCH_PRECISIONS))} (integer C "
                                 "weights).")

    @classmethod
    def of_families(cls, families: Sequence[str], ranks: Sequence[int] = (4, 8), **fields
                    ) -> SearchSpace:
        """A space whose recurrent structures are ``families`` (registry names), the
        low-rank family once per rank in ``ranks``."""
        from keras_rnnedge.matrices import MATRIX_FAMILIES

        recurrent: list = []
        for family in families:
            if family not in MATRIX_FAMILIES:
                raise ValueError(f"Received matrix family {family!r}; expected one of "
                                 f"{', '.join(MATRIX_FAMILIES)}.")
            if family == "dense":
                recurrent.append(None)
            elif family == _LOW_RANK:
                recurrent += [{"family": _LOW_RANK, "rank": int(r)} for r in ranks]
            else:
                recurrent.append(family)
        return cls(recurrent=tuple(recurrent), **fields)

    def configs(self) -> list[dict]:
        """Every configuration, as plain JSON-ready dicts."""
        return [{"cell": str(cell).lower(), "units": int(units), "kernel": kernel,
                 "recurrent": recurrent, "density": None if d is None else float(d),
                 "precision": precision}
                for cell, units, kernel, recurrent, d, precision in itertools.product(
                    self.cells, self.units, self.kernel, self.recurrent, self.densities,
                    self.precisions)]


@dataclasses.dataclass(frozen=True)
class Constraints:
    """What a deployed model must meet.

    Attributes:
        target: a board key (:data:`keras_rnnedge.micro_targets.boards.BOARDS`).
        max_latency_ms: time of one step on the board (``None``: no limit).
        max_flash_bytes, max_ram_bytes: tighter limits than the board's (``None``: the
            board's).
    """

    target: str = "uno"
    max_latency_ms: float | None = None
    max_flash_bytes: int | None = None
    max_ram_bytes: int | None = None

    def __post_init__(self):
        from keras_rnnedge.micro_targets.boards import get_board

        get_board(self.target)  # raises naming the boards
        if self.max_latency_ms is not None and not (
                isinstance(self.max_latency_ms, (int, float)) and self.max_latency_ms > 0):
            raise ValueError(f"Constraints.max_latency_ms: received {self.max_latency_ms!r}; "
                             "expected milliseconds > 0 or None.")
        for field in ("max_flash_bytes", "max_ram_bytes"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"Constraints.{field}: received {value!r}; expected a "
                                 "positive number of bytes or None.")

    @property
    def board(self):
        from keras_rnnedge.micro_targets.boards import get_board

        return get_board(self.target)

    def flash_limit(self) -> int | None:
        limits = [v for v in (self.max_flash_bytes, self.board.flash_bytes) if v is not None]
        return min(limits) if limits else None

    def ram_limit(self) -> int | None:
        limits = [v for v in (self.max_ram_bytes, self.board.ram_bytes) if v is not None]
        return min(limits) if limits else None


# -- one configuration ----------------------------------------------------------------------------

def build_model(config: dict, data) -> keras.Model:
    """The classifier of ``config`` (:func:`keras_rnnedge.recipe.build_classifier`)."""
    from keras_rnnedge.recipe import build_classifier, make_cell

    kwargs = {}
    if config.get("kernel") is not None:
        kwargs["kernel_structure"] = config["kernel"]
    if config.get("recurrent") is not None:
        kwargs["recurrent_structure"] = config["recurrent"]
    cell = make_cell(config["cell"], config["units"], **kwargs)
    return build_classifier(cell, data.x_train, data.num_classes)


def precheck(model: keras.Model, config: dict, constraints: Constraints) -> str | None:
    """Why ``config`` cannot fit before it is trained, or ``None``: its weights alone
    (``summary()`` int8 bytes at its density; twice that with int16 weights) against the flash
    limit, its recurrent state (int16 per element) against the RAM limit. Both are lower bounds
    of what the compiled C needs."""
    from keras_rnnedge.recipe import int8_bytes_at
    from keras_rnnedge.summary import summary

    totals = summary(model).totals
    weights = totals.bytes_int8 if config.get("density") is None else int8_bytes_at(
        model, config["density"])
    if config["precision"] == "int16":
        weights *= 2
    flash, ram = constraints.flash_limit(), constraints.ram_limit()
    board = constraints.board
    if flash is not None and weights > flash:
        return (f"its {config['precision']} weights alone take {weights:,} B (summary()); the "
                f"{board.display_name} allows {flash:,} B of flash")
    state = 2 * (totals.peak_state_elements or 0)
    if ram is not None and state > ram:
        return (f"its recurrent state alone takes {state:,} B; the {board.display_name} "
                f"allows {ram:,} B of RAM")
    return None


def _run_target(board) -> str | None:
    """The emulated target that times a board's C (:data:`~keras_rnnedge.micro_targets.crun.
    RUN_TARGETS`), or ``None`` where no emulator runs its core (the ESP32's Xtensa)."""
    return {"avr": "uno", "host": "host",
            "arm": "cortex-m0" if "M0" in board.core else "cortex-m4"}.get(board.arch)


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """How every trial runs (one object shared by all trials)."""

    constraints: Constraints
    recipe: Any = None  # keras_rnnedge.recipe.Recipe
    seed: int = 0
    latency_steps: int = 4  # time steps run on the emulator to time one step


def run_trial(config: dict, data, settings: TrialSettings, *,
              report: Callable[[dict], None] | None = None,
              artifact_dir: str | Path | None = None) -> dict:
    """Train, convert and measure one configuration; returns its final metrics.

    ``report`` receives ``{"score": val_accuracy, "phase": ..., "final": False}`` after every
    epoch (for an early-stopping scheduler) and the final metrics (``"final": True``; keys
    that Ray Tune reserves, such as ``config`` and ``done``, are not used). ``artifact_dir``
    receives ``model.keras``
    and the integer C conversion (``c/``) when the model converted.
    """
    from keras_rnnedge.converters import convert_c
    from keras_rnnedge.micro_targets.audit import TargetFitError
    from keras_rnnedge.micro_targets.crun import run_c
    from keras_rnnedge.micro_targets.harness import CompileError, ToolchainMissingError
    from keras_rnnedge.recipe import Recipe, train

    report = report or (lambda metrics: None)
    constraints = settings.constraints
    board = constraints.board
    start = time.perf_counter()
    keras.utils.set_random_seed(settings.seed)
    final: dict[str, Any] = {"label": describe_config(config), "status": "error",
                             "reason": None}

    def finish(**values) -> dict:
        final.update(values, seconds=time.perf_counter() - start)
        final["score"] = _score(final)
        report(dict(final, final=True))
        return final

    model = build_model(config, data)
    reason = precheck(model, config, constraints)
    if reason is not None:
        return finish(status="rejected before training", reason=reason)

    def on_epoch(row: dict) -> None:
        report({"score": float(row.get("val_accuracy", 0.0)), "phase": row["phase"],
                "label": final["label"], "status": "training", "final": False})

    recipe = settings.recipe or Recipe()
    if config.get("density") is None:  # a dense model gets the same epochs, all dense
        recipe = dataclasses.replace(
            recipe, dense_epochs=sum(recipe.epochs(p) for p in ("dense", "threshold", "sparse")),
            threshold_epochs=0, sparse_epochs=0)
    result = train(model, data, recipe, density=config.get("density"), log=None,
                   progress=False, on_epoch=on_epoch)
    final.update(val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy,
                 density=result.density)
    try:
        c = convert_c(result.model, target=board.key, representative_data=data.x_train,
                      precision=config["precision"], checks="warn", progress=False)
    except TargetFitError as exc:
        fit = getattr(exc, "report", None)  # the CFit of the standalone C
        return finish(status="infeasible", reason=str(exc).splitlines()[0],
                      flash_bytes=getattr(fit, "flash_needed", None),
                      ram_bytes=getattr(fit, "ram_needed", None))
    final.update(flash_bytes=int(c.fit.flash_needed), ram_bytes=int(c.fit.ram_needed),
                 size_measured=bool(c.fit.measured))
    val = run_c(c, c.quantize_input(data.x_val), target="host", progress=False)
    final["c_val_accuracy"] = float(np.mean(val.predictions() == data.y_val))
    if getattr(data, "x_test", None) is not None:
        test = run_c(c, c.quantize_input(data.x_test), target="host", progress=False)
        final["c_test_accuracy"] = float(np.mean(test.predictions() == data.y_test))
    latency_reason = None
    run_target = _run_target(board)
    timed = None
    if run_target is None:
        latency_reason = f"not timed: no emulator runs the {board.display_name}'s {board.core}"
    else:
        try:
            timed = run_c(c, c.quantize_input(data.x_val[:1, :settings.latency_steps]),
                          target=run_target, progress=False)
        except (ToolchainMissingError, CompileError) as exc:
            latency_reason = f"not timed on {run_target}: {str(exc).splitlines()[0]}"
    if timed is not None:
        final.update(per_step=float(timed.per_step), per_step_unit=timed.unit,
                     timed_on=run_target)
        if timed.unit == "seconds":
            final["latency_ms"] = 1000 * timed.per_step
        elif board.clock_hz:
            final["latency_ms"] = 1000 * timed.per_step / board.clock_hz
    if artifact_dir is not None:
        out = Path(artifact_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.model.save(out / "model.keras")
        c.save(out / "c", force=True)
        final["artifact_dir"] = str(out)
    problems = []
    flash, ram = constraints.flash_limit(), constraints.ram_limit()
    if flash is not None and final["flash_bytes"] > flash:
        problems.append(f"flash {final['flash_bytes']:,} B > {flash:,} B")
    if ram is not None and final["ram_bytes"] > ram:
        problems.append(f"RAM {final['ram_bytes']:,} B > {ram:,} B")
    if constraints.max_latency_ms is not None:
        latency = final.get("latency_ms")
        if latency is None:
            problems.append(latency_reason or "latency not measured")
        elif latency > constraints.max_latency_ms:
            problems.append(f"latency {latency:.3g} ms per step > "
                            f"{constraints.max_latency_ms:g} ms")
    return finish(status="infeasible" if problems else "feasible",
                  reason="; ".join(problems) or latency_reason)


def _score(metrics: dict) -> float:
    """What the scheduler and the ranking maximise: the deployed validation accuracy of a
    feasible model; below any feasible model otherwise."""
    acc = metrics.get("c_val_accuracy")
    if metrics.get("status") == "feasible" and acc is not None:
        return float(acc)
    if acc is not None:
        return float(acc) - 2.0
    return -3.0


# -- the search ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found.

    Attributes:
        rows: one dict per configuration (``config``, ``params`` (the configuration),
            ``status`` of :data:`TRIAL_STATUSES`, ``reason``, and the measured metrics:
            ``val_accuracy`` (Keras), ``c_val_accuracy``, ``c_test_accuracy`` (integer C),
            ``flash_bytes``, ``ram_bytes``, ``latency_ms``, ``per_step``...).
        pareto: indices into ``rows`` of the feasible trials no other feasible trial beats on
            deployed validation accuracy, flash and latency at once.
        best: index of the best feasible trial (highest deployed validation accuracy, then
            smaller flash), or ``None``.
        out: the output directory (``results.json``, ``results.md``, ``pareto.png``,
            ``best/``).
        seconds: wall time of the search.
    """

    rows: tuple[dict, ...]
    pareto: tuple[int, ...]
    best: int | None
    out: Path
    seconds: float

    @property
    def best_row(self) -> dict | None:
        return None if self.best is None else self.rows[self.best]

    def to_text(self) -> str:
        """The results as a Markdown table, the Pareto front marked."""
        head = ("| # | configuration | status | Keras val % | C val % | C test % | flash B | "
                "RAM B | ms/step | note |")
        lines = [head, "|" + "---|" * 10]

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}"

        def num(v, fmt="{:,}"):
            return "-" if v is None else fmt.format(v)

        for i, r in enumerate(self.rows):
            mark = (" **best**" if i == self.best else "") + (" (Pareto)" if i in self.pareto
                                                               else "")
            lines.append(
                f"| {i} | {r['config']}{mark} | {r['status']} | {pct(r.get('val_accuracy'))} | "
                f"{pct(r.get('c_val_accuracy'))} | {pct(r.get('c_test_accuracy'))} | "
                f"{num(r.get('flash_bytes'))} | {num(r.get('ram_bytes'))} | "
                f"{num(r.get('latency_ms'), '{:.3g}')} | {(r.get('reason') or '')[:120]} |")
        return "\n".join(lines)


def pareto_front(rows: Sequence[dict]) -> tuple[int, ...]:
    """Indices of the feasible rows that no other feasible row dominates: at least as
    accurate (``c_val_accuracy``), as small (``flash_bytes``) and as fast (``latency_ms``;
    unknown counts as slowest), better in one."""
    feasible = [i for i, r in enumerate(rows) if r.get("status") == "feasible"]

    def key(r):
        latency = r.get("latency_ms")
        return (-r["c_val_accuracy"], r["flash_bytes"],
                math.inf if latency is None else latency)

    front = []
    for i in feasible:
        a = key(rows[i])
        dominated = any(all(x <= y for x, y in zip(key(rows[j]), a)) and key(rows[j]) != a
                        for j in feasible if j != i)
        if not dominated:
            front.append(i)
    return tuple(front)


class _Logger:
    """One line per finished trial (a Ray Tune callback when Ray is there)."""

    def __init__(self, log):
        self.log = log

    def line(self, metrics: dict) -> None:
        acc = metrics.get("c_val_accuracy")
        latency = metrics.get("latency_ms")
        self.log(f"  {metrics.get('label', '?')}: {metrics.get('status')}"
                 + ("" if acc is None else f", C val {100 * acc:.2f} %")
                 + ("" if metrics.get("flash_bytes") is None
                    else f", flash {metrics['flash_bytes']:,} B")
                 + ("" if latency is None else f", {latency:.3g} ms/step")
                 + ("" if not metrics.get("reason") else f" ({metrics['reason'][:100]})"))


def _trainable(config: dict, data=None, settings: TrialSettings | None = None) -> None:
    """The Ray Tune function trainable: one configuration (``config["trial"]``)."""
    from ray import tune

    trial_dir = Path(tune.get_context().get_trial_dir())
    run_trial(config["trial"], data, settings, report=tune.report,
              artifact_dir=trial_dir / "artifacts")


def search(data, *, target: str = "uno", space: SearchSpace | None = None,
           constraints: Constraints | None = None, recipe=None, max_trials: int | None = None,
           seed: int = 0, address: str | None = None, cpus_per_trial: float = 1.0,
           max_concurrent: int | None = None, out: str | Path = "runs/search",
           name: str = "search", resume: bool = False, early_stopping: bool = True,
           latency_steps: int = 4, log: Callable[[str], None] | None = print) -> SearchResult:
    """Search ``space`` for the most accurate model that fits ``constraints``, on Ray Tune.

    Args:
        data: a :class:`~keras_rnnedge.datasets.Dataset` with a validation split (the choice
            is made on it; the test split, if any, is only reported).
        target: board key (used when ``constraints`` is not given).
        space: the configurations (default :class:`SearchSpace`).
        constraints: board and limits (default: ``Constraints(target)``).
        recipe: the :class:`~keras_rnnedge.recipe.Recipe` every trial trains with.
        max_trials: at most this many configurations are trained (a seeded random choice
            among those that pass :func:`precheck`; default: all).
        seed: seed of that choice and of every trial's initialisation.
        address: an existing Ray cluster (``"ray://host:10001"`` or ``"auto"``); ``None``:
            a local Ray instance on this machine.
        cpus_per_trial: CPUs Ray reserves per trial (one trial per CPU by default).
        max_concurrent: at most this many trials at once (default: as the CPUs allow).
        out: output directory (Tune's experiment under ``out/name``, the results, ``best/``).
        name: experiment name.
        resume: continue the experiment ``out/name`` after a crash (finished trials kept).
        early_stopping: ASHA stops trials whose validation accuracy trails the others'.
        latency_steps: time steps run on the board's emulator to time one step.
        log: called with progress lines (``None``: silent).

    Returns:
        A :class:`SearchResult`; ``out`` holds ``results.json``, ``results.md``,
        ``pareto.png`` and ``best/`` (``model.keras`` and its C conversion).

    Raises:
        ImportError: Ray Tune is not installed (the message says how to install it).
        ValueError: bad arguments, or a dataset without validation split.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables off: one line per trial
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
    except ImportError as exc:
        raise ImportError("keras_rnnedge.search runs its trials on Ray Tune, which is not "
                          "installed: pip install 'keras-rnnedge[search]' (or 'ray[tune]')."
                          ) from exc
    from keras_rnnedge.recipe import Recipe

    log = log or (lambda line: None)
    start = time.perf_counter()
    if getattr(data, "x_val", None) is None or getattr(data, "y_val", None) is None:
        raise ValueError("search() chooses on the validation split: give a Dataset with "
                         "x_val/y_val (e.g. load_har(..., validation_split=0.1)).")
    constraints = constraints or Constraints(target)
    space = space or SearchSpace()
    recipe = recipe or Recipe()
    if max_trials is not None and (isinstance(max_trials, bool) or not isinstance(
            max_trials, int) or max_trials < 1):
        raise ValueError(f"max_trials: received {max_trials!r}; expected a positive integer "
                         "or None.")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    configs = space.configs()
    order = np.random.default_rng(seed).permutation(len(configs))
    rows: list[dict] = []
    chosen: list[dict] = []
    for index in order:
        config = configs[int(index)]
        try:
            reason = precheck(build_model(config, data), config, constraints)
        except ValueError as exc:  # a structure that does not apply to this cell or size
            reason = f"cannot build it: {str(exc).splitlines()[0]}"
        keras.backend.clear_session()  # the models built to check are not kept
        if reason is not None:
            rows.append({"config": describe_config(config), "params": config,
                         "status": "rejected before training", "reason": reason})
        elif max_trials is None or len(chosen) < max_trials:
            chosen.append(config)
    log(f"search: {len(configs)} configurations, {len(rows)} rejected before training, "
        f"{len(chosen)} to train on {constraints.board.display_name}")
    if chosen:
        rows += _run_tune(ray, tune, ASHAScheduler, chosen, data, constraints, recipe, seed,
                          address, cpus_per_trial, max_concurrent, out, name, resume,
                          early_stopping, latency_steps, log)
    front = pareto_front(rows)
    feasible = [i for i, r in enumerate(rows) if r["status"] == "feasible"]
    best = max(feasible, key=lambda i: (rows[i]["c_val_accuracy"], -rows[i]["flash_bytes"]),
               default=None)
    result = SearchResult(rows=tuple(rows), pareto=front, best=best, out=out,
                          seconds=time.perf_counter() - start)
    _write(result, constraints, log)
    return result


def _run_tune(ray, tune, asha, chosen, data, constraints, recipe, seed, address, cpus_per_trial,
              max_concurrent, out: Path, name: str, resume: bool, early_stopping: bool,
              latency_steps: int, log) -> list[dict]:
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    settings = TrialSettings(constraints=constraints, recipe=recipe, seed=seed,
                             latency_steps=latency_steps)
    trainable = tune.with_resources(tune.with_parameters(_trainable, data=data,
                                                         settings=settings),
                                    {"cpu": cpus_per_trial})
    logger = _Logger(log)

    class Progress(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("final") is True:
                logger.line(result)

    epochs = sum(recipe.epochs(p) for p in ("dense", "threshold", "sparse", "qat"))
    scheduler = None
    if early_stopping:
        # every trial finishes its dense phase before it is compared
        scheduler = asha(time_attr="training_iteration", max_t=epochs + 1,
                         grace_period=max(1, min(recipe.epochs("dense"), epochs)),
                         reduction_factor=2)
    path = out / name
    if resume and tune.Tuner.can_restore(str(path)):
        log(f"search: resuming {path}")
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        if path.exists() and not resume:
            shutil.rmtree(path)
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(chosen)},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler,
                                        max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(storage_path=str(out), name=name, verbose=0,
                                      callbacks=[Progress()]))
    grid = tuner.fit()
    rows = {}
    for result in grid:
        config = (result.config or {}).get("trial")
        metrics = dict(result.metrics or {})
        row = {"config": describe_config(config) if config else "?", "params": config}
        if result.error is not None:
            row.update(status="error", reason=str(result.error).strip().splitlines()[-1][:300])
        elif metrics.get("final") is True and metrics.get("status") in TRIAL_STATUSES:
            row.update({k: v for k, v in metrics.items() if k in _METRIC_KEYS})
        else:
            row.update(status="stopped early", val_accuracy=metrics.get("score"),
                       reason=f"ASHA stopped it in the {metrics.get('phase', '?')} phase")
        rows[row["config"]] = row
    # in the order chosen (Tune's order differs after a restore)
    return [rows.get(describe_config(c), {"config": describe_config(c), "params": c,
                                          "status": "error", "reason": "Ray Tune ran no trial"})
            for c in chosen]


_METRIC_KEYS = ("status", "reason", "val_accuracy", "test_accuracy", "density", "flash_bytes",
                "ram_bytes", "size_measured", "c_val_accuracy", "c_test_accuracy", "per_step",
                "per_step_unit", "timed_on", "latency_ms", "artifact_dir", "seconds", "score")


def _write(result: SearchResult, constraints: Constraints, log) -> None:
    out = result.out
    best_dir = out / "best"
    if best_dir.exists():
        shutil.rmtree(best_dir)
    best = result.best_row
    if best is not None and best.get("artifact_dir") and Path(best["artifact_dir"]).is_dir():
        shutil.copytree(best["artifact_dir"], best_dir)
    payload = {"target": constraints.target, "constraints": dataclasses.asdict(constraints),
               "seconds": result.seconds, "best": result.best, "pareto": list(result.pareto),
               "rows": list(result.rows)}
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (out / "results.md").write_text(result.to_text() + "\n")
    png = plot_pareto(result, out / "pareto.png", constraints)
    log(f"search: {len(result.rows)} configurations in {result.seconds:.0f} s; results in "
        f"{out}" + ("" if png is None else f" (Pareto plot {png.name})"))
    if best is not None:
        log(f"search: best {best['config']}: C val {100 * best['c_val_accuracy']:.2f} %, "
            f"flash {best['flash_bytes']:,} B" + ("" if not best_dir.exists()
                                                  else f"; saved to {best_dir}"))
    else:
        log("search: no configuration fits the constraints")


def plot_pareto(result: SearchResult, path: str | Path, constraints: Constraints
                ) -> Path | None:
    """Deployed validation accuracy against flash and against latency (PNG); ``None`` without
    matplotlib or without a converted trial."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in result.rows if r.get("c_val_accuracy") is not None]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], "flash_bytes", "flash (bytes)"),
                           (axes[1], "latency_ms", "latency per step (ms)")):
        for feasible, style in ((False, dict(marker="x", color="0.6", label="infeasible")),
                                (True, dict(marker="o", color="C0", label="feasible"))):
            pts = [(r[key], 100 * r["c_val_accuracy"]) for r in rows
                   if r.get(key) is not None and (r["status"] == "feasible") == feasible]
            if pts:
                ax.scatter(*zip(*pts), **style)
        front = sorted((result.rows[i][key], 100 * result.rows[i]["c_val_accuracy"])
                       for i in result.pareto if result.rows[i].get(key) is not None)
        if front:
            ax.plot(*zip(*front), color="C3", marker="o", label="Pareto front")
        if key == "flash_bytes" and constraints.flash_limit():
            ax.axvline(constraints.flash_limit(), color="C1", linestyle="--", label="flash limit")
        if key == "latency_ms" and constraints.max_latency_ms:
            ax.axvline(constraints.max_latency_ms, color="C1", linestyle="--",
                       label="latency limit")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("integer C validation accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Search on {constraints.board.display_name}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
