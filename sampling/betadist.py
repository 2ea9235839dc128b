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
    e = rng.standard_exponential(k)
    return -np.expm1(-np.cumsum(e / (m - np.arange(k))))


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
                            center: np.ndarray, grid: int = 256) -> list[np.ndarray]:
    """`distance_quantiles` of group i at the probabilities us[i], all groups in one search.

    A table of the CDF of |p - center| on a grid of `grid` steps per group, a
    linear interpolation in it, then four Newton steps kept inside the bracket:
    the cost is that of one group whatever their number.

    >>> distance_quantiles_many(np.array([1.0]), np.array([1.0]), [np.array([0.5])],
    ...                         np.array([0.5]))[0].round(12).tolist()
    [0.25]
    """
    if not us:
        return []
    from scipy.special import gammaln

    width = max(len(u) for u in us)
    u = np.zeros((len(us), width))
    for i, ui in enumerate(us):
        u[i, :len(ui)] = ui
    a2, b2, c2 = (np.asarray(x, dtype=np.float64)[:, None] for x in (a, b, center))
    lbeta = gammaln(a2 + b2) - gammaln(a2) - gammaln(b2)

    def cdf(d: np.ndarray) -> np.ndarray:
        return betainc(a2, b2, c2 + d) - betainc(a2, b2, c2 - d)

    def pdf(d: np.ndarray) -> np.ndarray:
        out = np.zeros_like(d)
        for x in (c2 + d, c2 - d):
            xc = np.clip(x, 1e-300, 1.0 - 1e-16)
            dens = np.exp(lbeta + (a2 - 1.0) * np.log(xc) + (b2 - 1.0) * np.log1p(-xc))
            out += np.where((x > 0) & (x < 1), dens, 0.0)
        return out

    dmax = np.maximum(np.abs(c2), np.abs(1.0 - c2))
    dg = np.linspace(0.0, 1.0, grid + 1)[None, :] * dmax
    fg = np.maximum.accumulate(cdf(dg), axis=1)  # guard monotonicity against rounding
    hi = np.stack([np.searchsorted(fg[i], u[i], side="left") for i in range(len(us))])
    hi = np.clip(hi, 1, grid)
    lo = hi - 1
    flo, fhi = np.take_along_axis(fg, lo, 1), np.take_along_axis(fg, hi, 1)
    dlo, dhi = np.take_along_axis(dg, lo, 1), np.take_along_axis(dg, hi, 1)
    span = fhi - flo
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(span > 0, (u - flo) / span, 0.5)
    d = dlo + np.clip(frac, 0.0, 1.0) * (dhi - dlo)
    for _ in range(4):  # Newton, kept inside the bracket
        f = cdf(d) - u
        fp = pdf(d)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = np.where(fp > 0, f / fp, 0.0)
        d = np.clip(d - step, dlo, dhi)
    return [d[i, :len(ui)] for i, ui in enumerate(us)]
