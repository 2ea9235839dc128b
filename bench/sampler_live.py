"""Does the dynamic sampler pay for itself in live training? Rollouts to reach uniform's accuracy.

One cold start (the quickstart's data, teacher misconceptions and tiny model),
then GRPO in fill mode (DAPO dynamic sampling: each step draws groups until B
informative ones are in hand and updates on exactly those) with three samplers:

- uniform: epochs without replacement, i.e. DAPO's dynamic sampling;
- thompson: the Thompson sampler on the store as it was (per-prompt Beta,
  domain running-mean prior, 32-step half-life);
- shared: the store with evidence shared across prompts (domain -> level groups
  with decayed evidence from first visits, empirical-Bayes prompt strength,
  visit-based decay of a prompt's own evidence) under the same Thompson draws;
  `shared_greedy` ranks by the posterior-predictive chance of an informative
  group instead (`temperature=0, predictive=True`; not in the default arms);
- shared_cover: `shared` with a staleness bound (no prompt unpicked for more than
  20 steps), so that the several-epochs pool is trained on as a whole;
- shared_gap: `shared` with a 6-step cooldown (`min_gap`), for the same reason;
  `shared_gap3` with 3 steps, about half an epoch of the several-epochs pool,
  the rule the quickstart ships (not in the default arms).
- shared_strat: `shared` stratified by domain (`weights="pool"`): each domain
  gets its pool share of every round's picks, and Thompson ranks within it.
- uniform_skip: uniform with GRESO's skip of prompts whose last groups were all
  equal (`skip_flat=0.5`), i.e. DAPO + GRESO; several-epochs regime only.
- shared_skip: `shared_cover` with the same skip; several-epochs regime only.
- uniform_skip_unsolved: uniform skipping only prompts whose last groups were
  all wrong (`skip_flat={unsolved=0.7}`); `uniform_skip_unsolved9` with 0.9
  (not in the default arms). Several-epochs regime only.
- shared_thin: uniform epochs thinned by the shared store's prediction (a prompt
  is rolled out with probability clip(P_inf / 0.5, 0.2, 1)) and importance
  weights 1 / that probability on the kept groups, so that the expected update
  is uniform's; `shared_thin_noiw` without the weights (not in the default
  arms). uniform_skip_iw: `uniform_skip` with the same importance weights.
  Several-epochs regime only.
- shared_pool2, shared_pool4: MoPPS as published: each round Thompson ranks a
  fresh uniform pool of 2 (4) times the groups it needs, not the whole set, so
  no prompt can be picked far more often than uniform would (not in the
  default arms).
- shared_cluster: `shared` with one more group level under domain > level: the
  k-means cluster (64) of each prompt's MiniLM embedding, as the curation stage
  `cluster` writes it (not in the default arms; needs `thresher[embed]`).
- shared_nodrift: `shared` without the store's drift correction (not in the
  default arms; a check that the correction does not cost one-pass share).
- controls (bench/sampler_controls.py; not in the default arms, never the
  regime's `best`). Several epochs: `iid`, uniform without epochs (distinct
  within a step, with replacement across steps); `oracle_thin`, uniform's
  epochs thinned by each prompt's true current chance of a mixed group (pass
  rates re-measured every 3 steps from 12 samples, not counted as rollouts);
  `oracle_greedy`, the prompts with the largest such chance. One pass:
  `oracle_thin_ahead`, the same thinning measuring every step the next 400
  prompts of the stream. They separate what choosing prompts costs from how
  well the store estimates them:

    .venv/bin/python bench/sampler_live.py --regimes multi_epoch \
        --arms uniform,iid,oracle_thin,oracle_greedy --out bench/results/sampler_live_controls.json
    .venv/bin/python bench/sampler_live.py --regimes one_pass \
        --arms uniform,oracle_thin_ahead --out bench/results/sampler_live_oracle_onepass.json

The several-epochs regime also records, per arm, the informative share of a
revisit by the outcome of the prompt's previous groups (`revisits`: first
visit, unsolved once, unsolved twice, solved, mixed; the `revisits` named query).

Two data regimes: one pass (the RL pool is larger than what uniform draws, so
uniform never sees a prompt twice) and several epochs (a small pool that
uniform draws about 8 times over). Beside them the fixed-prompts regime of the
trainer's default mode (B groups per step, zero-variance groups dropped from
the update): informative ratio and final accuracy.

Per arm and seed: the share of generated groups that are informative, rollouts
per step, held-out pass@1 (500 prompts x k = 16 at T = 1, with its standard
error) every `--eval-every` steps, and the rollouts it takes to reach uniform's
final pass@1 on the seed-averaged curve (linear interpolation), as a ratio to
uniform's, and the final's difference to uniform's with its standard error
over seeds (Welch: run-to-run spread, which the eval SE over prompts leaves
out). In the several-epochs regime also pass@1 on the pool trained on
(at the end) and how concentrated the kept groups are (prompts they come from,
the most from one prompt). Non-uniform arms may run `--extra` times uniform's steps so that
they can reach it at all; the ratio is read where they cross. Rollout counts
are checked against the `rollout_cost` named query over each run's log.

    .venv/bin/python bench/sampler_live.py                 # ~55 min on 2 idle cores
    .venv/bin/python bench/sampler_live.py --seeds 1 --steps 10 --regimes one_pass  # smoke

Writes bench/results/sampler_live.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# the arms: (sampler, sampler_args, store_args)
SHARED_STORE = {"share": True, "group_keys": ["level"], "decay_unit": "visits",
                "fast_half_life": 4.0, "group_half_life": 32.0}
ARMS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "uniform": ("uniform", {}, {}),
    "thompson": ("thompson", {}, {}),
    "shared": ("thompson", {}, SHARED_STORE),
    "shared_greedy": ("thompson", {"temperature": 0.0, "predictive": True}, SHARED_STORE),
    "shared_cover": ("thompson", {"max_staleness": 20}, SHARED_STORE),
    "shared_gap": ("thompson", {"min_gap": 6}, SHARED_STORE),
    "shared_gap3": ("thompson", {"min_gap": 3}, SHARED_STORE),
    "shared_strat": ("thompson", {"weights": "pool"}, SHARED_STORE),
    "uniform_skip": ("uniform", {"skip_flat": 0.5}, {}),
    "shared_skip": ("thompson", {"max_staleness": 20, "skip_flat": 0.5}, SHARED_STORE),
    "shared_thin": ("uniform", {"thin_floor": 0.2, "thin_at": 0.5, "importance": True},
                    SHARED_STORE),
    "shared_thin_noiw": ("uniform", {"thin_floor": 0.2, "thin_at": 0.5}, SHARED_STORE),
    "uniform_skip_iw": ("uniform", {"skip_flat": 0.5, "importance": True}, {}),
    "uniform_skip_unsolved": ("uniform", {"skip_flat": {"unsolved": 0.7}}, {}),
    "uniform_skip_unsolved9": ("uniform", {"skip_flat": {"unsolved": 0.9}}, {}),
    "shared_pool2": ("thompson", {"pool_factor": 2.0}, SHARED_STORE),
    "shared_pool4": ("thompson", {"pool_factor": 4.0}, SHARED_STORE),
    "shared_nodrift": ("thompson", {}, {**SHARED_STORE, "drift_correction": False}),
    "shared_cluster": ("thompson", {}, {**SHARED_STORE, "group_keys": ["level", "cluster"]}),
    # controls (bench/sampler_controls.py), not samplers to train with: uniform without
    # epochs, and oracles that know every prompt's current pass rate
    "iid": ("iid", {}, {}),
    "oracle_thin": ("oracle", {"mode": "thin", "thin_at": 0.5, "floor": 0.05, "refresh": 3,
                               "k": 12}, {}),
    "oracle_greedy": ("oracle", {"mode": "greedy", "refresh": 3, "k": 12}, {}),
    # one pass: the same thinning, measuring every step the next 400 prompts of the stream
    "oracle_thin_ahead": ("oracle", {"mode": "thin", "thin_at": 0.5, "floor": 0.05,
                                     "refresh": 1, "k": 12, "lookahead": 400}, {}),
}
CONTROLS = {"iid", "oracle_thin", "oracle_greedy", "oracle_thin_ahead"}  # never `best`

# arms run in the several-epochs regime only: they act on prompts seen again, or (the
# MoPPS pools) answer a question of that regime
MULTI_EPOCH_ONLY = {"shared_cover", "shared_gap", "shared_gap3", "uniform_skip", "shared_skip",
                    "uniform_skip_iw", "uniform_skip_unsolved", "uniform_skip_unsolved9", "shared_thin",
                    "shared_thin_noiw", "shared_pool2", "shared_pool4",
                    "iid", "oracle_thin", "oracle_greedy"}
# checks of the store on unseen prompts: run in the one-pass regime only
ONE_PASS_ONLY = {"shared_nodrift", "shared_cluster", "oracle_thin_ahead"}


def cold_start(work: Path, args) -> tuple[Path, Path, Path, Path]:
    """Data splits and the SFT checkpoint, built once and reused (the quickstart's recipe)."""
    import numpy as np
    import pyarrow.parquet as pq

    from curate.io import write_parquet_atomic
    from curate.synthetic import make_splits
    from trainer import SFTConfig, SFTTrainer, build_tiny_model, char_tokenizer
    from trainer.modeling import TinyModelSpec

    data = work / "data"
    paths = data / "sft.parquet", data / "rl.parquet", data / "eval.parquet"
    ckpt = work / "sft" / "final"
    if not all(p.exists() for p in paths):
        train, held = make_splits(args.n_train, args.n_eval, max_level=2, solution_noise=0.35,
                                  noise_style="systematic", seed=0)
        order = np.random.default_rng(0).permutation(train.num_rows)
        write_parquet_atomic(train.take(np.sort(order[:args.n_sft])), paths[0])
        write_parquet_atomic(train.take(np.sort(order[args.n_sft:])), paths[1])
        write_parquet_atomic(held, paths[2])
    if not (ckpt / "config.json").exists():
        print(f"cold start: SFT {args.sft_steps} steps ...", flush=True)
        tok = char_tokenizer()
        model = build_tiny_model(tok, TinyModelSpec(128, 3, 4, 512), seed=0)
        sft = SFTTrainer(model, tok, pq.read_table(paths[0]),
                         SFTConfig(max_steps=args.sft_steps, batch_size=64, lr=1e-3,
                                   warmup_steps=50, max_length=32, device="cpu"), work / "sft")
        sft.train()
        sft.save()
    return ckpt, *paths


CLUSTERS = 64  # k-means clusters of the RL prompts' MiniLM embeddings (`shared_cluster`)


def uses_clusters(arm: str) -> bool:
    return "cluster" in ARMS[arm][2].get("group_keys", ())


def with_clusters(rl_path: Path) -> Path:
    """The RL set with each prompt's `cluster` (k-means over the packaged MiniLM's
    embeddings, `curate.embedding.cluster`, as a curation stage would add it) in its
    meta, computed once beside it: the finest group of `shared_cluster`'s store."""
    out = rl_path.with_name("rl_cluster.parquet")
    if not out.exists():
        import polars as pl

        from curate.embedding import cluster
        from curate.io import write_parquet_atomic

        write_parquet_atomic(cluster(pl.read_parquet(rl_path), k=CLUSTERS).kept.to_arrow(), out)
    return out


def pool_of(rl, pool: int, seed: int):
    """The several-epochs regime's RL pool: `pool` rows of the RL set (all of it when 0)."""
    import numpy as np

    if not pool:
        return rl
    return rl.take(sorted(np.random.default_rng(seed).choice(rl.num_rows, size=pool,
                                                             replace=False).tolist()))


# how concentrated the kept groups are on a few prompts (the several-epochs regime's
# question: does the sampler train the pool as a whole, or a few prompts again and again?)
CONCENTRATION_SQL = """
SELECT count(*) AS prompts, coalesce(max(n), 0) AS most,  -- 0, 0, 0 when nothing was kept
       coalesce(coalesce(sum(n) FILTER (WHERE n >= 8), 0) / sum(n), 0) AS share_from_8plus
FROM (SELECT sample_id, count(DISTINCT (step, "group")) AS n FROM rollouts
      WHERE kept GROUP BY sample_id)
"""

def revisits(lake: Any) -> dict[str, dict[str, float]]:
    """The `revisits` named query over one run's log (`pipelines.query.connect(run)`):
    {last outcome: {groups, informative share}}."""
    from pipelines.query import run_named

    rows = run_named(lake, "revisits").fetchall()
    return {last: {"groups": int(n), "informative": float(inf)} for _, last, n, _, inf in rows}


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """One GRPO run (regime, arm, seed) with held-out evals along the way."""
    import pyarrow.parquet as pq
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from pipelines.query import connect, run_named
    from trainer import GRPOConfig, GRPOTrainer
    from trainer.evaluation import pass_at_1
    from trainer.modeling import load_pretrained

    sampler, sampler_args, store_args = ARMS[job["arm"]]
    rl = pool_of(pq.read_table(job["rl"]), job["pool"], job["pool_seed"])
    held = pq.read_table(job["eval"])
    model, tok = load_pretrained(job["ckpt"])
    tok.padding_side = "left"
    control = job["arm"] in CONTROLS
    cfg = GRPOConfig(steps=job["steps"], prompts_per_step=job["batch"], group_size=job["group_size"],
                     max_new_tokens=10, lr=job["lr"], sampler="uniform" if control else sampler,
                     sampler_args={} if control else sampler_args, store_args=store_args,
                     fill=job["fill"], save_every=100_000, device="cpu", seed=job["seed"])
    run = Path(job["run"])
    shutil.rmtree(run, ignore_errors=True)  # a fresh run: no parts of an earlier one
    chosen = given = None  # a control sampler, built here over the trainer's store
    if control:
        from sampler_controls import make_control

        from sampling import SampleStats
        from trainer.evaluation import pass_rates

        given = SampleStats.from_samples(rl)
        chosen = make_control(sampler, given, job["group_size"], job["seed"], **sampler_args)
    tr = GRPOTrainer(model, tok, rl, cfg, run, resume=False, stats=given, sampler=chosen)
    curve = [{"step": 0, "rollouts": 0, **dict(zip(("pass1", "se"), job["cold"], strict=True))}]
    t0 = time.perf_counter()
    rollouts = groups = informative = 0
    while tr.step < cfg.steps:
        if hasattr(chosen, "set_pass_rates") and tr.step % chosen.refresh == 0:
            # the oracle's look at the current policy: generated, never counted as rollouts
            rows = chosen.rows_to_measure()
            if len(rows):
                chosen.set_pass_rates(pass_rates(tr.model, tok, rl.take(rows), chosen.k,
                                                 max_new_tokens=10, seed=1000 + tr.step), rows)
        m = tr.train_step()
        rollouts += int(m.extra["rollouts"])
        groups += int(m.extra["groups"])
        informative += round(m.informative_ratio * m.extra["groups"])
        if tr.step % job["eval_every"] == 0 or tr.step == cfg.steps:
            acc, se = pass_at_1(tr.model, tok, held, k=job["k"], max_new_tokens=10,
                                seed=job["seed"])
            curve.append({"step": tr.step, "rollouts": rollouts, "pass1": acc, "se": se})
    # accuracy on the prompts trained on, beside held-out: in a small pool the gap
    # between the two is what the run memorized rather than learned
    pool_acc = (pass_at_1(tr.model, tok, rl, k=job["k"], max_new_tokens=10, seed=job["seed"])
                if job["pool"] else None)
    lake = connect(run)
    cost = run_named(lake, "rollout_cost").pl().row(0, named=True)
    kept_prompts, most, share8 = lake.con.sql(CONCENTRATION_SQL).fetchall()[0]
    logged = (cost["rollouts"], cost["groups"], cost["informative_groups"])
    return {
        "regime": job["regime"], "arm": job["arm"], "seed": job["seed"], "steps": tr.step,
        "rollouts": rollouts, "groups": groups, "informative_groups": informative,
        "informative_ratio": informative / max(groups, 1),
        "rollouts_per_step": rollouts / max(tr.step, 1),
        "log_check": {"rollouts": logged[0], "groups": logged[1], "informative": logged[2],
                      "matches": logged == (rollouts, groups, informative)},
        "curve": curve, "held_out_final": curve[-1]["pass1"], "held_out_final_se": curve[-1]["se"],
        "distinct_prompts": lake.con.sql("SELECT count(DISTINCT sample_id) FROM rollouts")
                                    .fetchall()[0][0],
        "kept_prompts": kept_prompts, "most_kept_groups_one_prompt": most,
        "kept_share_from_prompts_kept_8plus": share8,
        "pool_final": None if pool_acc is None else pool_acc[0],
        "revisits": revisits(lake) if job["pool"] else None,
        "seconds": time.perf_counter() - t0,
    }


def mean_curve(runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Seed-averaged curve: mean rollouts and mean pass@1 at each common eval step."""
    steps = sorted(set.intersection(*[{p["step"] for p in r["curve"]} for r in runs]))
    xs, ys = [], []
    for s in steps:
        pts = [next(p for p in r["curve"] if p["step"] == s) for r in runs]
        xs.append(sum(p["rollouts"] for p in pts) / len(pts))
        ys.append(sum(p["pass1"] for p in pts) / len(pts))
    return xs, ys


def rollouts_to_reach(xs: list[float], ys: list[float], target: float) -> float | None:
    """First rollout count where the curve reaches `target` (linear interpolation), or None."""
    for i in range(1, len(xs)):
        if ys[i] >= target:
            if ys[i - 1] >= target:
                return xs[i - 1]
            f = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
            return xs[i - 1] + f * (xs[i] - xs[i - 1])
    return None


def summarize(regime: str, runs: list[dict[str, Any]], fill: bool) -> dict[str, Any]:
    import statistics as st

    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append(r)
    uni = by_arm["uniform"]
    ux, uy = mean_curve(uni)
    u_final_steps = max(r["steps"] for r in uni)
    u_pts = [next(p for p in r["curve"] if p["step"] == u_final_steps) for r in uni]
    u_final = sum(p["pass1"] for p in u_pts) / len(u_pts)
    u_rollouts = sum(p["rollouts"] for p in u_pts) / len(u_pts)
    u_inf = st.mean(r["informative_ratio"] for r in uni)
    u_finals = [r["held_out_final"] for r in uni]
    arms = {}
    for arm, rs in by_arm.items():
        xs, ys = mean_curve(rs)
        reach = rollouts_to_reach(xs, ys, u_final) if fill else None
        at_u = [next((p for p in r["curve"] if p["step"] == u_final_steps), r["curve"][-1])
                for r in rs]
        finals = [r["held_out_final"] for r in rs]
        arms[arm] = {
            "seeds": [{k: v for k, v in r.items() if k not in ("regime", "arm")} for r in rs],
            "informative_ratio": st.mean(r["informative_ratio"] for r in rs),
            "informative_ratio_vs_uniform": st.mean(r["informative_ratio"] for r in rs) / u_inf,
            "rollouts_per_step": st.mean(r["rollouts_per_step"] for r in rs),
            "held_out_final": st.mean(finals),
            "held_out_final_spread": st.pstdev(finals),
            "held_out_final_se": st.mean(r["held_out_final_se"] for r in rs) / math.sqrt(len(rs)),
            # the difference to uniform's final and its standard error from the seeds (Welch):
            # run-to-run spread, eval noise included; the eval SE above counts eval noise only
            "held_out_final_vs_uniform": st.mean(finals) - st.mean(u_finals),
            "held_out_final_vs_uniform_se": (math.sqrt(st.variance(finals) / len(finals)
                                                       + st.variance(u_finals) / len(u_finals))
                                             if arm != "uniform" and len(finals) > 1
                                             and len(u_finals) > 1 else None),
            "held_out_at_uniform_steps": st.mean(p["pass1"] for p in at_u),
            "rollouts_to_uniform_final": reach,
            "rollouts_to_uniform_final_ratio": None if reach is None else reach / u_rollouts,
            "mean_curve": {"rollouts": xs, "pass1": ys},
            "log_counts_match": all(r["log_check"]["matches"] for r in rs),
        }
        if all(r.get("pool_final") is not None for r in rs):  # the several-epochs regime
            arms[arm]["pool_final"] = st.mean(r["pool_final"] for r in rs)
            arms[arm]["memorized_gap"] = arms[arm]["pool_final"] - arms[arm]["held_out_final"]
            for k in ("kept_prompts", "most_kept_groups_one_prompt",
                      "kept_share_from_prompts_kept_8plus"):
                arms[arm][k] = st.mean(r[k] for r in rs)
        if all(r.get("revisits") for r in rs):  # groups summed over seeds
            cats = sorted({c for r in rs for c in r["revisits"]})
            tot = {c: sum(r["revisits"].get(c, {}).get("groups", 0) for r in rs) for c in cats}
            arms[arm]["revisits"] = {c: {
                "share_of_groups": tot[c] / sum(tot.values()),
                "informative": sum(r["revisits"][c]["groups"] * r["revisits"][c]["informative"]
                                   for r in rs if c in r["revisits"]) / max(tot[c], 1)}
                for c in cats}
    key = "rollouts_to_uniform_final_ratio"
    cands = [a for a in arms if a != "uniform" and a not in CONTROLS] or ["uniform"]
    if fill and any(arms[a][key] is not None for a in cands):
        best = min(cands, key=lambda a: arms[a][key] if arms[a][key] is not None else math.inf)
    else:  # none reaches uniform's accuracy (or no fill): the most accurate
        best = max(cands, key=lambda a: arms[a]["held_out_final"])
    return {"fill": fill, "uniform_final": u_final, "uniform_rollouts": u_rollouts,
            "best": best, "arms": arms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60, help="uniform's steps (B kept groups each)")
    ap.add_argument("--extra", type=float, default=1.25,
                    help="other arms run this many times uniform's steps in fill mode")
    ap.add_argument("--batch", type=int, default=32, help="B: informative groups per update")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-every", type=int, default=15)
    ap.add_argument("--k", type=int, default=16, help="samples per held-out prompt")
    ap.add_argument("--n-train", type=int, default=12000)
    ap.add_argument("--n-sft", type=int, default=3000)
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--multi-pool", type=int, default=480,
                    help="RL pool of the several-epochs regime (uniform draws each ~8 times)")
    ap.add_argument("--sft-steps", type=int, default=900)
    ap.add_argument("--regimes", default="one_pass,multi_epoch,fixed")
    ap.add_argument("--arms", default="uniform,thompson,shared,shared_cover,shared_gap,"
                                       "uniform_skip,shared_skip,uniform_skip_unsolved,"
                                       "shared_thin,uniform_skip_iw")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reuse", default=None,
                    help="a partial.json of an earlier run with the same settings: its runs of "
                         "arms not in --rerun are taken as they are")
    ap.add_argument("--rerun", default="", help="arms to run again even when --reuse has them")
    ap.add_argument("--work", default=str(REPO / "runs" / "bench_sampler_live"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "sampler_live.json"))
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(max(1, args.workers))
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from curate.io import write_json_atomic
    from trainer.evaluation import pass_at_1
    from trainer.modeling import load_pretrained

    work = Path(args.work)
    t0 = time.perf_counter()
    ckpt, _, rl, held = cold_start(work, args)
    import pyarrow.parquet as pq

    model, tok = load_pretrained(ckpt)
    tok.padding_side = "left"
    cold = pass_at_1(model, tok, pq.read_table(held), k=args.k, max_new_tokens=10, seed=0)
    n_rl = pq.read_metadata(rl).num_rows
    print(f"cold start: held-out pass@1 {cold[0]:.4f} +- {cold[1]:.4f}; RL pool {n_rl} prompts",
          flush=True)

    pool_cold = None
    if "multi_epoch" in args.regimes.split(","):
        pool_cold = pass_at_1(model, tok, pool_of(pq.read_table(rl), args.multi_pool, 0),
                              k=args.k, max_new_tokens=10, seed=0)
        print(f"cold start: pass@1 on the several-epochs pool {pool_cold[0]:.4f}", flush=True)
    # the RL set with embedding clusters, written once here for the arms that group by them
    rl_cluster = with_clusters(Path(rl)) if any(map(uses_clusters, args.arms.split(","))) else None
    regimes = {"one_pass": (True, 0), "multi_epoch": (True, args.multi_pool),
               "fixed": (False, 0)}
    jobs = []
    for regime in args.regimes.split(","):
        fill, pool = regimes[regime]
        for arm in args.arms.split(","):
            if regime == "fixed" and arm not in ("uniform", "shared"):
                continue  # the fixed regime compares uniform with the new sampler
            if arm in MULTI_EPOCH_ONLY and regime != "multi_epoch":
                continue  # they act on prompts seen again (a staleness bound needs n <= W k)
            if arm in ONE_PASS_ONLY and regime != "one_pass":
                continue
            for seed in range(args.seeds):
                steps = args.steps if (arm == "uniform" or not fill) else \
                    int(round(args.steps * args.extra))
                jobs.append({"regime": regime, "arm": arm, "seed": seed, "steps": steps,
                             "fill": fill, "pool": pool, "pool_seed": 0, "batch": args.batch,
                             "group_size": args.group_size, "eval_every": args.eval_every,
                             "k": args.k, "lr": args.lr, "ckpt": str(ckpt), "eval": str(held),
                             "rl": str(rl_cluster if uses_clusters(arm) else rl),
                             "cold": cold, "run": str(work / "runs" / f"{regime}-{arm}-{seed}")})
    results: list[dict[str, Any]] = []
    if args.reuse:
        rerun = set(args.rerun.split(","))
        done = {(r["regime"], r["arm"], r["seed"]): r
                for r in json.loads(Path(args.reuse).read_text()) if r["arm"] not in rerun}
        results = [done[(j["regime"], j["arm"], j["seed"])] for j in jobs
                   if (j["regime"], j["arm"], j["seed"]) in done]
        jobs = [j for j in jobs if (j["regime"], j["arm"], j["seed"]) not in done]
        print(f"reusing {len(results)} runs of {args.reuse}; running {len(jobs)}", flush=True)
        from pipelines.query import connect

        for r in results:  # runs from before the revisit table: read it off their logs
            run = work / "runs" / f"{r['regime']}-{r['arm']}-{r['seed']}"
            if r["regime"] == "multi_epoch" and not r.get("revisits") and run.exists():
                r["revisits"] = revisits(connect(run))
    with ProcessPoolExecutor(max_workers=args.workers) as pool_exec:
        for r in pool_exec.map(run_arm, jobs):
            results.append(r)
            write_json_atomic(results, work / "partial.json")  # what is done so far
            print(f"{r['regime']:>11} {r['arm']:>8} seed {r['seed']}: informative "
                  f"{r['informative_ratio']:.3f}, {r['rollouts_per_step']:.0f} rollouts/step, "
                  f"pass@1 {r['held_out_final']:.4f} after {r['steps']} steps "
                  f"({r['seconds']:.0f} s, log check {r['log_check']['matches']})", flush=True)

    out: dict[str, Any] = {"setup": {k: v for k, v in vars(args).items() if k not in ("out", "work")}
                           | {"arms": {a: ARMS[a] for a in args.arms.split(",")},
                              "rl_pool": n_rl, "cold_start_pass1": cold,
                              "cold_start_pool_pass1": pool_cold},
                           "regimes": {}}
    for regime in args.regimes.split(","):
        rs = [r for r in results if r["regime"] == regime]
        out["regimes"][regime] = summarize(regime, rs, regimes[regime][0])
    out["seconds"] = time.perf_counter() - t0

    print()
    for regime, res in out["regimes"].items():
        print(f"{regime} (uniform final pass@1 {res['uniform_final']:.4f} at "
              f"{res['uniform_rollouts']:.0f} rollouts; best: {res['best']})")
        for arm, a in res["arms"].items():
            ratio = a["rollouts_to_uniform_final_ratio"]
            se = a["held_out_final_vs_uniform_se"]
            vs = f"{a['held_out_final_vs_uniform']:+.4f} vs uniform" + (
                "" if se is None else f" +- {se:.4f} over seeds")
            print(f"  {arm:>8}: informative {a['informative_ratio']:.3f} "
                  f"({a['informative_ratio_vs_uniform']:.2f}x uniform), "
                  f"{a['rollouts_per_step']:.0f} rollouts/step, final pass@1 "
                  f"{a['held_out_final']:.4f} +- {a['held_out_final_se']:.4f} "
                  f"({vs}), rollouts to uniform's final: "
                  f"{'n/a' if ratio is None else f'{ratio:.2f}x'}")
            if "pool_final" in a:
                print(f"  {'':>8}  pass@1 on the pool trained on {a['pool_final']:.4f} "
                      f"(gap to held-out {a['memorized_gap']:+.4f}); kept groups from "
                      f"{a['kept_prompts']:.0f} prompts, at most "
                      f"{a['most_kept_groups_one_prompt']:.0f} from one")
    write_json_atomic(out, args.out)
    print(f"\nwrote {os.path.relpath(args.out, REPO)} ({out['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
