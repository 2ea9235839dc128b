"""Dynamic samplers: which prompts to roll out this step.

Every sampler reads a `SampleStats`, is seeded, and shares one contract:

    ids = sampler.next_batch(k, step=t)   # list of k distinct sample ids
    sampler.last_selection                # {"sample_id", "row", "p_estimate", "score", "step"}
    state = sampler.state_dict(); sampler.load_state_dict(state)   # exact resume

`last_selection["p_estimate"]` is the posterior mean of each chosen sample at
selection time and `last_selection["score"]` the sampler's selection score (NaN
where a sampler has none): the rollout-log columns `p_estimate` and `score`.

`weights={"math": 0.7, "chart": 0.3}` on any sampler fills the batch by
per-domain quota (largest remainder) and runs the sampler inside each domain.

`state_dict()` holds everything random or stateful (RNG state, epoch
permutations and positions, curriculum target/stage, filter counters); the
statistics live in the store and are saved with `SampleStats.save`.  Restoring
both gives the same next batch as an uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from curate.lazy import lazy_import
from sampling.betadist import DistanceSearch, smallest_uniforms_many
from sampling.quota import domain_quotas
from sampling.store import PRIOR_GROUP_MIN, SampleStats, beta_informative

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")

# {domain: share}, or "pool" for each domain's share of the pool (see Sampler)
DomainWeights = Mapping[str, float] | Literal["pool"] | None


class Sampler:
    """Base class: quotas, bookkeeping, state.  Subclasses implement `_choose`.

    Every sampler takes `weights` (domain -> share) and fills each batch by those
    quotas; `weights="pool"` stratifies by domain: each domain's share is its
    share of the pool, as uniform sampling would give on average, so a sampler
    ranks prompts within a domain but cannot starve one (a domain that looks
    hopeless now is often the one the policy can still learn; see
    docs/sampling.md). `state_dict` / `load_state_dict` carry its RNG and
    bookkeeping.

    >>> stats = SampleStats([f"m{i}" for i in range(6)] + [f"c{i}" for i in range(6)],
    ...                     domains=["math"] * 6 + ["code"] * 6)
    >>> ids = make_sampler("uniform", stats, weights={"math": 0.75, "code": 0.25}).next_batch(4, step=1)
    >>> sorted(i[0] for i in ids)
    ['c', 'm', 'm', 'm']
    """

    name = "base"

    def __init__(self, stats: SampleStats, group_size: int = 8, seed: int = 0,
                 weights: DomainWeights = None, skip_flat: float | Mapping[str, float] = 0.0) -> None:
        if not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size must be an int >= 2, got {group_size!r}")
        self.skip_unsolved, self.skip_solved = _skip_settings(skip_flat)
        self._stats = stats
        self.group_size = group_size
        self.seed = seed
        if weights == "pool":
            weights = {d: float(len(r)) for d, r in zip(stats.domains, stats.domain_rows(),
                                                        strict=True) if len(r)}
        elif isinstance(weights, str):
            raise ValueError(f"weights must be a {{domain: share}} table or \"pool\", got {weights!r}")
        self.weights = dict(weights) if weights is not None else None
        self.skip_flat = max(self.skip_unsolved, self.skip_solved)  # > 0: skipping is on
        self.rng = np.random.default_rng(seed)
        self.last_selection: dict[str, Any] | None = None
        # rows already handed out at `_taken_step` (fill mode asks several times per step)
        self._taken = np.empty(0, np.int64)
        self._taken_step = -1
        self._skip_mask: np.ndarray | None = None
        if self.weights is not None:
            domain_quotas(1, stats.domains, self.weights, [len(r) for r in stats.domain_rows()])

    @property
    def stats(self) -> SampleStats:
        return self._stats

    @stats.setter
    def stats(self, value: SampleStats) -> None:
        # a resumed trainer swaps in the loaded store; nothing is cached across it
        self._stats = value

    # ---------------------------------------------------------------- select
    def next_batch(self, k: int, step: int) -> list[str]:
        """k distinct sample ids for `step` (the quota-filled selection)."""
        rows = self.next_rows(k, step)
        return self._stats.ids[rows].tolist()

    def next_rows(self, k: int, step: int) -> np.ndarray:
        """Like `next_batch`, as store row numbers (no string conversion)."""
        n = self._batch_size(k)
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        step = int(step)
        stats = self._stats
        if step != self._taken_step:
            self._taken, self._taken_step = np.empty(0, np.int64), step
        self._skip_mask = self._draw_skips() if self._skipping() else None
        if self.weights is None:
            if n > len(stats):
                raise ValueError(f"batch of {n} asked from a store of {len(stats)} samples")
            rows, score = self._choose(n, step, None, "*")
        else:
            dom_rows = stats.domain_rows()
            q = domain_quotas(n, stats.domains, self.weights, [len(r) for r in dom_rows])
            parts = [self._choose(int(q[d]), step, dom_rows[d], stats.domains[d])
                     for d in range(len(q)) if q[d] > 0]
            rows = np.concatenate([p[0] for p in parts])
            score = np.concatenate([p[1] for p in parts])
        rows = rows.astype(np.int64)
        self._taken = np.concatenate([self._taken, rows])
        self.last_selection = {
            "sample_id": stats.ids[rows].tolist(),
            "row": rows,
            "p_estimate": stats.mean(rows, step),
            "score": np.asarray(score, dtype=np.float64),
            "step": step,
        }
        self._after_select(rows, step)
        return rows

    def _skipping(self) -> bool:
        return self.skip_flat > 0

    def _draw_skips(self) -> np.ndarray:
        """GRESO's skip: a row whose last s groups were all equal sits this step out
        with probability 1 - (1 - skip_flat)^s (s = `SampleStats.flat_streak`)."""
        streak = self._stats.flat_streak()
        hit = np.flatnonzero(streak > 0)
        p = 1.0 - self._keep_chance(hit, streak[hit])
        mask = np.zeros(len(streak), dtype=bool)
        mask[hit[self.rng.random(len(hit)) < p]] = True
        return mask

    def _keep_chance(self, rows: np.ndarray | None, streak: np.ndarray) -> np.ndarray:
        """(1 - skip)^streak, skip = `skip_unsolved` where the flat groups were all
        wrong and `skip_solved` where they were all right."""
        if self.skip_unsolved == self.skip_solved:
            return (1.0 - self.skip_flat) ** streak
        solved = self._stats.last_group_mean(rows) > 0.5
        return (1.0 - np.where(solved, self.skip_solved, self.skip_unsolved)) ** streak

    def _blocked(self, rows: np.ndarray) -> np.ndarray:
        """Rows that may not be chosen now: taken earlier this step, or skipped (skip_flat)."""
        out = np.isin(rows, self._taken) if len(self._taken) else np.zeros(len(rows), bool)
        if self._skip_mask is not None:
            out |= self._skip_mask[rows]
        return out

    def _batch_size(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"batch size must be an int >= 1, got {k!r}")
        return int(k)

    def _choose(self, q: int, step: int, rows: np.ndarray | None,
                key: str) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _after_select(self, rows: np.ndarray, step: int) -> None:
        pass

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically (JSON-able via sampling.state)."""
        return {"name": self.name, "seed": self.seed, "rng": self.rng.bit_generator.state,
                **self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()` output (e.g. after `SampleStats.load`)."""
        if state.get("name") != self.name:
            raise ValueError(f"state is for sampler {state.get('name')!r}, not {self.name!r}")
        self.rng.bit_generator.state = state["rng"]
        self._load_extra(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        pass

    # --------------------------------------------------------------- helpers
    def _pool(self, rows: np.ndarray | None, size: int) -> np.ndarray:
        """`size` distinct rows drawn uniformly from `rows` (None = all)."""
        n = len(self._stats) if rows is None else len(rows)
        pick = self.rng.choice(n, size=min(size, n), replace=False)
        return pick if rows is None else rows[pick]


def _skip_settings(skip_flat: float | Mapping[str, float]) -> tuple[float, float]:
    """(skip_unsolved, skip_solved) from `skip_flat`: one chance for both, or a table."""
    if isinstance(skip_flat, Mapping):
        unknown = sorted(set(skip_flat) - {"unsolved", "solved"})
        if unknown:
            raise ValueError(f"skip_flat takes the keys 'unsolved' and 'solved', got {unknown}")
        pair = (skip_flat.get("unsolved", 0.0), skip_flat.get("solved", 0.0))
    else:
        pair = (skip_flat, skip_flat)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v < 1.0:
            raise ValueError("skip_flat must be in [0, 1) (or a table of such under 'unsolved' "
                             f"and 'solved'), got {skip_flat!r}")
    return float(pair[0]), float(pair[1])


def _top(score: np.ndarray, q: int) -> np.ndarray:
    """Positions of the q largest scores, best first (argpartition, then sort q)."""
    if q >= len(score):
        return np.argsort(-score, kind="stable")
    part = np.argpartition(-score, q - 1)[:q]
    return part[np.argsort(-score[part], kind="stable")]


def _informative(p: np.ndarray, g: int) -> np.ndarray:
    """1 - p^G - (1-p)^G: chance a group of G Bernoulli(p) rewards is not all equal."""
    if g == 8:  # three squarings beat np.power on the hot path
        p2, q2 = p * p, (1.0 - p) * (1.0 - p)
        p4, q4 = p2 * p2, q2 * q2
        return 1.0 - p4 * p4 - q4 * q4
    return 1.0 - p**g - (1.0 - p) ** g


# ======================================================================== uniform
class UniformSampler(Sampler):
    """Epochs without replacement: every sample once per epoch, reshuffled each epoch.

    A batch that spans an epoch boundary never repeats an id: the next epoch's
    permutation is reordered so the ids already in the batch come later.

    Thinning with importance weights (dynamic sampling that keeps uniform's
    expected update): with `thin_floor` > 0 a prompt whose turn comes is rolled
    out with probability clip(P_inf / thin_at, thin_floor, 1), P_inf the
    store's predicted chance of an informative group, and otherwise passed over
    until the next epoch; `skip_flat` multiplies in GRESO's skip. Fewer groups
    come out flat, but a prompt that looks hopeless now is trained on less
    often, and in a small pool those are the ones the policy learns from next.
    `importance=True` records 1 / acceptance per picked prompt in
    `last_selection["weight"]`; the trainer scales each kept group's advantages
    by it (normalized to mean 1 over the update), so every prompt counts in
    expectation as often as under uniform sampling, at fewer rollouts.

    >>> import pyarrow as pa
    >>> s = SampleStats.from_samples(pa.table({"id": list("abcd")}))
    >>> u = UniformSampler(s, seed=0)
    >>> sorted(u.next_batch(2, step=1) + u.next_batch(2, step=2))
    ['a', 'b', 'c', 'd']
    """

    name = "uniform"

    def __init__(self, stats: SampleStats, group_size: int = 8, seed: int = 0,
                 weights: DomainWeights = None, skip_flat: float | Mapping[str, float] = 0.0,
                 thin_floor: float = 0.0, thin_at: float = 0.5,
                 importance: bool = False) -> None:
        super().__init__(stats, group_size, seed, weights, skip_flat)
        if not 0.0 <= thin_floor <= 1.0:
            raise ValueError(f"thin_floor must be in [0, 1] (0 = off), got {thin_floor!r}")
        if not 0.0 < thin_at <= 1.0:
            raise ValueError(f"thin_at must be in (0, 1], got {thin_at!r}")
        if not isinstance(importance, bool | np.bool_):
            raise ValueError(f"importance must be True or False, got {importance!r}")
        self.thin_floor, self.thin_at = float(thin_floor), float(thin_at)
        self.importance = bool(importance)
        self._accept: np.ndarray | None = None
        self._streams: dict[str, dict[str, Any]] = {}

    def acceptance(self, step: int) -> np.ndarray:
        """Each row's chance to be rolled out when its turn in the epoch comes.

        The product of GRESO's skip, (1 - skip_flat)^s after s flat groups in a
        row, and the thinning rule, clip(P_inf / thin_at, thin_floor, 1) with
        P_inf the store's posterior-predictive chance of an informative group
        (`SampleStats.informative_prob`; with sharing on it is the prompt's
        group's current rate until the prompt has evidence of its own).
        Ones where both are off.
        """
        n = len(self._stats)
        acc = np.ones(n)
        if self.skip_flat > 0:
            acc *= self._keep_chance(None, self._stats.flat_streak())
        if self.thin_floor > 0:
            p_inf = self._stats.informative_prob(None, step, self.group_size)
            acc *= np.clip(p_inf / self.thin_at, self.thin_floor, 1.0)
        return acc

    def next_rows(self, k: int, step: int) -> np.ndarray:
        self._accept = None  # set by _draw_skips when skipping is on
        rows = super().next_rows(k, step)
        if self.importance:
            # the inverse of each row's acceptance makes the expected update uniform's
            acc = self._accept[rows] if self._accept is not None else np.ones(len(rows))
            self.last_selection["weight"] = 1.0 / acc
        return rows

    def _skipping(self) -> bool:
        return self.skip_flat > 0 or self.thin_floor > 0

    def _draw_skips(self) -> np.ndarray:
        # called by next_rows once the step is validated (and stored in _taken_step)
        if self.thin_floor == 0:  # GRESO's skip alone: the base draw, same stream as before
            if self.importance:
                self._accept = self.acceptance(self._taken_step)
            return super()._draw_skips()
        self._accept = self.acceptance(self._taken_step)
        return self.rng.random(len(self._accept)) >= self._accept

    def _choose(self, q, step, rows, key):
        if not len(self._taken) and self._skip_mask is None:
            return self._take(q, rows, key)
        # blocked rows (taken earlier this step, or skipped) are passed over in the stream
        base_n = len(self._stats) if rows is None else len(rows)
        kept, spare, n_kept, pulled = np.empty(0, np.int64), [], 0, 0
        while n_kept < q and pulled < 2 * base_n:
            got, _ = self._take(min(q - n_kept, base_n), rows, key)
            pulled += len(got)
            got = got[~np.isin(got, kept)]
            bad = self._blocked(got)
            kept = np.concatenate([kept, got[~bad]])
            n_kept = len(kept)
            spare.append(got[bad & ~np.isin(got, self._taken)])
        if n_kept < q:  # everything left is skipped: take skipped rows rather than fall short
            extra = np.concatenate(spare) if spare else np.empty(0, np.int64)
            kept = np.concatenate([kept, extra[:q - n_kept]])
        return kept, np.full(len(kept), np.nan)

    def _take(self, q, rows, key):
        """The next q rows of the domain stream `key` (a new epoch reshuffles)."""
        base = np.arange(len(self._stats)) if rows is None else rows
        st = self._streams.setdefault(key, {"perm": np.empty(0, np.int64), "pos": 0, "epoch": 0})
        perm, pos = st["perm"], st["pos"]
        rest = perm[pos:]
        if len(rest) >= q:
            st["pos"] = pos + q
            return perm[pos:pos + q], np.full(q, np.nan)
        need = q - len(rest)
        new = self.rng.permutation(base)
        clash = np.isin(new, rest)
        first = new[~clash][:need]
        # the new epoch: the ids we take now, then everything else in shuffled order
        st["perm"] = np.concatenate([first, new[~np.isin(new, first)]])
        st["pos"] = need
        st["epoch"] += 1
        return np.concatenate([rest, first]), np.full(q, np.nan)

    @property
    def epoch(self) -> int:
        """Epochs started so far (summed over domain streams)."""
        return sum(s["epoch"] for s in self._streams.values())

    def _extra_state(self):
        return {"streams": {k: {"perm": v["perm"].copy(), "pos": int(v["pos"]),
                                "epoch": int(v["epoch"])} for k, v in self._streams.items()}}

    def _load_extra(self, state):
        self._streams = {k: {"perm": np.asarray(v["perm"], dtype=np.int64), "pos": int(v["pos"]),
                             "epoch": int(v["epoch"])} for k, v in state["streams"].items()}


# ======================================================================= thompson
class ThompsonSampler(Sampler):
    """Thompson sampling for informative groups (after VADE / MoPPS).

    Each step draws p ~ Beta(alpha, beta) per candidate and takes the k with the
    highest 1 - p^G - (1-p)^G, the chance a group of G is informative.  With
    `pool_factor` the candidates are a uniform pool of pool_factor * k samples
    (MoPPS-style, O(k) per step for very large sets); None ranks every sample
    (exact).  The selection score is that drawn informativeness.

    Knobs (defaults = plain Thompson sampling):
    - `temperature` (0..1): the draw is mean + temperature * (draw - mean);
      1 is Thompson sampling, 0 greedy on the posterior mean.
    - `coverage` (0..1) with `coverage_window` (steps): a coverage guarantee.
      Steps are cut in fixed windows [1, W], [W+1, 2W], ...; within each, the
      sampler reserves just enough of every batch for samples not yet picked in
      the window (the most promising of them by the same score) that a share
      `coverage` of the samples is picked at least once per window.  The rest
      of the batch goes to the top scores.  Needs `coverage * n <= W * k`.
    - `predictive` (with temperature 0): rank by the posterior-predictive
      chance of an informative group, 1 - E[p^G] - E[(1-p)^G] under
      Beta(alpha, beta) (`SampleStats.informative_prob`), instead of
      1 - m^G - (1-m)^G at the posterior mean m.  The plug-in ranks a sample
      seen once at 4/8 like one seen fifty times at 4/8; the predictive ranks
      the well-measured one first, and scores an unseen sample at the chance
      its prior gives, not near 1.  The selection score is then that
      probability.
    - `max_staleness` (steps): a coverage rule stated per prompt: no prompt goes
      unpicked for more than W steps (earliest deadline first, just as many
      per step as the deadlines need; the rest of the batch goes to the top
      scores). Needs n <= W * k to hold; otherwise the oldest go first.
    - `skip_flat` (any sampler): GRESO's skip of prompts whose recent groups
      were all equal.
    - `min_gap` (steps): a cooldown; a prompt picked in the last `min_gap`
      steps ranks below every other (scores are in [0, 1]), so a small pool is
      trained on as a whole rather than its most informative prompts again and
      again.

    >>> import pyarrow as pa
    >>> s = SampleStats.from_samples(pa.table({"id": list("abc"), "difficulty": [0.0, 0.5, 1.0]}),
    ...                              prior_strength=100)
    >>> ThompsonSampler(s, seed=0).next_batch(1, step=1)
    ['b']
    """

    name = "thompson"

    def __init__(self, stats: SampleStats, group_size: int = 8, seed: int = 0,
                 pool_factor: float | None = None, temperature: float = 1.0,
                 coverage: float = 0.0, coverage_window: int = 10,
                 weights: DomainWeights = None, predictive: bool = False,
                 max_staleness: int | None = None, skip_flat: float | Mapping[str, float] = 0.0,
                 min_gap: int = 0) -> None:
        super().__init__(stats, group_size, seed, weights, skip_flat)
        if not (isinstance(min_gap, int) and min_gap >= 0):
            raise ValueError(f"min_gap must be an int >= 0, got {min_gap!r}")
        self.min_gap = min_gap
        if pool_factor is not None and not pool_factor >= 1:
            raise ValueError(f"pool_factor must be None or >= 1, got {pool_factor!r}")
        if not 0.0 <= temperature <= 1.0:
            raise ValueError(f"temperature must be in [0, 1], got {temperature!r}")
        if not 0.0 <= coverage <= 1.0:
            raise ValueError(f"coverage must be in [0, 1], got {coverage!r}")
        if not (isinstance(coverage_window, int) and coverage_window >= 1):
            raise ValueError(f"coverage_window must be an int >= 1, got {coverage_window!r}")
        if not isinstance(predictive, bool | np.bool_):
            raise ValueError(f"predictive must be True or False, got {predictive!r}")
        if predictive and temperature != 0.0:
            raise ValueError("predictive=True ranks by the posterior expectation and needs "
                             f"temperature=0 (greedy); got temperature={temperature!r}")
        if max_staleness is not None and not (isinstance(max_staleness, int) and max_staleness >= 1):
            raise ValueError(f"max_staleness must be None or an int >= 1, got {max_staleness!r}")
        if max_staleness is not None and coverage > 0:
            raise ValueError("coverage (a share per fixed window) and max_staleness (a bound per "
                             "prompt) are two coverage rules; set one of them")
        self.predictive = bool(predictive)
        self.pool_factor = pool_factor
        self.temperature = float(temperature)
        self.coverage, self.coverage_window = float(coverage), coverage_window
        self.max_staleness = max_staleness
        track = coverage > 0 or max_staleness is not None or min_gap > 0
        self._last_pick = np.full(len(stats), -1, dtype=np.int64) if track else None

    def _scores(self, cand: np.ndarray | None, step: int) -> np.ndarray:
        a, b = self._stats.posterior(cand, step)
        if self.temperature == 0.0:
            # greedy: no draw; a seeded nudge far below any real gap breaks exact ties
            # (e.g. all unseen samples) at random instead of by row order
            sc = (beta_informative(a, b, self.group_size) if self.predictive
                  else _informative(a / (a + b), self.group_size))
            return sc + 1e-9 * self.rng.random(len(a))
        p = self.rng.beta(a, b)
        if self.temperature != 1.0:
            mean = a / (a + b)
            p = mean + self.temperature * (p - mean)
        return _informative(p, self.group_size)

    def _exact_scores(self, q: int, step: int, rows: np.ndarray | None,
                      key: str) -> tuple[np.ndarray, np.ndarray]:
        """Thompson scores over every candidate, drawing large shared-prior groups in O(q).

        Never-seen rows of one prior group share a posterior, so the best q of
        their m iid draws are generated directly (sampling.betadist); every
        other row (seen, or in a small group) gets an ordinary Beta draw.  Same
        distribution as drawing every row; O(seen + q) instead of O(n).
        """
        st = self._stats
        pg = st.prior_groups()
        dom_code = None if key == "*" else st.domains.index(key)
        threshold = max(PRIOR_GROUP_MIN, 4 * q)
        g, temp = self.group_size, self.temperature
        pick_scores: list[np.ndarray] = []
        loose: list[np.ndarray] = []  # never-seen rows of groups too depleted to shortcut
        draws: list[tuple[float, float, int, int, float]] = []  # (a, b, m, k, center) per group
        fresh: list[tuple[np.ndarray, int, int]] = []  # (rows, m fresh, k wanted) per group
        reps: list[int] = []  # one fresh row of each: its posterior is the group's
        for gi, (dcode, grows) in enumerate(pg.groups):
            if dom_code is not None and dcode != dom_code:
                continue
            m = int(pg.fresh[gi])
            if m < threshold:
                if m:
                    loose.append(grows[st.last_step(grows) < 0])
                continue
            fresh.append((grows, m, min(q, m)))
            head = grows[:64]  # any fresh row will do, and one is usually among the first
            head = head[st.last_step(head) < 0]
            reps.append(int(head[0]) if len(head) else int(self._random_fresh(grows, m, 1)[0]))
        if not fresh:
            return (np.arange(len(st)) if rows is None else rows), self._scores(rows, step)
        ga, gb = st.posterior(np.array(reps), step)
        for (_, m, k), a, b in zip(fresh, ga.tolist(), gb.tolist(), strict=True):
            mean = a / (a + b)
            if temp == 0.0:
                one = (beta_informative(np.array([a]), np.array([b]), g) if self.predictive
                       else _informative(np.array([mean]), g))
                pick_scores.append(np.full(k, float(one[0])) + 1e-9 * self.rng.random(k))
            else:
                # tempered draw p' = mean + T (p - mean): |p' - 1/2| = T |p - c|
                draws.append((a, b, m, k, 0.5 - (1.0 - temp) * (mean - 0.5) / temp))
        if draws:  # each group's k smallest uniforms; their quantiles come below
            us = smallest_uniforms_many([d[2] for d in draws], [d[3] for d in draws], self.rng)
        seen, small = st.seen_rows(), pg.small_rows
        if dom_code is not None:
            seen = seen[st.domain_codes[seen] == dom_code]
            small = small[st.domain_codes[small] == dom_code]
        base = np.concatenate([seen, small, *loose])
        base_sc = self._scores(base, step)
        if draws:
            pick_scores = self._group_scores(draws, us, base_sc, q)
        # the draws are exchangeable over a group's fresh rows: they go to rows chosen
        # uniformly at random, only as many as have a score
        picks = [self._random_fresh(grows, m, len(sc))
                 for (grows, m, _), sc in zip(fresh, pick_scores, strict=True)]
        cand = np.concatenate([base, *picks])
        return cand, np.concatenate([base_sc, *pick_scores])

    def _group_scores(self, draws: list[tuple[float, float, int, int, float]],
                      us: list[np.ndarray], base_sc: np.ndarray, q: int) -> list[np.ndarray]:
        """Scores of each shared-prior group's best draws, only as deep as the batch can reach.

        A group's draws come best first, so once its last computed score is
        below the q-th best score in hand, none of its later draws can make the
        batch: their quantiles are never computed. The groups still in reach
        get the next draws in chunks that double, all groups in one search per
        round. Exact: the same values the full computation gives for every draw
        that can be chosen.
        """
        g, temp = self.group_size, self.temperature
        a, b, _, _, c = (np.array(x) for x in zip(*draws, strict=True))
        scores: list[np.ndarray] = [np.zeros(0) for _ in us]
        search = DistanceSearch(a, b, c, np.array([u[-1] for u in us]))
        todo, chunk = list(range(len(us))), max(8, -(-q // len(us)))
        while todo:
            ends = [min(len(us[i]), len(scores[i]) + chunk) for i in todo]
            found = search.quantiles(np.array(todo), [us[i][len(scores[i]):e]
                                                      for i, e in zip(todo, ends, strict=True)])
            for i, d in zip(todo, found, strict=True):
                scores[i] = np.concatenate([scores[i], _informative(0.5 + temp * d, g)])
            pool = np.concatenate([base_sc, *scores])
            tau = np.partition(pool, len(pool) - q)[len(pool) - q] if len(pool) > q else -np.inf
            todo = [i for i in todo if len(scores[i]) < len(us[i]) and scores[i][-1] >= tau]
            chunk *= 2
        return scores

    def _random_fresh(self, grows: np.ndarray, m: int, k: int) -> np.ndarray:
        """k never-seen rows of a group, uniformly at random, in O(k) while most are fresh."""
        st, s = self._stats, len(grows)
        draw = min(s, int(math.ceil(k * s / m * 1.25)) + 16)
        cand = grows[self.rng.choice(s, size=draw, replace=False)]
        cand = cand[st.last_step(cand) < 0]  # a random order of the fresh ones drawn
        if len(cand) >= k:
            return cand[:k]
        fresh = grows[st.last_step(grows) < 0]
        return fresh[self.rng.choice(m, size=k, replace=False)]

    def _coverage_quota(self, q: int, step: int, base: np.ndarray) -> tuple[int, np.ndarray]:
        """How many of this batch must go to samples not yet picked in the window, and which."""
        w0 = ((step - 1) // self.coverage_window) * self.coverage_window + 1
        steps_left = w0 + self.coverage_window - step
        uncovered = base[self._last_pick[base] < w0]
        need = int(math.ceil(self.coverage * len(base))) - (len(base) - len(uncovered))
        if need <= 0:
            return 0, uncovered
        return min(q, len(uncovered), int(math.ceil(need / max(steps_left, 1)))), uncovered

    def _staleness_quota(self, q: int, step: int, base: np.ndarray) -> tuple[int, np.ndarray]:
        """Earliest-deadline-first: how many rows must be picked now so that none goes
        unpicked for more than `max_staleness` steps, and the candidates by deadline.

        A row last picked at step s (never: 0) is due by s + W. With r its steps
        left (this one included), every horizon h needs ceil(#{r <= h} / h) picks
        per step from now on; the largest of these is this step's quota, taken
        from the rows with the earliest deadlines.
        """
        w = self.max_staleness
        last = np.maximum(self._last_pick[base], 0)
        left = last + w - step + 1
        order = np.argsort(left, kind="stable")
        left_sorted = left[order]
        h = np.arange(1, w + 1)
        due = np.searchsorted(left_sorted, h, side="right")
        need = int(np.max(np.ceil(due / h))) if len(base) else 0
        return min(q, need), base[order]

    def _choose(self, q, step, rows, key):
        chosen: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        n_cov = 0
        if self._last_pick is not None:
            if len(self._last_pick) != len(self._stats):
                raise ValueError("the store changed size under the sampler; build a new sampler")
            base = np.arange(len(self._stats)) if rows is None else rows
            base = base[~np.isin(base, self._taken)] if len(self._taken) else base
            if self.max_staleness is not None:
                n_cov, by_deadline = self._staleness_quota(q, step, base)
                if n_cov:
                    pick = by_deadline[:n_cov]
                    chosen.append(pick)
                    scores.append(self._scores(pick, step))
            else:
                n_cov, uncovered = self._coverage_quota(q, step, base)
                if n_cov:
                    sc = self._scores(uncovered, step)
                    top = _top(sc, n_cov)
                    chosen.append(uncovered[top])
                    scores.append(sc[top])
        q_main = q - n_cov
        if q_main:
            if self.pool_factor is not None:
                cand = self._pool(rows, int(math.ceil(self.pool_factor * q)))
                sc = self._scores(cand, step)
            else:
                cand, sc = self._exact_scores(q, step, rows, key)
            sc = np.where(self._blocked(cand), -np.inf, sc)
            if self.min_gap:  # a cooldown: recently picked prompts rank last
                recent = self._last_pick[cand] > step - self.min_gap
                recent &= self._last_pick[cand] >= 0
                sc = np.where(recent & np.isfinite(sc), sc - 2.0, sc)
            if chosen:
                sc = np.where(np.isin(cand, chosen[0]), -np.inf, sc)
            top = _top(sc, q_main)
            chosen.append(cand[top])
            scores.append(sc[top])
        return np.concatenate(chosen), np.concatenate(scores)

    def _after_select(self, rows, step):
        if self._last_pick is not None:
            self._last_pick[rows] = step

    def _extra_state(self):
        return {"last_pick": None if self._last_pick is None else self._last_pick.copy()}

    def _load_extra(self, state):
        lp = state.get("last_pick")
        self._last_pick = None if lp is None else np.asarray(lp, dtype=np.int64).copy()


# ================================================================ variance-aware
class VarianceAwareSampler(Sampler):
    """MMR1 variance-aware sampling: promote prompts with high outcome variance and diverse answers.

    Variance Promotion Score per candidate:
        VPS = w_outcome * p(1-p) / max(p(1-p)) + w_diversity * div / max(div)
    with p the empirical pass rate of the sample's (decayed) evidence, the
    posterior mean for a sample not yet seen, and div the store's response diversity (unmeasured
    samples get the mean of the measured ones).  A fraction `lam` of the batch
    is drawn without replacement in proportion to VPS (Efraimidis-Spirakis keys),
    the rest uniformly from the remaining candidates.  Score = VPS.

    >>> s = SampleStats(["always", "half", "never"], fast_half_life=None, slow_half_life=None)
    >>> s.update(["always"] * 4 + ["half"] * 4 + ["never"] * 4, [1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0], step=1)
    >>> VarianceAwareSampler(s, w_outcome=1.0, w_diversity=0.0).vps(None, step=2).round(2).tolist()
    [0.0, 1.0, 0.0]
    >>> VarianceAwareSampler(s, lam=1.0, w_outcome=1.0, w_diversity=0.0, seed=0).next_batch(1, step=2)
    ['half']
    """

    name = "variance"

    def __init__(self, stats: SampleStats, group_size: int = 8, seed: int = 0,
                 lam: float = 0.8, w_outcome: float = 0.8, w_diversity: float = 0.2,
                 pool_factor: float | None = None,
                 weights: DomainWeights = None, skip_flat: float | Mapping[str, float] = 0.0) -> None:
        super().__init__(stats, group_size, seed, weights, skip_flat)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam!r}")
        if w_outcome < 0 or w_diversity < 0 or w_outcome + w_diversity <= 0:
            raise ValueError("w_outcome and w_diversity must be >= 0 and not both 0")
        self.lam, self.w_outcome, self.w_diversity = lam, w_outcome, w_diversity
        self.pool_factor = pool_factor

    def vps(self, cand: np.ndarray | None, step: int) -> np.ndarray:
        """Variance Promotion Score of candidate rows (None = all)."""
        st = self._stats
        p = st.mean(cand, step)
        # MMR1 measures outcome variance on the rollouts themselves: for a seen
        # sample use its (decayed) empirical pass rate, the prior only for unseen ones
        ev_s, ev_f = st.evidence(cand)
        ev_n = ev_s + ev_f
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(ev_n > 0, ev_s / np.where(ev_n > 0, ev_n, 1.0), p)
        ovs = p * (1.0 - p)
        ovs = ovs / max(float(ovs.max()), 1e-12)
        div, measured = st.diversity(cand)
        fill = float(div[measured].mean()) if measured.any() else 0.5
        div = np.where(measured, div, fill)
        div = div / max(float(div.max()), 1e-12)
        return self.w_outcome * ovs + self.w_diversity * div

    def _choose(self, q, step, rows, key):
        cand = rows
        if self.pool_factor is not None:
            cand = self._pool(rows, int(math.ceil(self.pool_factor * q)))
        base = np.arange(len(self._stats)) if cand is None else cand
        score = self.vps(cand, step)
        blocked = self._blocked(base)
        score = np.where(blocked, 0.0, score)
        n_prop = min(int(round(self.lam * q)), int((score > 0).sum()))
        u = self.rng.random(len(base))
        with np.errstate(divide="ignore"):
            keys = np.log(u) / score  # Efraimidis-Spirakis: top keys ~ weighted draw w/o replacement
        prop = _top(keys, n_prop) if n_prop else np.empty(0, np.int64)
        rest_mask = np.ones(len(base), bool)
        rest_mask[prop] = False
        if int((rest_mask & ~blocked).sum()) >= q - n_prop:
            rest_mask &= ~blocked
        rest = np.flatnonzero(rest_mask)
        uni = rest[self.rng.choice(len(rest), size=q - n_prop, replace=False)]
        pos = np.concatenate([prop, uni])
        return base[pos], score[pos]


# ========================================================================= filter
class FilterSampler(UniformSampler):
    """DAPO dynamic sampling: over-sample uniformly, drop zero-variance groups after rollout.

    `next_batch(k)` returns ceil(oversample * k) ids (uniform epochs); after the
    rollouts, `filter_groups(ids, rewards)` returns the keep mask (groups whose
    rewards are not all equal) and counts the rollouts spent on dropped groups
    in `wasted_rollouts` (out of `total_rollouts`).  DAPO's recipe over-samples
    3x and keeps the first k informative groups.

    >>> import pyarrow as pa
    >>> f = FilterSampler(SampleStats.from_samples(pa.table({"id": list("abcd")})), group_size=2)
    >>> f.filter_groups(["a", "b"], [[1.0, 1.0], [0.0, 1.0]]).tolist(), f.wasted_rollouts
    ([False, True], 2)
    """

    name = "filter"

    def __init__(self, stats: SampleStats, group_size: int = 8, seed: int = 0,
                 oversample: float = 2.0, weights: DomainWeights = None,
                 skip_flat: float | Mapping[str, float] = 0.0) -> None:
        super().__init__(stats, group_size, seed, weights, skip_flat)
        if not oversample >= 1.0:
            raise ValueError(f"oversample must be >= 1, got {oversample!r}")
        self.oversample = float(oversample)
        self.wasted_rollouts = 0
        self.total_rollouts = 0
        self.groups_dropped = 0
        self.groups_total = 0

    def _batch_size(self, k: int) -> int:
        return int(math.ceil(self.oversample * super()._batch_size(k)))

    def filter_groups(self, ids: list[str] | np.ndarray, rewards: Any) -> np.ndarray:
        """Keep mask over groups: True where the group's rewards are not all equal.

        `rewards`: shape (groups, G), or flat with group_size entries per group.
        """
        r = np.asarray(rewards, dtype=np.float64)
        n_groups = len(ids)
        if r.ndim == 1:
            if len(r) != n_groups * self.group_size:
                raise ValueError(f"rewards has {len(r)} entries; expected {n_groups} groups "
                                 f"x group_size {self.group_size}")
            r = r.reshape(n_groups, self.group_size)
        if r.ndim != 2 or r.shape[0] != n_groups:
            raise ValueError(f"rewards has shape {r.shape}; expected ({n_groups}, G)")
        if not np.isfinite(r).all():
            raise ValueError("rewards contain NaN or inf")
        keep = (r.max(axis=1) - r.min(axis=1)) > 1e-12
        dropped = int((~keep).sum())
        self.groups_total += n_groups
        self.groups_dropped += dropped
        self.total_rollouts += int(r.size)
        self.wasted_rollouts += int(r[~keep].size)
        return keep

    def _extra_state(self):
        return {**super()._extra_state(), "wasted_rollouts": self.wasted_rollouts,
                "total_rollouts": self.total_rollouts, "groups_dropped": self.groups_dropped,
                "groups_total": self.groups_total}

    def _load_extra(self, state):
        super()._load_extra(state)
        for k in ("wasted_rollouts", "total_rollouts", "groups_dropped", "groups_total"):
            setattr(self, k, int(state[k]))


# ===================================================================== curriculum
class CurriculumSampler(Sampler):
    """A difficulty band that moves with the model.

    mode="target" (GRESO / AdaRFT): pick the samples whose posterior pass rate is
    closest to a moving target p*.  After each step the target follows the
    batch's observed mean reward R (AdaRFT's update):
        p* <- clip(p* + eta * tanh(sensitivity * (target - R)), p_min, p_max)
    so when the batch came out easier than `target`, p* drops and harder
    prompts come next.  Score = 1 - |p - p*|.

    mode="staged" (VL-Cogito / Observe-R1): `stages` pass-rate bands from easy to
    hard, default (0.6-1.0), (0.3-0.7), (0.0-0.4); stage s runs from step
    s * stage_steps, or earlier once the previous batch's mean reward reaches
    `advance_at` (None = by steps only).  Inside the band samples are drawn
    uniformly; a band too small is topped up with the samples nearest to it.
    Score = 1 inside the band, 1 - distance outside.

    >>> import pyarrow as pa
    >>> s = SampleStats.from_samples(pa.table({"id": ["easy", "mid", "hard"],
    ...                                        "difficulty": [0.9, 0.5, 0.1]}), prior_strength=50)
    >>> CurriculumSampler(s, mode="target", target=0.5).next_batch(1, step=1)
    ['mid']
    >>> CurriculumSampler(s, mode="staged", stage_steps=10).next_batch(1, step=1)   # stage 0: easy
    ['easy']
    """

    name = "curriculum"

    def __init__(self, stats: SampleStats, group_size: int = 8, seed: int = 0,
                 mode: str = "target", target: float = 0.5, start: float | None = None,
                 eta: float = 0.05, sensitivity: float = 2.0, p_min: float = 0.05,
                 p_max: float = 0.95,
                 stages: tuple[tuple[float, float], ...] = ((0.6, 1.0), (0.3, 0.7), (0.0, 0.4)),
                 stage_steps: int = 100, advance_at: float | None = None,
                 weights: DomainWeights = None, skip_flat: float | Mapping[str, float] = 0.0) -> None:
        super().__init__(stats, group_size, seed, weights, skip_flat)
        if mode not in ("target", "staged"):
            raise ValueError(f"mode must be 'target' or 'staged', got {mode!r}")
        if not 0.0 < target < 1.0:
            raise ValueError(f"target must be in (0, 1), got {target!r}")
        for lo, hi in stages:
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"stage band ({lo}, {hi}) must satisfy 0 <= lo <= hi <= 1")
        if stage_steps < 1:
            raise ValueError(f"stage_steps must be >= 1, got {stage_steps!r}")
        self.mode, self.target = mode, float(target)
        self.eta, self.sensitivity = float(eta), float(sensitivity)
        self.p_min, self.p_max = float(p_min), float(p_max)
        self.stages = tuple((float(lo), float(hi)) for lo, hi in stages)
        self.stage_steps, self.advance_at = int(stage_steps), advance_at
        self.p_target = float(target if start is None else start)
        self.stage = 0
        self._prev_rows = np.empty(0, np.int64)
        self._prev_step = -1

    def _observed_reward(self) -> float | None:
        """Mean reward of the previous batch, from the store (None if not yet updated)."""
        if self._prev_step < 0 or not len(self._prev_rows):
            return None
        st = self._stats
        rows = self._prev_rows[st.last_step(self._prev_rows) >= self._prev_step]
        if not len(rows):
            return None
        return float(np.nanmean(st.last_group_mean(rows)))

    def _advance(self, step: int) -> None:
        r = self._observed_reward()
        if self.mode == "target":
            if r is not None:
                move = self.eta * math.tanh(self.sensitivity * (self.target - r))
                self.p_target = min(self.p_max, max(self.p_min, self.p_target + move))
        else:
            by_steps = min(step // self.stage_steps, len(self.stages) - 1)
            self.stage = max(self.stage, by_steps)
            if (self.advance_at is not None and r is not None and r >= self.advance_at
                    and self.stage < len(self.stages) - 1):
                self.stage += 1

    def next_rows(self, k: int, step: int) -> np.ndarray:
        self._advance(int(step))
        return super().next_rows(k, step)

    def _choose(self, q, step, rows, key):
        base = np.arange(len(self._stats)) if rows is None else rows
        p = self._stats.mean(rows, step)
        jitter = self.rng.random(len(base)) * 1e-6  # random tie-break among equal estimates
        jitter = np.where(self._blocked(base), np.inf, jitter)
        if self.mode == "target":
            dist = np.abs(p - self.p_target)
            pos = _top(-(dist + jitter), q)
            return base[pos], 1.0 - dist[pos]
        lo, hi = self.stages[self.stage]
        dist = np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)
        inside = np.flatnonzero((dist == 0) & np.isfinite(jitter))
        if len(inside) >= q:
            pos = inside[self.rng.choice(len(inside), size=q, replace=False)]
        else:
            pos = _top(-(dist + jitter), q)
        return base[pos], 1.0 - dist[pos]

    def _after_select(self, rows, step):
        self._prev_rows, self._prev_step = rows.copy(), step

    def _extra_state(self):
        return {"p_target": self.p_target, "stage": self.stage,
                "prev_rows": self._prev_rows.copy(), "prev_step": self._prev_step}

    def _load_extra(self, state):
        self.p_target = float(state["p_target"])
        self.stage = int(state["stage"])
        self._prev_rows = np.asarray(state["prev_rows"], dtype=np.int64)
        self._prev_step = int(state["prev_step"])


SAMPLERS: dict[str, type[Sampler]] = {
    "uniform": UniformSampler,
    "thompson": ThompsonSampler,
    "variance": VarianceAwareSampler,
    "filter": FilterSampler,
    "curriculum": CurriculumSampler,
}


def make_sampler(name: str, stats: SampleStats, **kwargs: Any) -> Sampler:
    """Build a sampler by config name: uniform, thompson, variance, filter, curriculum.

    >>> import pyarrow as pa
    >>> s = SampleStats.from_samples(pa.table({"id": ["a", "b"]}))
    >>> make_sampler("thompson", s, group_size=8, seed=1, pool_factor=2).name
    'thompson'
    """
    import inspect

    cls = SAMPLERS.get(name)
    if cls is None:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "stats"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"sampler {name!r} does not take {unknown}; it takes {sorted(accepted)}")
    return cls(stats, **kwargs)
