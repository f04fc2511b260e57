"""keras_rnnedge.search: the space, the checks before training, one trial measured as deployed,
the Pareto front, and a tiny search on a local Ray instance (API and ``rnnedge search``).

Oracles: the integer model's NumPy oracle for the deployed accuracy (the C is bit-exact with
it, tests/test_intmodel.py), the board's flash and clock for the limits and the latency, a
brute-force dominance check for the Pareto front.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from keras_rnnedge import cli
from keras_rnnedge.datasets import load_har
from keras_rnnedge.recipe import Recipe
from keras_rnnedge.search import (
    Constraints,
    SearchSpace,
    TrialSettings,
    build_model,
    describe_config,
    pareto_front,
    precheck,
    run_trial,
    search,
)

TINY = Recipe(dense_epochs=1, threshold_epochs=1, sparse_epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def tiny():
    """HAR-2 cut to 256/64/64 windows of 32 steps (seeded): trials of a few seconds."""
    ds = load_har(2, validation_split=0.1, seed=0)
    rng = np.random.default_rng(0)

    def take(x, y, n):
        index = np.sort(rng.permutation(len(y))[:n])
        return x[index, :32], y[index]

    x_train, y_train = take(ds.x_train, ds.y_train, 256)
    x_val, y_val = take(ds.x_val, ds.y_val, 64)
    x_test, y_test = take(ds.x_test, ds.y_test, 64)
    return dataclasses.replace(ds, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                               x_test=x_test, y_test=y_test)


def test_space_is_the_product_and_checks_its_values():
    space = SearchSpace(cells=("fastgrnn", "lstm"), units=(8, 16),
                        recurrent=(None, {"family": "low_rank", "rank": 4}),
                        densities=(None, 0.5), precisions=("int8", "int16"))
    configs = space.configs()
    assert len(configs) == 2 * 2 * 2 * 2 * 2
    assert len({describe_config(c) for c in configs}) == len(configs)
    with pytest.raises(ValueError, match="cell kinds among"):
        SearchSpace(cells=("transformer",))
    with pytest.raises(ValueError, match="unknown value.*'circulant'"):
        SearchSpace(recurrent=("circulant",))
    with pytest.raises(ValueError, match=r"densities: received 1.5; expected None"):
        SearchSpace(densities=(1.5,))
    with pytest.raises(ValueError, match="'float32'.*integer C"):
        SearchSpace(precisions=("float32",))
    with pytest.raises(ValueError, match="units is empty"):
        SearchSpace(units=())
    # families join by registry name; low_rank once per rank
    space = SearchSpace.of_families(["dense", "low_rank", "block_circulant"], ranks=(2, 4))
    assert space.recurrent == (None, {"family": "low_rank", "rank": 2},
                               {"family": "low_rank", "rank": 4}, "block_circulant")
    with pytest.raises(ValueError, match="matrix family 'sparse'; expected one of"):
        SearchSpace.of_families(["sparse"])
    with pytest.raises(ValueError, match="max_latency_ms: received -1"):
        Constraints("uno", max_latency_ms=-1)
    with pytest.raises(ValueError, match="Unknown board|unknown board|board"):
        Constraints("no-such-board")


def test_precheck_rejects_what_cannot_fit_before_training(tiny):
    uno = Constraints("uno")
    big = {"cell": "lstm", "units": 256, "kernel": None, "recurrent": None, "density": None,
           "precision": "int8"}
    reason = precheck(build_model(big, tiny), big, uno)
    assert "weights alone take" in reason and "32,768 B of flash" in reason
    small = dict(big, cell="fastgrnn", units=16)
    assert precheck(build_model(small, tiny), small, uno) is None
    # int16 weights count twice; a density shrinks the count (CSR where smaller)
    mid = dict(big, cell="fastgrnn", units=120)
    model = build_model(mid, tiny)
    assert precheck(model, mid, Constraints("uno", max_flash_bytes=12_000)) is not None
    assert precheck(model, dict(mid, density=0.25), Constraints("uno", max_flash_bytes=12_000)) \
        is None
    assert precheck(model, dict(mid, density=0.25, precision="int16"),
                    Constraints("uno", max_flash_bytes=6_000)) is not None


def test_pareto_front_is_the_non_dominated_feasible_set():
    rng = np.random.default_rng(3)
    rows = [{"status": "feasible" if i % 5 else "infeasible",
             "c_val_accuracy": float(rng.integers(80, 95)) / 100,
             "flash_bytes": int(rng.integers(2, 9)) * 1000,
             "latency_ms": float(rng.integers(1, 6))} for i in range(40)]
    rows.append({"status": "rejected before training"})
    front = set(pareto_front(rows))

    def dominates(a, b):
        ka = (a["c_val_accuracy"], -a["flash_bytes"], -a["latency_ms"])
        kb = (b["c_val_accuracy"], -b["flash_bytes"], -b["latency_ms"])
        return all(x >= y for x, y in zip(ka, kb)) and ka != kb

    feasible = [i for i, r in enumerate(rows) if r["status"] == "feasible"]
    want = {i for i in feasible if not any(dominates(rows[j], rows[i]) for j in feasible)}
    assert front == want and front


@pytest.mark.toolchain
def test_one_trial_is_measured_as_deployed(tiny, tmp_path):
    """Train, convert for the Uno, run: the reported accuracy is the integer model's (NumPy
    oracle of the C) on the validation windows; the latency is simavr's cycles at 16 MHz."""
    from keras_rnnedge.converters import convert_c
    from keras_rnnedge.optimize import load_model

    config = {"cell": "fastgrnn", "units": 16, "kernel": None,
              "recurrent": {"family": "low_rank", "rank": 4}, "density": 0.5,
              "precision": "int8"}
    reports = []
    settings = TrialSettings(Constraints("uno", max_latency_ms=50), TINY)
    final = run_trial(config, tiny, settings, report=reports.append, artifact_dir=tmp_path)
    assert final["status"] == "feasible", final
    assert [r["phase"] for r in reports[:-1]] == ["dense", "threshold", "sparse"]
    assert reports[-1]["final"] is True and reports[-1]["score"] == final["c_val_accuracy"]
    model = load_model(tmp_path / "model.keras", compile=False)
    c = convert_c(model, target="uno", representative_data=tiny.x_train, checks="warn",
                  progress=False)
    oracle = np.argmax(c.int_model.run(tiny.x_val), -1)
    assert final["c_val_accuracy"] == pytest.approx(np.mean(oracle == tiny.y_val))
    assert final["flash_bytes"] == c.fit.flash_needed <= 32_768 and final["size_measured"]
    assert final["timed_on"] == "uno" and final["per_step_unit"] == "cycles"
    assert final["latency_ms"] == pytest.approx(1000 * final["per_step"] / 16e6)
    assert (tmp_path / "c" / "manifest.json").is_file()
    # a latency limit the model misses: measured, kept, infeasible
    slow = run_trial(config, tiny, TrialSettings(Constraints("uno", max_latency_ms=1e-3), TINY))
    assert slow["status"] == "infeasible" and "latency" in slow["reason"]
    assert slow["score"] < 0


@pytest.mark.slow
@pytest.mark.toolchain
def test_search_on_local_ray(tiny, tmp_path, capsys):
    """A tiny search on a local Ray instance: the 1024-unit configurations are rejected before
    training, the others trained, converted, measured; the table, the Pareto plot and the best
    model are written; the CLI runs the same with ASHA, and a finished search resumes to the
    same table."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        space = SearchSpace(cells=("fastgrnn",), units=(8, 16, 1024), recurrent=(None,),
                            densities=(None, 0.5))
        result = search(tiny, space=space, constraints=Constraints("uno", max_latency_ms=50),
                        recipe=TINY, out=tmp_path / "api", early_stopping=False, log=None)
        statuses = [r["status"] for r in result.rows]
        assert statuses.count("rejected before training") == 2
        assert all(r["config"].startswith("fastgrnn-1024") for r in result.rows
                   if r["status"] == "rejected before training")
        trained = [r for r in result.rows if r["status"] != "rejected before training"]
        assert len(trained) == 4 and {r["status"] for r in trained} == {"feasible"}
        best = result.best_row
        assert best["c_val_accuracy"] == max(r["c_val_accuracy"] for r in trained)
        assert result.pareto == pareto_front(result.rows) and result.best in result.pareto
        out = tmp_path / "api"
        saved = json.loads((out / "results.json").read_text())
        assert saved["best"] == result.best and len(saved["rows"]) == 6
        assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "best" / "model.keras").is_file()
        assert (out / "best" / "c" / "manifest.json").is_file()
        again = search(tiny, space=space, constraints=Constraints("uno", max_latency_ms=50),
                       recipe=TINY, out=tmp_path / "api", early_stopping=False, resume=True,
                       log=None)
        assert [r["config"] for r in again.rows] == [r["config"] for r in result.rows]
        assert [r.get("c_val_accuracy") for r in again.rows] == \
            [r.get("c_val_accuracy") for r in result.rows]

        data = tmp_path / "tiny.npz"
        np.savez(data, x_train=tiny.x_train, y_train=tiny.y_train, x_val=tiny.x_val,
                 y_val=tiny.y_val)
        code = cli.main(["search", "--data", str(data), "--target", "uno", "--cells",
                         "fastgrnn", "--units", "8,16", "--families", "low_rank", "--ranks",
                         "4", "--densities", "1", "--epochs", "3", "--max-latency-ms", "50",
                         "--out", str(tmp_path / "cli")])
        text = capsys.readouterr().out
        assert code == 0, text
        assert "| configuration | status |" in text and "**best**" in text
        rows = json.loads((tmp_path / "cli" / "results.json").read_text())["rows"]
        assert {r["status"] for r in rows} <= {"feasible", "stopped early"}
    finally:
        ray.shutdown()


def test_search_cli_names_bad_options(tmp_path, capsys):
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x_train=rng.normal(size=(40, 8, 3)).astype("float32"),
             y_train=rng.integers(0, 2, 40))
    assert cli.main(["search", "--data", str(data), "--families", "sparse"]) == 2
    assert "matrix family 'sparse'" in capsys.readouterr().err
    assert cli.main(["search", "--data", str(data), "--units", "8,x"]) == 2
    assert "expected integer hidden sizes" in capsys.readouterr().err
