"""libFuzzer on the generated C of random models (keras_rnnedge.micro_targets.fuzz), bounded.

Three random models of benchmarks/fuzz_c.py (random kinds, sizes, ranks, sparsity, weight bits
and state formats, through quantize_model and generate_c), fuzzed for a few seconds each under
ASan/UBSan, every kept input replayed through the plain build against the NumPy oracle; plus
controls showing that each kind of finding is reported: undefined behaviour, a reference build
that differs, and a C model that differs from its oracle. About a minute in all; the long run is
``python benchmarks/fuzz_c.py`` (docs/fuzzing.md).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from benchmarks.fuzz_c import random_fuzz_model
from keras_rnnedge.micro_targets.fuzz import (
    FuzzModel,
    compare,
    decode_input,
    fuzz_model,
    replay,
    require_fuzzer,
    seed_inputs,
)
from keras_rnnedge.micro_targets.harness import ToolchainMissingError

pytestmark = pytest.mark.toolchain

SEEDS = (100, 101, 102)
SECONDS = 5
MAX_STEPS = 8


@pytest.fixture(scope="module", autouse=True)
def _fuzzer():
    try:
        require_fuzzer()
    except ToolchainMissingError as error:  # as the emulated-target tests: fail unless told
        if os.environ.get("RNNEDGE_SKIP_TOOLCHAIN") == "1":
            pytest.skip(f"RNNEDGE_SKIP_TOOLCHAIN=1: {error}")
        pytest.fail(f"{error} (set RNNEDGE_SKIP_TOOLCHAIN=1 to skip these tests instead)",
                    pytrace=False)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """(model, report, work folder) of each random model."""
    out = []
    for seed in SEEDS:
        model, _ = random_fuzz_model(seed)
        work = tmp_path_factory.mktemp(model.name)
        out.append((model, fuzz_model(model, seconds=SECONDS, workdir=work, seed=seed,
                                      max_steps=MAX_STEPS), work))
    return out


def test_random_models_have_no_finding(fuzzed):
    for model, report, _ in fuzzed:
        assert report.findings == 0, (model.description, report.crashes, report.mismatches)
        assert report.executions > 100, report
        # the fuzzer kept inputs beyond its seeds, and every one was checked
        assert report.corpus_files > len(seed_inputs(model.features, MAX_STEPS)), report
        assert report.replayed == report.corpus_files


def test_decoding_reaches_the_extremes():
    x = decode_input(b"\x00\x80\xff\x7f\x01\x00\xff\xff\x07", features=2, max_steps=8)
    np.testing.assert_array_equal(x, [[-32768, 32767], [1, -1]])
    assert decode_input(b"\x00" * 100, features=3, max_steps=4).shape == (4, 3)
    seeds = np.concatenate([decode_input(s, 3, 8).ravel() for s in seed_inputs(3, 8)])
    assert {-32768, 32767, 0} <= set(seeds.tolist())


class _OffByOne:
    """The oracle of ``model`` with the last score of every input one higher."""

    def __init__(self, oracle):
        self.oracle = oracle

    def initial_state(self, batch):
        return self.oracle.initial_state(batch)

    def step(self, state, x):
        return self.oracle.step(state, x)

    def predict(self, state):
        y = np.array(self.oracle.predict(state), np.int64)
        y[..., -1] += 1
        return y


def test_a_c_model_unlike_its_oracle_is_a_mismatch(fuzzed):
    model, _, work = fuzzed[0]
    corpus = sorted((work / "corpus").iterdir())[:40]
    traces = replay(model, corpus, max_steps=MAX_STEPS)
    assert len(traces) == len(corpus)
    assert compare(model, traces, max_steps=MAX_STEPS) == []
    wrong = dataclasses.replace(model, oracle=_OffByOne(model.oracle))
    problems = compare(wrong, traces, max_steps=MAX_STEPS, limit=100)
    assert len(problems) == len(corpus) and all("scores" in p for p in problems)


def _renamed(sources, name: str, new: str) -> dict[str, str]:
    return {k.replace(name, new): v.replace(name, new).replace(name.upper(), new.upper())
            for k, v in sources.items()}


def test_a_reference_build_that_differs_is_a_crash(fuzzed, tmp_path):
    """The fuzz target's own check: a reference whose step flips a bit of h0[0]."""
    model = fuzzed[0][0]
    ref = _renamed(model.c_sources, model.name, f"{model.name}_ref")
    end = f"\n}}\n\nvoid {model.name}_ref_predict("
    ref[f"{model.name}_ref.c"] = ref[f"{model.name}_ref.c"].replace(
        end, "\n    state->h0[0] = (int16_t)(state->h0[0] ^ 1);" + end, 1)
    broken = dataclasses.replace(model, reference=(f"{model.name}_ref", ref))
    report = fuzz_model(broken, seconds=2, workdir=tmp_path, max_steps=MAX_STEPS)
    assert report.crashes and "reference build's state differs" in report.crashes[0]


UB_MODEL = {
    "ub.h": "#include <stdint.h>\ntypedef struct { int16_t h0[1]; } ub_state_t;\n"
            "void ub_reset(ub_state_t *state);\n"
            "void ub_step(ub_state_t *state, const int16_t x_q[1]);\n"
            "void ub_predict(const ub_state_t *state, int32_t scores[1]);\n",
    "ub.c": '#include "ub.h"\n'
            "void ub_reset(ub_state_t *state) { state->h0[0] = 0; }\n"
            "void ub_step(ub_state_t *state, const int16_t x_q[1]) {\n"
            "    int32_t v = x_q[0];\n"
            "    v = v * 70000; /* signed overflow for |x| > 30678 */\n"
            "    state->h0[0] = (int16_t)(v >> 16);\n}\n"
            "void ub_predict(const ub_state_t *state, int32_t scores[1]) "
            "{ scores[0] = state->h0[0]; }\n",
}


def test_undefined_behaviour_is_a_crash(tmp_path):
    model = FuzzModel(name="ub", c_sources=UB_MODEL, features=1, num_outputs=1,
                      state_sizes=(1,), state_layout=((("h", 1),),), oracle=None)
    report = fuzz_model(model, seconds=2, workdir=tmp_path, max_steps=MAX_STEPS)
    assert report.crashes and "runtime error" in report.crashes[0]
    assert "signed integer overflow" in report.crashes[0]
