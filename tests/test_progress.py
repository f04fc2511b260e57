"""keras_rnnedge.progress: one ``progress`` keyword for every long step, bars only on a terminal."""

from __future__ import annotations

import inspect

import pytest

from keras_rnnedge import progress as progress_module
from keras_rnnedge.progress import check_progress, iterate, progress_bar, stage, with_stages


@pytest.fixture
def terminal(monkeypatch):
    """Pretend stderr is a terminal, so that ``progress=True`` draws."""
    monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: True)


def test_a_callable_gets_done_and_total(capfd):
    calls = []
    with progress_bar(lambda done, total: calls.append((done, total)), "x", total=3) as bar:
        for _ in range(3):
            bar.advance()
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert capfd.readouterr().err == ""


def test_no_bar_off_a_terminal_or_when_turned_off(capfd):
    for value in (True, False, None):
        with progress_bar(value, "quiet", total=2) as bar:
            bar.advance(2)
            assert not bar.drawing
    assert capfd.readouterr().err == ""


def test_a_bar_with_count_and_eta_on_a_terminal(terminal, capsys):
    with progress_bar(True, "emulating", total=4, unit="window") as bar:
        for _ in range(4):
            bar.advance()
    err = capsys.readouterr().err
    assert "emulating" in err and "4/4" in err and "window" in err


def test_nested_steps_follow_the_outer_choice(terminal, capsys):
    with progress_bar(False, "outer", total=1):
        assert list(iterate(range(3), "inner", 3)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    with progress_bar(True, "outer", total=1):
        assert list(iterate(range(3), "calibrating", 3)) == [0, 1, 2]
    assert "calibrating" in capsys.readouterr().err
    assert list(iterate(range(2), "alone", 2)) == [0, 1]  # outside any step: no bar
    assert "alone" not in capsys.readouterr().err


def test_stages():
    seen = []

    @with_stages("converting", 3)
    def convert(*, progress=True):
        for name in ("lowering", "converting", "checking"):
            stage(name)
        return "done"

    assert convert(progress=lambda done, total: seen.append((done, total))) == "done"
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_bad_progress_values_are_refused():
    with pytest.raises(ValueError, match="Expected progress to be True, False or a callable"):
        check_progress("yes")


def test_every_long_step_takes_the_same_keyword():
    from keras_rnnedge.converters import convert, convert_c
    from keras_rnnedge.demo import run_demo
    from keras_rnnedge.micro_targets.crun import run_c
    from keras_rnnedge.micro_targets.emulate import emulate

    for function in (convert, convert_c, emulate, run_c, run_demo):
        parameter = inspect.signature(function).parameters["progress"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, function.__name__
        assert parameter.default is True, function.__name__


def test_warnings_keep_pointing_at_the_caller():
    """The stage bar wraps convert(); a warning aimed at convert's caller still names it."""
    import warnings

    @with_stages("converting", 1)
    def convert(*, progress=True):
        warnings.warn("calibration on 4 sequences", UserWarning, stacklevel=2)

    with pytest.warns(UserWarning, match="calibration on 4") as caught:
        convert(progress=False)
    assert caught[0].filename == __file__
