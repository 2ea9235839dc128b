"""Data-mixture optimization across domains (RegMix / MoDoMoDo style).

Three steps, each usable alone:

* :func:`propose` -- seed designs on the simplex: every domain alone, leave-one-out,
  uniform, Dirichlet draws around a prior, seeded space-filling draws.
* :func:`fit` -- regress a score (a validation loss, a reward) on the mixture
  weights with several predictors (linear and quadratic Scheffe models with
  cross-validated ridge, the exponential mixing law of Ye et al., an RBF kernel
  ridge and a gradient-boosted tree model), report the cross-validated Spearman
  rank correlation and RMSE of each, and keep the best.
* :func:`optimize` -- search the simplex (with per-domain bounds and an optional
  KL penalty towards a prior mixture) for the mixture the fitted model likes best.

>>> import numpy as np
>>> from curate import mixture
>>> W = mixture.propose(["a", "b", "c"], n=24, seed=0)
>>> y = W["a"].to_numpy() - 0.5 * W["b"].to_numpy() * W["c"].to_numpy()
>>> model = mixture.fit(W, y, models=("quadratic",))
>>> best = mixture.optimize(model, maximize=True, bounds={"a": (0.0, 0.6)})
>>> round(best.weights["a"], 3)
0.6
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize as spo
from scipy import stats

from curate.errors import DataError

__all__ = [
    "MixtureInputError",
    "FittedMixtureModel",
    "MixtureFit",
    "OptimizedMixture",
    "propose",
    "fit",
    "optimize",
    "gain_interval",
    "validate_mixtures",
    "MODELS",
]

SUM_TOL = 1e-2  # 17 weights rounded to 3 decimals (RegMix files) can be off by 0.0085


class MixtureInputError(DataError):
    """Bad mixture/score input; the message names the source, row and column."""


# --------------------------------------------------------------------------- input


def validate_mixtures(
    df: pl.DataFrame, domains: Sequence[str], source: str = "<mixtures>", tol: float = SUM_TOL
) -> np.ndarray:
    """Check a mixtures table and return its ``(n, d)`` weight matrix.

    Raises :class:`MixtureInputError` naming ``source``, the (0-based data) row and
    the column for a missing domain, a non-numeric/NaN/negative weight, or a row
    whose weights do not sum to 1.
    """
    missing = [d for d in domains if d not in df.columns]
    if missing:
        raise MixtureInputError(
            f"{source}: domain column(s) {missing} missing; expected columns {list(domains)}"
        )
    try:
        W = df.select([pl.col(d).cast(pl.Float64) for d in domains]).to_numpy()
    except Exception as exc:  # polars raises several types for bad casts
        raise MixtureInputError(f"{source}: weight columns must be numeric ({exc})") from exc
    bad = ~np.isfinite(W) | (W < 0)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise MixtureInputError(
            f"{source}: row {r}, column {domains[c]!r}: weight {W[r, c]!r} is not a finite "
            "number >= 0"
        )
    sums = W.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if off.size:
        r = int(off[0])
        raise MixtureInputError(
            f"{source}: row {r}, columns {list(domains)}: weights sum to {sums[r]:.6g}, "
            f"expected 1 (+-{tol}); {off.size} such row(s)"
        )
    return W / sums[:, None]


def _as_matrix(weights: Any, domains: Sequence[str] | None) -> np.ndarray:
    if isinstance(weights, pl.DataFrame):
        cols = list(domains) if domains is not None else weights.columns
        return weights.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy()
    if isinstance(weights, Mapping):
        if domains is None:
            raise MixtureInputError("a dict of weights needs the model's domain order")
        return np.array([[float(weights[d]) for d in domains]])
    W = np.asarray(weights, dtype=float)
    return W[None, :] if W.ndim == 1 else W


def _as_scores(scores: Any, n: int, source: str) -> np.ndarray:
    y = np.asarray(scores.to_numpy() if hasattr(scores, "to_numpy") else scores, dtype=float)
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise MixtureInputError(f"{source}: {y.shape[0]} scores for {n} mixtures")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise MixtureInputError(f"{source}: row {int(bad[0])}: score is {y[bad[0]]} (not finite)")
    return y


# --------------------------------------------------------------------------- propose


def _space_filling(rng: np.random.Generator, n: int, d: int, pool: int = 64) -> np.ndarray:
    """Greedy maximin selection from a large flat-Dirichlet pool (seeded)."""
    cand = rng.dirichlet(np.ones(d), size=max(pool * n, 256))
    chosen = [int(rng.integers(len(cand)))]
    dist = np.linalg.norm(cand - cand[chosen[0]], axis=1)
    for _ in range(n - 1):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(cand - cand[i], axis=1))
    return cand[chosen]


def propose(
    domains: Sequence[str],
    n: int,
    strategy: str = "mixed",
    prior: Mapping[str, float] | Sequence[float] | None = None,
    concentration: float = 10.0,
    seed: int = 0,
) -> pl.DataFrame:
    """Propose ``n`` pilot mixtures over ``domains`` as a table (one column per domain).

    Strategies: ``"vertices"`` (each domain alone), ``"leave_one_out"``, ``"uniform"``,
    ``"dirichlet"`` (draws around ``prior`` with the given ``concentration``),
    ``"space_filling"`` (seeded maximin design) and ``"mixed"``: uniform, vertices and
    leave-one-out first (as many as fit in ``n``), then space-filling and Dirichlet
    draws for the rest. Every row sums to 1; the same seed gives the same design.

    >>> propose(["x", "y"], 3, strategy="vertices").rows()
    [(1.0, 0.0), (0.0, 1.0), (1.0, 0.0)]
    """
    d = len(domains)
    if d < 2 or len(set(domains)) != d:
        raise MixtureInputError(f"need >= 2 distinct domains, got {list(domains)}")
    if n < 1:
        raise MixtureInputError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    p = _prior_vector(prior, domains)
    eye = np.eye(d)
    loo = (1.0 - eye) / (d - 1)
    uni = np.full((1, d), 1.0 / d)

    def dirichlet(k: int) -> np.ndarray:
        return rng.dirichlet(np.maximum(p * concentration, 1e-3), size=k)

    def cycle(base: np.ndarray) -> np.ndarray:
        return base[np.arange(n) % len(base)]

    if strategy == "vertices":
        W = cycle(eye)
    elif strategy == "leave_one_out":
        W = cycle(loo)
    elif strategy == "uniform":
        W = cycle(uni)
    elif strategy == "dirichlet":
        W = dirichlet(n)
    elif strategy == "space_filling":
        W = _space_filling(rng, n, d)
    elif strategy == "mixed":
        seeds = np.vstack([uni, eye, loo])[:n]
        rest = n - len(seeds)
        half = rest // 2
        parts = [seeds]
        if rest:
            parts += [_space_filling(rng, rest - half, d), dirichlet(half)]
        W = np.vstack(parts)
    else:
        raise MixtureInputError(
            f"unknown strategy {strategy!r}; expected one of vertices, leave_one_out, uniform, "
            "dirichlet, space_filling, mixed"
        )
    W = W / W.sum(axis=1, keepdims=True)
    return pl.DataFrame({dom: W[:, i] for i, dom in enumerate(domains)})


def _prior_vector(prior: Any, domains: Sequence[str]) -> np.ndarray:
    d = len(domains)
    if prior is None:
        return np.full(d, 1.0 / d)
    if isinstance(prior, Mapping):
        unknown = set(prior) - set(domains)
        if unknown:
            raise MixtureInputError(f"prior names unknown domain(s) {sorted(unknown)}")
        p = np.array([float(prior.get(dom, 0.0)) for dom in domains])
    else:
        p = np.asarray(prior, dtype=float)
    if p.shape != (d,) or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise MixtureInputError(f"prior must be {d} non-negative weights, got {p.tolist()}")
    return p / p.sum()


# --------------------------------------------------------------------------- predictors


def _scheffe_quadratic(W: np.ndarray) -> np.ndarray:
    """Identifiable Scheffe quadratic features: w_i, then w_i w_j for i < j (no intercept)."""
    iu, ju = np.triu_indices(W.shape[1], k=1)
    return np.hstack([W, W[:, iu] * W[:, ju]])


def _ridge_solve(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    # no intercept: the Scheffe form absorbs it (sum w_i = 1)
    A = X.T @ X + alpha * np.eye(X.shape[1])
    return np.linalg.lstsq(A, X.T @ y, rcond=None)[0]


def _kfold(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(n), min(k, n))


class _Ridge:
    """Ridge on a feature map; alpha picked by inner K-fold CV (MSE)."""

    ALPHAS = (1e-10, 1e-7, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)

    def __init__(self, features: Any, name: str, standardize: bool = True) -> None:
        # the quadratic model is NOT standardized: interaction columns w_i w_j are small,
        # so a shared alpha shrinks them harder than main effects (a hierarchy prior),
        # which is what keeps it sane with fewer rows than its 153 coefficients.
        self.features, self.name, self.standardize = features, name, standardize

    def fit(self, W: np.ndarray, y: np.ndarray, seed: int = 0) -> _Ridge:
        X = self.features(W)
        scale = np.sqrt((X**2).mean(axis=0)) + 1e-12 if self.standardize else np.ones(X.shape[1])
        Xs = X / scale
        folds = _kfold(len(y), 5, np.random.default_rng(seed))
        best = (math.inf, self.ALPHAS[0])
        if len(folds) >= 2:
            for a in self.ALPHAS:
                err = 0.0
                for f in folds:
                    tr = np.setdiff1d(np.arange(len(y)), f)
                    b = _ridge_solve(Xs[tr], y[tr], a * len(tr))
                    err += float(((Xs[f] @ b - y[f]) ** 2).sum())
                best = min(best, (err, a))
        self.alpha = best[1]
        self.coef_ = _ridge_solve(Xs, y, self.alpha * len(y)) / scale
        return self

    def predict(self, W: np.ndarray) -> np.ndarray:
        return self.features(W) @ self.coef_


class _ExpLaw:
    """Mixing law of Ye et al. (2024): L(w) = c + k * exp(t . w), least squares."""

    name = "exp"

    def fit(self, W: np.ndarray, y: np.ndarray, seed: int = 0) -> _ExpLaw:
        d = W.shape[1]
        ys = y.std() or 1.0
        yc = (y - y.mean()) / ys  # fit in standardized units for conditioning

        def resid(p: np.ndarray) -> np.ndarray:
            z = np.clip(W @ p[2:], -30, 30)
            return p[0] + p[1] * np.exp(z) - yc

        best = None
        rng = np.random.default_rng(seed)
        for k0 in (1.0, -1.0):
            for _ in range(3):
                p0 = np.concatenate([[0.0, k0], rng.normal(0, 0.5, d)])
                r = spo.least_squares(resid, p0, method="lm" if len(y) > d + 2 else "trf",
                                      max_nfev=2000)
                if best is None or r.cost < best.cost:
                    best = r
        self.params_ = best.x
        self.mean_, self.scale_ = y.mean(), ys
        return self

    def predict(self, W: np.ndarray) -> np.ndarray:
        p = self.params_
        z = np.clip(W @ p[2:], -30, 30)
        return (p[0] + p[1] * np.exp(z)) * self.scale_ + self.mean_


class _KernelRidge:
    """RBF kernel ridge with (gamma, alpha) chosen by inner 5-fold CV."""

    name = "kernel"
    GRID = [(g, a) for g in (0.3, 1.0, 3.0, 10.0, 30.0) for a in (1e-4, 1e-3, 1e-2, 1e-1)]

    @staticmethod
    def _k(A: np.ndarray, B: np.ndarray, g: float) -> np.ndarray:
        d2 = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2 * A @ B.T
        return np.exp(-g * np.maximum(d2, 0.0))

    def fit(self, W: np.ndarray, y: np.ndarray, seed: int = 0) -> _KernelRidge:
        folds = _kfold(len(y), 5, np.random.default_rng(seed))
        mu = y.mean()
        best = (math.inf, self.GRID[0])
        if len(folds) >= 2:
            for g, a in self.GRID:
                err = 0.0
                for f in folds:
                    tr = np.setdiff1d(np.arange(len(y)), f)
                    K = self._k(W[tr], W[tr], g)
                    m = y[tr].mean()
                    c = np.linalg.solve(K + a * np.eye(len(tr)), y[tr] - m)
                    err += float(((self._k(W[f], W[tr], g) @ c + m - y[f]) ** 2).sum())
                best = min(best, (err, (g, a)))
        self.gamma, self.alpha = best[1]
        K = self._k(W, W, self.gamma)
        self.W_, self.mu_ = W, mu
        self.c_ = np.linalg.solve(K + self.alpha * np.eye(len(y)), y - mu)
        return self

    def predict(self, W: np.ndarray) -> np.ndarray:
        return self._k(W, self.W_, self.gamma) @ self.c_ + self.mu_


class _Boosted:
    """Gradient-boosted trees (scikit-learn), the RegMix-style non-parametric model."""

    name = "gbm"

    def fit(self, W: np.ndarray, y: np.ndarray, seed: int = 0) -> _Boosted:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        # one thread: on small tables OpenMP spin-waiting on a shared CPU costs 100x
        with threadpool_limits(1):
            self.m_ = HistGradientBoostingRegressor(
                max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                min_samples_leaf=max(2, min(20, len(y) // 8)), random_state=seed,
            ).fit(W, y)
        return self

    def predict(self, W: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self.m_.predict(W)


MODELS: dict[str, Any] = {
    "linear": lambda: _Ridge(lambda W: W, "linear"),
    "quadratic": lambda: _Ridge(_scheffe_quadratic, "quadratic", standardize=False),
    "exp": _ExpLaw,
    "kernel": _KernelRidge,
    "gbm": _Boosted,
}


@dataclass
class FittedMixtureModel:
    """One fitted predictor: ``predict(weights)`` takes an ``(n, d)`` array, one
    mixture as a 1-d array or dict, or a table with the domain columns."""

    kind: str
    domains: list[str]
    estimator: Any

    def predict(self, weights: Any) -> np.ndarray:
        return self.estimator.predict(_as_matrix(weights, self.domains))

    @property
    def coefficients(self) -> dict[str, float] | None:
        """Named coefficients of the linear/quadratic Scheffe models (else None)."""
        if self.kind not in ("linear", "quadratic"):
            return None
        names = list(self.domains)
        if self.kind == "quadratic":
            iu, ju = np.triu_indices(len(names), k=1)
            names += [f"{self.domains[i]}*{self.domains[j]}" for i, j in zip(iu, ju, strict=True)]
        return dict(zip(names, map(float, self.estimator.coef_), strict=True))


@dataclass
class MixtureFit(FittedMixtureModel):
    """The chosen model plus the cross-validation report of every candidate."""

    report: dict[str, dict[str, float]] = field(default_factory=dict)
    models: dict[str, FittedMixtureModel] = field(default_factory=dict)
    W: np.ndarray | None = None
    y: np.ndarray | None = None


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def fit(
    mixtures: Any,
    scores: Any,
    models: Sequence[str] = ("linear", "quadratic", "exp", "kernel", "gbm"),
    domains: Sequence[str] | None = None,
    cv: int = 5,
    select: str = "spearman",
    seed: int = 0,
) -> MixtureFit:
    """Fit every predictor in ``models``, cross-validate each, return the best.

    The report (``fit(...).report``) gives per model the out-of-fold Spearman rank
    correlation (``spearman``), ``rmse`` and ``mae``. ``select="spearman"`` keeps the
    model that ranks mixtures best (ties broken by RMSE), ``"rmse"`` the most
    accurate one. The returned object predicts with the chosen model; all fitted
    models are in ``.models``.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise MixtureInputError(f"unknown model(s) {unknown}; expected some of {list(MODELS)}")
    if isinstance(mixtures, pl.DataFrame):
        domains = list(domains or mixtures.columns)
        W = validate_mixtures(mixtures, domains)
    else:
        W = _as_matrix(mixtures, None)
        domains = list(domains or [f"d{i}" for i in range(W.shape[1])])
    y = _as_scores(scores, len(W), "<scores>")
    folds = _kfold(len(y), cv, np.random.default_rng(seed))
    report: dict[str, dict[str, float]] = {}
    fitted: dict[str, FittedMixtureModel] = {}
    for name in models:
        oof = np.full(len(y), np.nan)
        if len(folds) >= 2:
            for f in folds:
                tr = np.setdiff1d(np.arange(len(y)), f)
                oof[f] = MODELS[name]().fit(W[tr], y[tr], seed).predict(W[f])
        ok = np.isfinite(oof)
        report[name] = {
            "spearman": _spearman(oof[ok], y[ok]) if ok.sum() > 2 else float("nan"),
            "rmse": float(np.sqrt(np.mean((oof[ok] - y[ok]) ** 2))) if ok.any() else float("nan"),
            "mae": float(np.mean(np.abs(oof[ok] - y[ok]))) if ok.any() else float("nan"),
        }
        fitted[name] = FittedMixtureModel(name, domains, MODELS[name]().fit(W, y, seed))

    def key(m: str) -> tuple[float, float]:
        r = report[m]
        s = -r["spearman"] if math.isfinite(r["spearman"]) else math.inf
        e = r["rmse"] if math.isfinite(r["rmse"]) else math.inf
        return (s, e) if select == "spearman" else (e, s)

    chosen = min(models, key=key)
    return MixtureFit(chosen, domains, fitted[chosen].estimator, report, fitted, W, y)


# --------------------------------------------------------------------------- optimize


@dataclass
class OptimizedMixture:
    """The optimum: ``weights`` (domain -> weight), ``predicted`` score, ``objective``."""

    weights: dict[str, float]
    predicted: float
    objective: float
    n_starts: int

    def vector(self) -> np.ndarray:
        return np.array(list(self.weights.values()))


def _bounds_arrays(bounds: Any, domains: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    d = len(domains)
    lo, hi = np.zeros(d), np.ones(d)
    if bounds is None:
        return lo, hi
    if isinstance(bounds, Mapping):
        unknown = set(bounds) - set(domains)
        if unknown:
            raise MixtureInputError(f"bounds name unknown domain(s) {sorted(unknown)}")
        items = [(domains.index(k), v) for k, v in bounds.items()]
    else:
        items = list(enumerate(bounds))
    for i, (a, b) in items:
        lo[i], hi[i] = float(a), float(b)
    if (lo < 0).any() or (hi > 1).any() or (lo > hi).any():
        raise MixtureInputError(f"bounds must satisfy 0 <= lower <= upper <= 1: {bounds}")
    if lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9:
        raise MixtureInputError(
            f"bounds are infeasible: lower bounds sum to {lo.sum():.4g}, upper bounds to "
            f"{hi.sum():.4g}; need sum(lower) <= 1 <= sum(upper)"
        )
    return lo, hi


def _project(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {lo <= w <= hi, sum w = 1} (bisection on the shift)."""
    a, b = (x - hi).min() - 1, (x - lo).max() + 1
    for _ in range(100):
        t = (a + b) / 2
        if np.clip(x - t, lo, hi).sum() > 1:
            a = t
        else:
            b = t
    return np.clip(x - (a + b) / 2, lo, hi)


def optimize(
    model: FittedMixtureModel,
    bounds: Mapping[str, tuple[float, float]] | Sequence[tuple[float, float]] | None = None,
    maximize: bool = False,
    prior: Mapping[str, float] | Sequence[float] | None = None,
    kl_weight: float = 0.0,
    n_starts: int = 32,
    seed: int = 0,
) -> OptimizedMixture:
    """Best mixture under ``model`` on the simplex, within per-domain ``bounds``.

    Minimizes the predicted score (or maximizes with ``maximize=True``) plus
    ``kl_weight * KL(w || prior)`` with SLSQP from ``n_starts`` starts (uniform, the
    prior, the projected vertices, then Dirichlet draws), all projected into the
    bounded simplex. Tree models are piecewise constant, so their starts are
    additionally scored directly and the best candidate kept.
    """
    domains = list(model.domains)
    d = len(domains)
    lo, hi = _bounds_arrays(bounds, domains)
    p = _prior_vector(prior, domains)
    sign = -1.0 if maximize else 1.0
    rng = np.random.default_rng(seed)

    def objective(w: np.ndarray) -> float:
        val = sign * float(model.predict(w[None, :])[0])
        if kl_weight:
            wc = np.clip(w, 1e-12, None)
            val += kl_weight * float(np.sum(wc * np.log(wc / np.clip(p, 1e-12, None))))
        return val

    starts = [np.full(d, 1.0 / d), p, *np.eye(d)]
    starts += list(rng.dirichlet(np.ones(d), size=max(0, n_starts - len(starts))))
    starts = [_project(s, lo, hi) for s in starts[: max(n_starts, 1)]]
    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}]
    best_w, best_f = None, math.inf
    for s in starts:
        cands = [s]
        r = spo.minimize(objective, s, method="SLSQP", bounds=list(zip(lo, hi, strict=True)),
                         constraints=cons, options={"maxiter": 200, "ftol": 1e-10})
        cands.append(_project(np.asarray(r.x), lo, hi))  # exact feasibility after SLSQP
        for c in cands:
            f = objective(c)
            if f < best_f:
                best_w, best_f = c, f
    # a seeded random pool, scored in one vectorized call: tree models are piecewise
    # constant (zero gradients), so RegMix's recipe -- average the top-k of a large
    # random pool -- is what finds their optimum; smooth models just gain a safety net
    pool = np.array([_project(x, lo, hi) for x in rng.dirichlet(np.full(d, 0.5), 2048)])
    vals = sign * model.predict(pool)
    if kl_weight:
        pc = np.clip(pool, 1e-12, None)
        vals = vals + kl_weight * (pc * np.log(pc / np.clip(p, 1e-12, None))).sum(axis=1)
    top = np.argsort(vals)[:32]
    for c in (pool[top[0]], _project(pool[top].mean(axis=0), lo, hi)):
        f = objective(c)
        if f < best_f:
            best_w, best_f = c, f
    assert best_w is not None
    return OptimizedMixture(
        dict(zip(domains, map(float, best_w), strict=True)),
        float(model.predict(best_w[None, :])[0]), float(best_f), len(starts),
    )


def gain_interval(
    fitted: MixtureFit,
    mixture: Any,
    baseline: Any | None = None,
    n_boot: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> dict[str, float]:
    """Predicted gain ``f(mixture) - f(baseline)`` (baseline: uniform) with a bootstrap
    interval: the chosen model kind is refitted on resampled rows ``n_boot`` times."""
    if fitted.W is None or fitted.y is None:
        raise MixtureInputError("gain_interval needs the MixtureFit returned by fit()")
    d = len(fitted.domains)
    w = _as_matrix(mixture, fitted.domains)
    b = _as_matrix(baseline, fitted.domains) if baseline is not None else np.full((1, d), 1 / d)
    point = float(fitted.predict(w)[0] - fitted.predict(b)[0])
    rng = np.random.default_rng(seed)
    n = len(fitted.y)
    gains = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        est = MODELS[fitted.kind]().fit(fitted.W[idx], fitted.y[idx], seed)
        gains.append(float(est.predict(w)[0] - est.predict(b)[0]))
    q = (1 - level) / 2
    return {"gain": point, "low": float(np.quantile(gains, q)),
            "high": float(np.quantile(gains, 1 - q)), "level": level, "n_boot": n_boot}
