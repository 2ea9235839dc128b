"""Near-dedup throughput, recall and memory: thresher vs datasketch, side by side in one run.

Corpus: >= 100k real-length documents built from GSM8K train: each document is
three random GSM8K train questions (~140 words); 5% of them get a planted
near-duplicate, a copy with 1-3 random word edits (delete, insert, substitute).

Every method does the same stages on the same corpus with shingle_size=5 word
shingles, num_perm=128, seed=1, threshold=0.8 and the same LSH bands and rows
(``curate.dedup.lsh_params``: 18 x 7): shingle, sign, index in a datasketch
``MinHashLSH``, find candidate pairs, keep those whose estimated Jaccard is >= the
threshold, cluster (connected components).

- thresher    ``curate.dedup.dedup_near`` on a polars frame: vectorized signatures,
              band keys computed for all rows at once and put in the MinHashLSH,
              candidates read from its multi-key buckets, verified in numpy
- bulk        datasketch as its docs show it: Python shingling, ``MinHash.bulk``,
              ``insertion_session`` inserts, one ``query`` per document, each
              candidate verified with ``MinHash.jaccard``
- loop        the same, with one ``MinHash`` per document and ``update`` per shingle
              (datasketch's README usage)
- loop_batch  the same, with one ``MinHash`` per document and ``update_batch``
- reference: ``bulk_sig_thresher_index``, bulk's signatures fed to thresher's
  index and clustering (``near_duplicate_clusters``), to show which stage the
  speedup comes from

Each method runs in its own fresh process (so one method's heap and garbage do
not weigh on the next); time is wall clock (CPU time alongside, which other
load on the machine disturbs less) and includes tearing the index down. Peak
memory is the process's peak RSS (VmHWM, reset just before the method) above
its RSS at that point: every allocator is counted (numpy, Arrow, polars, Python).
With ``--loop-docs N`` the loops are timed on N random documents only and
extrapolated (their index stages then take bulk's time, their recall bulk's,
after checking their signatures equal bulk's on those documents).

    .venv/bin/python bench/dedup.py            # writes bench/results/dedup.json
"""

from __future__ import annotations

import argparse
import gc
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.dedup import _components, dedup_near, lsh_params, near_duplicate_clusters  # noqa: E402
from curate.io import write_json_atomic  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "grade-school-math" / "train.jsonl"
PARAMS = {"shingle_size": 5, "num_perm": 128, "seed": 1, "threshold": 0.8}
METHODS = ("thresher", "bulk", "loop", "loop_batch")
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


# ------------------------------------------------------------------ datasketch, as documented


def shingles_py(text: str, k: int) -> list[bytes]:
    """How a datasketch user shingles: regex words, lower case, k-word joins, utf-8."""
    w = _WORD.findall(text.lower())
    if len(w) < k:
        return [" ".join(w).encode()] if w else []
    return [" ".join(w[i : i + k]).encode() for i in range(len(w) - k + 1)]


def minhashes_bulk(docs: list[str]) -> list:
    from datasketch import MinHash

    sets = [shingles_py(d, PARAMS["shingle_size"]) for d in docs]
    return MinHash.bulk(sets, num_perm=PARAMS["num_perm"], seed=PARAMS["seed"])


def minhashes_loop(docs: list[str]) -> list:
    from datasketch import MinHash

    out = []
    for d in docs:
        m = MinHash(num_perm=PARAMS["num_perm"], seed=PARAMS["seed"])
        for s in shingles_py(d, PARAMS["shingle_size"]):
            m.update(s)
        out.append(m)
    return out


def minhashes_loop_batch(docs: list[str]) -> list:
    from datasketch import MinHash

    out = []
    for d in docs:
        m = MinHash(num_perm=PARAMS["num_perm"], seed=PARAMS["seed"])
        m.update_batch(shingles_py(d, PARAMS["shingle_size"]))
        out.append(m)
    return out


SIGNERS = {"bulk": minhashes_bulk, "loop": minhashes_loop, "loop_batch": minhashes_loop_batch}


def datasketch_clusters(mhs: list, clock) -> tuple[np.ndarray, dict]:
    """MinHashLSH insert (session) + one query per document + MinHash.jaccard, then clusters."""
    from datasketch import MinHashLSH

    t = clock()
    num_perm, threshold = PARAMS["num_perm"], PARAMS["threshold"]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=lsh_params(threshold, num_perm))
    with lsh.insertion_session() as session:
        for i, m in enumerate(mhs):
            session.insert(i, m)
    t_index = clock()
    left, right = [], []
    for i, m in enumerate(mhs):
        for j in lsh.query(m):
            if j > i and m.jaccard(mhs[j]) >= threshold:
                left.append(i)
                right.append(j)
    t_cand = clock()
    labels = _components(len(mhs), np.asarray(left, np.int64), np.asarray(right, np.int64))
    t_cluster = clock()
    del lsh, session
    gc.collect()  # the index references itself: without this it is freed at some later collection
    t_end = clock()
    stages = {"index": t_index - t, "candidates_and_verify": t_cand - t_index, "cluster": t_cluster - t_cand,
              "teardown": t_end - t_cluster}
    return labels, stages


# ------------------------------------------------------------------ one method in a fresh process


def _memory_kb() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB."""
    status = Path("/proc/self/status").read_text()
    get = lambda key: int(re.search(rf"{key}:\s+(\d+)", status).group(1))  # noqa: E731
    return get("VmRSS"), get("VmHWM")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
        return True
    except OSError:
        return False


def worker(method: str, args: argparse.Namespace) -> dict:
    import datasketch  # noqa: F401  (imported before the memory baseline by every method alike)
    import pyarrow.compute  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401

    docs, _ = build_corpus(args.docs, args.dup_rate, args.seed)
    n = len(docs)
    res: dict = {"method": method}
    if method == "thresher":
        df = pl.DataFrame({"id": [f"{i:07d}" for i in range(n)], "prompt": docs})
    rows = np.arange(n)
    if method.startswith("loop") and args.loop_docs and args.loop_docs < n:
        rows = np.sort(np.random.default_rng(1).choice(n, size=args.loop_docs, replace=False))
        docs = [docs[i] for i in rows]
    gc.collect()
    rss0, _ = _memory_kb()
    res["peak_is_reset"] = _reset_peak()
    wall, cpu = time.perf_counter, time.process_time
    w0, c0 = wall(), cpu()
    if method == "thresher":
        out = dedup_near(df, **PARAMS)
        gc.collect()
        res["seconds"], res["cpu_seconds"] = wall() - w0, cpu() - c0
        info = out.info
        res["stages"] = {"signatures": info["seconds_signatures"], "index_and_candidates": info["seconds_lsh"],
                         "verify_and_cluster": info["seconds_verify"]}
        res["stages"]["split_frame"] = res["seconds"] - sum(res["stages"].values())
        labels = np.arange(n)
        cl = info["clusters"]
        if cl.height:
            labels[cl["id"].cast(pl.Int64).to_numpy()] = cl["cluster_id"].cast(pl.Int64).to_numpy()
        res["labels"] = labels
        res["pairs_checked"], res["pairs_confirmed"] = info["pairs_checked"], info["pairs_confirmed"]
    else:
        mhs = SIGNERS[method](docs)
        w1, c1 = wall(), cpu()
        res["signatures"] = np.stack([m.hashvalues for m in mhs])
        if len(rows) == n:
            labels, stages = datasketch_clusters(mhs, wall)
            res["labels"] = labels
        else:
            stages = {}
        res["seconds"], res["cpu_seconds"] = wall() - w0, cpu() - c0
        res["stages"] = {"signatures": w1 - w0, **stages}
        res["cpu_seconds_signatures"] = c1 - c0
        res["rows"] = rows
    rss1, peak = _memory_kb()
    res["rss_before_mb"] = round(rss0 / 1024, 1)
    res["peak_rss_above_start_mb"] = round((peak - rss0) / 1024, 1)
    res["retained_rss_mb"] = round((rss1 - rss0) / 1024, 1)
    if method == "bulk":  # reference: bulk's signatures through thresher's index and clustering
        sig = res["signatures"]
        w0 = wall()
        labels_ref, _ = near_duplicate_clusters(sig, threshold=PARAMS["threshold"], seed=PARAMS["seed"])
        gc.collect()
        res["thresher_index_seconds"] = wall() - w0
        res["thresher_index_labels"] = labels_ref
    return res


def run_worker(method: str, args: argparse.Namespace, tmp: Path) -> dict:
    out = tmp / f"{method}.pkl"
    cmd = [sys.executable, __file__, "--worker", method, "--worker-out", str(out), "--docs", str(args.docs),
           "--dup-rate", str(args.dup_rate), "--seed", str(args.seed), "--loop-docs", str(args.loop_docs)]
    subprocess.run(cmd, check=True)
    return pickle.loads(out.read_bytes())


# ------------------------------------------------------------------ scoring and report


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
    _, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse)
    predicted = int((sizes * (sizes - 1) // 2).sum())
    return {"recall": float(found.mean()), "recall_true_jaccard_above_threshold": float(found[above].mean()),
            "precision": float(found.sum() / max(predicted, 1)),
            "pairs_predicted": predicted, "pairs_planted": int(len(pairs))}


def _round(d: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000, help="base documents (plus planted copies)")
    ap.add_argument("--dup-rate", type=float, default=0.05)
    ap.add_argument("--loop-docs", type=int, default=0,
                    help="time the two loops on this many documents and extrapolate (0: all)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dedup.json"))
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent: this benchmark reads the real GSM8K train set")
    if args.worker:
        Path(args.worker_out).write_bytes(pickle.dumps(worker(args.worker, args)))
        return 0
    methods = [m for m in METHODS if m in args.methods.split(",")]
    if "bulk" not in methods or "thresher" not in methods:
        raise SystemExit("--methods must include thresher and bulk")

    docs, pairs = build_corpus(args.docs, args.dup_rate, args.seed)
    n = len(docs)
    words = sum(len(d.split()) for d in docs[:10_000]) / min(n, 10_000)
    print(f"corpus: {n} documents ({args.docs} + {len(pairs)} planted near-duplicates), "
          f"{words:.0f} words/doc on average; params {PARAMS}, LSH bands x rows "
          f"{lsh_params(PARAMS['threshold'], PARAMS['num_perm'])}")
    jac = true_jaccard(docs, pairs)
    print(f"planted pairs' true Jaccard: min {jac.min():.3f}, median {np.median(jac):.3f}, "
          f"{(jac >= PARAMS['threshold']).mean():.1%} at or above the threshold")
    del docs

    raw = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in methods:
            raw[m] = run_worker(m, args, Path(tmp))
            print(f"{m:11s} {raw[m]['seconds']:7.1f}s wall, {raw[m]['cpu_seconds']:7.1f}s CPU, "
                  f"peak RSS +{raw[m]['peak_rss_above_start_mb']} MB  stages {_round(raw[m]['stages'])}")

    bulk_raw = raw["bulk"]
    results = {}
    for m, r in raw.items():
        row = {k: r[k] for k in ("seconds", "cpu_seconds", "peak_rss_above_start_mb", "retained_rss_mb",
                                 "rss_before_mb")}
        row["stages"] = _round(r["stages"])
        if m != "thresher":
            row["signatures_equal_bulk"] = bool(np.array_equal(r["signatures"], bulk_raw["signatures"][r["rows"]]))
        if "labels" in r:
            row.update(score(r["labels"], pairs, jac))
        else:  # a timed subsample: extrapolate the signatures, take bulk's index stages and recall
            per_doc, per_doc_cpu = r["seconds"] / len(r["rows"]), r["cpu_seconds_signatures"] / len(r["rows"])
            index = sum(v for k, v in bulk_raw["stages"].items() if k != "signatures")
            index_cpu = bulk_raw["cpu_seconds"] - bulk_raw["cpu_seconds_signatures"]
            row.update(seconds=per_doc * n + index, cpu_seconds=per_doc_cpu * n + index_cpu,
                       extrapolated_from_docs=int(len(r["rows"])),
                       stages={"signatures": round(per_doc * n, 3),
                               **{k: v for k, v in _round(bulk_raw["stages"]).items() if k != "signatures"}},
                       **score(bulk_raw["labels"], pairs, jac))
            row["peak_rss_docs"] = int(len(r["rows"]))
        row["seconds_signatures"] = row["stages"]["signatures"]
        row["docs_per_second"] = round(n / row["seconds"], 1)
        row["signature_docs_per_second"] = round(n / row["seconds_signatures"], 1)
        results[m] = row
    ref = {"seconds": bulk_raw["stages"]["signatures"] + bulk_raw["thresher_index_seconds"],
           "seconds_signatures": bulk_raw["stages"]["signatures"],
           "seconds_index_and_clusters": bulk_raw["thresher_index_seconds"],
           **score(bulk_raw["thresher_index_labels"], pairs, jac)}
    ref["docs_per_second"] = round(n / ref["seconds"], 1)

    ours = results["thresher"]
    res = {"params": PARAMS, "lsh_bands_rows": list(lsh_params(PARAMS["threshold"], PARAMS["num_perm"])),
           "documents": n, "planted_pairs": int(len(pairs)), "words_per_doc": round(words, 1),
           "planted_true_jaccard": {"min": float(jac.min()), "median": float(np.median(jac)),
                                    "share_above_threshold": float((jac >= PARAMS["threshold"]).mean())},
           "methods": results, "reference_bulk_sig_thresher_index": ref}
    for base in [m for m in methods if m != "thresher"]:
        b = results[base]
        res[f"speedup_vs_{base}"] = {
            "end_to_end": round(b["seconds"] / ours["seconds"], 2),
            "end_to_end_cpu": round(b["cpu_seconds"] / ours["cpu_seconds"], 2),
            "signatures": round(b["seconds_signatures"] / ours["seconds_signatures"], 2),
            "recall_difference": round(ours["recall"] - b["recall"], 4),
        }
    res["speedup_vs_bulk_sig_thresher_index"] = {"end_to_end": round(ref["seconds"] / ours["seconds"], 2),
                                                 "recall_difference": round(ours["recall"] - ref["recall"], 4)}

    print(f"\n{'method':11s} {'docs/s':>8s} {'sig docs/s':>10s} {'recall':>7s} {'recall>=t':>9s} "
          f"{'precision':>9s} {'peak RSS':>9s}")
    for name, r in results.items():
        print(f"{name:11s} {r['docs_per_second']:8.0f} {r['signature_docs_per_second']:10.0f} "
              f"{r['recall']:7.4f} {r['recall_true_jaccard_above_threshold']:9.4f} {r['precision']:9.4f} "
              f"{r['peak_rss_above_start_mb']:6.0f} MB")
    print(f"(reference: bulk signatures + thresher's index: {ref['docs_per_second']:.0f} docs/s, "
          f"recall {ref['recall']:.4f})")
    for base in [m for m in methods if m != "thresher"] + ["bulk_sig_thresher_index"]:
        s = res[f"speedup_vs_{base}"]
        extra = (f" (CPU x{s['end_to_end_cpu']:.1f}), x{s['signatures']:.1f} signatures"
                 if "signatures" in s else "")
        print(f"thresher vs {base}: x{s['end_to_end']:.1f} end to end{extra}, recall {s['recall_difference']:+.4f}")
    write_json_atomic(res, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
