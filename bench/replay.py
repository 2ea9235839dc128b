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
recently picked first).

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

from sampling import SampleStats, make_sampler  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "One-Shot-RLVR" / "acc_step_500.json"
EPOCHS, WINDOW, BUDGET, G = 50, 10, 0.25, 8

# (label, sampler name, sampler kwargs, store kwargs); store kwargs {} = StoreParams defaults
NO_DECAY = {"fast_half_life": None, "slow_half_life": None}
DECAY16 = {"fast_half_life": 16.0}
BEST = {"temperature": 0.0, "coverage": 0.8, "coverage_window": WINDOW}
SAMPLERS = [
    ("uniform", "uniform", {}, {}),
    ("filter (DAPO), same budget", "filter", {"oversample": 1.0}, {}),
    ("thompson, no decay", "thompson", {}, NO_DECAY),
    ("thompson (default decay)", "thompson", {}, {}),
    ("thompson pooled x2", "thompson", {"pool_factor": 2.0}, {}),
    ("thompson greedy (T=0), no decay", "thompson", {"temperature": 0.0}, NO_DECAY),
    ("thompson greedy + coverage 0.8", "thompson", BEST, DECAY16),
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


def _store(n: int, store_kw: dict) -> SampleStats:
    return SampleStats([str(i) for i in range(n)], **store_kw)


def _metrics(picked: np.ndarray, informative: np.ndarray, n: int) -> dict:
    """picked: (epochs, B) rows; informative: (epochs, B) bool."""
    cov = []
    for w0 in range(0, EPOCHS, WINDOW):
        rows = np.unique(picked[w0:w0 + WINDOW].reshape(-1))
        cov.append(len(rows) / n)
    return {"informative": float(informative.mean()), "coverage_mean": float(np.mean(cov)),
            "coverage_min": float(np.min(cov)), "coverage_windows": [round(c, 4) for c in cov]}


def open_loop(acc: np.ndarray, name: str, kw: dict, store_kw: dict, seed: int = 0) -> dict:
    n = len(acc)
    b = int(round(BUDGET * n))
    stats = _store(n, store_kw)
    sampler = make_sampler(name, stats, group_size=G, seed=seed, **kw)
    picked, inf = [], []
    for e in range(EPOCHS):
        t = e + 1
        rows = sampler.next_rows(b, step=t)
        k = np.rint(acc[rows, e] * G).astype(int)
        rewards = (np.arange(G)[None, :] < k[:, None]).astype(np.float64)
        stats.update(np.repeat(stats.ids[rows], G).tolist(), rewards.reshape(-1), step=t)
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


def history_bound(acc: np.ndarray, coverage: float = 0.8) -> dict:
    """Not a sampler: greedy on every prompt's full recorded history (all epochs < e),
    with the same coverage quota.  A budgeted sampler only ever sees 25% of that."""
    n = len(acc)
    b = int(round(BUDGET * n))
    inf_all = (acc > 0) & (acc < 1)
    last = np.full(n, -1)
    picked, inf = [], []
    for e in range(EPOCHS):
        p = acc[:, : max(e, 1)].mean(axis=1)
        score = 1 - p**G - (1 - p) ** G
        w0 = (e // WINDOW) * WINDOW
        unc = np.flatnonzero(last < w0)
        need = int(np.ceil(coverage * n)) - (n - len(unc))
        n_cov = 0 if need <= 0 else min(b, len(unc), int(np.ceil(need / (w0 + WINDOW - e))))
        cov_rows = unc[np.argsort(-score[unc], kind="stable")[:n_cov]]
        score = score.copy()
        score[cov_rows] = -np.inf
        rows = np.concatenate([cov_rows, np.argsort(-score, kind="stable")[: b - n_cov]])
        last[rows] = e
        picked.append(rows)
        inf.append(inf_all[rows, e])
    return _metrics(np.array(picked), np.array(inf), n)


def closed_loop(acc: np.ndarray, name: str | None, kw: dict, store_kw: dict, seed: int) -> float:
    """Final mean pass rate when only informative groups teach (see module doc)."""
    n = len(acc)
    b = int(round(BUDGET * n))
    rng = np.random.default_rng([seed, 12345])
    logit = np.log(np.clip(acc[:, 0], 0.01, 0.99) / (1 - np.clip(acc[:, 0], 0.01, 0.99)))
    stats = _store(n, store_kw)
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
    bound = history_bound(acc)
    bound.update(label="bound: full history of every prompt + coverage 0.8", sampler="bound",
                 kwargs={}, store={}, final_pass_rate=float("nan"))
    results.append(bound)
    uni = next(r for r in results if r["label"] == "uniform")
    for r in results:
        r["informative_vs_uniform"] = r["informative"] / uni["informative"]
    ok = [r for r in results
          if r["sampler"] not in ("oracle", "bound") and r["coverage_min"] >= 0.80]
    best = max(ok, key=lambda r: r["informative"]) if ok else None
    out = {
        "data": str(DATA.relative_to(ROOT.parent)), "prompts": int(len(acc)), "epochs": EPOCHS,
        "budget": BUDGET, "group_size": G, "window": WINDOW, "results": results,
        "best_with_coverage_0.80": None if best is None else best["label"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"{'sampler':52s} {'informative':>11s} {'x uniform':>9s} {'cov mean':>8s} "
          f"{'cov min':>7s} {'final p':>7s}")
    for r in results:
        print(f"{r['label']:52s} {r['informative']:11.3f} {r['informative_vs_uniform']:9.2f} "
              f"{r['coverage_mean']:8.3f} {r['coverage_min']:7.3f} {r['final_pass_rate']:7.3f}")
    print("best with coverage >= 0.80 in every window:", out["best_with_coverage_0.80"])
    res = ROOT / "bench" / "results" / "replay.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    tmp = res.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
