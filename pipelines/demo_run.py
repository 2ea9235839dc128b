"""A realistic synthetic run folder, for tests, benchmarks and report previews.

`synthetic_run(dir)` simulates an RL run without a model: prompts in several
domains with a latent difficulty, a policy whose per-prompt pass rate rises
with the step (faster on some domains than others), a real
`sampling.ThompsonSampler` choosing each step's prompts from a real
`sampling.SampleStats`, rewards drawn from the true pass rates, responses that
grow longer over training, rollouts written with `curate.rollout_log.RolloutWriter`
and stats snapshots with `SampleStats.save`, exactly as the trainer lays out a run.

>>> import tempfile
>>> run = synthetic_run(tempfile.mkdtemp(), steps=3, n_prompts=40, batch=4)
>>> sorted(p.name for p in (run / "rollouts").iterdir())[:1]
['part-00000000-0000.parquet']
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

DOMAINS = ("arith", "algebra", "geometry", "counting")
_WORDS = np.array("so the answer is thus we get then compute add carry sum step".split())


def synthetic_run(
    run_dir: str | os.PathLike,
    *,
    steps: int = 60,
    n_prompts: int = 400,
    batch: int = 32,
    group_size: int = 8,
    seed: int = 0,
    stats_every: int = 10,
    run_id: str | None = None,
) -> Path:
    """Write RUN/rollouts/*.parquet and RUN/stats/*.parquet of a simulated GRPO run."""
    from curate.rollout_log import RolloutWriter
    from sampling import SampleStats, ThompsonSampler

    run = Path(run_dir)
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:06d}" for i in range(n_prompts)])
    dom = rng.integers(0, len(DOMAINS), n_prompts)
    domains = np.array(DOMAINS)[dom]
    prompts = np.array([f"[{d}] problem {i}: compute {rng.integers(10, 999)} ..." for i, d in enumerate(domains)])
    hardness = rng.normal(0.0, 1.6, n_prompts)          # latent difficulty (logit scale)
    speed = np.array([2.5, 1.6, 0.8, 1.2])[dom]         # how fast each domain improves
    prior = 1 / (1 + np.exp(hardness))                  # curated difficulty estimate, noisy
    prior = np.clip(prior + rng.normal(0, 0.1, n_prompts), 0.01, 0.99)
    stats = SampleStats.from_samples(pa.table({"id": ids, "domain": domains, "difficulty": prior}),
                                     group_size=group_size)
    sampler = ThompsonSampler(stats, group_size=group_size, seed=seed)
    writer = RolloutWriter(run, run_id=run_id or run.name)
    stats.save(run)  # the snapshot at step 0: the curated priors
    for step in range(steps):
        picked = np.array(sampler.next_batch(batch, step=step))
        rows = stats.rows(picked.tolist())
        p_est = stats.mean(rows, step=step)
        idx = np.searchsorted(ids, picked)
        t = step / max(steps - 1, 1)
        p_true = 1 / (1 + np.exp(hardness[idx] - speed[idx] * 3.0 * t))
        n = len(picked) * group_size
        rep = np.repeat(np.arange(len(picked)), group_size)
        correct = rng.random(n) < p_true[rep]
        fmt_ok = rng.random(n) > 0.04 * (1 - t)
        reward = np.where(correct & fmt_ok, 1.0, 0.0)
        length = np.maximum(4, rng.lognormal(np.log(60 + 80 * t), 0.35, n)).astype(np.int64)
        words = _WORDS[rng.integers(0, len(_WORDS), (n, 4))]
        answer = np.where(correct, "42", "41")
        response = [f"{' '.join(w)} ... \\boxed{{{a}}}" if ok else f"{' '.join(w)} ..."
                    for w, a, ok in zip(words, answer, fmt_ok, strict=True)]
        r = reward.reshape(-1, group_size)
        adv = ((r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)).ravel()
        writer.write({
            "step": np.full(n, step), "sample_id": picked[rep], "group": rep,
            "response_idx": np.tile(np.arange(group_size), len(picked)), "domain": domains[idx][rep],
            "prompt": prompts[idx][rep], "response": response, "reward": reward, "correct": correct & fmt_ok,
            "format_ok": fmt_ok, "advantage": adv, "prompt_tokens": np.full(n, 24),
            "response_tokens": length, "sampler": ["thompson"] * n, "p_estimate": p_est[rep],
            "score": p_est[rep] * (1 - p_est[rep]), "policy_version": np.full(n, step),
        })
        stats.update(picked[rep].tolist(), reward, step=step, lengths=length)
        if (step + 1) % stats_every == 0 or step == steps - 1:
            stats.save(run)
    return run
