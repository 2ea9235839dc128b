"""pipelines.sampler_value: what a uniform draw would have given, read off a run's outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from curate.rollout_log import RolloutWriter
from pipelines.query import LakeError, connect
from pipelines.sampler_value import sampler_value, uniform_eras
from sampling import SampleStats, UniformSampler

G = 8


def _run(run, n_flip: int, n_mixed: int, steps: int = 40, batch: int = 10, seed: int = 0):
    """A run without a model: `n_flip` prompts whose every group is all correct or all
    wrong (a coin per visit: pass rate 1/2, never informative), `n_mixed` prompts whose
    every group is half right (always informative); uniform picks; a snapshot every 10 steps."""
    rng = np.random.default_rng(seed)
    ids = [f"f{i:03d}" for i in range(n_flip)] + [f"m{i:03d}" for i in range(n_mixed)]
    stats = SampleStats(ids)
    sampler = UniformSampler(stats, group_size=G, seed=seed)
    writer = RolloutWriter(run, run_id="synthetic")
    for step in range(1, steps + 1):
        picked = sampler.next_batch(batch, step=step)
        p_est = stats.mean(stats.rows(picked), step=step)
        rewards = []
        for sid in picked:
            rewards += [float(rng.random() < 0.5)] * G if sid[0] == "f" else [1.0, 0.0] * (G // 2)
        n = len(rewards)
        writer.write({"step": [step] * n, "sample_id": [s for s in picked for _ in range(G)],
                      "group": [g for g in range(len(picked)) for _ in range(G)],
                      "response_idx": list(range(G)) * len(picked), "prompt": ["p"] * n,
                      "response": ["r"] * n, "reward": rewards, "correct": [r > 0 for r in rewards],
                      "p_estimate": np.repeat(p_est, G).tolist()})
        stats.update([s for s in picked for _ in range(G)], rewards, step=step)
        if step % 10 == 0:
            stats.save(run)
    return run


def test_prompts_that_flip_between_all_right_and_all_wrong_are_not_counted_informative(tmp_path):
    """The store's chance of an informative group sees a pass rate near 1/2 and says
    "mixed group likely"; the outcomes say never. The estimate must follow the outcomes."""
    v = sampler_value(_run(tmp_path, n_flip=60, n_mixed=0))
    assert v["sampler_informative"] == 0.0
    assert v["store_score_expected"] > 0.5  # what the summary used to quote
    assert v["uniform_expected"] < 0.05
    assert v["steps_compared"] == [11, 40] and v["groups_compared"] == 300


def test_on_a_uniform_run_the_estimate_is_what_the_run_got(tmp_path):
    """Half flippers, half always-mixed prompts, drawn uniformly: a uniform draw gives
    what the run itself got, era by era, so the sampler's ratio is about 1."""
    v = sampler_value(_run(tmp_path, n_flip=50, n_mixed=50))
    for era in v["uniform_eras"][:-1]:
        assert era["uniform_informative"] == pytest.approx(era["sampler_informative"], abs=0.05)
    assert v["vs_uniform"] == pytest.approx(1.0, abs=0.05)
    assert v["sampler_informative"] / v["store_score_expected"] < 0.7  # the store's own chance: far off
    assert v["uniform_eras"][-1]["sampler_informative"] is None  # no era after the last snapshot


def test_one_run_only(tmp_path):
    _run(tmp_path / "a", n_flip=10, n_mixed=10, steps=10)
    _run(tmp_path / "b", n_flip=10, n_mixed=10, steps=10)
    with pytest.raises(LakeError, match="one run, got 2"):
        uniform_eras(connect(f"{tmp_path}/*"))
