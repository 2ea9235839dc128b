"""`thresher mixture search SPEC`: propose pilots, run each, fit, optimize, confirm.

The loop is independent of what a pilot is: a *pilot function*
``pilot(weights: dict[str, float], seed: int, run_dir: Path) -> dict[str, float]``
trains with the given domain mixture and returns a held-out score per domain
(e.g. accuracy). The search score of a run is the mean over domains (or one
domain's score, ``target = "<domain>"``). Every run lives in its own
subdirectory with a ``result.json`` written atomically when it finishes, so an
interrupted search resumes without redoing finished runs.

Layout of OUT::

    OUT/pilots.csv                     proposed pilot mixtures
    OUT/pilots/pilot-0003/result.json  {"weights", "seed", "scores", "score"}
    OUT/results.csv                    one row per finished pilot (weights + scores)
    OUT/confirm/best-seed1/result.json and OUT/confirm/uniform-seed1/result.json
    OUT/summary.json                   fit report, chosen mixture, confirmation

Pilot kinds shipped: ``simulated`` (a seeded analytic stand-in with domains that
help and hurt each other, for demos and tests; it trains nothing) and ``grpo``
(the embedded trainer; see docs/mixture.md for its status).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate import mixture
from curate.io import write_json_atomic, write_text_atomic

PilotFn = Callable[[dict[str, float], int, Path], dict[str, float]]


def _run_once(pilot: PilotFn, weights: dict[str, float], seed: int, run_dir: Path) -> dict:
    """Run one pilot unless its result.json exists (resumability)."""
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    scores = {k: float(v) for k, v in pilot(weights, seed, run_dir).items()}
    result = {"weights": weights, "seed": seed, "scores": scores}
    write_json_atomic(result, done)
    return result


def _score(result: dict, target: str) -> float:
    s = result["scores"]
    return float(np.mean(list(s.values()))) if target == "mean" else float(s[target])


def run_search(
    domains: list[str],
    pilot: PilotFn,
    out_dir: str | Path,
    n_pilots: int = 12,
    strategy: str = "mixed",
    seed: int = 0,
    confirm_seeds: int = 3,
    maximize: bool = True,
    target: str = "mean",
    models: tuple[str, ...] = ("linear", "quadratic", "exp", "kernel"),
    bounds: dict[str, tuple[float, float]] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole loop; returns (and writes to OUT/summary.json) the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    design = mixture.propose(domains, n_pilots, strategy=strategy, seed=seed)
    write_text_atomic(design.write_csv(), out / "pilots.csv")
    rows = []
    for i, w in enumerate(design.iter_rows(named=True)):
        run_dir = out / "pilots" / f"pilot-{i:04d}"
        fresh = not (run_dir / "result.json").exists()
        res = _run_once(pilot, w, seed, run_dir)
        rows.append({**res["weights"], **{f"score_{k}": v for k, v in res["scores"].items()},
                     "score": _score(res, target)})
        log(f"pilot {i + 1}/{n_pilots} {'ran' if fresh else 'cached'}: score {rows[-1]['score']:.4f}")
    results = pl.DataFrame(rows)
    write_text_atomic(results.write_csv(), out / "results.csv")
    fitted = mixture.fit(results.select(domains), results["score"].to_numpy(), models=models,
                         domains=domains, seed=seed)
    best = mixture.optimize(fitted, bounds=bounds, maximize=maximize, seed=seed)
    gain = mixture.gain_interval(fitted, best.weights, n_boot=100, seed=seed)
    log(f"fit: chose {fitted.kind}; best mixture "
        + ", ".join(f"{d}={w:.3f}" for d, w in best.weights.items())
        + f"; predicted gain over uniform {gain['gain']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]")
    uniform = {d: 1.0 / len(domains) for d in domains}
    confirm: dict[str, list[float]] = {"best": [], "uniform": []}
    for name, w in (("best", best.weights), ("uniform", uniform)):
        for s in range(1, confirm_seeds + 1):
            res = _run_once(pilot, w, seed + s, out / "confirm" / f"{name}-seed{s}")
            confirm[name].append(_score(res, target))
    b, u = np.array(confirm["best"]), np.array(confirm["uniform"])
    diff = (b.mean() - u.mean()) * (1 if maximize else -1)
    noise = float(np.sqrt(b.var(ddof=1) / len(b) + u.var(ddof=1) / len(u))) if len(b) > 1 else float("nan")
    summary = {
        "domains": domains, "n_pilots": n_pilots, "chosen_model": fitted.kind,
        "fit_report": fitted.report, "best_mixture": best.weights,
        "predicted": best.predicted, "predicted_gain": gain,
        "confirm": confirm, "observed_gain": float(diff), "gain_stderr": noise,
        "beats_uniform_beyond_noise": bool(np.isfinite(noise) and diff > 2 * noise),
    }
    write_json_atomic(summary, out / "summary.json")
    log(f"confirm: best {b.mean():.4f} vs uniform {u.mean():.4f} over {len(b)} seeds; "
        f"gain {diff:+.4f} (stderr {noise:.4f})")
    return summary


def simulated_pilot(interactions: np.ndarray, noise: float = 0.01) -> PilotFn:
    """A seeded analytic stand-in for training: score_j = base + sum_i A_ji w_i - penalty.

    ``interactions[j, i]`` is how much training on domain i helps held-out domain j
    (negative: hurts). Trains nothing; for demos and orchestration tests.
    """
    A = np.asarray(interactions, dtype=float)

    def pilot(weights: dict[str, float], seed: int, run_dir: Path) -> dict[str, float]:
        names = list(weights)
        w = np.array([weights[d] for d in names])
        rng = np.random.default_rng([seed, int(1e6 * w[0])])
        acc = 0.3 + A @ np.sqrt(w) * 0.3 + rng.normal(0, noise, len(names))
        return dict(zip(names, np.clip(acc, 0, 1).tolist(), strict=True))

    return pilot


def run_search_cli(spec_path: str, out: str | None) -> int:
    from pipelines.cli import UserError

    p = Path(spec_path)
    try:
        spec = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{spec_path}: cannot read TOML spec ({exc})") from exc
    s = spec.get("search", {})
    domains = s.get("domains")
    if not domains or not isinstance(domains, list):
        raise UserError(f"{spec_path}: [search] domains = [...] is required")
    kind = s.get("pilot", "simulated")
    if kind == "simulated":
        d = len(domains)
        A = np.asarray(s.get("interactions", np.eye(d).tolist()), dtype=float)
        if A.shape != (d, d):
            raise UserError(f"{spec_path}: [search] interactions must be {d}x{d}")
        pilot = simulated_pilot(A, float(s.get("noise", 0.01)))
    else:
        raise UserError(f"{spec_path}: pilot = {kind!r} is not available yet (only 'simulated'); "
                        "the GRPO pilot is not wired in this version, see docs/mixture.md")
    bounds = {k: tuple(v) for k, v in s.get("bounds", {}).items()} or None
    run_search(domains, pilot, out or s.get("out", "runs/mixture_search"),
               n_pilots=int(s.get("n_pilots", 12)), strategy=s.get("strategy", "mixed"),
               seed=int(s.get("seed", 0)), confirm_seeds=int(s.get("confirm_seeds", 3)),
               maximize=bool(s.get("maximize", True)), target=s.get("target", "mean"),
               bounds=bounds)
    return 0
