"""Near-dedup throughput, recall and memory: thresher vs datasketch, side by side in one run.

Corpus: >= 100k real-length documents built from GSM8K train: each document is
three random GSM8K train questions (~140 words); 5% of them get a planted
near-duplicate, a copy with 1-3 random word edits (delete, insert, substitute).

Methods, all with shingle_size=5 word shingles, num_perm=128, seed=1, threshold=0.8,
and the same index and clustering (curate.dedup.near_duplicate_clusters:
datasketch MinHashLSH + verification + connected components):

- thresher   curate.dedup.dedup_near on a polars frame (vectorized signatures)
- bulk       Python shingling + datasketch ``MinHash.bulk``
- loop       Python shingling + ``MinHash(...)`` and ``update`` per shingle per document.
             Too slow for the full corpus: it is timed on a --loop-docs subsample and
             its docs/sec extrapolated; its signatures are checked equal to bulk's on
             that subsample, so its recall is bulk's.

Peak memory is traced (tracemalloc) in a separate pass, so tracing does not slow the timings.

    .venv/bin/python bench/dedup.py            # writes bench/results/dedup.json
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.dedup import dedup_near, near_duplicate_clusters  # noqa: E402
from curate.io import write_json_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "grade-school-math" / "train.jsonl"
PARAMS = {"shingle_size": 5, "num_perm": 128, "seed": 1, "threshold": 0.8}
_WORD = re.compile(r"\w+")


def build_corpus(n_docs: int, dup_rate: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Documents and the planted (source, copy) row pairs."""
    questions = pl.read_ndjson(DATA)["question"].to_list()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(questions), size=(n_docs, 3))
    docs = [" ".join(questions[j] for j in row) for row in picks]
    vocab = sorted({w for q in questions[:2000] for w in q.split()})
    n_dup = int(n_docs * dup_rate)
    sources = np.sort(rng.choice(n_docs, size=n_dup, replace=False))
    pairs = []
    for src in sources.tolist():
        words = docs[src].split(" ")
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(0, len(words)))
            kind = int(rng.integers(0, 3))
            if kind == 0 and len(words) > 1:
                del words[pos]
            elif kind == 1:
                words.insert(pos, vocab[int(rng.integers(0, len(vocab)))])
            else:
                words[pos] = vocab[int(rng.integers(0, len(vocab)))]
        pairs.append((src, len(docs)))
        docs.append(" ".join(words))
    return docs, np.asarray(pairs)


def shingles_py(text: str, k: int) -> list[bytes]:
    """How a datasketch user shingles: regex words, lower case, k-word joins, utf-8."""
    w = _WORD.findall(text.lower())
    if len(w) < k:
        return [" ".join(w).encode()] if w else []
    return [" ".join(w[i : i + k]).encode() for i in range(len(w) - k + 1)]


def sig_bulk(docs: list[str]) -> np.ndarray:
    from datasketch import MinHash

    sets = [shingles_py(d, PARAMS["shingle_size"]) for d in docs]
    mhs = MinHash.bulk(sets, num_perm=PARAMS["num_perm"], seed=PARAMS["seed"])
    return np.stack([m.hashvalues for m in mhs])


def sig_loop(docs: list[str]) -> np.ndarray:
    from datasketch import MinHash

    out = []
    for d in docs:
        m = MinHash(num_perm=PARAMS["num_perm"], seed=PARAMS["seed"])
        for s in shingles_py(d, PARAMS["shingle_size"]):
            m.update(s)
        out.append(m.hashvalues)
    return np.stack(out)


def true_jaccard(docs: list[str], pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard similarity of the shingle sets of each planted pair."""
    out = []
    for a, b in pairs.tolist():
        x, y = set(shingles_py(docs[a], PARAMS["shingle_size"])), set(shingles_py(docs[b], PARAMS["shingle_size"]))
        out.append(len(x & y) / max(len(x | y), 1))
    return np.asarray(out)


def score(labels: np.ndarray, pairs: np.ndarray, jac: np.ndarray) -> dict:
    """Recall of planted pairs (all, and those truly >= threshold); pair precision."""
    found = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    above = jac >= PARAMS["threshold"]
    sizes = np.bincount(labels)
    predicted = int((sizes * (sizes - 1) // 2).sum())
    return {"recall": float(found.mean()), "recall_true_jaccard_above_threshold": float(found[above].mean()),
            "precision": float(found.sum() / max(predicted, 1)),
            "pairs_predicted": predicted, "pairs_planted": int(len(pairs))}


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def peak_mb(fn, *args) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000, help="base documents (plus planted copies)")
    ap.add_argument("--dup-rate", type=float, default=0.05)
    ap.add_argument("--loop-docs", type=int, default=5_000, help="subsample timed for the loop")
    ap.add_argument("--memory-docs", type=int, default=20_000, help="docs in the tracemalloc pass")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dedup.json"))
    args = ap.parse_args(argv)
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent: this benchmark reads the real GSM8K train set")

    docs, pairs = build_corpus(args.docs, args.dup_rate, args.seed)
    n = len(docs)
    words = sum(len(d.split()) for d in docs[:10_000]) / min(n, 10_000)
    print(f"corpus: {n} documents ({args.docs} + {len(pairs)} planted near-duplicates), "
          f"{words:.0f} words/doc on average; params {PARAMS}")
    jac = true_jaccard(docs, pairs)
    print(f"planted pairs' true Jaccard: min {jac.min():.3f}, median {np.median(jac):.3f}, "
          f"{(jac >= PARAMS['threshold']).mean():.1%} at or above the threshold")
    df = pl.DataFrame({"id": [f"{i:07d}" for i in range(n)], "prompt": docs})
    clusters = lambda sig: near_duplicate_clusters(sig, threshold=PARAMS["threshold"],  # noqa: E731
                                                   seed=PARAMS["seed"])

    # ---- thresher: the whole stage on a frame
    out, t_ours = timed(lambda: dedup_near(df, **PARAMS))
    t_ours_sig = out.info["seconds_signatures"]
    rank = {k: i for i, k in enumerate(df["id"].to_list())}
    labels_ours = np.arange(n)
    cl = out.info["clusters"]
    if cl.height:
        labels_ours[[rank[i] for i in cl["id"].to_list()]] = [rank[c] for c in cl["cluster_id"].to_list()]
    ours = {"seconds": t_ours, "seconds_signatures": t_ours_sig, **score(labels_ours, pairs, jac)}
    print(f"thresher  {n / t_ours:9.0f} docs/s end to end ({t_ours:.1f}s; signatures {t_ours_sig:.1f}s)")

    # ---- datasketch MinHash.bulk on the full corpus
    sig_b, t_bulk_sig = timed(sig_bulk, docs)
    (labels_b, _), t_bulk_idx = timed(clusters, sig_b)
    bulk = {"seconds": t_bulk_sig + t_bulk_idx, "seconds_signatures": t_bulk_sig, **score(labels_b, pairs, jac)}
    print(f"bulk      {n / bulk['seconds']:9.0f} docs/s end to end ({bulk['seconds']:.1f}s; "
          f"signatures {t_bulk_sig:.1f}s)")

    # ---- datasketch per-document loop on a subsample, extrapolated
    sub = np.sort(np.random.default_rng(1).choice(n, size=min(args.loop_docs, n), replace=False))
    sig_l, t_loop_sub = timed(sig_loop, [docs[i] for i in sub])
    same = bool(np.array_equal(sig_l, sig_b[sub]))
    per_doc = t_loop_sub / len(sub)
    t_loop_sig = per_doc * n
    loop = {"seconds": t_loop_sig + t_bulk_idx, "seconds_signatures": t_loop_sig,
            "extrapolated_from_docs": int(len(sub)), "signatures_equal_bulk": same,
            **{k: bulk[k] for k in ("recall", "recall_true_jaccard_above_threshold", "precision",
                                     "pairs_predicted", "pairs_planted")}}
    print(f"loop      {n / loop['seconds']:9.0f} docs/s end to end (extrapolated from {len(sub)} docs "
          f"timed in {t_loop_sub:.1f}s; signatures equal to bulk's: {same})")

    # ---- peak memory, traced separately
    m = min(args.memory_docs, n)
    mem = {
        "docs": m,
        "thresher": peak_mb(lambda: dedup_near(df.head(m), **PARAMS)),
        "bulk": peak_mb(lambda: clusters(sig_bulk(docs[:m]))),
        "loop": peak_mb(lambda: clusters(sig_loop(docs[: min(m, args.loop_docs)]))),
    }
    mem["loop_docs"] = min(m, args.loop_docs)

    res = {"params": PARAMS, "documents": n, "planted_pairs": int(len(pairs)), "words_per_doc": round(words, 1),
           "planted_true_jaccard": {"min": float(jac.min()), "median": float(np.median(jac)),
                                    "share_above_threshold": float((jac >= PARAMS["threshold"]).mean())},
           "methods": {"thresher": ours, "bulk": bulk, "loop": loop}, "peak_memory_mb": mem}
    for r in res["methods"].values():
        r["docs_per_second"] = round(n / r["seconds"], 1)
        r["signature_docs_per_second"] = round(n / r["seconds_signatures"], 1)
    for base in ("loop", "bulk"):
        b = res["methods"][base]
        res[f"speedup_vs_{base}"] = {
            "end_to_end": round(b["seconds"] / ours["seconds"], 2),
            "signatures": round(b["seconds_signatures"] / ours["seconds_signatures"], 2),
            "recall_difference": round(ours["recall"] - b["recall"], 4),
        }
    print(f"\n{'method':10s} {'docs/s':>9s} {'sig docs/s':>11s} {'recall':>7s} {'recall>=t':>9s} "
          f"{'precision':>9s}")
    for name, r in res["methods"].items():
        print(f"{name:10s} {r['docs_per_second']:9.0f} {r['signature_docs_per_second']:11.0f} "
              f"{r['recall']:7.4f} {r['recall_true_jaccard_above_threshold']:9.4f} {r['precision']:9.4f}")
    for base in ("loop", "bulk"):
        s = res[f"speedup_vs_{base}"]
        print(f"thresher vs {base}: x{s['end_to_end']:.1f} end to end, x{s['signatures']:.1f} signatures, "
              f"recall {s['recall_difference']:+.4f}")
    print(f"peak traced memory ({m} docs; loop {mem['loop_docs']}): thresher {mem['thresher']} MB, "
          f"bulk {mem['bulk']} MB, loop {mem['loop']} MB")
    write_json_atomic(res, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
