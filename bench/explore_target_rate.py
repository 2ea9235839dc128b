"""Exploration, not a built option: Thompson toward a target pass rate below 1/2.

A question from the several-epochs regime of bench/sampler_live.py: uniform's
kept groups are the hardest (31% with at most 2 of 8 correct), so does a
sampler aimed at hard-but-solvable prompts close the gap? The Thompson draw p
is mapped piecewise-linearly so that the target lands on 1/2 (0 -> 0, t -> 1/2,
1 -> 1) before the usual informative-chance score; every row is drawn (no
shared-prior shortcut, fine for the 480-prompt pool). Arms: `target` (shared
store, t = 0.3) and `target_cover` (the same plus `shared_skip`'s staleness
bound and skip), against uniform, in the same run.

    .venv/bin/python bench/explore_target_rate.py      # ~12 min on 2 cores
    .venv/bin/python bench/explore_target_rate.py --reuse runs/bench_sampler_live/partial.json

Writes bench/results/sampler_live_target.json (sampler_live.py's format).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import sampler_live as sl  # noqa: E402

from sampling import samplers as S  # noqa: E402

TARGET = 0.3


class TargetThompson(S.ThompsonSampler):
    """Thompson draws scored by the informative chance at the draw mapped so that TARGET -> 1/2."""

    name = "thompson_target"

    def _scores(self, cand: np.ndarray | None, step: int) -> np.ndarray:
        a, b = self._stats.posterior(cand, step)
        p = self.rng.beta(a, b)
        m = np.where(p < TARGET, 0.5 * p / TARGET, 0.5 + 0.5 * (p - TARGET) / (1 - TARGET))
        return S._informative(m, self.group_size)

    def _exact_scores(self, q: int, step: int, rows: np.ndarray | None,
                      key: str) -> tuple[np.ndarray, np.ndarray]:
        # every row drawn: the shared-prior shortcut ranks by distance to 1/2
        return (np.arange(len(self._stats)) if rows is None else rows), self._scores(rows, step)


S.SAMPLERS[TargetThompson.name] = TargetThompson  # at module level: forked or spawned workers have it
sl.ARMS["target"] = (TargetThompson.name, {}, sl.SHARED_STORE)
sl.ARMS["target_cover"] = (TargetThompson.name, {"max_staleness": 20, "skip_flat": 0.5},
                           sl.SHARED_STORE)

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--regimes", "multi_epoch", "--arms", "uniform,target,target_cover",
                "--out", str(REPO / "bench" / "results" / "sampler_live_target.json"),
                *sys.argv[1:]]
    sys.exit(sl.main())
