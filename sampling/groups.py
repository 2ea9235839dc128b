"""Evidence shared across prompts: a hierarchy of groups with decayed Beta evidence.

A prompt seen once or never is, for a per-prompt posterior, only its prior. The
hierarchy gives that prior something to say: every prompt belongs to a chain of
groups, coarse to fine (its domain, then any metadata the Sample carries such as
`level`, `type`, `source`, then a cluster of prompt embeddings), and each group
keeps the decayed success / failure evidence of every response its members got.
A group's mean shrinks toward its parent's with `strength` pseudo-responses, so a
small or young group borrows from the level above:

    mu_root  = (S + 1/2) / (N + 1)
    mu_group = (S_group + strength * mu_parent) / (N_group + strength)

Evidence decays with `half_life` steps (VADE's fast scale, on groups): groups
see many responses per step, so a short half-life tracks the moving policy
without starving the estimate.

`fit_prompt_strength` is the empirical-Bayes step: how far do prompts of one
group spread around the group mean? If pass rates p_i within a group are
Beta(mu m, (1 - mu) m), an observed rate x_i from n_i responses has

    E[(x_i - mu)^2 / (mu (1 - mu))] = (1 + m / n_i) / (m + 1)

and the method of moments over all seen prompts gives m. A small m (prompts
polarized: some always solved, some never) makes each prompt's own evidence
count for much; a large m (prompts alike) lets the group decide.

>>> import numpy as np
>>> h = GroupHierarchy(np.array([0, 0, 1, 1]), ["add", "sort"], [np.array(["1", "2", "1", "2"])])
>>> h.n_levels, [len(c) for c in h.names]
(2, [2, 4])
>>> h.add(np.array([0, 1]), np.array([8.0, 0.0]), np.array([8.0, 8.0]), step=1, half_life=None)
>>> h.leaf_means(np.arange(4), step=1, half_life=None, strength=8.0).round(3).tolist()
[0.75, 0.25, 0.5, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")


MIN_STRENGTH, MAX_STRENGTH = 0.05, 200.0
_SEP = "\x1f"


class GroupHierarchy:
    """Row -> group codes at each level, and the decayed evidence of every group.

    Level 0 is the domain; level k > 0 refines level k - 1 by one more label
    (`labels[k - 1]`, one string per row). `names[k]` holds each group's path
    ("sort/2/...") for reports and snapshots.
    """

    def __init__(self, domain_codes: np.ndarray, domains: Sequence[str],
                 labels: Sequence[np.ndarray] = ()) -> None:
        self.codes: list[np.ndarray] = [np.asarray(domain_codes, dtype=np.int64)]
        self.names: list[list[str]] = [list(domains)]
        self.parents: list[np.ndarray] = [np.zeros(len(domains), dtype=np.int64)]
        for lab in labels:
            prev = self.codes[-1]
            key = np.char.add(np.char.add(prev.astype(str), _SEP), np.asarray(lab, dtype=str))
            uniq, code = np.unique(key, return_inverse=True)
            parent = np.empty(len(uniq), dtype=np.int64)
            parent[code] = prev
            prev_names = self.names[-1]
            self.names.append([f"{prev_names[int(parent[i])]}/{u.split(_SEP, 1)[1]}"
                               for i, u in enumerate(uniq.tolist())])
            self.codes.append(code.astype(np.int64))
            self.parents.append(parent)
        self.s = [np.zeros(len(n)) for n in self.names]
        self.n = [np.zeros(len(n)) for n in self.names]
        self.last = [np.zeros(len(n), dtype=np.int64) for n in self.names]
        self.root = np.zeros(3)  # success, count, last step
        # per finest group: decayed sum and weight of (observed - predicted) group means
        nl = len(self.names[-1])
        self.drift_sum, self.drift_w = np.zeros(nl), np.zeros(nl)
        self.drift_last = np.zeros(nl, dtype=np.int64)

    @property
    def n_levels(self) -> int:
        return len(self.codes)

    @property
    def leaf(self) -> np.ndarray:
        """Row -> code of its finest group."""
        return self.codes[-1]

    def seed(self, rows: np.ndarray, rates: np.ndarray) -> None:
        """Count a known pass rate (curated difficulty) as one response of evidence at step 0."""
        for k in range(self.n_levels):
            m = len(self.names[k])
            self.s[k] += np.bincount(self.codes[k][rows], rates, minlength=m)
            self.n[k] += np.bincount(self.codes[k][rows], minlength=m)
        self.root[:2] += (float(rates.sum()), float(len(rows)))

    def add(self, rows: np.ndarray, s_sum: np.ndarray, cnt: np.ndarray, step: int,
            half_life: float | None) -> None:
        """Fold in the responses of `rows` (successes `s_sum` out of `cnt` each) at `step`."""
        for k in range(self.n_levels):
            m = len(self.names[k])
            if half_life is not None:
                g = np.exp2(-(step - self.last[k]) / half_life)
                self.s[k] *= g
                self.n[k] *= g
            self.last[k][:] = step
            self.s[k] += np.bincount(self.codes[k][rows], s_sum, minlength=m)
            self.n[k] += np.bincount(self.codes[k][rows], cnt, minlength=m)
        if half_life is not None:
            self.root[:2] *= np.exp2(-(step - self.root[2]) / half_life)
        self.root += (float(s_sum.sum()), float(cnt.sum()), 0.0)
        self.root[2] = step

    def add_residuals(self, rows: np.ndarray, residual: np.ndarray, step: int,
                      half_life: float | None) -> None:
        """Fold in how far each row's group came out above (or below) its prediction."""
        if half_life is not None:
            g = np.exp2(-(step - self.drift_last) / half_life)
            self.drift_sum *= g
            self.drift_w *= g
        self.drift_last[:] = step
        m = len(self.drift_sum)
        self.drift_sum += np.bincount(self.leaf[rows], residual, minlength=m)
        self.drift_w += np.bincount(self.leaf[rows], minlength=m)

    def drift(self, rows: np.ndarray | None, step: int, half_life: float | None,
              prior_weight: float = 4.0) -> np.ndarray:
        """Each row's group drift: the decayed mean residual, shrunk to 0 by `prior_weight` groups.

        The policy moves between a prompt's visits (it learns, it forgets); the
        residuals of every visit, first or not, say by how much a group's
        predictions currently miss, and the posterior mean is shifted by it.
        """
        s, w = self.drift_sum, self.drift_w
        if half_life is not None:
            g = np.exp2(-np.maximum(step - self.drift_last, 0) / half_life)
            s, w = s * g, w * g
        d = s / (w + prior_weight)
        return d[self.leaf] if rows is None else d[self.leaf[rows]]

    def means(self, step: int, half_life: float | None, strength: float) -> list[np.ndarray]:
        """Shrunk mean pass rate of every group, per level, as of `step`."""
        rs, rn, rlast = self.root
        if half_life is not None:
            g = 2.0 ** (-max(step - rlast, 0.0) / half_life)
            rs, rn = rs * g, rn * g
        parent_mu = np.array([(rs + 0.5) / (rn + 1.0)])
        out = []
        for k in range(self.n_levels):
            s, n = self.s[k], self.n[k]
            if half_life is not None:
                g = np.exp2(-np.maximum(step - self.last[k], 0) / half_life)
                s, n = s * g, n * g
            mu = (s + strength * parent_mu[self.parents[k]]) / (n + strength)
            out.append(mu)
            parent_mu = mu
        return out

    def leaf_means(self, rows: np.ndarray | None, step: int, half_life: float | None,
                   strength: float) -> np.ndarray:
        """Each row's finest-group mean (rows None = every row)."""
        mu = self.means(step, half_life, strength)[-1]
        return mu[self.leaf] if rows is None else mu[self.leaf[rows]]

    def state(self) -> dict:
        return {"s": [a.tolist() for a in self.s], "n": [a.tolist() for a in self.n],
                "last": [a.tolist() for a in self.last], "root": self.root.tolist(),
                "drift": [self.drift_sum.tolist(), self.drift_w.tolist(), self.drift_last.tolist()]}

    def load_state(self, state: dict) -> None:
        sizes = [len(x) for x in self.names]
        if [len(x) for x in state["s"]] != sizes:
            raise ValueError(f"group evidence has level sizes {[len(x) for x in state['s']]}, "
                             f"the store's groups {sizes}")
        self.s = [np.array(a, dtype=np.float64) for a in state["s"]]
        self.n = [np.array(a, dtype=np.float64) for a in state["n"]]
        self.last = [np.array(a, dtype=np.int64) for a in state["last"]]
        self.root = np.array(state["root"], dtype=np.float64)
        if "drift" in state:
            ds, dw, dl = state["drift"]
            self.drift_sum = np.array(ds, dtype=np.float64)
            self.drift_w = np.array(dw, dtype=np.float64)
            self.drift_last = np.array(dl, dtype=np.int64)


class FirstGroupMoments:
    """Decayed sums over prompts' first groups, per finest group, for `fit_prompt_strength`.

    The fit weighs a first group observed `age` steps ago by 2^(-age / half_life);
    every weight decays by the same factor as steps pass, so the sums it needs
    (of w, w x, w x^2 and w / n, x a first group's mean over n responses) are
    kept per group and decayed as a whole: the refit after each update costs
    O(groups), not O(prompts seen). Only first groups of `min_count` or more
    responses count, as in the fit.
    """

    def __init__(self, n_leaf: int, min_count: float = 2.0) -> None:
        self.sums = np.zeros((4, n_leaf))  # w, w x, w x^2, w / n as of step `at`
        self.count = 0  # prompts counted (undecayed): the fit needs 8
        self.at = 0
        self.min_count = min_count

    def add(self, leaf: np.ndarray, x: np.ndarray, n: np.ndarray, steps: np.ndarray,
            half_life: float | None) -> None:
        """Count first groups (mean x of n responses, observed at `steps`) of prompts in `leaf`."""
        ok = n >= self.min_count
        leaf, x, n, steps = leaf[ok], x[ok], n[ok], steps[ok]
        if not len(leaf):
            return
        at = max(self.at, int(steps.max()))
        self._decay_to(at, half_life)
        w = np.ones(len(x)) if half_life is None else np.exp2(-(at - steps) / half_life)
        m = self.sums.shape[1]
        for k, v in enumerate((w, w * x, w * x * x, w / n)):
            self.sums[k] += np.bincount(leaf, v, minlength=m)
        self.count += int(len(leaf))

    def fit(self, mu: np.ndarray, step: int, half_life: float | None) -> float | None:
        """`fit_prompt_strength` at `step` with each group's mean `mu`, from the sums."""
        if self.count < 8:
            return None
        g = 1.0 if half_life is None else float(np.exp2(-max(step - self.at, 0) / half_life))
        w, wx, wxx, wn = self.sums * g
        mu = np.clip(mu, 1e-3, 1 - 1e-3)
        z = float(((wxx - 2.0 * mu * wx + mu * mu * w) / (mu * (1.0 - mu))).sum())
        return _strength(z, float(wn.sum()), float(w.sum()))

    def state(self) -> dict:
        return {"sums": self.sums.tolist(), "count": self.count, "at": self.at}

    def load_state(self, state: dict) -> None:
        sums = np.array(state["sums"], dtype=np.float64)
        if sums.shape != self.sums.shape:
            raise ValueError(f"first-group sums have shape {sums.shape}, the store's groups "
                             f"{self.sums.shape}")
        self.sums, self.count, self.at = sums, int(state["count"]), int(state["at"])

    def _decay_to(self, at: int, half_life: float | None) -> None:
        if half_life is not None and at > self.at:
            self.sums *= np.exp2(-(at - self.at) / half_life)
        self.at = max(self.at, at)


def _strength(z: float, inv_n: float, big_n: float) -> float:
    """The method-of-moments strength from the weighed moments (see `fit_prompt_strength`)."""
    if z >= big_n:
        return MIN_STRENGTH
    if z <= inv_n:
        return MAX_STRENGTH
    return float(np.clip((big_n - z) / (z - inv_n), MIN_STRENGTH, MAX_STRENGTH))


def fit_prompt_strength(successes: np.ndarray, counts: np.ndarray, group_mean: np.ndarray,
                        min_count: float = 2.0, weights: np.ndarray | None = None) -> float | None:
    """Empirical-Bayes prior strength m of prompts around their group means (method of moments).

    None when fewer than 8 prompts have `min_count` responses of evidence. `weights`
    (one per prompt) weigh the moments, e.g. recent observations more.

    >>> rng = np.random.default_rng(0)
    >>> p = rng.beta(0.5 * 2.0, 0.5 * 2.0, size=4000)        # m = 2 around mu = 0.5
    >>> x = rng.binomial(8, p).astype(float)
    >>> m = fit_prompt_strength(x, np.full(4000, 8.0), np.full(4000, 0.5))
    >>> abs(m - 2.0) < 0.2
    True
    """
    ok = counts >= min_count
    if int(ok.sum()) < 8:
        return None
    n = counts[ok]
    w = np.ones(len(n)) if weights is None else weights[ok]
    x = successes[ok] / n
    mu = np.clip(group_mean[ok], 1e-3, 1 - 1e-3)
    z = float((w * (x - mu) ** 2 / (mu * (1 - mu))).sum())
    return _strength(z, float((w / n).sum()), float(w.sum()))
