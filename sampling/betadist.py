"""Exact Thompson draws for large groups of samples that share one Beta posterior.

Ranking N samples by a Thompson draw costs N Beta draws (~45 ms per million
with numpy).  But most rows of a big prompt set are never-seen samples whose
posterior is their group's prior (same domain, same curated difficulty), so
their draws are iid.  Only the best of them can make the batch, and the
ranking score 1 - p^G - (1-p)^G depends on p through D = |p - 1/2| alone
(smaller D, higher score).  So instead of m draws we generate the k smallest
of m iid D values directly, in O(k):

- the k smallest of m iid uniforms by Renyi's representation:
  -log(1 - U_(j)) = sum_{i<=j} E_i / (m - i + 1), with E_i ~ Exp(1);
- D_(j) = F_D^{-1}(U_(j)), where F_D(d) = I_{1/2+d}(a, b) - I_{1/2-d}(a, b)
  (I: the regularized incomplete beta, scipy's), inverted by table lookup
  then Newton, for every group of a step in one vectorized search.

The k smallest D's are exchangeable over the group's rows, so they go to k
rows chosen uniformly at random.  The result has the same distribution as
drawing all m and keeping the best k, up to floating-point error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")


def betainc(a: float, b: float, x: np.ndarray) -> np.ndarray:
    """Regularized incomplete beta I_x(a, b) for an array x (scipy's, x clipped to [0, 1]).

    >>> round(float(betainc(2.0, 3.0, np.array([0.5]))[0]), 10)   # 11/16
    0.6875
    """
    from scipy.special import (
        betainc as incomplete_beta,  # imported on first use: scipy is slow to load
    )

    return incomplete_beta(a, b, np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0))


def smallest_uniforms(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k smallest of m iid Uniform(0, 1) draws, ascending, in O(k).

    >>> u = smallest_uniforms(10**6, 5, np.random.default_rng(0))
    >>> bool(np.all(np.diff(u) > 0)) and float(u[-1]) < 1e-4
    True
    """
    k = min(k, m)
    return _smallest_from(rng.standard_exponential(k), m)


def _smallest_from(e: np.ndarray, m: int | np.ndarray) -> np.ndarray:
    """The order statistics from standard exponentials `e` (last axis): the j-th smallest
    of m uniforms is 1 - exp(-sum_{i<=j} e_i / (m - i)). `m` broadcasts over rows."""
    return -np.expm1(-np.cumsum(e / (m - np.arange(e.shape[-1])), axis=-1))


def smallest_uniforms_many(ms: Sequence[int], ks: Sequence[int], rng: np.random.Generator
                           ) -> list[np.ndarray]:
    """`smallest_uniforms(ms[i], ks[i], rng)` for every i, in one draw from `rng`.

    The same numbers as calling `smallest_uniforms` in turn (the generator's
    exponentials do not depend on how a run of them is split into calls), in a
    few array operations instead of a handful per group.

    >>> rng = np.random.default_rng(0)
    >>> one = [smallest_uniforms(m, k, rng) for m, k in ((50, 3), (9, 5))]
    >>> many = smallest_uniforms_many([50, 9], [3, 5], np.random.default_rng(0))
    >>> all(np.array_equal(x, y) for x, y in zip(one, many))
    True
    """
    ks = [min(int(k), int(m)) for m, k in zip(ms, ks, strict=True)]
    if not ks:
        return []
    e = rng.standard_exponential(sum(ks))
    if len(set(ks)) == 1:  # the usual case (every group asked for the batch size): one table
        return list(_smallest_from(e.reshape(len(ks), ks[0]),
                                   np.asarray(ms, dtype=np.int64)[:, None]))
    return [_smallest_from(x, int(m)) for x, m in zip(np.split(e, np.cumsum(ks)[:-1]), ms, strict=True)]


def distance_quantiles(a: float, b: float, u: np.ndarray, center: float = 0.5) -> np.ndarray:
    """d with P(|p - center| <= d) = u, for p ~ Beta(a, b) and each u in [0, 1].

    >>> distance_quantiles(1.0, 1.0, np.array([0.0, 0.5, 1.0])).round(12).tolist()  # uniform: u / 2
    [0.0, 0.25, 0.5]
    """
    return distance_quantiles_many(np.array([a]), np.array([b]), [np.asarray(u, dtype=np.float64)],
                                   np.array([center]))[0]


def best_distances(a: float, b: float, m: int, k: int, rng: np.random.Generator,
                   center: float = 0.5) -> np.ndarray:
    """The k smallest |p - center| among m iid p ~ Beta(a, b), ascending (exact in distribution)."""
    return distance_quantiles(a, b, smallest_uniforms(m, k, rng), center)


def distance_quantiles_many(a: np.ndarray, b: np.ndarray, us: list[np.ndarray],
                            center: np.ndarray) -> list[np.ndarray]:
    """`distance_quantiles` of group i at the probabilities us[i], all groups in one search.

    >>> distance_quantiles_many(np.array([1.0]), np.array([1.0]), [np.array([0.5])],
    ...                         np.array([0.5]))[0].round(12).tolist()
    [0.25]
    """
    if not us:
        return []
    reach = np.array([float(np.max(u, initial=0.0)) for u in us])
    return DistanceSearch(a, b, center, reach).quantiles(np.arange(len(us)), us)


class DistanceSearch:
    """Quantiles of |p - center| for p ~ Beta(a_i, b_i), many groups at once.

    Built once per step: a table of each group's CDF on `coarse` steps over the
    whole range, then a second table of `grid` steps over the part that
    `reach[i]` (the largest probability that will be asked of group i) covers;
    the draws a sampler asks for are the smallest of many, so that part is
    narrow. `quantiles` interpolates in it, then runs a safeguarded Newton:
    each quantile keeps a bracket, and a step that leaves it, or meets zero
    density (a tempered center outside [0, 1] puts a flat stretch before the
    support), bisects instead. Only the quantiles not yet within `tol` are
    evaluated again, so the cost is about that of one group whatever their
    number, and asking in several rounds does not rebuild the tables.

    >>> s = DistanceSearch(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([0.5, 0.5]),
    ...                    np.array([0.5, 0.5]))
    >>> [d.round(12).tolist() for d in s.quantiles(np.array([0]), [np.array([0.2, 0.5])])]
    [[0.1, 0.25]]
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, center: np.ndarray, reach: np.ndarray,
                 grid: int = 32, coarse: int = 16, tol: float = 1e-12) -> None:
        from scipy.special import gammaln

        self.a, self.b, self.c = (np.asarray(x, dtype=np.float64) for x in (a, b, center))
        self.lbeta = gammaln(self.a + self.b) - gammaln(self.a) - gammaln(self.b)
        self.grid, self.tol = grid, tol
        a2, b2, c2 = self.a[:, None], self.b[:, None], self.c[:, None]
        dg, fg = self._table(np.maximum(np.abs(c2), np.abs(1.0 - c2)), a2, b2, c2, coarse)
        first = (fg < np.asarray(reach, dtype=np.float64)[:, None]).sum(axis=1, keepdims=True)
        top = np.take_along_axis(dg, np.minimum(first, coarse), 1)
        self.dg, self.fg = self._table(top, a2, b2, c2, grid)
        self.pg = self._pdf(self.dg, a2, b2, c2, self.lbeta[:, None])  # slopes for the start

    @staticmethod
    def _pdf(d: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, lbeta: np.ndarray
             ) -> np.ndarray:
        """Density of |p - c| at d: the Beta density at c + d plus at c - d (inside (0, 1))."""
        out = np.zeros(np.broadcast_shapes(d.shape, a.shape))
        for y in (c + d, c - d):
            yc = np.clip(y, 1e-300, 1.0 - 1e-16)
            dens = np.exp(lbeta + (a - 1.0) * np.log(yc) + (b - 1.0) * np.log1p(-yc))
            out += np.where((y > 0) & (y < 1), dens, 0.0)
        return out

    @staticmethod
    def _cdf(d: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return betainc(a, b, c + d) - betainc(a, b, c - d)

    def _table(self, top: np.ndarray, a2: np.ndarray, b2: np.ndarray, c2: np.ndarray, steps: int
               ) -> tuple[np.ndarray, np.ndarray]:
        dg = np.linspace(0.0, 1.0, steps + 1)[None, :] * top
        # running max: guard monotonicity against rounding
        return dg, np.maximum.accumulate(self._cdf(dg, a2, b2, c2), axis=1)

    @staticmethod
    def _start(u: np.ndarray, flo: np.ndarray, fhi: np.ndarray, dlo: np.ndarray,
               dhi: np.ndarray, plo: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Starting points: the inverse CDF as a cubic Hermite in each table cell.

        The slopes of d(u) at the cell's ends are 1 / density; where a slope is
        missing (zero density) or would make the cubic non-monotone
        (Fritsch-Carlson), the cell is interpolated linearly instead. An error
        of order h^4 leaves one Newton step for most quantiles.
        """
        span_f, span_d = fhi - flo, dhi - dlo
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t = np.clip(np.where(span_f > 0, (u - flo) / span_f, 0.5), 0.0, 1.0)
            m0 = span_f / (plo * span_d)  # end slopes in cell units (linear: 1)
            m1 = span_f / (phi * span_d)
        ok = np.isfinite(m0) & np.isfinite(m1) & (m0 >= 0) & (m1 >= 0) & (m0 <= 3) & (m1 <= 3)
        m0, m1 = np.where(ok, m0, 1.0), np.where(ok, m1, 1.0)
        t2, t3 = t * t, t * t * t
        shape = (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) + (t3 - t2) * m1
        return dlo + np.clip(shape, 0.0, 1.0) * span_d

    def quantiles(self, groups: np.ndarray, us: list[np.ndarray]) -> list[np.ndarray]:
        """d with P(|p - c_i| <= d) = u for each u in us[j], group i = groups[j]."""
        groups = np.asarray(groups, dtype=np.int64)
        sizes = [len(u) for u in us]
        owner = np.repeat(groups, sizes)
        u = np.concatenate([np.asarray(x, dtype=np.float64) for x in us]) if us else np.zeros(0)
        # each table row is ascending: the cell of u is the count of entries below it,
        # found per group (no copy of the table per quantile)
        below = [np.searchsorted(self.fg[i], np.asarray(x, dtype=np.float64), side="left")
                 for i, x in zip(groups.tolist(), us, strict=True)]
        hi = np.clip(np.concatenate(below) if below else np.zeros(0, dtype=np.int64), 1, self.grid)
        lo = hi - 1
        flo, fhi = self.fg[owner, lo], self.fg[owner, hi]
        dlo, dhi = self.dg[owner, lo], self.dg[owner, hi]
        plo, phi = self.pg[owner, lo], self.pg[owner, hi]
        d = self._start(u, flo, fhi, dlo, dhi, plo, phi)
        act = np.flatnonzero(dhi - dlo > self.tol)
        for _ in range(100):
            if not len(act):
                break
            g = owner[act]
            A, B, C, x = self.a[g], self.b[g], self.c[g], d[act]
            f = self._cdf(x, A, B, C) - u[act]
            lo_a = np.where(f < 0, x, dlo[act])
            hi_a = np.where(f >= 0, x, dhi[act])
            dlo[act], dhi[act] = lo_a, hi_a
            fp = self._pdf(x, A, B, C, self.lbeta[g])
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                newton = x - f / fp
            inside = (fp > 0) & (newton >= lo_a) & (newton <= hi_a)
            nxt = np.where(f == 0, x, np.where(inside, newton, 0.5 * (lo_a + hi_a)))
            d[act] = nxt
            # a Newton step under 1e-7 leaves an error of order its square: done
            done = (np.abs(nxt - x) <= self.tol) | (hi_a - lo_a <= self.tol)
            done |= inside & (np.abs(nxt - x) <= 1e-7)
            act = act[~done]
        return np.split(d, np.cumsum(sizes)[:-1]) if us else []
