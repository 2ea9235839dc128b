"""Replay the samplers against real pass-rate trajectories of a GRPO run.

Data: ../shared/data/One-Shot-RLVR/acc_step_500.json, for 1,209 DeepScaleR
prompts the accuracy over 8 rollouts at every epoch of a real GRPO run of
Qwen2.5-Math-1.5B (44-57 recorded epochs per prompt).  We replay 50 epochs;
the 70 prompts with fewer records keep their last recorded accuracy for the
missing tail epochs.

Open loop (the issue's replay): each epoch a sampler picks 25% of the prompts;
the recorded k/8 of a picked prompt at that epoch is its group's outcome (k ones
and 8 - k zeros), which the store then observes.  Per sampler:
  informative = share of picked groups whose rewards are not all equal
  coverage    = share of prompts picked at least once in a 10-epoch window
                (mean and min over the five windows)
Baselines measured in the same run: uniform (epochs without replacement) and an
oracle that knows the current pass rates (informative prompts first, least
recently picked first).  The oracle also knows this epoch's binomial draw, which
no sampler can predict; two reference rows say what information buys under the
same coverage rule (neither is a sampler):
  ceiling  the best sampler, but its store observes every prompt's outcome at
           every epoch (4x what a 25% budget shows it);
  bound    knows each prompt's informative share in each window (not at which
           epochs) and allocates the window's picks optimally: every covered
           prompt once, the rest of the budget on the highest shares.
One more row pays outside the budget for what the first window lacks: a
difficulty prior from an 8-rollout pre-pass over every prompt (1,209 groups, 4
epochs' worth of the 25% budget, simulated as a fresh Binomial(8, epoch-0 rate)
draw; mean over 3 pre-pass draws), fed to the store as `difficulty` the way a
curate pass-rate column would be.

Closed loop: learning depends on informative groups.  Each prompt starts at its
epoch-0 recorded pass rate; a picked prompt's group is drawn Binomial(8, p); an
informative group raises that prompt's logit by 0.3 and every prompt's logit by
0.02 x (the step's share of informative groups) (transfer).  Reported: the mean
pass rate after 50 epochs (mean over 3 seeds).

    .venv/bin/python bench/replay.py          # writes bench/results/replay.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.io import write_json_atomic  # noqa: E402
from sampling import SampleStats, make_sampler  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "One-Shot-RLVR" / "acc_step_500.json"
TEXT = DATA.parent / "dsr_sub.parquet"
CLUSTERS = 24
EPOCHS, WINDOW, BUDGET, G = 50, 10, 0.25, 8

# (label, sampler name, sampler kwargs, store kwargs); store kwargs {} = StoreParams defaults
NO_DECAY = {"fast_half_life": None, "slow_half_life": None}
DECAY16 = {"fast_half_life": 16.0}
DECAY8 = {"fast_half_life": 8.0}
GREEDY_COV = {"temperature": 0.0, "coverage": 0.8, "coverage_window": WINDOW}
BEST = {**GREEDY_COV, "predictive": True}
PREPASS_STORE = {"fast_half_life": 4.0, "slow_half_life": 32.0, "prior_strength": 1.0}
PREPASS_SEEDS = (7, 8, 9)
SHARED_STORE = {"share": True, "fast_half_life": 8.0, "group_half_life": 4.0}
SAMPLERS = [
    ("uniform", "uniform", {}, {}),
    ("filter (DAPO), same budget", "filter", {"oversample": 1.0}, {}),
    ("thompson, no decay", "thompson", {}, NO_DECAY),
    ("thompson (default decay)", "thompson", {}, {}),
    ("thompson pooled x2", "thompson", {"pool_factor": 2.0}, {}),
    ("thompson greedy (T=0), no decay", "thompson", {"temperature": 0.0}, NO_DECAY),
    ("thompson greedy + coverage 0.8", "thompson", GREEDY_COV, DECAY16),
    ("thompson greedy predictive + coverage 0.8", "thompson", BEST, DECAY8),
    ("variance (MMR1)", "variance", {}, {}),
    ("curriculum target 0.5", "curriculum", {"mode": "target"}, {}),
    ("curriculum staged", "curriculum", {"mode": "staged", "stage_steps": 15}, {}),
]


def load_trajectories(path: Path = DATA) -> np.ndarray:
    """(prompts, EPOCHS) recorded pass rates, last value carried for short records."""
    raw = json.loads(path.read_text())
    keys = sorted(raw, key=int)
    acc = np.empty((len(keys), EPOCHS))
    for i, k in enumerate(keys):
        v = np.asarray(raw[k][:EPOCHS], dtype=np.float64)
        acc[i, : len(v)] = v
        acc[i, len(v):] = v[-1]
    return acc


def _store(n: int, store_kw: dict, prior: np.ndarray | None = None,
           labels: list[list[str]] | None = None) -> SampleStats:
    return SampleStats([str(i) for i in range(n)], difficulty=prior, group_labels=labels,
                       **store_kw)


def text_groups(k: int = CLUSTERS) -> list[list[str]] | None:
    """Group labels from what a curated set knows before any rollout: the answer's type
    and a k-means cluster of the problem's MiniLM embedding (dsr_sub.parquet, in the
    trajectories' index order). None when the data or the packaged model is missing."""
    import pyarrow.parquet as pq

    from curate.answers import detect_answer_type
    from curate.embedding import available, cluster_labels, embed

    if not TEXT.exists() or not available():
        return None
    t = pq.read_table(TEXT)
    index = [e["index"] for e in t.column("extra_info").to_pylist()]
    order = np.argsort(index)
    texts = [t.column("prompt")[int(i)].as_py()[0]["content"] for i in order]
    answers = [t.column("reward_model")[int(i)].as_py()["ground_truth"] for i in order]
    kinds = [detect_answer_type(a) for a in answers]
    clusters = cluster_labels(embed(texts), k=k, seed=0)
    return [kinds, [str(c) for c in clusters.tolist()]]


def prepass_prior(p0: np.ndarray, seed: int) -> np.ndarray:
    """A pass rate per prompt from one extra group of G rollouts at the starting policy."""
    return np.random.default_rng(seed).binomial(G, p0) / G


def _metrics(picked: np.ndarray, informative: np.ndarray, n: int) -> dict:
    """picked: (epochs, B) rows; informative: (epochs, B) bool."""
    cov, inf_w = [], []
    for w0 in range(0, EPOCHS, WINDOW):
        rows = np.unique(picked[w0:w0 + WINDOW].reshape(-1))
        cov.append(len(rows) / n)
        inf_w.append(float(informative[w0:w0 + WINDOW].mean()))
    return {"informative": float(informative.mean()), "coverage_mean": float(np.mean(cov)),
            "coverage_min": float(np.min(cov)), "coverage_windows": [round(c, 4) for c in cov],
            "informative_windows": [round(x, 4) for x in inf_w]}


def open_loop(acc: np.ndarray, name: str, kw: dict, store_kw: dict, seed: int = 0,
              observe_all: bool = False, prior: np.ndarray | None = None,
              labels: list[list[str]] | None = None) -> dict:
    """The replay.  observe_all=True (the ceiling row, not a real setting): the store
    is fed every prompt's recorded outcome at every epoch, not only the picked ones.
    prior: a per-prompt difficulty (pass rate) for the store, e.g. prepass_prior."""
    n = len(acc)
    b = int(round(BUDGET * n))
    stats = _store(n, store_kw, prior, labels)
    sampler = make_sampler(name, stats, group_size=G, seed=seed, **kw)
    picked, inf = [], []
    for e in range(EPOCHS):
        t = e + 1
        rows = sampler.next_rows(b, step=t)
        k = np.rint(acc[rows, e] * G).astype(int)
        seen = np.arange(n) if observe_all else rows
        k_seen = np.rint(acc[seen, e] * G).astype(int)
        rewards = (np.arange(G)[None, :] < k_seen[:, None]).astype(np.float64)
        stats.update(np.repeat(stats.ids[seen], G).tolist(), rewards.reshape(-1), step=t)
        picked.append(rows)
        inf.append((k > 0) & (k < G))
    return _metrics(np.array(picked), np.array(inf), n)


def oracle_open_loop(acc: np.ndarray) -> dict:
    n = len(acc)
    b = int(round(BUDGET * n))
    last = np.full(n, -1)
    picked, inf = [], []
    for e in range(EPOCHS):
        informative = (acc[:, e] > 0) & (acc[:, e] < 1)
        # informative first, then least recently picked, then row order
        order = np.lexsort((np.arange(n), last, ~informative))
        rows = order[:b]
        last[rows] = e
        picked.append(rows)
        inf.append(informative[rows])
    return _metrics(np.array(picked), np.array(inf), n)


def window_rate_bound(acc: np.ndarray, coverage: float = 0.8) -> dict:
    """Not a sampler: knows each prompt's informative share q in every window (but not
    at which epochs it is informative) and spends the window's W*B picks optimally under
    the coverage rule: the ceil(coverage*n) prompts of highest q once each, the remaining
    picks on the highest q (at most W per prompt).  Expected informative share."""
    n = len(acc)
    b = int(round(BUDGET * n))
    inf_all = (acc > 0) & (acc < 1)
    need = int(np.ceil(coverage * n))
    vals, cov = [], []
    for w0 in range(0, EPOCHS, WINDOW):
        w = min(WINDOW, EPOCHS - w0)
        q = np.sort(inf_all[:, w0:w0 + w].mean(axis=1))[::-1]
        extra = np.zeros(n)
        left = w * b - need
        for i in range(n):  # the extra picks, best share first
            extra[i] = min(w - 1, left)
            left -= extra[i]
            if left <= 0:
                break
        vals.append(float((q[:need].sum() + (extra * q).sum()) / (w * b)))
        cov.append(need / n)
    return {"informative": float(np.mean(vals)), "coverage_mean": float(np.mean(cov)),
            "coverage_min": float(np.min(cov)), "coverage_windows": [round(c, 4) for c in cov],
            "informative_windows": [round(x, 4) for x in vals]}


def closed_loop(acc: np.ndarray, name: str | None, kw: dict, store_kw: dict, seed: int,
                prepass: bool = False) -> float:
    """Final mean pass rate when only informative groups teach (see module doc)."""
    n = len(acc)
    b = int(round(BUDGET * n))
    rng = np.random.default_rng([seed, 12345])
    logit = np.log(np.clip(acc[:, 0], 0.01, 0.99) / (1 - np.clip(acc[:, 0], 0.01, 0.99)))
    prior = prepass_prior(1 / (1 + np.exp(-logit)), PREPASS_SEEDS[seed]) if prepass else None
    stats = _store(n, store_kw, prior)
    sampler = None if name is None else make_sampler(name, stats, group_size=G, seed=seed, **kw)
    last = np.full(n, -1)
    for e in range(EPOCHS):
        t = e + 1
        p = 1 / (1 + np.exp(-logit))
        if sampler is None:  # oracle: knows p, picks the most informative, then the stalest
            score = 1 - p**G - (1 - p) ** G
            rows = np.lexsort((last, -score))[:b]
            last[rows] = e
        else:
            rows = sampler.next_rows(b, step=t)
        k = rng.binomial(G, p[rows])
        rewards = (np.arange(G)[None, :] < k[:, None]).astype(np.float64)
        stats.update(np.repeat(stats.ids[rows], G).tolist(), rewards.reshape(-1), step=t)
        good = (k > 0) & (k < G)
        logit[rows[good]] += 0.3
        logit += 0.02 * good.mean()
    return float((1 / (1 + np.exp(-logit))).mean())


def main() -> int:
    if not DATA.exists():
        print(f"skip: {DATA} not found (needs ../shared/data)")
        return 0
    acc = load_trajectories()
    t0 = time.perf_counter()
    results = []
    rows = [("oracle (knows pass rates)", None, {}, {})] + SAMPLERS
    for label, name, kw, store_kw in rows:
        m = oracle_open_loop(acc) if name is None else open_loop(acc, name, kw, store_kw)
        m["final_pass_rate"] = float(np.mean([closed_loop(acc, name, kw, store_kw, s)
                                              for s in range(3)]))
        m.update(label=label, sampler=name or "oracle", kwargs=kw, store=store_kw)
        results.append(m)
    best_kw, best_store = next((kw, st) for label, _, kw, st in SAMPLERS if kw is BEST)
    ceiling = open_loop(acc, "thompson", best_kw, best_store, observe_all=True)
    ceiling.update(label="ceiling: best sampler, store sees every prompt every epoch",
                   sampler="ceiling", kwargs=best_kw, store=best_store,
                   final_pass_rate=float("nan"))
    bound = window_rate_bound(acc)
    bound.update(label="bound: knows each prompt's informative share per window",
                 sampler="bound", kwargs={}, store={}, final_pass_rate=float("nan"))
    pre = [open_loop(acc, "thompson", best_kw, PREPASS_STORE, prior=prepass_prior(acc[:, 0], s))
           for s in PREPASS_SEEDS]
    prepass = {key: float(np.mean([r[key] for r in pre]))
               for key in ("informative", "coverage_mean")}
    prepass.update(
        coverage_min=float(min(r["coverage_min"] for r in pre)),
        coverage_windows=pre[0]["coverage_windows"],
        informative_windows=[round(float(x), 4) for x in
                             np.mean([r["informative_windows"] for r in pre], axis=0)],
        informative_per_prepass=[round(r["informative"], 4) for r in pre],
        label="best + pre-pass difficulty prior (outside the budget)",
        sampler="thompson+prepass", kwargs=best_kw, store=PREPASS_STORE,
        final_pass_rate=float(np.mean([closed_loop(acc, "thompson", best_kw, PREPASS_STORE, s,
                                                   prepass=True) for s in range(3)])))
    results += [prepass]
    labels = text_groups()
    if labels is not None:
        # cold start: before any rollout the store knows only the text (answer type and
        # embedding cluster groups); evidence is shared within them
        for label, store in (("best + shared store, groups: answer type > text cluster",
                              {**SHARED_STORE, "group_keys": ("answer_type", "cluster")}),
                             ("best + shared store, one group (no text)", SHARED_STORE)):
            r = open_loop(acc, "thompson", best_kw, store,
                          labels=labels if store.get("group_keys") else None)
            r.update(label=label, sampler="thompson+shared", kwargs=best_kw,
                     store={k: list(v) if isinstance(v, tuple) else v for k, v in store.items()},
                     final_pass_rate=float("nan"))
            results.append(r)
    results += [ceiling, bound]
    uni = next(r for r in results if r["label"] == "uniform")
    for r in results:
        r["informative_vs_uniform"] = r["informative"] / uni["informative"]
    ok = [r for r in results
          if r["sampler"] not in ("oracle", "ceiling", "bound", "thompson+prepass")
          and r["coverage_min"] >= 0.80]
    best = max(ok, key=lambda r: r["informative"]) if ok else None
    out = {
        "data": str(DATA.relative_to(ROOT.parent)), "prompts": int(len(acc)), "epochs": EPOCHS,
        "budget": BUDGET, "group_size": G, "window": WINDOW, "results": results,
        "best_with_coverage_0.80": None if best is None else best["label"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{'sampler':58s} {'informative':>11s} {'x uniform':>9s} {'cov mean':>8s} "
          f"{'cov min':>7s} {'final p':>7s}  informative per window")
    for r in results:
        print(f"{r['label']:58s} {r['informative']:11.3f} {r['informative_vs_uniform']:9.2f} "
              f"{r['coverage_mean']:8.3f} {r['coverage_min']:7.3f} {r['final_pass_rate']:7.3f}  "
              + " ".join(f"{x:.3f}" for x in r["informative_windows"]))
    print("best with coverage >= 0.80 in every window:", out["best_with_coverage_0.80"])
    res = ROOT / "bench" / "results" / "replay.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
