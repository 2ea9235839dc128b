"""`SampleStats`: the live, columnar per-sample statistics store.

One row per sample, numpy arrays behind a dense id -> row index, so an update
of 4,096 responses or a posterior over 10M samples is a handful of vectorized
operations.

The posterior over a sample's pass rate p is Beta(alpha, beta):

    alpha = 1 + m * p0 + g * S        beta = 1 + m * (1 - p0) + g * F

- S, F: success and failure evidence, the sums of r and 1 - r over every
  response (a reward r in [0, 1] counts fractionally), as of `last_step`.
- p0, m: the prior.  A sample whose `difficulty` (pass rate) is known starts at
  p0 = difficulty with strength m = `prior_strength`; one without starts at its
  domain's running mean reward with m = `domain_prior_strength`.
- Two-scale decay (after VADE), applied lazily from `last_step` at read time,
  never by touching every row each step; dt = step - last_step:
  * fast scale: g = 2 ** (-dt / fast_half_life): the evidence of a sample loses
    half its weight every `fast_half_life` steps since it was last updated, as
    the policy it measured moves on;
  * slow scale: p0 is pulled toward the domain's running mean with weight
    w = 1 - 2 ** (-dt / slow_half_life): a sample unseen for a long time falls
    back to what its domain looks like now rather than what it looked like when
    its difficulty was curated.
  With both half-lives None (decay off), alpha and beta are the exact
  Beta-Bernoulli count posterior: prior + sum of rewards / sum of 1 - reward.

>>> import pyarrow as pa
>>> stats = SampleStats.from_samples(pa.table({"id": ["a", "b"], "domain": ["m", "m"],
...                                            "difficulty": [0.5, None]}))
>>> stats.update(["a"] * 4, [1.0, 1.0, 0.0, 0.5], step=1)
>>> a, b = stats.posterior(["a"])
>>> float(a[0]), float(b[0])           # 1 + 4*0.5 + 2.5 , 1 + 4*0.5 + 1.5
(5.5, 4.5)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io import write_parquet_atomic  # the one atomic writer (a leaf module)
from sampling.diversity import distinct_ngram_ratio
from sampling.index import DictIdIndex

META_KEY = b"thresher.sampling"
FORMAT_VERSION = 1

# The DESIGN.md "Sample statistics" columns, in order.
STATS_COLUMNS = (
    "sample_id", "domain", "alpha", "beta", "n_seen", "n_correct", "last_step",
    "reward_mean", "reward_var", "len_mean", "diversity", "score",
)
# Raw state beside them in a snapshot, so `load` restores the store bit for bit.
RAW_COLUMNS = (
    "prior_p", "ev_success", "ev_failure", "reward_m2", "len_n", "div_n", "last_reward",
)


@dataclasses.dataclass(frozen=True)
class StoreParams:
    """Prior and decay settings of a `SampleStats` (all documented in docs/sampling.md).

    prior_strength: pseudo-count m of a known `difficulty` p
        (alpha = 1 + m p, beta = 1 + m (1 - p)).
    domain_prior_strength: pseudo-count of the domain running mean for samples
        without a difficulty.
    fast_half_life: steps after which unrefreshed evidence weighs half
        (None = never forget).
    slow_half_life: steps of absence after which the prior has moved halfway to
        the domain running mean (None = never).
    group_size: G of the `score` column, the posterior chance that a group of G
        responses is informative (not all equal).
    correct_threshold: a response counts in `n_correct` when reward >= this.

    >>> s = SampleStats(["q"], difficulty=[0.25], params=StoreParams(prior_strength=8))
    >>> a, b = s.posterior()
    >>> float(a[0]), float(b[0])   # 1 + 8 * 0.25, 1 + 8 * 0.75
    (3.0, 7.0)
    >>> StoreParams(fast_half_life=0)
    Traceback (most recent call last):
    ...
    ValueError: fast_half_life must be None (off) or a number of steps > 0, got 0
    """

    prior_strength: float = 4.0
    domain_prior_strength: float = 2.0
    fast_half_life: float | None = 32.0
    slow_half_life: float | None = 256.0
    group_size: int = 8
    correct_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("prior_strength", "domain_prior_strength"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("fast_half_life", "slow_half_life"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and v > 0):
                raise ValueError(f"{name} must be None (off) or a number of steps > 0, got {v!r}")
        if not (isinstance(self.group_size, int) and self.group_size >= 2):
            raise ValueError(f"group_size must be an int >= 2, got {self.group_size!r}")


PRIOR_GROUP_MIN = 1024  # rows sharing a prior below this are drawn one by one


@dataclasses.dataclass
class PriorGroups:
    """Rows grouped by (domain, prior); see `SampleStats.prior_groups`."""

    groups: list[tuple[int, np.ndarray]]  # (domain code, sorted rows), >= PRIOR_GROUP_MIN rows
    small_rows: np.ndarray                # rows of every smaller group, sorted
    group_of: np.ndarray                  # row -> index into groups, -1 for small
    fresh: np.ndarray                     # never-seen rows per group


class SampleStats:
    """Per-sample statistics of an RL prompt set, updated from every response.

    Build with `SampleStats.from_samples(table)`; feed it with
    `update(sample_ids, rewards, step)`; read it with `posterior`, `mean`,
    `to_arrow()`; persist with `save` / `load`.

    >>> import tempfile
    >>> s = SampleStats(["a", "b"], fast_half_life=None, slow_half_life=None, domain_prior_strength=0)
    >>> s.update(["a", "a", "a", "b"], [1.0, 0.0, 0.5, 1.0], step=1)   # one entry per response
    >>> a, b = s.posterior(["a"])
    >>> float(a[0]), float(b[0])   # Beta(1 + 1.5, 1 + 1.5): the fractional reward counts half
    (2.5, 2.5)
    >>> s.to_arrow().select(["sample_id", "n_seen", "n_correct", "reward_mean"]).to_pylist()[0]
    {'sample_id': 'a', 'n_seen': 3, 'n_correct': 2, 'reward_mean': 0.5}
    >>> path = s.save(tempfile.mkdtemp())
    >>> SampleStats.load(path).posterior(["a"])[0].tolist()
    [2.5]
    """

    def __init__(
        self,
        ids: Sequence[str],
        domains: Sequence[str] | None = None,
        difficulty: Sequence[float | None] | np.ndarray | None = None,
        params: StoreParams | None = None,
        **param_overrides: Any,
    ) -> None:
        self.params = dataclasses.replace(params or StoreParams(), **param_overrides)
        if not isinstance(ids, list) or not all(isinstance(s, str) for s in ids):
            ids = [str(s) for s in ids]
        n = len(ids)
        self._ids = np.empty(n, dtype=object)
        self._ids[:] = ids
        try:
            self._index = DictIdIndex(ids)
        except ValueError:
            seen: dict[str, int] = {}
            for row, s in enumerate(ids):
                if s in seen:
                    raise ValueError(
                        f"sample ids must be unique: {s!r} is on rows {seen[s]} and {row}"
                    ) from None
                seen[s] = row
            raise
        dom = ["default"] * n if domains is None else [str(d) for d in domains]
        if len(dom) != n:
            raise ValueError(f"domains has {len(dom)} entries for {n} ids")
        names, codes = np.unique(np.array(dom, dtype=object), return_inverse=True)
        self.domains: list[str] = [str(x) for x in names]
        self._dom = codes.astype(np.int32)
        if difficulty is None:
            prior = np.full(n, np.nan)
        else:
            prior = np.array(
                [np.nan if v is None else v for v in difficulty], dtype=np.float64
            ) if not isinstance(difficulty, np.ndarray) else difficulty.astype(np.float64)
            if len(prior) != n:
                raise ValueError(f"difficulty has {len(prior)} entries for {n} ids")
            bad = np.flatnonzero(~np.isnan(prior) & ((prior < 0) | (prior > 1)))
            if len(bad):
                r = int(bad[0])
                raise ValueError(
                    f"difficulty must be a pass rate in [0, 1] or null: row {r} "
                    f"(sample_id {ids[r]!r}) has {prior[r]!r}"
                )
        self._prior_p = prior
        self._ev_s = np.zeros(n)
        self._ev_f = np.zeros(n)
        self._n_seen = np.zeros(n, dtype=np.int64)
        self._n_correct = np.zeros(n, dtype=np.int64)
        self._last = np.full(n, -1, dtype=np.int64)
        self._r_mean = np.zeros(n)
        self._r_m2 = np.zeros(n)
        self._last_reward = np.full(n, np.nan)
        self._len_mean = np.zeros(n)
        self._len_n = np.zeros(n, dtype=np.int64)
        self._div = np.zeros(n)
        self._div_n = np.zeros(n, dtype=np.int64)
        nd = len(self.domains)
        known = ~np.isnan(prior)
        self._dom_d_sum = np.bincount(self._dom[known], prior[known], minlength=nd)
        self._dom_d_n = np.bincount(self._dom[known], minlength=nd).astype(np.float64)
        self._dom_r_sum = np.zeros(nd)
        self._dom_r_n = np.zeros(nd)
        self.step = 0
        self._dom_rows: list[np.ndarray] | None = None
        self._prior_groups: PriorGroups | None = None
        self._seen_rows: np.ndarray | None = None

    # ------------------------------------------------------------------ build
    @classmethod
    def from_samples(cls, table: Any, params: StoreParams | None = None, **kw: Any) -> SampleStats:
        """Build from a Sample table (Arrow table or polars DataFrame).

        Uses `id` (or `sample_id`), `domain` (optional; "default" when absent or
        null) and `difficulty` (optional, nullable pass rate in [0, 1]).

        >>> import pyarrow as pa
        >>> s = SampleStats.from_samples(pa.table({"id": ["x", "y"], "difficulty": [0.25, None]}))
        >>> len(s), s.domains
        (2, ['default'])
        """
        if hasattr(table, "to_arrow") and not isinstance(table, pa.Table):
            table = table.to_arrow()
        if not isinstance(table, pa.Table):
            table = pa.table(table)
        cols = table.column_names
        id_col = "id" if "id" in cols else "sample_id" if "sample_id" in cols else None
        if id_col is None:
            raise ValueError(f"samples table needs an 'id' (or 'sample_id') column; has {cols}")
        ids = table.column(id_col).to_pylist()
        nulls = [i for i, v in enumerate(ids) if v is None]
        if nulls:
            raise ValueError(f"column {id_col!r}: row {nulls[0]} is null; every sample needs an id")
        domains = None
        if "domain" in cols:
            domains = ["default" if d is None else d for d in table.column("domain").to_pylist()]
        difficulty = None
        if "difficulty" in cols:
            try:
                col = table.column("difficulty").cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(
                    f"column 'difficulty': expected pass rates in [0, 1] (float), got "
                    f"{table.column('difficulty').type} ({exc})"
                ) from exc
            difficulty = col.to_numpy(zero_copy_only=False).astype(np.float64)
            bad = np.flatnonzero(np.isnan(difficulty) & ~np.asarray(col.is_null()))
            if len(bad):
                raise ValueError(
                    f"column 'difficulty': row {int(bad[0])} is NaN; use null for unknown"
                )
        return cls(ids, domains, difficulty, params=params, **kw)

    # ------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return (f"SampleStats(n={len(self)}, domains={len(self.domains)}, step={self.step}, "
                f"seen={int((self._n_seen > 0).sum())})")

    @property
    def ids(self) -> np.ndarray:
        """Sample ids in row order (object array; do not mutate)."""
        return self._ids

    @property
    def domain_codes(self) -> np.ndarray:
        """Row -> index into `domains` (int32; do not mutate)."""
        return self._dom

    def domain_rows(self) -> list[np.ndarray]:
        """Rows of each domain (sorted), cached."""
        if self._dom_rows is None:
            order = np.argsort(self._dom, kind="stable")
            bounds = np.searchsorted(self._dom[order], np.arange(len(self.domains) + 1))
            self._dom_rows = [order[bounds[i]:bounds[i + 1]] for i in range(len(self.domains))]
        return self._dom_rows

    def prior_groups(self) -> PriorGroups:
        """Rows sharing a domain and a prior (same difficulty, or none), cached.

        Never-seen rows of one group have the same posterior at any step (no
        evidence, same prior, same age), which exact Thompson sampling exploits.
        Groups smaller than PRIOR_GROUP_MIN rows are pooled in `small_rows`.
        The never-seen count per group is kept current by `update`.
        """
        if self._prior_groups is None:
            key = np.where(np.isnan(self._prior_p), -1.0, self._prior_p)
            order = np.lexsort((key, self._dom))
            k, d = key[order], self._dom[order]
            cut = np.flatnonzero((k[1:] != k[:-1]) | (d[1:] != d[:-1])) + 1
            bounds = np.concatenate([[0], cut, [len(order)]])
            group_of = np.full(len(self), -1, dtype=np.int32)
            groups, small = [], []
            for s, e in zip(bounds[:-1], bounds[1:], strict=True):
                rows = np.sort(order[s:e])
                if e - s >= PRIOR_GROUP_MIN:
                    group_of[rows] = len(groups)
                    groups.append((int(d[s]), rows))
                else:
                    small.append(rows)
            small_rows = np.sort(np.concatenate(small)) if small else np.empty(0, np.int64)
            fresh = np.array([int((self._n_seen[r] == 0).sum()) for _, r in groups], dtype=np.int64)
            self._prior_groups = PriorGroups(groups, small_rows, group_of, fresh)
        return self._prior_groups

    def seen_rows(self) -> np.ndarray:
        """Sorted rows updated at least once (cached, kept current by `update`)."""
        if self._seen_rows is None:
            self._seen_rows = np.flatnonzero(self._n_seen > 0)
        return self._seen_rows

    def rows(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Row numbers of `sample_ids`; raises KeyError naming any unknown id."""
        ids = list(sample_ids) if not isinstance(sample_ids, list | tuple) else sample_ids
        idx = self._index.lookup(ids)
        if len(idx) and idx.min() < 0:
            bad = np.flatnonzero(idx < 0)
            shown = ", ".join(repr(ids[i]) for i in bad[:3])
            raise KeyError(
                f"{len(bad)} unknown sample id(s), first at position {int(bad[0])}: {shown}"
            )
        return idx

    # -------------------------------------------------------------- posterior
    def domain_mean(self) -> np.ndarray:
        """Running mean pass rate per domain: known difficulties and all rewards seen.

        (sum of difficulties + sum of rewards) / (count of both); 0.5 for a
        domain with neither.
        """
        num = self._dom_d_sum + self._dom_r_sum
        den = self._dom_d_n + self._dom_r_n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1e-300), 0.5)

    def posterior(
        self, rows: Sequence[str] | np.ndarray | None = None, step: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beta (alpha, beta) at `step` (default: the latest update step).

        `rows`: sample ids, an int array of rows, or None for every sample.
        """
        idx = self._as_rows(rows)
        t = self.step if step is None else int(step)
        p = self.params
        sel = (lambda a: a) if idx is None else (lambda a: a[idx])
        dom = sel(self._dom)
        dmean = self.domain_mean()[dom]
        prior = sel(self._prior_p)
        known = ~np.isnan(prior)
        p0 = np.where(known, prior, dmean)
        m = np.where(known, p.prior_strength, p.domain_prior_strength)
        last = sel(self._last)
        ev_s, ev_f = sel(self._ev_s), sel(self._ev_f)
        if p.fast_half_life is not None or p.slow_half_life is not None:
            # never-seen samples age from step 0, when their prior was set
            dt = (t - np.maximum(last, 0)).astype(np.float64)
            np.maximum(dt, 0.0, out=dt)
            if p.slow_half_life is not None:
                w = 1.0 - np.exp2(-dt / p.slow_half_life)
                p0 = p0 + w * (dmean - p0)
            if p.fast_half_life is not None:
                g = np.exp2(-dt / p.fast_half_life)
                ev_s = ev_s * g
                ev_f = ev_f * g
        alpha = 1.0 + m * p0 + ev_s
        beta = 1.0 + m * (1.0 - p0) + ev_f
        return alpha, beta

    def mean(self, rows: Sequence[str] | np.ndarray | None = None,
             step: int | None = None) -> np.ndarray:
        """Posterior mean pass rate alpha / (alpha + beta)."""
        a, b = self.posterior(rows, step)
        return a / (a + b)

    def informative_prob(self, rows: Sequence[str] | np.ndarray | None = None,
                         step: int | None = None, group_size: int | None = None) -> np.ndarray:
        """Posterior chance a group of G responses is informative: 1 - E[p^G] - E[(1-p)^G].

        E[p^G] under Beta(a, b) is prod_{i<G} (a + i) / (a + b + i).
        """
        a, b = self.posterior(rows, step)
        g = self.params.group_size if group_size is None else int(group_size)
        return beta_informative(a, b, g)

    def _as_rows(self, rows: Any) -> np.ndarray | None:
        if rows is None:
            return None
        if isinstance(rows, np.ndarray) and rows.dtype.kind in "iu":
            return rows
        return self.rows(list(rows))

    # ----------------------------------------------------------------- update
    def update(
        self,
        sample_ids: Sequence[str],
        rewards: Sequence[float] | np.ndarray,
        step: int,
        lengths: Sequence[float] | np.ndarray | None = None,
        responses: Sequence[str] | None = None,
    ) -> None:
        """Fold in one entry per response: its sample id, reward in [0, 1], step.

        `lengths` (response tokens) and `responses` (texts, for the group
        diversity) are optional, one per response.  Responses of the same
        sample in one call form its group.  Everything is validated before
        anything changes: on an error the store is exactly as before.

        >>> s = SampleStats(["a"])
        >>> s.update(["a", "a"], [1.0, float("nan")], step=1)
        Traceback (most recent call last):
        ...
        ValueError: rewards: entry 1 (sample_id 'a') is nan; expected a finite reward in [0, 1]
        """
        ids = list(sample_ids) if not isinstance(sample_ids, list) else sample_ids
        n = len(ids)
        r = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if len(r) != n:
            raise ValueError(f"rewards has {len(r)} entries but sample_ids has {n}")
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        step = int(step)
        bad = np.flatnonzero(~np.isfinite(r) | (r < 0) | (r > 1))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"rewards: entry {i} (sample_id {ids[i]!r}) is {float(r[i])!r}; "
                "expected a finite reward in [0, 1]"
            )
        lens = None
        if lengths is not None:
            lens = np.asarray(lengths, dtype=np.float64).reshape(-1)
            if len(lens) != n:
                raise ValueError(f"lengths has {len(lens)} entries but sample_ids has {n}")
            badl = np.flatnonzero(~np.isfinite(lens) | (lens < 0))
            if len(badl):
                i = int(badl[0])
                raise ValueError(f"lengths: entry {i} is {float(lens[i])!r}; expected a count >= 0")
        if responses is not None and len(responses) != n:
            raise ValueError(f"responses has {len(responses)} entries but sample_ids has {n}")
        if n == 0:
            return
        idx = self.rows(ids)
        uniq, inv = np.unique(idx, return_inverse=True)
        last = self._last[uniq]
        if (last > step).any():
            j = int(np.argmax(last > step))
            raise ValueError(
                f"step {step} is before sample {self._ids[uniq[j]]!r}'s last update "
                f"(step {int(last[j])}); steps must not go back"
            )
        div = None
        if responses is not None:
            # group texts per sample (one Python pass over the responses; optional input)
            groups: list[list[str]] = [[] for _ in range(len(uniq))]
            for k, text in zip(inv.tolist(), responses, strict=True):
                groups[k].append("" if text is None else str(text))
            div = np.array([distinct_ngram_ratio(g) for g in groups])

        # --- all validated: compute the new values, then assign
        k = len(uniq)
        cnt = np.bincount(inv, minlength=k).astype(np.float64)
        s_sum = np.bincount(inv, r, minlength=k)
        f_sum = cnt - s_sum
        p = self.params
        if p.fast_half_life is not None:
            dt = (step - np.maximum(last, 0)).astype(np.float64)
            g = np.where(last >= 0, np.exp2(-dt / p.fast_half_life), 1.0)
            ev_s = self._ev_s[uniq] * g + s_sum
            ev_f = self._ev_f[uniq] * g + f_sum
        else:
            ev_s = self._ev_s[uniq] + s_sum
            ev_f = self._ev_f[uniq] + f_sum
        # Welford / Chan: merge the batch's mean and M2 into the running ones
        na = self._n_seen[uniq].astype(np.float64)
        mb = s_sum / cnt
        m2b = np.bincount(inv, (r - mb[inv]) ** 2, minlength=k)
        ntot = na + cnt
        delta = mb - self._r_mean[uniq]
        new_mean = self._r_mean[uniq] + delta * cnt / ntot
        new_m2 = self._r_m2[uniq] + m2b + delta * delta * na * cnt / ntot
        n_corr = np.bincount(inv, (r >= p.correct_threshold).astype(np.float64), minlength=k)

        newly_seen = uniq[self._n_seen[uniq] == 0]
        self._ev_s[uniq] = ev_s
        self._ev_f[uniq] = ev_f
        self._r_mean[uniq] = new_mean
        self._r_m2[uniq] = new_m2
        self._n_seen[uniq] += cnt.astype(np.int64)
        self._n_correct[uniq] += n_corr.astype(np.int64)
        self._last[uniq] = step
        self._last_reward[uniq] = mb
        if lens is not None:
            ln = self._len_n[uniq].astype(np.float64)
            self._len_mean[uniq] = (self._len_mean[uniq] * ln + np.bincount(inv, lens, minlength=k)) / (ln + cnt)
            self._len_n[uniq] += cnt.astype(np.int64)
        if div is not None:
            dn = self._div_n[uniq].astype(np.float64)
            self._div[uniq] = (self._div[uniq] * dn + div) / (dn + 1.0)
            self._div_n[uniq] += 1
        nd = len(self.domains)
        dom = self._dom[uniq]
        self._dom_r_sum += np.bincount(dom, s_sum, minlength=nd)
        self._dom_r_n += np.bincount(dom, cnt, minlength=nd)
        self.step = max(self.step, step)
        if len(newly_seen):
            if self._seen_rows is not None:
                self._seen_rows = np.union1d(self._seen_rows, newly_seen)
            if self._prior_groups is not None:
                pg = self._prior_groups
                gid = pg.group_of[newly_seen]
                pg.fresh -= np.bincount(gid[gid >= 0], minlength=len(pg.groups))

    # ---------------------------------------------------------------- export
    def to_arrow(self, step: int | None = None, raw: bool = False) -> pa.Table:
        """The store as an Arrow table with the DESIGN "Sample statistics" columns.

        alpha / beta / score are evaluated at `step` (default: latest update).
        Never-seen samples have null last_step / reward_mean / reward_var;
        len_mean and diversity are null until measured.  `raw=True` adds the
        internal state columns a snapshot needs.

        >>> s = SampleStats(["a", "b"]); s.update(["a"], [1.0], step=3)
        >>> s.to_arrow().column("n_seen").to_pylist()
        [1, 0]
        """
        alpha, beta = self.posterior(None, step)
        seen = self._n_seen > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(seen, self._r_m2 / np.maximum(self._n_seen, 1), np.nan)
        cols: dict[str, pa.Array] = {
            "sample_id": pa.array(self._ids, type=pa.string()),
            "domain": pa.DictionaryArray.from_arrays(
                pa.array(self._dom, type=pa.int32()), pa.array(self.domains, type=pa.string())
            ).cast(pa.string()),
            "alpha": pa.array(alpha),
            "beta": pa.array(beta),
            "n_seen": pa.array(self._n_seen),
            "n_correct": pa.array(self._n_correct),
            "last_step": pa.array(self._last, mask=~seen),
            "reward_mean": pa.array(self._r_mean, mask=~seen),
            "reward_var": pa.array(var, mask=~seen),
            "len_mean": pa.array(self._len_mean, mask=self._len_n == 0),
            "diversity": pa.array(self._div, mask=self._div_n == 0),
            "score": pa.array(self.informative_prob(None, step)),
        }
        if raw:
            cols.update({
                "prior_p": pa.array(self._prior_p, mask=np.isnan(self._prior_p)),
                "ev_success": pa.array(self._ev_s),
                "ev_failure": pa.array(self._ev_f),
                "reward_m2": pa.array(self._r_m2),
                "len_n": pa.array(self._len_n),
                "div_n": pa.array(self._div_n),
                "last_reward": pa.array(self._last_reward, mask=np.isnan(self._last_reward)),
            })
        return pa.table(cols)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, sampler: Any = None) -> Path:
        """Write a Parquet snapshot atomically (temp file in the same folder, then rename).

        `path` is a file, or a run directory (then RUN/stats/stats-<step:08d>.parquet).
        With `sampler`, its `state_dict()` (RNG state, epoch position, curriculum
        band) is stored in the file's metadata too; restore it with
        `sampler.load_state_dict(SampleStats.load_sampler_state(path))`.
        Returns the path written.
        """
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / "stats" / f"stats-{self.step:08d}.parquet"
        meta: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "params": dataclasses.asdict(self.params),
            "step": self.step,
            "domains": self.domains,
            "dom_d_sum": self._dom_d_sum.tolist(),
            "dom_d_n": self._dom_d_n.tolist(),
            "dom_r_sum": self._dom_r_sum.tolist(),
            "dom_r_n": self._dom_r_n.tolist(),
        }
        if sampler is not None:
            from sampling.state import encode_state

            meta["sampler"] = encode_state(sampler.state_dict())
        table = self.to_arrow(raw=True)
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        write_parquet_atomic(table, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SampleStats:
        """Restore a snapshot written by `save`, exactly (same arrays, same params)."""
        path = Path(path)
        table = pq.read_table(path)
        raw_meta = (table.schema.metadata or {}).get(META_KEY)
        if raw_meta is None:
            raise ValueError(f"{path}: not a SampleStats snapshot (no {META_KEY.decode()} metadata)")
        meta = json.loads(raw_meta)
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: snapshot format {meta.get('version')!r}, expected {FORMAT_VERSION}")
        missing = [c for c in STATS_COLUMNS + RAW_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: snapshot lacks column(s) {missing}")

        def f64(name: str, fill: float = np.nan) -> np.ndarray:
            return table.column(name).fill_null(fill).to_numpy().astype(np.float64)

        def i64(name: str, fill: int = 0) -> np.ndarray:
            return table.column(name).fill_null(fill).to_numpy().astype(np.int64)

        params = StoreParams(**meta["params"])
        stats = cls.__new__(cls)
        stats.params = params
        ids = table.column("sample_id").to_pylist()
        stats._ids = np.empty(len(ids), dtype=object)
        stats._ids[:] = ids
        stats._index = DictIdIndex(ids)
        stats.domains = list(meta["domains"])
        pos = {d: i for i, d in enumerate(stats.domains)}
        dom_col = table.column("domain").combine_chunks().dictionary_encode()
        dict_codes = np.array([pos[d] for d in dom_col.dictionary.to_pylist()], dtype=np.int32)
        stats._dom = dict_codes[dom_col.indices.to_numpy(zero_copy_only=False)]
        stats._prior_p = f64("prior_p")
        stats._ev_s = f64("ev_success")
        stats._ev_f = f64("ev_failure")
        stats._n_seen = i64("n_seen")
        stats._n_correct = i64("n_correct")
        stats._last = i64("last_step", -1)
        stats._r_mean = f64("reward_mean", 0.0)
        stats._r_m2 = f64("reward_m2")
        stats._last_reward = f64("last_reward")
        stats._len_mean = f64("len_mean", 0.0)
        stats._len_n = i64("len_n")
        stats._div = f64("diversity", 0.0)
        stats._div_n = i64("div_n")
        stats._dom_d_sum = np.array(meta["dom_d_sum"], dtype=np.float64)
        stats._dom_d_n = np.array(meta["dom_d_n"], dtype=np.float64)
        stats._dom_r_sum = np.array(meta["dom_r_sum"], dtype=np.float64)
        stats._dom_r_n = np.array(meta["dom_r_n"], dtype=np.float64)
        stats.step = int(meta["step"])
        stats._dom_rows = None
        stats._prior_groups = None
        stats._seen_rows = None
        return stats

    def restore(self, path: str | os.PathLike) -> SampleStats:
        """Replace this store's contents with the snapshot at `path`, in place.

        For a store that samplers and callers already hold (a trainer resuming
        from a checkpoint): they all see the restored statistics, where
        `load` would hand back a new object only the caller knows. The snapshot
        must hold the same sample ids (in any order), since samplers may keep
        id-derived state; otherwise ValueError and the store is unchanged.
        Returns self.
        """
        saved = type(self).load(path)
        if sorted(saved._ids.tolist()) != sorted(self._ids.tolist()):
            raise ValueError(f"{path}: the snapshot holds other sample ids than this store "
                             f"({len(saved._ids)} vs {len(self._ids)})")
        self.__dict__.update(saved.__dict__)
        return self

    @staticmethod
    def load_sampler_state(path: str | os.PathLike) -> dict[str, Any] | None:
        """The sampler state saved with `save(path, sampler=...)`, or None."""
        from sampling.state import decode_state

        md = pq.read_schema(path).metadata or {}
        if META_KEY not in md:
            raise ValueError(f"{path}: not a SampleStats snapshot")
        enc = json.loads(md[META_KEY]).get("sampler")
        return None if enc is None else decode_state(enc)

    def nbytes(self) -> int:
        """Bytes held by the numeric arrays (ids and the index not included)."""
        return sum(
            a.nbytes for a in (
                self._dom, self._prior_p, self._ev_s, self._ev_f, self._n_seen, self._n_correct,
                self._last, self._r_mean, self._r_m2, self._last_reward, self._len_mean,
                self._len_n, self._div, self._div_n,
            )
        )


def beta_informative(a: np.ndarray, b: np.ndarray, g: int) -> np.ndarray:
    """1 - E[p^G] - E[(1-p)^G] for p ~ Beta(a, b): the chance a group of G is informative.

    E[p^G] = prod_{i<G} (a + i) / (a + b + i).

    >>> round(float(beta_informative(np.array([1.0]), np.array([1.0]), 8)[0]), 6)  # 1 - 2/9
    0.777778
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ep, eq = np.ones_like(a), np.ones_like(a)
    for i in range(g):
        ep *= (a + i) / (a + b + i)
        eq *= (b + i) / (a + b + i)
    return 1.0 - ep - eq
