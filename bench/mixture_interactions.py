"""Do the synthetic suite's built-in domain interactions show up in real GRPO training?

Runs the mixture search's real pilot (`pipelines.mixture_search.GRPOPilot`: one
shared cold-start SFT, then a short GRPO per mixture, greedy held-out accuracy
per domain) on a set of named mixtures over several seeds and prints, per
mixture, the mean +- std over seeds of each domain's change from the cold start.

    .venv/bin/python bench/mixture_interactions.py [--spec examples/mixture_search.toml]
        [--out runs/mixture_interactions] [--seeds 3] [--mixtures alone,uniform,pairs]

Mixture sets: ``alone`` (each domain alone: the transfer matrix), ``uniform``
(uniform, and uniform without radd / without dsort), ``pairs`` (at 50/50: add
beside radd versus beside cmp or count, and sort beside dsort versus beside cmp
or count, so the victim's share is the same and only its neighbour changes).
Results are cached per run (an interrupted bench resumes); the table is written to
OUT/interactions.json and bench/results/mixture_interactions.json. Never a test: it trains ~(mixtures x seeds) pilots on CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.io import write_json_atomic  # noqa: E402
from pipelines.mixture_search import GRPOPilot, GRPOPilotSpec, _run_once, load_search_spec  # noqa: E402


def mixtures(domains: list[str], sets: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    zero = dict.fromkeys(domains, 0.0)
    if "alone" in sets:
        for d in domains:
            out[f"{d}-alone"] = {**zero, d: 1.0}
    if "uniform" in sets:
        out["uniform"] = dict.fromkeys(domains, 1 / len(domains))
        for bad in ("radd", "dsort"):
            if bad in domains:
                rest = [d for d in domains if d != bad]
                out[f"uniform-no-{bad}"] = {**zero, **dict.fromkeys(rest, 1 / len(rest))}
    if "pairs" in sets:  # the conflicting domain beside its victim, against two controls
        for victim, bad in (("add", "radd"), ("sort", "dsort")):
            for other in (bad, "cmp", "count"):
                if {victim, other} <= set(domains) and other != victim:
                    out[f"{victim}+{other}"] = {**zero, victim: 0.5, other: 0.5}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="examples/mixture_search.toml")
    ap.add_argument("--out", default="runs/mixture_interactions")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--results", default="bench/results/mixture_interactions.json")
    ap.add_argument("--mixtures", default="alone,uniform,pairs")
    args = ap.parse_args()
    spec = load_search_spec(args.spec)
    domains = spec.search.domains
    pilot = GRPOPilot(spec.pilot or GRPOPilotSpec(), domains, args.out, spec.search.seed)
    t0 = time.perf_counter()
    ref = pilot.reference_scores()
    print("cold start:", " ".join(f"{d}={v:.3f}" for d, v in ref.items()))
    table: dict[str, dict] = {}
    for name, w in mixtures(domains, args.mixtures.split(",")).items():
        runs = [_run_once(pilot, w, spec.search.seed + s, Path(args.out) / "runs" / f"{name}-seed{s}")
                for s in range(1, args.seeds + 1)]
        delta = {d: np.array([r["scores"][d] - ref[d] for r in runs]) for d in ref}
        table[name] = {"weights": w, "scores": [r["scores"] for r in runs],
                       "delta_mean": {d: float(v.mean()) for d, v in delta.items()},
                       "delta_std": {d: float(v.std(ddof=1)) if len(v) > 1 else float("nan")
                                     for d, v in delta.items()}}
        print(f"{name:16s} " + " ".join(f"{d}={delta[d].mean():+.3f}±{table[name]['delta_std'][d]:.3f}"
                                        for d in ref), flush=True)
    result = {"cold_start": ref, "seeds": args.seeds, "mixtures": table,
              "seconds": time.perf_counter() - t0}
    write_json_atomic(result, Path(args.out) / "interactions.json")
    write_json_atomic(result, Path(args.results))
    print(f"wrote {args.results} and {Path(args.out) / 'interactions.json'} "
          f"in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
