"""One GRPO step against the statistics store at scale, vs a per-sample Python store.

A step = `update` 4,096 rewards (512 groups of 8, the ids picked last step)
then `next_batch(512)`.  Measured in one run, on the same ids and rewards:

- thompson pooled (pool_factor=4) and thompson exact (every sample ranked),
  median milliseconds per step;
- the same two steps on a straightforward per-sample implementation: a dict
  id -> [alpha, beta, n, last_step] updated response by response, and
  Thompson by `random.betavariate` per candidate: reported as a ratio;
- id lookups for 4,096 ids: dict index vs sorted-array index;
- thompson exact when every sample has its own prior (no shared-prior groups:
  n Beta draws per step, the worst case);
- memory per million samples (numeric arrays, plus ids and index);
- both Thompson steps with evidence shared across prompts (8 domains x 4
  levels, empirical-Bayes prompt strength), as a ratio to the unshared step,
  the two stepped in lockstep so that both see the same machine load.

    .venv/bin/python bench/store.py            # 1M samples; --n 10000000 for the 10M target
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.io import write_json_atomic  # noqa: E402
from sampling import SampleStats, ThompsonSampler  # noqa: E402
from sampling.index import DictIdIndex, SortedIdIndex  # noqa: E402

K, G = 512, 8


class DictStore:
    """The straightforward baseline: one Python list of posterior fields per sample."""

    def __init__(self, ids: list[str], seed: int) -> None:
        self.post = {i: [1.0, 1.0, 0, -1] for i in ids}
        self.ids = ids
        self.rng = random.Random(seed)

    def update(self, ids: list[str], rewards: list[float], step: int) -> None:
        for i, r in zip(ids, rewards, strict=True):
            p = self.post[i]
            p[0] += r
            p[1] += 1.0 - r
            p[2] += 1
            p[3] = step

    def next_batch(self, k: int, pool: int | None) -> list[str]:
        cand = self.ids if pool is None else self.rng.sample(self.ids, pool)
        scored = []
        for i in cand:
            a, b = self.post[i][0], self.post[i][1]
            p = self.rng.betavariate(a, b)
            scored.append((1.0 - p**G - (1.0 - p) ** G, i))
        scored.sort(reverse=True)
        return [i for _, i in scored[:k]]


def _rewards(rng: np.random.Generator) -> np.ndarray:
    return (rng.random(K * G) < 0.4).astype(np.float64)


class _StoreRun:
    """One store and Thompson sampler, stepped one GRPO step at a time."""

    def __init__(self, n: int, ids: list[str], pool: float | None, seed: int = 0,
                 distinct_priors: bool = False, shared: bool = False) -> None:
        # distinct_priors: every sample has its own curated difficulty, so no two rows
        # share a posterior and exact Thompson must draw all n (its worst case)
        difficulty = np.random.default_rng(seed).random(n) if distinct_priors else None
        if shared:  # evidence shared in 8 domains x 4 levels (32 groups), prompt strength fitted
            rows = np.arange(n)
            self.stats = SampleStats(ids, domains=[f"d{d}" for d in (rows % 8).tolist()],
                                     group_labels=[(rows // 8 % 4).astype(str).tolist()],
                                     share=True, group_keys=("level",), decay_unit="visits")
        else:
            self.stats = SampleStats(ids, difficulty=difficulty)
        self.sampler = ThompsonSampler(self.stats, group_size=G, seed=seed, pool_factor=pool)
        self.rng = np.random.default_rng(seed)
        self.batch = self.sampler.next_batch(K, step=0)

    def step(self, t: int) -> tuple[float, float]:
        """(update seconds, next_batch seconds) of step t."""
        flat = [i for i in self.batch for _ in range(G)]
        r = _rewards(self.rng)
        t0 = time.perf_counter()
        self.stats.update(flat, r, step=t)
        t1 = time.perf_counter()
        self.batch = self.sampler.next_batch(K, step=t)
        return t1 - t0, time.perf_counter() - t1


def _summary(upd: list[float], sel: list[float]) -> dict:
    ms = 1000.0
    return {"median_ms": statistics.median(u + s for u, s in zip(upd, sel, strict=True)) * ms,
            "update_ms": statistics.median(upd) * ms, "next_batch_ms": statistics.median(sel) * ms,
            "steps": len(upd)}


def time_store(n: int, ids: list[str], pool: float | None, steps: int, seed: int = 0,
               distinct_priors: bool = False, shared: bool = False) -> dict:
    run = _StoreRun(n, ids, pool, seed, distinct_priors, shared)
    upd, sel = zip(*(run.step(t) for t in range(1, steps + 1)), strict=True)
    return _summary(list(upd), list(sel))


def time_shared_vs_unshared(n: int, ids: list[str], pool: float | None, steps: int) -> dict:
    """The shared and the unshared store stepped in lockstep, alternating which goes first.

    The ratio of two medians measured minutes apart moves with whatever else the
    machine does (1.6x-3.5x on one busy VM); interleaved steps see the same load.
    """
    plain, shared = _StoreRun(n, ids, pool), _StoreRun(n, ids, pool, shared=True)
    times: dict[str, tuple[list[float], list[float]]] = {"plain": ([], []), "shared": ([], [])}
    for t in range(1, steps + 1):
        order = (("plain", plain), ("shared", shared)) if t % 2 else \
            (("shared", shared), ("plain", plain))
        for name, run in order:
            u, s = run.step(t)
            times[name][0].append(u)
            times[name][1].append(s)
    a, b = _summary(*times["plain"]), _summary(*times["shared"])
    ratios = [(su + ss) / (pu + ps) for pu, ps, su, ss in zip(*times["plain"], *times["shared"],
                                                              strict=True)]
    return {**b, "unshared_median_ms": a["median_ms"], "vs_unshared": b["median_ms"] / a["median_ms"],
            "median_step_ratio": statistics.median(ratios)}


def time_dict(ids: list[str], pool: int | None, steps: int, seed: int = 0) -> dict:
    store = DictStore(ids, seed)
    rng = np.random.default_rng(seed)
    batch = store.next_batch(K, pool)
    times = []
    for t in range(1, steps + 1):
        flat = [i for i in batch for _ in range(G)]
        r = _rewards(rng).tolist()
        t0 = time.perf_counter()
        store.update(flat, r, t)
        batch = store.next_batch(K, pool)
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1000.0, "steps": steps}


def time_lookup(ids: list[str], reps: int = 50) -> dict:
    rng = np.random.default_rng(1)
    out = {}
    for name, cls in (("dict", DictIdIndex), ("sorted", SortedIdIndex)):
        t0 = time.perf_counter()
        ix = cls(ids)
        build = time.perf_counter() - t0
        ts = []
        for _ in range(reps):
            q = [ids[j] for j in rng.integers(0, len(ids), K * G)]
            t0 = time.perf_counter()
            ix.lookup(q)
            ts.append(time.perf_counter() - t0)
        out[name] = {"lookup_4096_ms": statistics.median(ts) * 1000.0, "build_s": build}
    return out


def memory(n: int) -> dict:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ids = [f"{i:032x}" for i in range(n)]
    strings = tracemalloc.get_traced_memory()[0] - base
    stats = SampleStats(ids)
    total = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_m = 1e6 / n
    return {"arrays_mb_per_million": stats.nbytes() * per_m / 2**20,
            "store_mb_per_million": (total - strings) * per_m / 2**20,
            "with_id_strings_mb_per_million": total * per_m / 2**20,
            "note": "store = numeric arrays + id object array + dict index; "
                    "with_id_strings adds the 32-char id str objects themselves"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--baseline-steps", type=int, default=3)
    args = ap.parse_args()
    n = args.n
    t0 = time.perf_counter()
    ids = [f"{i:032x}" for i in range(n)]  # 32 hex chars, like curate.schema.sample_id
    pooled = time_store(n, ids, 4.0, args.steps)
    exact = time_store(n, ids, None, max(5, args.steps // 2))
    exact_worst = time_store(n, ids, None, 5, distinct_priors=True)
    shared_pooled = time_shared_vs_unshared(n, ids, 4.0, args.steps)
    shared_exact = time_shared_vs_unshared(n, ids, None, args.steps)
    base_pooled = time_dict(ids, 4 * K, args.steps)
    base_exact = time_dict(ids, None, args.baseline_steps)
    out = {
        "n_samples": n, "batch": K, "group_size": G, "updates_per_step": K * G,
        "pooled": {**pooled, "pool_factor": 4.0, "baseline_ms": base_pooled["median_ms"],
                   "speedup_vs_dict": base_pooled["median_ms"] / pooled["median_ms"]},
        "exact": {**exact, "baseline_ms": base_exact["median_ms"],
                  "speedup_vs_dict": base_exact["median_ms"] / exact["median_ms"]},
        "exact_distinct_priors": {**exact_worst,
                                  "note": "every row its own difficulty prior: n Beta draws/step"},
        "shared_pooled": shared_pooled,
        "shared_exact": shared_exact,
        "lookup": time_lookup(ids),
        "memory": memory(n),
        "targets": {"pooled_ms": 10.0, "exact_ms": 60.0},
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    p, e = out["pooled"], out["exact"]
    print(f"{n:,} samples, step = update {K * G:,} rewards + next_batch({K})")
    print(f"  thompson pooled x4: {p['median_ms']:7.2f} ms (update {p['update_ms']:.2f}, "
          f"select {p['next_batch_ms']:.2f}) vs dict store {p['baseline_ms']:8.1f} ms "
          f"-> {p['speedup_vs_dict']:.0f}x")
    print(f"  thompson exact:     {e['median_ms']:7.2f} ms (update {e['update_ms']:.2f}, "
          f"select {e['next_batch_ms']:.2f}) vs dict store {e['baseline_ms']:8.1f} ms "
          f"-> {e['speedup_vs_dict']:.0f}x")
    for key, label in (("shared_pooled", "pooled x4"), ("shared_exact", "exact")):
        sh = out[key]
        print(f"  sharing on (8 domains x 4 levels), {label}: {sh['median_ms']:7.2f} ms "
              f"-> {sh['vs_unshared']:.2f}x the unshared step in lockstep "
              f"({sh['unshared_median_ms']:.2f} ms; median per-step ratio "
              f"{sh['median_step_ratio']:.2f}x)")
    w = out["exact_distinct_priors"]
    print(f"  thompson exact, every row its own prior (n Beta draws): {w['median_ms']:7.2f} ms")
    lk = out["lookup"]
    print(f"  4,096 id lookups: dict {lk['dict']['lookup_4096_ms']:.3f} ms, sorted array "
          f"{lk['sorted']['lookup_4096_ms']:.3f} ms "
          f"({lk['sorted']['lookup_4096_ms'] / lk['dict']['lookup_4096_ms']:.1f}x slower)")
    m = out["memory"]
    print(f"  memory per million samples: arrays {m['arrays_mb_per_million']:.0f} MiB, "
          f"store with index {m['store_mb_per_million']:.0f} MiB, "
          f"with the id strings {m['with_id_strings_mb_per_million']:.0f} MiB")
    res = ROOT / "bench" / "results" / ("store.json" if n == 1_000_000 else f"store-{n}.json")
    res.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
