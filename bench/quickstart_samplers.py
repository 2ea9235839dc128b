"""The quickstart with three samplers: does the sampler cost or buy held-out accuracy?

`examples/quickstart.toml` (fixed prompts, 600 steps x 64 prompts x 8, each of
its ~4,500 prompts drawn about 8.5 times) run whole, once per arm and seed,
with only the sampler changed; seeds are paired (same data, same cold start):

- `cooldown`: the shipped config, shared-store Thompson with `min_gap = 35`;
- `uniform`: `sampler = "uniform"` (the baseline);
- `plain`: shared-store Thompson without the cooldown (the config before).

Per arm and seed: held-out pass@1 and greedy after GRPO, the gain over the
cold start, the share of informative groups, the sampler's share against a
uniform draw from the pool as `pipelines.sampler_value` reads it off the log,
and how often the most and the median prompt were drawn. Per arm: means,
the informative share as a ratio to uniform's, and the pass@1 difference to
uniform with its standard error over the paired seeds.

    .venv/bin/python bench/quickstart_samplers.py            # ~100 min on 2 cores (9 runs of ~11 min, 2 at a time)
    .venv/bin/python bench/quickstart_samplers.py --collect  # summarize finished runs only

Writes bench/results/quickstart_samplers.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics as st
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# arm -> (sampler, sampler_args); everything else is the shipped config
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "cooldown": ("thompson", {"min_gap": 35}),
    "uniform": ("uniform", {}),
    "plain": ("thompson", {}),
}


def arm_config(base: dict[str, Any], arm: str, seed: int, run_dir: Path) -> dict[str, Any]:
    """The shipped config with this arm's sampler, this seed and its own run folder."""
    sampler, args = ARMS[arm]
    cfg = {section: dict(body) for section, body in base.items()}
    cfg["run"].update(dir=str(run_dir), seed=seed)
    cfg["grpo"]["sampler"] = sampler
    cfg["grpo"].pop("sampler_args", None)
    if args:
        cfg["grpo"]["sampler_args"] = args
    return cfg


def run_one(config: Path, run_dir: Path) -> None:
    if (run_dir / "manifest.json").exists():
        return
    subprocess.run([str(REPO / ".venv" / "bin" / "thresher"), "run", str(config), "--no-progress",
                    "--fresh"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def measure(run_dir: Path) -> dict[str, Any]:
    """One finished run's figures, from its manifest and its log."""
    from pipelines.query import connect
    from pipelines.sampler_value import sampler_value

    ev = json.loads((run_dir / "manifest.json").read_text())["eval"]
    sv = sampler_value(run_dir)
    most, median = connect(run_dir).con.sql(
        "SELECT max(n), quantile_cont(n, 0.5) FROM (SELECT sample_id, count(DISTINCT step) AS n "
        "FROM rollouts GROUP BY sample_id)").fetchall()[0]
    return {"held_out_pass1": ev["grpo"], "cold_start_pass1": ev["cold_start"], "gain": ev["gain"],
            "greedy": ev["grpo_detail"]["greedy"]["accuracy"],
            "informative_ratio": sv["informative_ratio"], "vs_uniform_estimate": sv["vs_uniform"],
            "draws_of_most_drawn_prompt": int(most), "draws_of_median_prompt": float(median)}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    uni = runs["uniform"]
    out = {}
    for arm, rs in runs.items():
        diffs = [r["held_out_pass1"] - u["held_out_pass1"] for r, u in zip(rs, uni, strict=True)]
        out[arm] = {
            "seeds": rs,
            "held_out_pass1": st.mean(r["held_out_pass1"] for r in rs),
            "gain": st.mean(r["gain"] for r in rs),
            "informative_ratio": st.mean(r["informative_ratio"] for r in rs),
            "informative_ratio_vs_uniform": st.mean(r["informative_ratio"] / u["informative_ratio"]
                                                    for r, u in zip(rs, uni, strict=True)),
            "held_out_vs_uniform": st.mean(diffs),
            "held_out_vs_uniform_se": (st.stdev(diffs) / math.sqrt(len(diffs))
                                       if len(diffs) > 1 else None),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--config", default=str(REPO / "examples" / "quickstart.toml"))
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_quickstart_samplers"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--collect", action="store_true", help="only summarize the runs already there")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "quickstart_samplers.json"))
    args = ap.parse_args()
    from curate.io import write_json_atomic, write_text_atomic
    from pipelines.job import to_toml

    arms = args.arms.split(",")
    if "uniform" not in arms:
        ap.error("--arms must include uniform, the baseline")
    base = tomllib.loads(Path(args.config).read_text())
    work = Path(args.work)
    jobs = []
    for arm in arms:
        for seed in range(args.seeds):
            run_dir = work / f"{arm}-{seed}"
            cfg_path = work / "configs" / f"{arm}-{seed}.toml"
            write_text_atomic(to_toml(arm_config(base, arm, seed, run_dir)), cfg_path)
            jobs.append((cfg_path, run_dir))
    if not args.collect:
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda j: run_one(*j), jobs))
    runs = {arm: [measure(work / f"{arm}-{s}") for s in range(args.seeds)] for arm in arms}
    config = Path(args.config).resolve()
    res = {"config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config),
           "seeds": args.seeds, "arms": summarize(runs)}
    write_json_atomic(res, Path(args.out))
    print(f"{'arm':10s} {'pass@1':>8s} {'vs uniform':>18s} {'informative':>12s} {'x uniform':>10s}")
    for arm, a in res["arms"].items():
        se = a["held_out_vs_uniform_se"]
        print(f"{arm:10s} {a['held_out_pass1']:8.4f} {a['held_out_vs_uniform']:+8.4f}"
              f"{f' +- {se:.4f}' if se is not None else '':>10s} {a['informative_ratio']:12.3f}"
              f" {a['informative_ratio_vs_uniform']:9.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
