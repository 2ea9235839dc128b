"""Named queries over a 10M-row rollout log: DuckDB (`thresher query`) vs polars, side by side.

The bench writes a synthetic run with curate.rollout_log.RolloutWriter (one part
per step, 1,024 groups of 8 a step, 200k prompts in 6 domains; columns built
with numpy / Arrow `take`, no per-row Python), then times each named query
(pipelines/queries/*.sql) through pipelines.query.connect, and the same query
written in polars (lazy scan of the same files). Both get 2 threads.

    .venv/bin/python bench/query.py                  # 10M rows -> bench/results/query.json
    .venv/bin/python bench/query.py --rows 1000000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "2")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.rollout_log import RolloutWriter  # noqa: E402
from pipelines.query import NAMED_QUERIES, connect, run_named  # noqa: E402

GROUPS, G = 1024, 8
DOMAINS = np.array(["arith", "algebra", "geometry", "counting", "logic", "science"])


def generate(run: Path, rows: int, n_prompts: int, seed: int) -> float:
    """Write ~`rows` rollouts under run/rollouts; returns seconds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    ids = pa.array([f"{i:032x}" for i in range(n_prompts)])
    dom_idx = rng.integers(0, len(DOMAINS), n_prompts)
    domains = pa.array(DOMAINS[dom_idx])
    prompts = pa.array([f"[{DOMAINS[d]}] problem {i}: what is {i % 997} * {i % 89}?" for i, d in enumerate(dom_idx)])
    hard = rng.normal(0, 1.5, n_prompts)
    pool = pa.array([f"step by step ... variant {k} \\boxed{{{k % 10}}}" for k in range(64)])
    writer = RolloutWriter(run, run_id="bench")
    steps = -(-rows // (GROUPS * G))
    n = GROUPS * G
    for step in range(steps):
        pick = rng.choice(n_prompts, GROUPS, replace=False)
        rep = np.repeat(pick, G)
        p = 1 / (1 + np.exp(hard[rep] - 3.0 * step / steps))
        correct = rng.random(n) < p
        reward = correct.astype(np.float64)
        r = reward.reshape(GROUPS, G)
        adv = ((r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)).ravel()
        p_est = np.clip(p[::G] + rng.normal(0, 0.1, GROUPS), 0.01, 0.99)
        writer.write(pa.table({
            "step": pa.array(np.full(n, step)), "sample_id": ids.take(pa.array(rep)),
            "group": pa.array(np.repeat(np.arange(GROUPS), G)), "response_idx": pa.array(np.tile(np.arange(G), GROUPS)),
            "domain": domains.take(pa.array(rep)), "prompt": prompts.take(pa.array(rep)),
            "response": pool.take(pa.array(rng.integers(0, 64, n))), "reward": pa.array(reward),
            "correct": pa.array(correct), "format_ok": pa.array(rng.random(n) > 0.02), "advantage": pa.array(adv),
            "prompt_tokens": pa.array(np.full(n, 32)),
            "response_tokens": pa.array(rng.lognormal(np.log(200 + 200 * step / steps), 0.4, n).astype(np.int64)),
            "sampler": pa.array(["thompson"] * n), "p_estimate": pa.array(np.repeat(p_est, G)),
            "score": pa.array(np.repeat(p_est * (1 - p_est), G)), "policy_version": pa.array(np.full(n, step)),
        }))
    return time.perf_counter() - t0


def polars_queries(files: list[str]) -> dict:
    """The named queries, written in polars over the same files."""
    lf = lambda: pl.scan_parquet(files)  # noqa: E731
    c = pl.col("correct").cast(pl.Float64)

    def length_vs_reward():
        base = lf().select(len="response_tokens", reward="reward", correct="correct").filter(pl.col("len").is_not_null())
        m = max(base.select(pl.col("len").max()).collect().item(), 1)
        b = pl.min_horizontal((pl.col("len") * 10.0 / m).floor(), pl.lit(9.0))
        return (base.with_columns(len_from=b * m / 10.0, len_to=(b + 1) * m / 10.0)
                .group_by("len_from", "len_to").agg(pl.len().alias("responses"), pl.col("reward").mean().alias("reward_mean"),
                                                   pl.col("correct").cast(pl.Float64).mean().alias("accuracy"))
                .sort("len_from").collect())

    def stuck_prompts():  # the same plan as the SQL: max(step) > min(step), details for 100 rows only
        stuck = (lf().group_by("sample_id").agg(
            pl.len().alias("n"), pl.col("step").max().alias("last_step"), pl.col("step").min().alias("first"),
            pl.col("reward").mean().alias("reward_mean"), pl.col("correct").max().alias("any_correct"))
            .filter((pl.col("last_step") > pl.col("first")) & ~pl.col("any_correct"))
            .sort(["n", "sample_id"], descending=[True, False]).head(100).collect())
        detail = (lf().filter(pl.col("sample_id").is_in(stuck["sample_id"].implode())).group_by("sample_id")
                  .agg(pl.col("domain").first(), pl.col("step").n_unique().alias("steps"), pl.col("prompt").first())
                  .collect())
        return stuck.join(detail, on="sample_id").sort(["n", "sample_id"], descending=[True, False])

    # a group is (run, step, group), or (run, step, prompt) in logs without group ids
    group_keys = ["run_id", "step", "group",
                  pl.when(pl.col("group").is_null()).then(pl.col("sample_id")).alias("g_prompt")]

    def calibration():
        g = (lf().filter(pl.col("p_estimate").is_not_null() & pl.col("correct").is_not_null())
             .group_by(group_keys).agg(pl.col("p_estimate").first().alias("p"), c.mean().alias("acc")))
        b = (g.with_columns(bin=pl.min_horizontal((pl.col("p") * 10).floor(), pl.lit(9.0)))
             .group_by("run_id", "bin").agg(pl.len().alias("groups"), pl.col("p").mean().alias("predicted"),
                                            pl.col("acc").mean().alias("observed")))
        err = (pl.col("groups") * (pl.col("predicted") - pl.col("observed")).abs()).sum().over("run_id")
        return (b.with_columns(lo=pl.col("bin") / 10, hi=(pl.col("bin") + 1) / 10,
                               ece=err / pl.col("groups").sum().over("run_id"))
                .select("run_id", "lo", "hi", "groups", "predicted", "observed", "ece")
                .sort("run_id", "lo").collect())

    def rollout_cost():
        kept = pl.col("kept")
        g = lf().group_by(group_keys).agg(
            pl.len().alias("rollouts"), (pl.col("reward").min() < pl.col("reward").max()).alias("informative"),
            # SQL's bool_or: null when every row is null (logs from before fill mode)
            pl.when(kept.is_not_null().any()).then(kept.any()).alias("kept"))
        return g.group_by("run_id").agg(
            pl.col("step").n_unique().alias("steps"), pl.col("rollouts").sum(), pl.len().alias("groups"),
            pl.col("informative").sum().alias("informative_groups"),
            pl.when(pl.col("kept").is_not_null().any()).then(pl.col("kept").cast(pl.Int64).sum())
            .alias("kept_groups"),
            pl.col("informative").cast(pl.Float64).mean().alias("informative_ratio"),
            (pl.col("rollouts").sum() / pl.col("step").n_unique()).alias("rollouts_per_step"),
        ).sort("run_id").collect()

    def revisits():
        g = (lf().filter(pl.col("correct").is_not_null()).group_by(["sample_id", *group_keys])
             .agg(pl.col("correct").cast(pl.Int64).sum().alias("k"), pl.len().alias("n"))
             .sort("run_id", "sample_id", "step", "group"))
        prev = lambda col, i=1: pl.col(col).shift(i).over("run_id", "sample_id")  # noqa: E731
        last = (pl.when(prev("k").is_null()).then(pl.lit("first visit"))
                .when((prev("k") == 0) & (prev("k", 2) == 0)).then(pl.lit("unsolved twice"))
                .when(prev("k") == 0).then(pl.lit("unsolved once"))
                .when(prev("k") == prev("n")).then(pl.lit("solved")).otherwise(pl.lit("mixed")))
        inf = ((pl.col("k") > 0) & (pl.col("k") < pl.col("n"))).cast(pl.Float64)
        return (g.with_columns(last=last, inf=inf).group_by("run_id", "last")
                .agg(pl.len().alias("groups"), pl.col("inf").mean().alias("informative"))
                .with_columns(share_of_groups=pl.col("groups") / pl.col("groups").sum().over("run_id"))
                .select("run_id", "last", "groups", "share_of_groups", "informative")
                .sort("run_id", "last").collect())

    return {
        "pass_rates": lambda: lf().group_by("sample_id").agg(
            pl.col("domain").first(), pl.len().alias("n"), pl.col("correct").cast(pl.Int32).sum().alias("n_correct"),
            c.mean().alias("pass_rate"), pl.col("reward").mean().alias("reward_mean"),
            pl.col("step").min().alias("first_step"), pl.col("step").max().alias("last_step"),
        ).sort(["pass_rate", "n", "sample_id"], descending=[False, True, False]).collect(),
        "informative_ratio": lambda: lf().group_by("run_id", "step", "group").agg(
            (pl.col("reward").min() < pl.col("reward").max()).alias("inf")).group_by("run_id", "step").agg(
            pl.len().alias("groups"), pl.col("inf").sum().alias("informative_groups"),
            pl.col("inf").cast(pl.Float64).mean().alias("informative_ratio")).sort("run_id", "step").collect(),
        "reward_curve": lambda: lf().group_by("run_id", "step").agg(
            pl.col("reward").mean().alias("reward_mean"), c.mean().alias("accuracy"), pl.len().alias("responses"),
            pl.col("response_tokens").mean().alias("response_tokens_mean")).sort("run_id", "step").collect(),
        "domain_curves": lambda: lf().group_by("run_id", "step", "domain").agg(
            pl.col("reward").mean().alias("reward_mean"), c.mean().alias("accuracy"), pl.len().alias("responses"),
        ).sort("run_id", "domain", "step").collect(),
        "length_vs_reward": length_vs_reward,
        "stuck_prompts": stuck_prompts,
        "calibration": calibration,
        "rollout_cost": rollout_cost,
        "revisits": revisits,
    }


def _arrow(rel) -> pa.Table:
    """A DuckDB result as an Arrow table (columnar, like the polars result: no Python rows)."""
    t = rel.arrow()
    return t.read_all() if hasattr(t, "read_all") else t


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up: file metadata and OS page cache, same for both engines
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--prompts", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", help="where to write the run (default: a temp folder, removed after)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="thresher-bench-query-"))
    run = base / "bench-run"
    try:
        if not (run / "rollouts").is_dir():
            gen_s = generate(run, args.rows, args.prompts, args.seed)
        else:
            gen_s = float("nan")  # reused data: not measured (written as null)
        files = sorted(str(p) for p in (run / "rollouts").glob("*.parquet"))
        t0 = time.perf_counter()
        lake = connect(run, threads=2)
        connect_s = time.perf_counter() - t0
        rows = lake.sql("SELECT count(*) FROM rollouts").fetchall()[0][0]
        size = sum(os.path.getsize(f) for f in files)
        print(f"{rows:,} rows in {len(files)} parts ({size / 2**20:.0f} MiB), generated in {gen_s:.1f} s; "
              f"connect (footer check of every part) {connect_s:.2f} s")
        print(f"{'query':<20}{'duckdb s':>10}{'polars s':>10}{'polars/duckdb':>15}{'rows':>9}")
        pq_fns = polars_queries(files)
        load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
        results = {}
        for name in NAMED_QUERIES:
            d_s, d_out = timed(lambda name=name: _arrow(run_named(lake, name)), args.repeats)
            p_s, p_out = timed(pq_fns[name], args.repeats)
            if d_out.num_rows != p_out.height:
                raise SystemExit(f"{name}: duckdb {d_out.num_rows} rows vs polars {p_out.height}: the queries differ")
            results[name] = {"duckdb_s": round(d_s, 3), "polars_s": round(p_s, 3),
                             "polars_over_duckdb": round(p_s / d_s, 2), "rows_out": d_out.num_rows,
                             "under_2s": d_s < 2.0}
            print(f"{name:<20}{d_s:>10.3f}{p_s:>10.3f}{p_s / d_s:>15.2f}{d_out.num_rows:>9}")
        out = {"load_avg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)], "rows": rows, "parts": len(files), "bytes": size, "prompts": args.prompts, "threads": 2,
               "cpu_count": os.cpu_count(), "generate_s": None if gen_s != gen_s else round(gen_s, 2), "connect_s": round(connect_s, 3),
               "repeats": args.repeats, "baseline": "polars lazy scan_parquet, same files, same query",
               "queries": results, "all_under_2s": all(r["under_2s"] for r in results.values())}
        dest = ROOT / "bench" / "results" / "query.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(out, indent=2) + "\n")
        print(f"every named query under 2 s: {out['all_under_2s']}; wrote {dest}")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
