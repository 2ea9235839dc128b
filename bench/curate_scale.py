"""Curation at scale: the local engine against the Ray engine, side by side in one run.

Corpus: bench/dedup.py's planted-duplicate documents (three random GSM8K train
questions each, ~140 words; 5% get a planted copy with 1-3 word edits), written
as Sample-schema Parquet files of `--file-rows` rows (ids are the document
numbers, so clusters map back to planted pairs). Spec: `length_bounds`,
`dedup_exact`, `dedup_near` (5-word shingles, 128 permutations, threshold 0.8,
text only), shards of 100k rows.

Each engine runs the same spec in its own fresh process (`thresher curate`'s
code path, `run_curation(..., engine=...)`); the local engine is the named
baseline. The Ray engine starts a local cluster of `--ray-cpus` CPUs with an
object store of `--object-store-mb` MB that spills to `--spill-dir`. Measured:
wall time of the whole process (Ray's start included), peak memory of the
whole process tree (the driver, raylet, GCS and every worker: the sum of their
proportional set sizes, so the shared object store is counted once, sampled
every 0.25 s by a thread in this process), recall of the planted pairs (both
in one cluster of audit/clusters.parquet), and whether the two engines wrote
the same bytes (content_hash and every audit file).

    .venv/bin/python bench/curate_scale.py                      # 100k and 1M documents
    .venv/bin/python bench/curate_scale.py --sizes 100000       # one size
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

STAGES = [
    {"stage": "length_bounds", "min_prompt_chars": 16, "max_prompt_chars": 8000},
    {"stage": "dedup_exact"},
    {"stage": "dedup_near", "shingle_size": 5, "num_perm": 128, "threshold": 0.8, "seed": 1,
     "answer_col": ""},
]


def write_corpus(n_docs: int, dup_rate: float, seed: int, file_rows: int, folder: Path) -> np.ndarray:
    """Write the planted corpus as Sample-schema Parquet files; returns the planted pairs."""
    import polars as pl
    from dedup import build_corpus

    docs, pairs = build_corpus(n_docs, dup_rate, seed)
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(docs))  # copies land in other files
    for k, lo in enumerate(range(0, len(docs), file_rows)):
        rows = order[lo:lo + file_rows]
        pl.DataFrame({"id": [f"{i:08d}" for i in rows.tolist()],
                      "prompt": [docs[i] for i in rows.tolist()],
                      "answer": ["0"] * len(rows)}).write_parquet(folder / f"part-{k:05d}.parquet")
    return pairs


def worker(engine: str, spec: Path, out: Path) -> None:
    from pipelines.curation import run_curation

    run_curation(spec, out, progress=False, engine=engine)


def _tree_memory(pid: int) -> tuple[int, int, int]:
    """(sum of PSS, sum of RSS, processes) of `pid` and all its descendants, in bytes."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    pss = rss = 0
    for p in procs:
        try:
            m = p.memory_full_info()
            pss += getattr(m, "pss", m.rss)
            rss += m.rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pss, rss, len(procs)


def run_engine(engine: str, spec: Path, out: Path, env: dict[str, str], timeout: float) -> dict:
    """Run one engine in a fresh process; wall time and the process tree's peak memory."""
    cmd = [sys.executable, __file__, "--worker", engine, "--spec", str(spec), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env})
    peak = {"pss": 0, "rss": 0, "procs": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pss, rss, n = _tree_memory(proc.pid)
            peak["pss"], peak["rss"] = max(peak["pss"], pss), max(peak["rss"], rss)
            peak["procs"] = max(peak["procs"], n)
            done.wait(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -9
    done.set()
    thread.join()
    res = {"engine": engine, "returncode": rc, "seconds": round(time.perf_counter() - t0, 2),
           "peak_tree_pss_mb": round(peak["pss"] / 2**20), "peak_tree_rss_mb": round(peak["rss"] / 2**20),
           "max_processes": peak["procs"]}
    if rc == 0:
        m = json.loads((out / "manifest.json").read_text())
        res.update(content_hash=m["content_hash"], rows_out=m["rows_out"], dropped=m["dropped"],
                   stages={s["stage"]: {"seconds": s["seconds"], "dropped": s["dropped"]}
                           for s in m["stages"]},
                   near_info={k: v for k, v in m["stages"][-1]["info"].items()
                              if k.startswith(("pairs", "lsh", "rows_"))})
    return res


def recall(out: Path, pairs: np.ndarray) -> float:
    """Share of planted pairs whose two documents ended in one duplicate cluster."""
    import polars as pl

    path = out / "audit" / "clusters.parquet"
    if not path.exists():
        return 0.0
    cl = pl.read_parquet(path)
    label = dict(zip(cl["id"].cast(pl.Int64).to_list(), cl["cluster_id"].to_list(), strict=True))
    found = [label.get(a) is not None and label.get(a) == label.get(b) for a, b in pairs.tolist()]
    return float(np.mean(found)) if found else 0.0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def same_files(a: Path, b: Path) -> bool:
    names = sorted({p.relative_to(a) for p in a.rglob("*.parquet")} | {p.relative_to(b) for p in b.rglob("*.parquet")})
    return all(_digest(a / n) == _digest(b / n) for n in names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated base document counts")
    ap.add_argument("--dup-rate", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--file-rows", type=int, default=25_000, help="rows per input Parquet file")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--object-store-mb", type=int, default=2048)
    ap.add_argument("--spill-dir", default=None, help="object store spill folder (default: under --tmp)")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--tmp", default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "curate_scale.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.spec), Path(args.out))
        return 0

    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="curate_scale-"))
    spill = Path(args.spill_dir or tmp / "spill")
    spill.mkdir(parents=True, exist_ok=True)
    env = {"THRESHER_RAY_CPUS": str(args.ray_cpus), "THRESHER_RAY_OBJECT_STORE_MB": str(args.object_store_mb),
           "THRESHER_RAY_SPILL_DIR": str(spill)}
    engines = args.engines.split(",")
    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        folder = tmp / f"data-{n}"
        t0 = time.perf_counter()
        pairs = write_corpus(n, args.dup_rate, args.seed, args.file_rows, folder)
        spec_toml = tmp / f"spec-{n}.toml"
        spec_toml.write_text(_toml({"name": f"scale-{n}", "sources": [{"path": str(folder), "preset": "sample"}],
                                    "stages": STAGES, "output": {"shard_rows": 100_000}}))
        row = {"docs": n + len(pairs), "planted_pairs": int(len(pairs)), "files": len(list(folder.glob("*.parquet"))),
               "corpus_seconds": round(time.perf_counter() - t0, 1), "engines": {}}
        for engine in engines:
            out = tmp / f"out-{n}-{engine}"
            res = run_engine(engine, spec_toml, out, env, args.timeout)
            if res["returncode"] == 0:
                res["recall"] = round(recall(out, pairs), 4)
            row["engines"][engine] = res
            print(json.dumps({"docs": row["docs"], **{k: v for k, v in res.items() if k not in ("stages", "near_info")}}),
                  flush=True)
        loc, ray = row["engines"].get("local"), row["engines"].get("ray")
        if loc and ray and loc["returncode"] == 0 and ray["returncode"] == 0:
            row["identical_output"] = bool(loc["content_hash"] == ray["content_hash"]
                                           and same_files(tmp / f"out-{n}-local", tmp / f"out-{n}-ray"))
            row["ray_vs_local"] = {"wall_time": round(ray["seconds"] / loc["seconds"], 2),
                                   "peak_memory_pss": round(ray["peak_tree_pss_mb"] / max(loc["peak_tree_pss_mb"], 1), 2)}
            print(f"{row['docs']:>9} docs: ray/local wall x{row['ray_vs_local']['wall_time']}, "
                  f"peak memory x{row['ray_vs_local']['peak_memory_pss']}, identical={row['identical_output']}",
                  flush=True)
        results.append(row)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "baseline": "local engine (one process)",
            "settings": {"ray_cpus": args.ray_cpus, "object_store_mb": args.object_store_mb,
                         "file_rows": args.file_rows, "dup_rate": args.dup_rate, "stages": STAGES,
                         "cpu_count": os.cpu_count()},
            "results": results}, indent=2) + "\n")
    return 0


def _toml(spec: dict) -> str:
    """The spec as TOML (what `thresher curate` reads)."""
    lines = [f'name = "{spec["name"]}"', "", "[[sources]]"]
    lines += [f'path = "{spec["sources"][0]["path"]}"', f'preset = "{spec["sources"][0]["preset"]}"']
    for st in spec["stages"]:
        lines += ["", "[[stages]]"] + [f"{k} = {json.dumps(v)}" for k, v in st.items()]
    lines += ["", "[output]", f"shard_rows = {spec['output']['shard_rows']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
