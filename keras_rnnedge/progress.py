"""Progress bars for the steps that take more than a few seconds (tqdm, on stderr).

Every function that can run long takes the same keyword, ``progress``:
:func:`~keras_rnnedge.converters.convert`, :func:`~keras_rnnedge.converters.convert_c`,
:func:`~keras_rnnedge.micro_targets.emulate.emulate`,
:func:`~keras_rnnedge.micro_targets.crun.run_c` and :func:`~keras_rnnedge.demo.run_demo`.

* ``progress=True`` (the default): a bar on stderr with the count, elapsed time and ETA, drawn
  only when stderr is a terminal; in logs, CI and captured test output nothing is written.
* ``progress=False`` (or ``None``): no bar.
* a callable ``progress(done, total)``: called after each unit of work instead of a bar.

A step run inside another one (the TFLite Micro check inside ``convert``, calibration inside
it) follows the outer step: no bar when the caller turned its own off, a nested bar otherwise.

This module needs only the standard library and tqdm (imported when a bar is drawn).
"""

from __future__ import annotations

import contextvars
import functools
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Bar", "ProgressArg", "check_progress", "progress_bar", "stage", "with_stages"]

#: What the ``progress`` keyword accepts.
ProgressArg = bool | Callable[[int, int], None] | None

T = TypeVar("T")

#: The innermost open bar (``None`` outside any): nested bars follow its choice.
_CURRENT: contextvars.ContextVar[Bar | None] = contextvars.ContextVar("rnnedge_bar",
                                                                      default=None)


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def check_progress(progress: Any) -> ProgressArg:
    """Return ``progress`` if it is ``True``, ``False``, ``None`` or a callable, else raise.

    Raises:
        ValueError: naming the value received.
    """
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise ValueError(f"Expected progress to be True, False or a callable f(done, total), but "
                     f"got {progress!r}.")


class Bar:
    """One progress bar (a tqdm bar, a callback, or nothing); use :func:`progress_bar`.

    Calling the bar, ``bar(done, total)``, sets the count, so a bar can be passed wherever a
    ``progress(done, total)`` callable is expected.
    """

    def __init__(self, progress: ProgressArg, description: str, total: int | None = None,
                 unit: str = "it", leave: bool | None = None):
        progress = check_progress(progress)
        outer = _CURRENT.get()
        self._callback = progress if callable(progress) and progress is not True else None
        if progress is True:
            enabled = outer.drawing if outer is not None else _stderr_is_terminal()
        else:
            enabled = False
        #: Whether a bar is drawn on stderr.
        self.drawing = enabled
        self.total = total
        self.done = 0
        self._tqdm = None
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=description, unit=unit, file=sys.stderr,
                              leave=outer is None if leave is None else leave,
                              dynamic_ncols=True, mininterval=0.2)
        self._token = _CURRENT.set(self)

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)

    def update(self, done: int, total: int | None = None) -> None:
        """Set the count to ``done`` (of ``total``, if given)."""
        if total is not None and total != self.total:
            self.total = total
            if self._tqdm is not None:
                self._tqdm.total = total
        if self._tqdm is not None:
            self._tqdm.update(done - self.done)
        self.done = done
        if self._callback is not None:
            self._callback(done, self.total if self.total is not None else done)

    def advance(self, n: int = 1) -> None:
        """Add ``n`` to the count."""
        self.update(self.done + n)

    def describe(self, text: str) -> None:
        """Change the label in front of the bar."""
        if self._tqdm is not None:
            self._tqdm.set_description_str(text)

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # closed from another context: forget it there
                _CURRENT.set(None)
            self._token = None
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(progress: ProgressArg, description: str, total: int | None = None, *,
                 unit: str = "it", leave: bool | None = None) -> Bar:
    """A :class:`Bar` for ``progress`` (see the module docstring); use it as a context manager.

    ``leave``: keep the finished bar on screen (default: a top-level bar stays, a nested one
    is cleared).

    Example:
        >>> with progress_bar(False, "emulating", total=3) as bar:
        ...     for i in range(3):
        ...         bar.advance()
    """
    return Bar(progress, description, total, unit, leave)


def iterate(items: Iterable[T], description: str, total: int | None = None, *,
            unit: str = "it") -> Iterator[T]:
    """Yield ``items`` while a nested bar (following the enclosing one) counts them."""
    with Bar(True if _CURRENT.get() is not None else False, description, total, unit) as bar:
        for item in items:
            yield item
            bar.advance()


def stage(description: str) -> None:
    """Advance the enclosing :func:`with_stages` bar to the next stage, named ``description``."""
    bar = _CURRENT.get()
    if bar is not None and getattr(bar, "_stages", False):
        if bar.done or getattr(bar, "_started", False):
            bar.advance()
        bar._started = True
        bar.describe(description)


def _reissue(caught: list, caller) -> None:
    """Issue the warnings recorded inside a :func:`with_stages` function again, under the
    filters in force: those that named this wrapper (``stacklevel`` aimed at the function's
    caller) now name the caller, as they would without the wrapper."""
    for w in caught:
        if w.filename == __file__:
            globals_ = caller.f_globals
            warnings.warn_explicit(w.message, w.category, caller.f_code.co_filename,
                                   caller.f_lineno, module=globals_.get("__name__"),
                                   registry=globals_.setdefault("__warningregistry__", {}),
                                   source=w.source)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno,
                                   source=w.source)


def with_stages(description: str, stages: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a function taking ``progress=`` so that a bar of ``stages`` steps is open while
    it runs; the function marks each step with :func:`stage`."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    with Bar(kwargs.get("progress", True), description, stages, "stage") as bar:
                        bar._stages = True
                        result = function(*args, **kwargs)
                        bar.update(stages)
                        return result
            finally:
                _reissue(caught, caller)

        return wrapper

    return decorate
