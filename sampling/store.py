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
from typing import TYPE_CHECKING, Any

from curate.io import write_parquet_atomic  # the one atomic writer (a leaf module)
from curate.lazy import lazy_import
from sampling.diversity import distinct_ngram_ratio
from sampling.groups import FirstGroupMoments, GroupHierarchy
from sampling.index import DictIdIndex

META_KEY = b"thresher.sampling"
FORMAT_VERSION = 2  # 2 added group evidence and flat_streak; 1 still loads

# The DESIGN.md "Sample statistics" columns, in order.
STATS_COLUMNS = (
    "sample_id", "domain", "alpha", "beta", "n_seen", "n_correct", "last_step",
    "reward_mean", "reward_var", "len_mean", "diversity", "score",
)
# Raw state beside them in a snapshot, so `load` restores the store bit for bit.
RAW_COLUMNS = (
    "prior_p", "ev_success", "ev_failure", "reward_m2", "len_n", "div_n", "last_reward",
)  # + flat_streak and one group:<key> column per group key (absent in format 1)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")
    pa = lazy_import("pyarrow")


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
    share: evidence shared across prompts (sampling.groups). Off: the prior of
        a sample without difficulty is its domain's all-time running mean with
        strength `domain_prior_strength`, exactly as before. On: it is the
        decayed mean of its finest group (domain, then `group_keys`), with a
        strength fitted by empirical Bayes (`prompt_strength` None) or fixed,
        and no uniform Beta(1, 1) base under it, so the posterior mean of an
        unseen prompt is the rate its group shows now.
    group_keys: metadata that refines the domain into groups, coarse to fine:
        Sample columns or keys of its `meta` JSON (e.g. "level", "type",
        "source", "cluster").
    group_half_life: steps after which a group's evidence weighs half (None = never).
    group_strength: pseudo-responses that pull a group's mean toward its parent's.
    prompt_strength: pseudo-responses of the group mean in a prompt's prior
        (None = fitted by empirical Bayes from the prompts seen so far).
    decay_unit: what `fast_half_life` counts: "steps" (since the last update)
        or "visits" (updates of that prompt: evidence is halved after
        `fast_half_life` more visits, however far apart). With sharing on,
        "visits" keeps what a prompt showed between rare visits, while its
        group tracks the moving policy.
    drift_correction: with sharing on, shift every posterior mean by its
        group's drift: the decayed mean of (a group's observed mean - the
        store's prediction for it) over every visit, first or not. The policy
        learns between visits; this keeps predictions calibrated when the
        prompts' own evidence and the first-visit groups go stale.

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
    share: bool = False
    group_keys: tuple[str, ...] = ()
    group_half_life: float | None = 32.0
    group_strength: float = 8.0
    prompt_strength: float | None = None
    decay_unit: str = "steps"
    drift_correction: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_keys", tuple(str(k) for k in self.group_keys))
        if self.decay_unit not in ("steps", "visits"):
            raise ValueError(f"decay_unit must be 'steps' or 'visits', got {self.decay_unit!r}")
        if not (isinstance(self.group_strength, int | float) and self.group_strength > 0):
            raise ValueError(f"group_strength must be a number > 0, got {self.group_strength!r}")
        if self.prompt_strength is not None and not (
                isinstance(self.prompt_strength, int | float) and self.prompt_strength > 0):
            raise ValueError("prompt_strength must be None (fitted) or a number > 0, "
                             f"got {self.prompt_strength!r}")
        if self.group_half_life is not None and not (
                isinstance(self.group_half_life, int | float) and self.group_half_life > 0):
            raise ValueError(f"group_half_life must be None (off) or a number of steps > 0, "
                             f"got {self.group_half_life!r}")
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
        group_labels: Sequence[Sequence[str]] | None = None,
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
        self._streak = np.zeros(n, dtype=np.int64)
        # each prompt's first group: the unbiased sample of its group (a sampler picks
        # unseen prompts of a group alike, but revisits the mixed ones on purpose)
        self._first_mean = np.full(n, np.nan)
        self._first_n = np.zeros(n)
        self._first_step = np.zeros(n, dtype=np.int64)
        labels = self._check_labels(group_labels, n)
        self.groups = GroupHierarchy(self._dom, self.domains, labels)
        self._moments = FirstGroupMoments(len(self.groups.names[-1]))
        if known.any():
            rows = np.flatnonzero(known)
            self.groups.seed(rows, prior[rows])
        self.step = 0
        self._version = 0
        self._fitted: tuple[int, float | None] | None = None
        self._dom_rows: list[np.ndarray] | None = None
        self._prior_groups: PriorGroups | None = None
        self._seen_rows: np.ndarray | None = None

    def _check_labels(self, group_labels: Sequence[Sequence[str]] | None, n: int) -> list[np.ndarray]:
        keys = self.params.group_keys
        if group_labels is None:
            if keys:
                raise ValueError(f"group_keys {list(keys)} need group_labels (one list per key); "
                                 "build with SampleStats.from_samples to read them from a table")
            return []
        labels = [np.asarray([str(v) for v in lab], dtype=object).astype(str) for lab in group_labels]
        if len(labels) != len(keys):
            raise ValueError(f"group_labels has {len(labels)} level(s) for group_keys {list(keys)}")
        for key, lab in zip(keys, labels, strict=True):
            if len(lab) != n:
                raise ValueError(f"group_labels[{key!r}] has {len(lab)} entries for {n} ids")
        return labels

    # ------------------------------------------------------------------ build
    @classmethod
    def from_samples(cls, table: Any, params: StoreParams | None = None, **kw: Any) -> SampleStats:
        """Build from a Sample table (Arrow table or polars DataFrame).

        Uses `id` (or `sample_id`), `domain` (optional; "default" when absent or
        null), `difficulty` (optional, nullable pass rate in [0, 1]) and, for
        each of `group_keys`, a column of that name or that key of the `meta`
        JSON (a row without it is in the group "-").

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
        eff = dataclasses.replace(params or StoreParams(), **kw)
        labels = [group_column(table, key) for key in eff.group_keys] or None
        return cls(ids, domains, difficulty, params=eff, group_labels=labels)

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

        With sharing on, rows share a prior only within their finest group.

        Never-seen rows of one group have the same posterior at any step (no
        evidence, same prior, same age), which exact Thompson sampling exploits.
        Groups smaller than PRIOR_GROUP_MIN rows are pooled in `small_rows`.
        The never-seen count per group is kept current by `update`.
        """
        if self._prior_groups is None:
            key = np.where(np.isnan(self._prior_p), -1.0, self._prior_p)
            part = self.groups.leaf if self.params.share else self._dom
            order = np.lexsort((key, part))
            k, d = key[order], part[order]
            cut = np.flatnonzero((k[1:] != k[:-1]) | (d[1:] != d[:-1])) + 1
            bounds = np.concatenate([[0], cut, [len(order)]])
            group_of = np.full(len(self), -1, dtype=np.int32)
            groups, small = [], []
            for s, e in zip(bounds[:-1], bounds[1:], strict=True):
                rows = np.sort(order[s:e])
                if e - s >= PRIOR_GROUP_MIN:
                    group_of[rows] = len(groups)
                    groups.append((int(self._dom[rows[0]]), rows))
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

    # Read access for samplers (rows: an int array of rows, or None for all).
    def last_step(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Step of each row's last update; -1 where never updated."""
        return self._last if rows is None else self._last[rows]

    def evidence(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Success and failure evidence as of each row's last update (not decayed to now)."""
        if rows is None:
            return self._ev_s, self._ev_f
        return self._ev_s[rows], self._ev_f[rows]

    def diversity(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean response diversity per row, and whether it was ever measured."""
        div, n = (self._div, self._div_n) if rows is None else (self._div[rows], self._div_n[rows])
        return div, n > 0

    def last_group_mean(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Mean reward of each row's last group (NaN where never updated)."""
        return self._last_reward if rows is None else self._last_reward[rows]

    def flat_streak(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Groups in a row, up to the last, whose rewards were all equal (GRESO's signal)."""
        return self._streak if rows is None else self._streak[rows]

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
        self, rows: Sequence[str] | np.ndarray | None = None, step: int | None = None,
        drift: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beta (alpha, beta) at `step` (default: the latest update step).

        `rows`: sample ids, an int array of rows, or None for every sample.
        With sharing on and `drift_correction`, the mean is shifted by its
        group's drift (`sampling.groups.GroupHierarchy.drift`) at the same
        concentration; `drift=False` gives the unshifted posterior.
        """
        idx = self._as_rows(rows)
        t = self.step if step is None else int(step)
        p = self.params
        sel = (lambda a: a) if idx is None else (lambda a: a[idx])
        prior = sel(self._prior_p)
        known = ~np.isnan(prior)
        if p.share:
            gmean = self.groups.leaf_means(idx, t, p.group_half_life, p.group_strength)
            gmean = np.clip(gmean, 1e-3, 1.0 - 1e-3)
            m_free, base = self.prompt_strength(), 0.0
        else:
            gmean = self.domain_mean()[sel(self._dom)]
            m_free, base = p.domain_prior_strength, 1.0
        p0 = np.where(known, prior, gmean)
        m = np.where(known, p.prior_strength, m_free)
        last = sel(self._last)
        ev_s, ev_f = sel(self._ev_s), sel(self._ev_f)
        fast = p.fast_half_life if p.decay_unit == "steps" else None
        if fast is not None or p.slow_half_life is not None:
            # never-seen samples age from step 0, when their prior was set
            dt = (t - np.maximum(last, 0)).astype(np.float64)
            np.maximum(dt, 0.0, out=dt)
            if p.slow_half_life is not None:
                w = 1.0 - np.exp2(-dt / p.slow_half_life)
                p0 = p0 + w * (gmean - p0)
            if fast is not None:
                g = np.exp2(-dt / fast)
                ev_s = ev_s * g
                ev_f = ev_f * g
        if p.share:  # a known difficulty of exactly 0 or 1 must still give a proper Beta
            p0 = np.clip(p0, 1e-3, 1.0 - 1e-3)
        alpha = base + m * p0 + ev_s
        beta = base + m * (1.0 - p0) + ev_f
        if p.share and p.drift_correction and drift:
            tot = alpha + beta
            shifted = np.clip(alpha / tot + self.groups.drift(idx, t, p.group_half_life),
                              1e-3, 1.0 - 1e-3)
            alpha, beta = shifted * tot, (1.0 - shifted) * tot
        return alpha, beta

    def _rebuild_moments(self) -> None:
        """The first-group sums from the per-row arrays (after `load`), in update order."""
        self._moments = FirstGroupMoments(len(self.groups.names[-1]))
        rows = np.flatnonzero(~np.isnan(self._first_mean))
        for st in np.unique(self._first_step[rows]).tolist():
            r = rows[self._first_step[rows] == st]
            self._moments.add(self.groups.leaf[r], self._first_mean[r], self._first_n[r],
                              np.full(len(r), st), self.params.group_half_life)

    def prompt_strength(self) -> float:
        """Pseudo-responses of the group mean in an unseen prompt's prior (sharing on).

        `params.prompt_strength` when set; else fitted by empirical Bayes
        (`sampling.groups.fit_prompt_strength`) from each prompt's first group
        around its group's mean now, recent first groups weighing more (the
        group half-life); refitted after each update; the
        `domain_prior_strength` until 8 prompts have a first group of 2 or more.
        """
        p = self.params
        if p.prompt_strength is not None:
            return float(p.prompt_strength)
        if self._fitted is None or self._fitted[0] != self._version:
            # from per-group sums of the first groups: O(groups) per refit
            mu = self.groups.means(self.step, p.group_half_life, p.group_strength)[-1]
            self._fitted = (self._version, self._moments.fit(mu, self.step, p.group_half_life))
        m = self._fitted[1]
        return float(p.domain_prior_strength if m is None else m)

    def predict(self, rows: Sequence[str] | np.ndarray | None = None,
                step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted pass rate of any prompt, seen or not, and its uncertainty.

        Returns (mean, std) of the posterior Beta at `step`. With sharing on, an
        unseen prompt's prediction is its group's current rate, and its std
        says how much prompts of that group spread around it.

        >>> import pyarrow as pa
        >>> t = pa.table({"id": list("abcd"), "domain": ["x"] * 4,
        ...               "level": [1, 1, 2, 2]})
        >>> s = SampleStats.from_samples(t, share=True, group_keys=("level",), prompt_strength=4.0)
        >>> s.update(["a"] * 8, [1.0] * 8, step=1)     # level 1 looks easy now ...
        >>> mean, std = s.predict(["b", "d"])           # ... so unseen b is predicted above d
        >>> bool(mean[0] > mean[1]), bool(std[0] > 0)
        (True, True)
        """
        a, b = self.posterior(rows, step)
        tot = a + b
        return a / tot, np.sqrt(a * b / (tot * tot * (tot + 1.0)))

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
        if self.params.share and self.params.drift_correction:
            a0, b0 = self.posterior(uniq, step, drift=False)
            resid = np.bincount(inv, r, minlength=k) / np.bincount(inv, minlength=k) - a0 / (a0 + b0)
        else:
            resid = None
        cnt = np.bincount(inv, minlength=k).astype(np.float64)
        s_sum = np.bincount(inv, r, minlength=k)
        f_sum = cnt - s_sum
        p = self.params
        if p.fast_half_life is not None:
            if p.decay_unit == "visits":  # one more visit: earlier evidence loses a step of weight
                g = np.where(last >= 0, 2.0 ** (-1.0 / p.fast_half_life), 1.0)
            else:
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
        # GRESO's signal: how many groups in a row came out all equal (no gradient)
        flat = (m2b <= 1e-12) & (cnt >= 2)
        self._streak[uniq] = np.where(flat, self._streak[uniq] + 1, 0)
        first = self._n_seen[uniq] == cnt  # updated just above: these had no evidence before
        fr = uniq[first]
        self._first_mean[fr] = mb[first]
        self._first_n[fr] = cnt[first]
        self._first_step[fr] = step
        self._moments.add(self.groups.leaf[fr], mb[first], cnt[first], np.full(len(fr), step),
                          p.group_half_life)
        # groups learn from first visits only: revisits are chosen for their evidence
        # (a sampler returns to the mixed prompts), so they would bias the group toward 1/2
        self.groups.add(fr, s_sum[first], cnt[first], step, p.group_half_life)
        if resid is not None:
            self.groups.add_residuals(uniq, resid, step, p.group_half_life)
        self._version += 1
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
                "flat_streak": pa.array(self._streak),
                "first_mean": pa.array(self._first_mean, mask=np.isnan(self._first_mean)),
                "first_n": pa.array(self._first_n),
                "first_step": pa.array(self._first_step),
            })
            labels = self.groups.codes[1:]
            for key, codes, names in zip(self.params.group_keys, labels, self.groups.names[1:],
                                         strict=True):
                tail = np.array([nm.rsplit("/", 1)[1] for nm in names], dtype=object)
                cols[f"group:{key}"] = pa.array(tail[codes], type=pa.string())
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
            "groups": self.groups.state(),
            "first_group_moments": self._moments.state(),
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
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        raw_meta = (table.schema.metadata or {}).get(META_KEY)
        if raw_meta is None:
            raise ValueError(f"{path}: not a SampleStats snapshot (no {META_KEY.decode()} metadata)")
        meta = json.loads(raw_meta)
        if meta.get("version") not in (1, FORMAT_VERSION):
            raise ValueError(f"{path}: snapshot format {meta.get('version')!r}, expected {FORMAT_VERSION}")
        missing = [c for c in STATS_COLUMNS + RAW_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: snapshot lacks column(s) {missing}")

        def f64(name: str, fill: float = np.nan) -> np.ndarray:
            return table.column(name).fill_null(fill).to_numpy().astype(np.float64)

        def i64(name: str, fill: int = 0) -> np.ndarray:
            if name not in table.column_names:  # written before the column existed
                return np.full(table.num_rows, fill, dtype=np.int64)
            return table.column(name).fill_null(fill).to_numpy().astype(np.int64)

        params = StoreParams(**{k: tuple(v) if k == "group_keys" else v
                                for k, v in meta["params"].items()})
        labels = [table.column(f"group:{k}").to_pylist() for k in params.group_keys] or None
        # one constructor path: __init__ builds ids, index, domains and groups; the
        # snapshot's state arrays then replace the fresh ones
        stats = cls(table.column("sample_id").to_pylist(), table.column("domain").to_pylist(),
                    f64("prior_p"), params=params, group_labels=labels)
        if stats.domains != list(meta["domains"]):
            raise ValueError(f"{path}: snapshot domains {meta['domains']} do not match its rows")
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
        stats._streak = i64("flat_streak")
        if "first_mean" in table.column_names:
            stats._first_mean = f64("first_mean")
            stats._first_n = f64("first_n", 0.0)
            stats._first_step = i64("first_step")
        stats._dom_d_sum = np.array(meta["dom_d_sum"], dtype=np.float64)
        stats._dom_d_n = np.array(meta["dom_d_n"], dtype=np.float64)
        stats._dom_r_sum = np.array(meta["dom_r_sum"], dtype=np.float64)
        stats._dom_r_n = np.array(meta["dom_r_n"], dtype=np.float64)
        if "groups" in meta:
            stats.groups.load_state(meta["groups"])
        stats.step = int(meta["step"])
        if "first_group_moments" in meta:  # bit for bit: fill mode adds several times a step
            stats._moments.load_state(meta["first_group_moments"])
        else:  # snapshots from before the sums: rebuilt from the per-row arrays
            stats._rebuild_moments()
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
        import pyarrow.parquet as pq

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


MISSING_LABEL = "-"


def group_column(table: pa.Table, key: str) -> list[str]:
    """One label per row for a group key: the column `key`, else that key of the `meta` JSON.

    >>> group_column(pa.table({"meta": ['{"level": 2}', None, '{}']}), "level")
    ['2', '-', '-']
    """
    if key in table.column_names:
        return [MISSING_LABEL if v is None else str(v) for v in table.column(key).to_pylist()]
    if "meta" not in table.column_names:
        raise ValueError(f"group key {key!r}: the samples have neither a {key!r} column nor a "
                         f"'meta' column to read it from; columns are {table.column_names}")
    out, found = [], False
    for row, raw in enumerate(table.column("meta").to_pylist()):
        if not raw:
            out.append(MISSING_LABEL)
            continue
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"column 'meta', row {row}: not valid JSON ({exc.msg}); "
                             f"group key {key!r} is read from it") from None
        v = meta.get(key) if isinstance(meta, dict) else None
        found = found or v is not None
        out.append(MISSING_LABEL if v is None else str(v))
    if not found:
        raise ValueError(f"group key {key!r}: no row has it, as a column or in 'meta'")
    return out


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
