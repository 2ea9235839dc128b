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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import ConfigError, DataError
from curate.io import write_json_atomic, write_parquet_atomic
from curate.schema import SAMPLE_SCHEMA, conform
from curate.stage import DROP_REASON, StageContext, StageOutput, Step
from pipelines.spec import CurationSpec, EvalSetSpec, StageSpec, load_spec

AUDIT = "audit"
DROPPED_SCHEMA = pa.schema([*SAMPLE_SCHEMA, ("stage", pa.string()), (DROP_REASON, pa.string())])


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_file(table: pa.Table, path: Path, compression: str) -> dict[str, Any]:
    # no statistics timestamps or random metadata: the bytes depend only on the rows. The
    # writer cuts data pages per input chunk, so the rows go in as one chunk: the bytes do
    # not depend on how an engine happened to batch them (a column over 2 GiB keeps its chunks)
    try:
        table = table.combine_chunks()
    except pa.ArrowInvalid:
        pass
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

    kwargs: dict[str, Any] = {"mapping": item.mapping, "fmt": item.format, "limit": item.limit,
                              "source": item.name}
    if not isinstance(item, EvalSetSpec):
        kwargs["domain"] = item.domain
    try:
        return progress.run(label, read_samples, item.paths(), item.preset, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{label}: {exc}") from exc


def stage_context(spec: CurationSpec, progress: _Progress | None = None) -> StageContext:
    """The resources the local engine lends the steps: the spec's eval sets, read once."""
    ui = progress or _Progress(False)

    def texts(item: EvalSetSpec, label: str) -> list[str]:
        return _read(item, ui, label).samples.column("prompt").to_pylist()

    declared = {e.name: (lambda e=e: texts(e, f"eval set {e.name}")) for e in spec.eval_sets}
    return StageContext(declared, lambda path: texts(
        EvalSetSpec(name=Path(path).stem, path=path, preset="auto"), f"eval set {path}"))


def _ingest(spec: CurationSpec, ui: _Progress) -> tuple[pa.Table, pa.Table, list[dict], int]:
    """Read every source: (samples, quarantine, per-input records, input records)."""
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
    return pa.concat_tables(tables), pa.concat_tables(quarantines), inputs, records_in


@dataclass
class _StageRun:
    """One step's result, as the manifest and the audit files record it."""

    record: dict[str, Any]
    dropped: pl.DataFrame | None
    clusters: pl.DataFrame | None


def run_step(st: StageSpec, step: Step, df: pl.DataFrame, ctx: StageContext, where: str,
             ui: _Progress | None = None) -> tuple[pl.DataFrame, _StageRun]:
    """Run one step on `df`: (kept rows, what to record); checks that no row was lost."""
    ui = ui or _Progress(False)
    t = time.perf_counter()
    result: StageOutput = ui.run(f"{where} {st.stage}", step.run, df, ctx)
    seconds = time.perf_counter() - t
    dropped = result.dropped if result.dropped is not None else df.clear().with_columns(
        pl.lit(None, dtype=pl.Utf8).alias(DROP_REASON))
    if result.kept.height + dropped.height != df.height:
        raise RuntimeError(f"{where} ({st.stage}) lost rows: {df.height} in, "
                           f"{result.kept.height} kept + {dropped.height} dropped")
    drops = result.drops_by_reason()
    record = {"stage": st.stage, "params": st.params, "rows_in": df.height,
              "rows_out": result.kept.height, "dropped": drops,
              "seconds": round(seconds, 4), "info": _jsonable(result.info)}
    clusters = result.info.get("clusters")
    ui.line(f"[bold]{st.stage}[/] {df.height} -> {result.kept.height}"
            + (f"  dropped {drops}" if drops else "") + f"  ({seconds:.2f}s)")
    return result.kept, _StageRun(
        record,
        dropped.with_columns(pl.lit(st.stage).alias("stage")) if dropped.height else None,
        clusters.with_columns(pl.lit(st.stage).alias("stage"))
        if isinstance(clusters, pl.DataFrame) and clusters.height else None)


ENGINES = ("local", "ray")


def run_curation(spec: str | os.PathLike | dict | CurationSpec, out_dir: str | os.PathLike, *,
                 progress: bool = True, engine: str | None = None,
                 address: str | None = None) -> dict[str, Any]:
    """Run `spec` and write the curated set under `out_dir`; returns the manifest.

    `spec` is a TOML path, a dict or a CurationSpec (see pipelines.spec). Raises
    ConfigError for a bad spec and DataError for unreadable sources (both
    ValueErrors, naming the key or the path). `engine` ("local" or "ray";
    default: the spec's `engine`) picks where the stages run; `address` is the Ray
    cluster to join ("auto", "HOST:PORT"; default: a local cluster). Both engines
    write the same bytes (pipelines.ray_engine).
    """
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")
    if address is not None:
        if engine == "local":
            raise ConfigError(f"address {address!r} is for the ray engine; the local engine "
                              "runs in this process (drop --address or use --engine ray)")
        engine = "ray"
    if engine == "ray":
        from pipelines.ray_engine import require_ray

        require_ray()  # before the spec is read: a missing extra fails at once
    spec = load_spec(spec if not isinstance(spec, os.PathLike) else Path(spec))
    if (engine or spec.engine) == "ray":
        from pipelines.ray_engine import run_curation_ray

        return run_curation_ray(spec, out_dir, progress=progress, address=address)
    t_start = time.perf_counter()
    ui = _Progress(progress)
    samples, quarantine, inputs, records_in = _ingest(spec, ui)
    df = pl.from_arrow(samples)
    assert isinstance(df, pl.DataFrame)
    ctx = stage_context(spec, ui)
    runs: list[_StageRun] = []
    for where, st, step in spec.steps():
        try:
            df, run = run_step(st, step, df, ctx, where, ui)
        except ValueError as exc:  # a stage's complaint about the data or its settings
            raise DataError(f"{where} ({st.stage}): {exc}") from exc
        runs.append(run)
    final = final_table(df)
    n = spec.output.shard_rows
    shards = write_shards((final.slice(k * n, n) for k in range(max(1, -(-final.num_rows // n)))),
                          Path(out_dir), spec.output.compression)
    manifest = write_outputs(spec, Path(out_dir), shards, quarantine, runs, inputs, records_in,
                             ctx.loaded, samples.num_rows)
    manifest["engine"] = "local"
    return finish(manifest, out_dir, t_start, ui)


def finish(manifest: dict[str, Any], out_dir: str | os.PathLike, t_start: float,
           ui: _Progress) -> dict[str, Any]:
    """Stamp the run's seconds, write manifest.json (last: it marks the run complete), report."""
    manifest["seconds"] = round(time.perf_counter() - t_start, 4)
    write_json_atomic(manifest, Path(out_dir) / "manifest.json")
    ui.line(f"[bold green]done[/] {manifest['rows_out']} rows -> {out_dir} "
            f"({len(manifest['output']['shards'])} shards, {manifest['dropped']} dropped, "
            f"{manifest['quarantined']} quarantined, {manifest['seconds']:.1f}s)")
    return manifest


def final_table(df: pl.DataFrame) -> pa.Table:
    """The curated rows as written: the Sample columns, in schema order and types.

    >>> final_table(pl.DataFrame({"prompt": ["2+2?"], "id": ["a"], "extra": [1]})).column_names[:3]
    ['id', 'source', 'domain']
    """
    return conform(df.select([c for c in SAMPLE_SCHEMA.names if c in df.columns]).to_arrow(),
                   SAMPLE_SCHEMA)


def write_shards(tables: Iterable[pa.Table], out: Path, compression: str) -> list[dict[str, Any]]:
    """Write one shard per table (``part-00000.parquet``, ...; at least one, maybe empty) and
    remove the shards of an earlier, larger run; returns each shard's path, rows and sha256."""
    out.mkdir(parents=True, exist_ok=True)
    shards = [_write_file(t, out / f"part-{k:05d}.parquet", compression)
              for k, t in enumerate(tables)]
    if not shards:
        shards = [_write_file(final_table(pl.from_arrow(SAMPLE_SCHEMA.empty_table())),
                              out / "part-00000.parquet", compression)]
    keep = {s["path"] for s in shards}
    for stale in out.glob("part-*.parquet"):
        if stale.name not in keep:
            stale.unlink()
    return shards


def write_outputs(spec: CurationSpec, out: Path, shards: list[dict[str, Any]], quarantine: pa.Table,
                  runs: list[_StageRun], inputs: list[dict], records_in: int,
                  eval_sets: dict[str, int], rows_ingested: int) -> dict[str, Any]:
    """Write the audit files and spec.json beside the written `shards`; returns the manifest
    (unwritten). Both engines end here, so their audit files and manifests are the same."""
    comp = spec.output.compression
    rows_out = sum(s["rows"] for s in shards)
    audit = out / AUDIT
    q_info = _write_file(quarantine, audit / "quarantine.parquet", comp)
    dropped_frames = [r.dropped for r in runs if r.dropped is not None]
    if dropped_frames:
        dropped_all = pl.concat(dropped_frames, how="diagonal_relaxed")
        extra = [c for c in dropped_all.columns if c not in DROPPED_SCHEMA.names]
        dropped_tbl = conform(dropped_all.select(
            [c for c in DROPPED_SCHEMA.names if c in dropped_all.columns]).to_arrow(), DROPPED_SCHEMA)
        for c in extra:  # stage-specific evidence (e.g. duplicate_of, similarity)
            dropped_tbl = dropped_tbl.append_column(c, dropped_all[c].to_arrow())
    else:
        dropped_tbl = DROPPED_SCHEMA.empty_table()
    d_info = _write_file(dropped_tbl, audit / "dropped.parquet", comp)
    c_info = None
    clusters_path = audit / "clusters.parquet"
    cluster_frames = [r.clusters for r in runs if r.clusters is not None]
    if cluster_frames:
        c_info = _write_file(pl.concat(cluster_frames, how="diagonal_relaxed").to_arrow(),
                             clusters_path, comp)
    elif clusters_path.exists():
        clusters_path.unlink()

    stage_records = [r.record for r in runs]
    n_dropped = sum(sum(r["dropped"].values()) for r in stage_records)
    n_quarantined = quarantine.num_rows
    resolved = spec.model_dump(mode="json", exclude={"engine"})  # how it ran is not what it made
    spec_text = json.dumps(resolved, indent=2, sort_keys=True) + "\n"
    write_json_atomic(resolved, out / "spec.json")
    content = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()
    q_cols = pl.from_arrow(quarantine.select(["column"])) if n_quarantined else None
    manifest = {
        "name": spec.name,
        "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
        "inputs": inputs,
        "eval_sets": eval_sets,
        "stages": stage_records,
        "rows_in": records_in,  # input records: rows read + unreadable rows/files
        "records_in": records_in,
        "rows_ingested": rows_ingested,
        "rows_out": rows_out,
        "dropped": n_dropped,
        "quarantined": n_quarantined,
        "balanced": records_in == rows_out + n_dropped + n_quarantined,
        "quarantine": {
            "rows": n_quarantined,
            "by_column": {str(k): v for k, v in sorted(
                q_cols["column"].fill_null("(row)").value_counts().iter_rows())} if q_cols is not None else {},
            "file": q_info,
        },
        "output": {"shards": shards, "dropped": d_info, "clusters": c_info,
                   "content_hash": content},
        "content_hash": content,
    }
    if not manifest["balanced"]:  # a bug in a stage or the runner, never the user's data
        raise RuntimeError(f"curation does not balance: {records_in} records in, {rows_out} "
                           f"out + {n_dropped} dropped + {n_quarantined} quarantined")
    return manifest


def read_curated(out_dir: str | os.PathLike) -> pa.Table:
    """The curated dataset written by `run_curation` (all shards, in order)."""
    files = sorted(Path(out_dir).glob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{out_dir}: no part-*.parquet shards")
    return pa.concat_tables([pq.read_table(f) for f in files])
