"""Run a curation spec: ingest -> stages -> sharded Parquet + manifest.

Output folder (every file written atomically, the manifest last)::

    OUT/part-00000.parquet ...   the dataset (Sample schema), fixed-size shards
    OUT/manifest.json            per stage: rows in/out, drops by reason, seconds;
                                 quarantine counts; content hashes; balance check
    OUT/spec.json                the resolved spec
    OUT/audit/quarantine.parquet rows that could not be parsed or mapped
    OUT/audit/dropped.parquet    rows a stage dropped, with `stage` and `drop_reason`
    OUT/audit/clusters.parquet   duplicate clusters (id, cluster_id), when a stage reports them

Only the dataset shards sit at the top level as ``*.parquet``, so
``read_parquet('OUT/*.parquet')`` reads exactly the curated set.

Same spec and inputs give byte-identical files, hence identical content
hashes (timings are kept out of them).

>>> import tempfile, json, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "in.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\\n")
>>> m = run_curation({"sources": [{"path": str(d / "in.jsonl"), "preset": "gsm8k"}],
...                   "stages": [{"stage": "unverifiable"}]}, d / "out", progress=False)
>>> m["rows_out"], m["balanced"]
(1, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io import write_json_atomic, write_parquet_atomic
from curate.schema import SAMPLE_SCHEMA, conform
from curate.stage import DROP_REASON, StageOutput
from pipelines.spec import CurationSpec, EvalSetSpec, load_spec, stage_function

AUDIT = "audit"
DROPPED_SCHEMA = pa.schema([*SAMPLE_SCHEMA, ("stage", pa.string()), (DROP_REASON, pa.string())])


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(table: pa.Table, path: Path, compression: str) -> dict[str, Any]:
    # no statistics timestamps or random metadata: the bytes depend only on the rows
    write_parquet_atomic(table, path, compression=None if compression == "none" else compression)
    return {"path": str(path.name if path.parent.name != AUDIT else f"{AUDIT}/{path.name}"),
            "rows": table.num_rows, "sha256": _file_sha256(path)}


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in info.items():
        if isinstance(v, pl.DataFrame | pl.LazyFrame | pa.Table):
            continue
        try:
            json.dumps(v)
        except TypeError:
            v = str(v)
        out[k] = v
    return out


class _Progress:
    """Rich spinner per stage plus a one-line summary; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.console = None
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True)

    def run(self, label: str, fn, *args, **kwargs):
        if self.console is None:
            return fn(*args, **kwargs)
        with self.console.status(f"[bold]{label}[/] ..."):
            return fn(*args, **kwargs)

    def line(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, soft_wrap=True, highlight=False)


def _read(item: Any, progress: _Progress, label: str):
    from curate.ingest import read_samples

    kwargs: dict[str, Any] = {"mapping": item.mapping, "fmt": item.format, "limit": item.limit}
    if isinstance(item, EvalSetSpec):
        kwargs["source"] = item.name
    else:
        kwargs["source"] = item.name
        kwargs["domain"] = item.domain
    try:
        return progress.run(label, read_samples, item.paths(), item.preset, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"{label}: {exc}") from exc


def _eval_texts(spec: CurationSpec, against: list[str] | None, cache: dict, progress: _Progress
                ) -> list[str]:
    by_name = {e.name: e for e in spec.eval_sets}
    wanted = against or list(by_name)
    texts: list[str] = []
    for key in wanted:
        if key not in cache:
            item = by_name.get(key) or EvalSetSpec(name=Path(key).stem, path=key, preset="auto")
            res = _read(item, progress, f"eval set {key}")
            cache[key] = res.samples.column("prompt").to_pylist()
        texts.extend(cache[key])
    return texts


def run_curation(spec: str | os.PathLike | dict | CurationSpec, out_dir: str | os.PathLike, *,
                 progress: bool = True) -> dict[str, Any]:
    """Run `spec` and write the curated set under `out_dir`; returns the manifest.

    `spec` is a TOML path, a dict or a CurationSpec (see pipelines.spec). Raises
    ValueError for a bad spec or unreadable sources, naming the key or path.
    """
    t_start = time.perf_counter()
    spec = load_spec(spec if not isinstance(spec, os.PathLike) else Path(spec))
    out = Path(out_dir)
    ui = _Progress(progress)

    # ---- ingest
    tables, quarantines, inputs = [], [], []
    records_in = 0
    for i, src in enumerate(spec.sources):
        label = f"sources[{i}] {src.name or src.preset or 'mapping'}"
        t = time.perf_counter()
        res = _read(src, ui, label)
        tables.append(res.samples)
        quarantines.append(res.quarantine)
        records_in += res.records
        inputs.append({"source": src.name or src.preset, "files": res.files, "records": res.records,
                       "rows": res.samples.num_rows, "quarantined": res.quarantine.num_rows,
                       "seconds": round(time.perf_counter() - t, 4)})
        ui.line(f"[bold]read[/] {label}: {res.samples.num_rows} rows, "
                f"{res.quarantine.num_rows} quarantined ({len(res.files)} files)")
        for msg in res.errors()[:5]:
            ui.line(f"  [yellow]quarantined[/] {msg}")
    samples = pa.concat_tables(tables)
    quarantine = pa.concat_tables(quarantines)
    df = pl.from_arrow(samples)
    assert isinstance(df, pl.DataFrame)

    # ---- stages
    stage_records, dropped_frames, cluster_frames = [], [], []
    eval_cache: dict[str, list[str]] = {}
    for i, st in enumerate(spec.stages):
        if not st.enabled:
            continue
        func = stage_function(st.stage, f"stages[{i}]")
        params = st.params
        args: list[Any] = [df]
        if st.stage == "decontaminate":
            args.append(_eval_texts(spec, params.pop("against", None), eval_cache, ui))
        t = time.perf_counter()
        result: StageOutput = ui.run(f"stages[{i}] {st.stage}", func, *args, **params)
        seconds = time.perf_counter() - t
        dropped = result.dropped if result.dropped is not None else df.clear().with_columns(
            pl.lit(None, dtype=pl.Utf8).alias(DROP_REASON))
        if result.kept.height + dropped.height != df.height:
            raise RuntimeError(f"stages[{i}] ({st.stage}) lost rows: {df.height} in, "
                               f"{result.kept.height} kept + {dropped.height} dropped")
        drops = result.drops_by_reason()
        stage_records.append({"stage": st.stage, "params": st.params, "rows_in": df.height,
                              "rows_out": result.kept.height, "dropped": drops,
                              "seconds": round(seconds, 4), "info": _jsonable(result.info)})
        if dropped.height:
            dropped_frames.append(dropped.with_columns(pl.lit(st.stage).alias("stage")))
        clusters = result.info.get("clusters")
        if isinstance(clusters, pl.DataFrame) and clusters.height:
            cluster_frames.append(clusters.with_columns(pl.lit(st.stage).alias("stage")))
        ui.line(f"[bold]{st.stage}[/] {df.height} -> {result.kept.height}"
                + (f"  dropped {drops}" if drops else "") + f"  ({seconds:.2f}s)")
        df = result.kept

    # ---- write
    out.mkdir(parents=True, exist_ok=True)
    comp = spec.output.compression
    final = conform(df.select([c for c in SAMPLE_SCHEMA.names if c in df.columns]).to_arrow(),
                    SAMPLE_SCHEMA)
    shards = []
    n = spec.output.shard_rows
    n_shards = max(1, -(-final.num_rows // n))
    for k in range(n_shards):
        shards.append(_write(final.slice(k * n, n), out / f"part-{k:05d}.parquet", comp))
    keep = {s["path"] for s in shards}
    for stale in out.glob("part-*.parquet"):  # shards of an earlier, larger run
        if stale.name not in keep:
            stale.unlink()
    audit = out / AUDIT
    q_info = _write(quarantine, audit / "quarantine.parquet", comp)
    if dropped_frames:
        dropped_all = pl.concat(dropped_frames, how="diagonal_relaxed")
        extra = [c for c in dropped_all.columns if c not in DROPPED_SCHEMA.names]
        dropped_tbl = conform(dropped_all.select(
            [c for c in DROPPED_SCHEMA.names if c in dropped_all.columns]).to_arrow(), DROPPED_SCHEMA)
        for c in extra:  # stage-specific evidence (e.g. duplicate_of, similarity)
            dropped_tbl = dropped_tbl.append_column(c, dropped_all[c].to_arrow())
    else:
        dropped_tbl = DROPPED_SCHEMA.empty_table()
    d_info = _write(dropped_tbl, audit / "dropped.parquet", comp)
    c_info = None
    clusters_path = audit / "clusters.parquet"
    if cluster_frames:
        c_info = _write(pl.concat(cluster_frames, how="diagonal_relaxed").to_arrow(), clusters_path, comp)
    elif clusters_path.exists():
        clusters_path.unlink()

    n_dropped = sum(sum(r["dropped"].values()) for r in stage_records)
    n_quarantined = quarantine.num_rows
    resolved = spec.model_dump(mode="json")
    spec_text = json.dumps(resolved, indent=2, sort_keys=True) + "\n"
    write_json_atomic(resolved, out / "spec.json")
    content = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()
    q_cols = pl.from_arrow(quarantine.select(["column"])) if n_quarantined else None
    manifest = {
        "name": spec.name,
        "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
        "inputs": inputs,
        "eval_sets": {k: len(v) for k, v in sorted(eval_cache.items())},
        "stages": stage_records,
        "rows_in": records_in,  # input records: rows read + unreadable rows/files
        "records_in": records_in,
        "rows_ingested": samples.num_rows,
        "rows_out": final.num_rows,
        "dropped": n_dropped,
        "quarantined": n_quarantined,
        "balanced": records_in == final.num_rows + n_dropped + n_quarantined,
        "quarantine": {
            "rows": n_quarantined,
            "by_column": {str(k): v for k, v in sorted(
                q_cols["column"].fill_null("(row)").value_counts().iter_rows())} if q_cols is not None else {},
            "file": q_info,
        },
        "output": {"shards": shards, "dropped": d_info, "clusters": c_info,
                   "content_hash": content},
        "content_hash": content,
        "seconds": round(time.perf_counter() - t_start, 4),
    }
    if not manifest["balanced"]:  # a bug in a stage or the runner, never the user's data
        raise RuntimeError(f"curation does not balance: {records_in} records in, {final.num_rows} "
                           f"out + {n_dropped} dropped + {n_quarantined} quarantined")
    write_json_atomic(manifest, out / "manifest.json")
    ui.line(f"[bold green]done[/] {final.num_rows} rows -> {out} ({len(shards)} shards, "
            f"{n_dropped} dropped, {n_quarantined} quarantined, {manifest['seconds']:.1f}s)")
    return manifest


def read_curated(out_dir: str | os.PathLike) -> pa.Table:
    """The curated dataset written by `run_curation` (all shards, in order)."""
    files = sorted(Path(out_dir).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{out_dir}: no part-*.parquet shards")
    return pa.concat_tables([pq.read_table(f) for f in files])
