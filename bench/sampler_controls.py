"""Control samplers for bench/sampler_live.py: what no real sampler can do, and what uniform gives up.

They answer two questions about the several-epochs regime, where every
realizable sampler ended below uniform's held-out pass@1 (and the oracle, with
`lookahead`, gives the one-pass regime its ceiling):

- `OracleSampler` knows every pool prompt's pass rate under the current policy,
  re-estimated every `refresh` steps from `k` samples per prompt
  (`trainer.evaluation.pass_rates`: generation that is not counted as
  rollouts; nothing a real run can afford). `mode="greedy"`
  takes, each round, the prompts with the largest chance of an informative group,
  1 - p^G - (1 - p)^G; `mode="thin"` keeps uniform's epochs and rolls a prompt out,
  when its turn comes, with probability clip(chance / thin_at, floor, 1), the
  store-free version of `UniformSampler(thin_floor=...)`. If even these lose
  accuracy at 1.5x the informative groups, the loss comes from choosing by the
  informative chance, not from the store estimating it badly.
- `IIDSampler` is uniform without epochs: each step draws prompts uniformly at
  random (distinct within the step, with replacement across steps). Any sampler
  that departs from uniform's one-visit-per-epoch schedule gives that schedule up.

Both live here, not in `sampling`: they are measurements, not samplers to train with.

>>> import pyarrow as pa
>>> from sampling import SampleStats
>>> stats = SampleStats.from_samples(pa.table({"id": list("abcdef")}))
>>> oracle = OracleSampler(stats, mode="greedy", seed=0)
>>> oracle.set_pass_rates(np.array([0.0, 0.5, 1.0, 0.1, 0.9, 0.5]))
>>> sorted(oracle.next_batch(2, step=1))
['b', 'f']
"""

from __future__ import annotations

from typing import Any

import numpy as np

# the store's own helpers: the chance of a mixed group, and the q best scores, best first
from sampling.samplers import Sampler, UniformSampler, _top
from sampling.samplers import _informative as informative_chance


class IIDSampler(Sampler):
    """Uniform draws without epochs: distinct within a step, with replacement across steps."""

    name = "iid"

    def _choose(self, q, step, rows, key):
        base = np.arange(len(self._stats)) if rows is None else rows
        score = np.where(self._blocked(base), -np.inf, self.rng.random(len(base)))
        top = _top(score, q)
        return base[top], score[top]


class OracleSampler(UniformSampler):
    """Chooses by each prompt's true current chance of an informative group (see the module).

    `set_pass_rates(p, rows)` gives the pass rates of `rows` (every store row when
    None); a prompt not measured yet counts as p = 0.5. `mode="thin"` runs
    uniform's epoch streams (the parent class) with the oracle's acceptance;
    `mode="greedy"` ranks by the chance. With `lookahead` (thin mode) a refresh
    measures only the next `lookahead` prompts of the epoch's stream, the ones
    the next steps can reach: that makes the oracle affordable over a pool of
    thousands (the one-pass regime). Prompts of an epoch not begun yet keep
    their last measurement.
    """

    name = "oracle"

    def __init__(self, stats, group_size: int = 8, seed: int = 0, mode: str = "thin",
                 thin_at: float = 0.5, floor: float = 0.05, refresh: int = 3, k: int = 12,
                 lookahead: int | None = None) -> None:
        if mode not in ("thin", "greedy"):
            raise ValueError(f"mode must be 'thin' or 'greedy', got {mode!r}")
        if not 0.0 < floor <= 1.0:
            raise ValueError(f"floor must be in (0, 1], got {floor!r}")
        if refresh < 1 or k < 1:
            raise ValueError(f"refresh and k must be >= 1, got {refresh!r} and {k!r}")
        if lookahead is not None and (mode != "thin" or lookahead < 1):
            raise ValueError(f"lookahead is a number >= 1 of the thin mode, got {lookahead!r}")
        super().__init__(stats, group_size, seed, thin_floor=floor, thin_at=thin_at)
        self.mode, self.refresh, self.k, self.lookahead = mode, int(refresh), int(k), lookahead
        self.chance = np.full(len(stats), informative_chance(np.array(0.5), group_size))

    def rows_to_measure(self) -> np.ndarray:
        """The store rows a refresh measures: all, or the next `lookahead` of the stream."""
        if self.lookahead is None:
            return np.arange(len(self._stats))
        st = self._streams.get("*")
        if st is None:  # before the first draw: the first step runs on the default
            return np.empty(0, np.int64)
        return st["perm"][st["pos"]:st["pos"] + self.lookahead]

    def set_pass_rates(self, p: np.ndarray, rows: np.ndarray | None = None) -> None:
        p = np.asarray(p, dtype=np.float64)
        n = len(self._stats) if rows is None else len(rows)
        if p.shape != (n,):
            raise ValueError(f"one pass rate per row measured ({n}), got {p.shape}")
        if rows is None:
            self.chance = informative_chance(p, self.group_size)
        else:
            self.chance[np.asarray(rows, dtype=np.int64)] = informative_chance(p, self.group_size)

    def acceptance(self, step: int) -> np.ndarray:
        return np.clip(self.chance / self.thin_at, self.thin_floor, 1.0)

    def _skipping(self) -> bool:
        return self.mode == "thin"

    def _choose(self, q, step, rows, key):
        if self.mode == "thin":
            return super()._choose(q, step, rows, key)
        base = np.arange(len(self._stats)) if rows is None else rows
        # ties (every prompt before the first refresh) broken at random
        score = self.chance[base] + 1e-9 * self.rng.random(len(base))
        score = np.where(self._blocked(base), -np.inf, score)
        top = _top(score, q)
        return base[top], score[top]


def make_control(name: str, stats, group_size: int, seed: int, **kwargs: Any) -> Sampler:
    """The control sampler `name` ("iid" or "oracle") over `stats`."""
    if name == "iid":
        return IIDSampler(stats, group_size, seed)
    if name == "oracle":
        return OracleSampler(stats, group_size, seed, **kwargs)
    raise ValueError(f"unknown control sampler {name!r} (iid, oracle)")
