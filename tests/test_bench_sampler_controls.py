"""bench/sampler_controls.py: the oracle and no-epoch controls of bench/sampler_live.py."""

from __future__ import annotations

import doctest
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sampling import SampleStats, UniformSampler

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    if str(ROOT / "bench") not in sys.path:  # sampler_live imports its controls by name
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stats(n: int) -> SampleStats:
    return SampleStats.from_samples(pa.table({"id": [f"p{i}" for i in range(n)]}))


def test_module_example_runs():
    mod = _load("sampler_controls")
    assert doctest.testmod(mod).failed == 0


def test_iid_gives_up_the_epoch_schedule_uniform_keeps():
    mod = _load("sampler_controls")
    iid, uni = mod.IIDSampler(_stats(6), seed=0), UniformSampler(_stats(6), seed=0)
    iid_covers, uni_covers = [], []
    for t in range(1, 101, 2):  # pairs of steps of 3: one epoch under uniform
        a, b = iid.next_batch(3, step=t), iid.next_batch(3, step=t + 1)
        assert len(set(a)) == 3 and len(set(b)) == 3  # distinct within a step
        iid_covers.append(len(set(a) | set(b)) == 6)
        uni_covers.append(len(set(uni.next_batch(3, step=t)) | set(uni.next_batch(3, step=t + 1))) == 6)
    assert all(uni_covers)
    assert sum(iid_covers) < 25  # with replacement across steps: most pairs repeat a prompt


def test_oracle_thin_rolls_out_flat_prompts_at_the_floor():
    mod = _load("sampler_controls")
    oracle = mod.OracleSampler(_stats(4), mode="thin", thin_at=0.5, floor=0.05, seed=0)
    oracle.set_pass_rates(np.array([0.0, 1.0, 0.5, 0.3]))
    acc = oracle.acceptance(1)
    assert acc[:2].tolist() == [0.05, 0.05] and acc[2] == 1.0 and acc[3] == 1.0
    counts = dict.fromkeys(["p0", "p1", "p2", "p3"], 0)
    for t in range(1, 401):
        for i in oracle.next_batch(1, step=t):
            counts[i] += 1
    # the mixed prompts come up every epoch, the flat ones about once in 20
    assert counts["p2"] > 10 * max(counts["p0"], counts["p1"], 1) / 2
    assert counts["p0"] + counts["p1"] > 0  # the floor: never starved outright


def test_oracle_greedy_takes_the_most_informative_and_never_flat_ones_first():
    mod = _load("sampler_controls")
    oracle = mod.OracleSampler(_stats(6), mode="greedy", seed=1)
    oracle.set_pass_rates(np.array([0.0, 1.0, 0.5, 0.2, 0.05, 0.4]))
    first = oracle.next_batch(3, step=1)
    assert set(first) == {"p2", "p5", "p3"}
    # the same step's next round goes on down the ranking, never repeating a prompt
    nxt = oracle.next_batch(2, step=1)
    assert nxt[0] == "p4" and nxt[1] in {"p0", "p1"}  # the two flat ones tie: either
    with pytest.raises(ValueError, match="one pass rate per row measured"):
        oracle.set_pass_rates(np.array([0.5]))
    with pytest.raises(ValueError, match="mode must be"):
        mod.OracleSampler(_stats(2), mode="best")


def test_oracle_lookahead_measures_the_next_prompts_of_the_stream_only():
    mod = _load("sampler_controls")
    oracle = mod.OracleSampler(_stats(10), mode="thin", lookahead=3, seed=0)
    assert len(oracle.rows_to_measure()) == 0  # no stream before the first draw
    first = oracle.next_rows(2, step=1)
    ahead = oracle.rows_to_measure()
    assert len(ahead) == 3 and not set(ahead) & set(first.tolist())
    before = oracle.chance.copy()
    oracle.set_pass_rates(np.zeros(3), ahead)
    assert (oracle.chance[ahead] == 0).all()
    rest = np.setdiff1d(np.arange(10), ahead)
    assert (oracle.chance[rest] == before[rest]).all()
    assert mod.OracleSampler(_stats(4), mode="thin").rows_to_measure().tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="lookahead"):
        mod.OracleSampler(_stats(4), mode="greedy", lookahead=3)


def test_controls_run_in_the_several_epochs_regime_and_are_never_best():
    live = _load("sampler_live")
    assert live.CONTROLS <= live.MULTI_EPOCH_ONLY | live.ONE_PASS_ONLY
    curve = lambda finals: [{"step": 0, "rollouts": 0, "pass1": 0.1, "se": 0.01},  # noqa: E731
                            {"step": 10, "rollouts": finals[0], "pass1": finals[1], "se": 0.01}]
    runs = []
    for arm, rollouts, final in [("uniform", 1000, 0.3), ("oracle_thin", 300, 0.4),
                                 ("shared", 900, 0.35)]:
        for seed in range(2):
            runs.append({"arm": arm, "seed": seed, "steps": 10, "informative_ratio": 0.5,
                         "rollouts_per_step": rollouts / 10, "held_out_final": final + seed * 0.01,
                         "held_out_final_se": 0.01, "curve": curve((rollouts, final + seed * 0.01)),
                         "log_check": {"matches": True}})
    out = live.summarize("multi_epoch", runs, fill=True)
    assert out["arms"]["oracle_thin"]["rollouts_to_uniform_final_ratio"] < \
        out["arms"]["shared"]["rollouts_to_uniform_final_ratio"]
    assert out["best"] == "shared"
