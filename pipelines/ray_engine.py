"""Curation on Ray Data: the same spec, the same bytes as the local engine, on a cluster.

``thresher curate SPEC --out DIR --engine ray [--address auto|HOST:PORT]`` (or
``engine = "ray"`` in the spec) runs every stage on Ray Data and ends in the
local engine's own writer (`pipelines.curation.write_outputs`), so shards,
audit files, manifest counts and ``content_hash`` are the local engine's.

How each part runs (docs/scale.md has the costs):

- ingest: one Ray task per input file (`curate.ingest.read_samples` on that
  file), each row keyed by `row_key` (source, file, row): the local engine's
  row order, so "the earliest row" means the same row on both engines;
  quarantined records come back to the driver (they are small and ordered).
- row-wise stages (`Step.row_wise`: the filters, decontamination with its eval
  texts lent to every block): consecutive ones are fused into one
  ``map_batches`` that runs the local step on each block and tags every row with
  the stage that dropped it (``__stage``) and its evidence, instead of removing it.
- dedup_exact, dedup_near, dedup_images: a block map emits bucket keys (the
  normalized text; the MinHash LSH band values; the pHash bands), one
  ``groupby(...).map_groups`` shuffle turns the buckets into candidate pairs,
  and only the rows in a pair (a few percent) come back to the driver, which
  confirms the pairs, builds connected components over the edge list and picks
  representatives with the local engine's own functions (`curate.dedup`), then
  broadcasts the drops to a tagging block map (pipelines.ray_dedup).
- any other stage (cluster, rollout, difficulty) sees all its rows at once, as
  on the local engine: the rows come to the driver, the step runs there.
- output: one global sort by row key, streamed to the driver one shard at a
  time; the dropped rows of every stage are gathered for the audit file.

Ray is imported only when this engine runs; `require_ray` fails at once, with
the install command, when it is missing.

>>> row_key(1, 2, 3) > row_key(0, 9, 9) > row_key(0, 2, 3)
True
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import ConfigError, DataError, ThresherError
from curate.schema import SAMPLE_SCHEMA
from curate.stage import DROP_REASON, SpecView, StageContext, Step
from pipelines.curation import (
    _jsonable,
    _Progress,
    _StageRun,
    final_table,
    finish,
    stage_context,
    write_outputs,
    write_shards,
)
from pipelines.spec import CurationSpec, StageSpec, load_spec, stage_class

INSTALL = "pip install 'thresher[ray]'"
KEY = "__key"  # int64: source, file and row of the record (`row_key`)
STAGE = "__stage"  # index of the stage that dropped the row; null while it is kept
INFO = "__info"  # JSON of a block's stage figures, on the block's first row only
PART = "__part"  # shuffle partition of a bucket row
BUCKET = "__bucket"  # bucket key bytes
SIG = "__sig"  # MinHash signature bytes of a gathered row
PHASH = "__phash"  # pHashes of a row's images (dedup_images)
_COUNTER = -1  # bucket rows with a negative key carry a count, not a row
# stages with a Ray implementation in pipelines.ray_dedup (one shuffle + the driver)
_KEYED_STAGES = ("dedup_exact", "dedup_near", "dedup_images")


# ---------------------------------------------------------------- setup
def ray_available() -> bool:
    """Whether Ray can be imported (checked without importing it)."""
    if "ray" in sys.modules:
        return sys.modules["ray"] is not None
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def require_ray() -> None:
    """Raise ConfigError naming the install command when Ray is not installed.

    >>> require_ray() if ray_available() else None
    """
    if not ray_available():
        raise ConfigError(f"engine 'ray' needs Ray Data, which is not installed: {INSTALL}")


def row_key(source: int, file: int, row: int) -> int:
    """The int64 key of a record: its source (spec order), file (sorted) and row in that file.

    Sorting by it gives the local engine's row order. Up to 2^19 sources, 2^16 files
    per source and 2^28 rows per file.

    >>> row_key(0, 1, 0), row_key(1, 0, 0)
    (268435456, 17592186044416)
    """
    if not (0 <= source < 1 << 19 and 0 <= file < 1 << 16 and 0 <= row < 1 << 28):
        raise DataError(f"row_key: source {source}, file {file}, row {row} out of range "
                        "(expected < 2^19 sources, 2^16 files per source, 2^28 rows per file)")
    return (source << 44) | (file << 28) | row


def connect(address: str | None = None) -> bool:
    """Join the cluster at `address` ("auto", "HOST:PORT"), or start a local one; returns
    True when this call started Ray (the caller shuts it down).

    A local cluster reads THRESHER_RAY_CPUS (default: all cores),
    THRESHER_RAY_OBJECT_STORE_MB (default: Ray's, 30% of memory), THRESHER_RAY_TMPDIR
    (Ray's session and log folder) and THRESHER_RAY_SPILL_DIR (where the object store
    spills); see docs/scale.md.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        env = os.environ
        if env.get("THRESHER_RAY_CPUS"):
            kwargs["num_cpus"] = int(env["THRESHER_RAY_CPUS"])
        if env.get("THRESHER_RAY_OBJECT_STORE_MB"):
            kwargs["object_store_memory"] = int(env["THRESHER_RAY_OBJECT_STORE_MB"]) << 20
        if env.get("THRESHER_RAY_TMPDIR"):
            kwargs["_temp_dir"] = env["THRESHER_RAY_TMPDIR"]
        if env.get("THRESHER_RAY_SPILL_DIR"):
            kwargs["_system_config"] = {"object_spilling_config": json.dumps(
                {"type": "filesystem", "params": {"directory_path": env["THRESHER_RAY_SPILL_DIR"]}})}
        ray.init(**kwargs)
    return True


def _configure() -> None:
    """Ray Data settings of this engine: quiet, and the pull-based sort shuffle (its
    groupby starts in a fraction of a second; THRESHER_RAY_SHUFFLE names another)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.shuffle_strategy = os.environ.get("THRESHER_RAY_SHUFFLE", "sort_shuffle_pull_based")
    ctx.enable_progress_bars = False
    ctx.enable_auto_log_stats = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task failure (DataError, ConfigError), if any."""
    seen = exc
    for _ in range(8):
        if isinstance(seen, ThresherError):
            return seen
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if nxt is None:
            break
        seen = nxt
    return exc


def _arrow(df: pl.DataFrame) -> pa.Table:
    return df.to_arrow(compat_level=pl.CompatLevel.oldest())


def _frame(tables: Sequence[pa.Table]) -> pl.DataFrame | None:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    out = pl.from_arrow(pa.concat_tables(tables, promote_options="default"))
    assert isinstance(out, pl.DataFrame)
    return out


def _collect(ds) -> pl.DataFrame | None:
    """Every row of a (small) dataset on the driver, or None when it has none."""
    import ray

    return _frame(ray.get(ds.to_arrow_refs()))


# ---------------------------------------------------------------- ingest
def _read_file(si: int, fi: int, path: str, preset: str | None, kwargs: dict[str, Any]
               ) -> tuple[pa.Table, tuple[pa.Table, int, int]]:
    """One input file -> (keyed Sample rows, (quarantine, records, rows))."""
    from curate.ingest import read_samples

    res = read_samples([path], preset, **kwargs)
    n = res.samples.num_rows
    base = row_key(si, fi, 0)
    keys = pa.array(np.arange(base, base + n, dtype=np.int64))
    return res.samples.append_column(KEY, keys), (res.quarantine, res.records, n)


def _ingest(spec: CurationSpec, ui: _Progress):
    """(dataset of keyed Sample rows, quarantine, per-source records, records in, rows):
    one task per file, launched for every source before any is awaited."""
    import ray

    from curate.ingest import expand_paths, format_error, guess_preset

    reader = ray.remote(num_returns=2)(_read_file)
    launched = []
    for si, src in enumerate(spec.sources):
        label = f"sources[{si}] {src.name or src.preset or 'mapping'}"
        try:
            files = expand_paths(src.paths())
            preset = guess_preset(files[0], src.format) if src.preset == "auto" else src.preset
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"{label}: {exc}") from exc
        kwargs = {"mapping": src.mapping, "fmt": src.format, "limit": src.limit,
                  "source": src.name, "domain": src.domain}
        refs = [reader.remote(si, fi, str(p), preset, kwargs) for fi, p in enumerate(files)]
        launched.append((label, src, files, refs, time.perf_counter()))
    sample_refs, quarantines, inputs = [], [], []
    records_in = rows = 0
    for label, src, files, refs, t in launched:
        try:
            metas = ray.get([m for _, m in refs])
        except Exception as exc:
            inner = _unwrap(exc)
            if isinstance(inner, FileNotFoundError | ValueError):
                raise DataError(f"{label}: {inner}") from None
            raise
        sample_refs.extend(s for s, _ in refs)
        quar = [q for q, _, _ in metas]
        quarantines.extend(quar)
        n_rows, n_records, n_q = (sum(m[2] for m in metas), sum(m[1] for m in metas),
                                  sum(q.num_rows for q in quar))
        rows += n_rows
        records_in += n_records
        inputs.append({"source": src.name or src.preset, "files": [str(p) for p in files],
                       "records": n_records, "rows": n_rows, "quarantined": n_q,
                       "seconds": round(time.perf_counter() - t, 4)})
        ui.line(f"[bold]read[/] {label}: {n_rows} rows, {n_q} quarantined ({len(files)} files)")
        shown = [row for q in quar for row in q.slice(0, 5).to_pylist()][:5]
        for row in shown:
            ui.line(f"  [yellow]quarantined[/] {format_error(row)}")
    ds = ray.data.from_arrow_refs(sample_refs)
    return ds, pa.concat_tables(quarantines), inputs, records_in, rows


# ---------------------------------------------------------------- row-wise stages
_BUILT: dict[Any, Step] = {}


def _step(name: str, params: dict[str, Any], where: str, eval_sets: tuple[str, ...]) -> Step:
    """The step of a spec entry, built once per worker process."""
    key = (name, json.dumps(params, sort_keys=True, default=str), where, eval_sets)
    if key not in _BUILT:
        _BUILT[key] = stage_class(name, where).build(params, where, SpecView(eval_sets))
    return _BUILT[key]


def _run_step(step: Step, df: pl.DataFrame, ctx: StageContext, where: str, name: str):
    try:
        out = step.run(df, ctx)
    except ValueError as exc:
        raise DataError(f"{where} ({name}): {exc}") from exc
    dropped = out.dropped if out.dropped is not None else df.clear().with_columns(
        pl.lit(None, dtype=pl.Utf8).alias(DROP_REASON))
    if out.kept.height + dropped.height != df.height:
        raise RuntimeError(f"{where} ({name}) lost rows: {df.height} in, "
                           f"{out.kept.height} kept + {dropped.height} dropped")
    return out, dropped


def _row_wise_block(block: pa.Table, stages: list[tuple], ctx: StageContext) -> pa.Table:
    """Run consecutive row-wise stages on one block; every row comes out, tagged."""
    df = pl.from_arrow(block)
    assert isinstance(df, pl.DataFrame)
    parts, figures = [], {}
    for idx, where, name, params, eval_sets in stages:
        t = time.perf_counter()
        out, dropped = _run_step(_step(name, params, where, eval_sets), df, ctx, where, name)
        figures[str(idx)] = {"info": _jsonable(out.info), "seconds": time.perf_counter() - t,
                             "dropped_columns": dropped.columns, "kept_columns": out.kept.columns}
        parts.append(dropped.with_columns(pl.lit(idx, dtype=pl.Int32).alias(STAGE)))
        df = out.kept
    tagged = pl.concat([df.with_columns(pl.lit(None, dtype=pl.Int32).alias(STAGE)), *parts],
                       how="diagonal_relaxed")
    info = [json.dumps(figures)] + [None] * (tagged.height - 1)
    return _arrow(tagged.with_columns(pl.Series(INFO, info, dtype=pl.Utf8)))


def _tagged_rows(block: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return block.filter(pc.or_(pc.is_valid(block[STAGE]), pc.is_valid(block[INFO])))


def _kept_rows(block: pa.Table, columns: list[str]) -> pa.Table:
    import pyarrow.compute as pc

    return block.filter(pc.is_null(block[STAGE])).select(columns)


_ADDITIVE = ("rows_", "seconds")


def _merge_info(base: dict[str, Any], blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """A row-wise stage's figures over all blocks: `rows_*` and `seconds*` counters summed,
    any other figure as the stage reports it on the whole frame (the driver's probe).

    >>> _merge_info({"method": "ngram", "rows_ngram": 0}, [{"rows_ngram": 2}, {"rows_ngram": 3}])
    {'method': 'ngram', 'rows_ngram': 5}
    """
    out = dict(base)
    for info in blocks:
        for k, v in info.items():
            if k.startswith(_ADDITIVE) and isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    return {k: round(v, 4) if k.startswith("seconds") and isinstance(v, float) else v
            for k, v in out.items()}


def _probe(steps: list[tuple[int, str, StageSpec, Step]], schema: pa.Schema, ctx: StageContext
           ) -> dict[int, dict[str, Any]]:
    """Run each step on an empty frame on the driver: bad settings and missing columns fail
    here as on the local engine, and the eval texts a step asks for are loaded."""
    df = pl.from_arrow(schema.empty_table())
    assert isinstance(df, pl.DataFrame)
    infos = {}
    for idx, where, st, step in steps:
        out, _ = _run_step(step, df, ctx, where, st.stage)
        infos[idx] = _jsonable(out.info)
        df = out.kept
    return infos


def _record(st: StageSpec, rows_in: int, dropped: pl.DataFrame | None, seconds: float,
            info: dict[str, Any], clusters: pl.DataFrame | None) -> _StageRun:
    """What the local engine's run_step records for a stage, from gathered parts."""
    drops: dict[str, int] = {}
    if dropped is not None and dropped.height:
        counts = dropped.group_by(DROP_REASON).len().sort(DROP_REASON)
        drops = dict(zip(counts[DROP_REASON].to_list(), counts["len"].to_list(), strict=True))
    rows_out = rows_in - (dropped.height if dropped is not None else 0)
    record = {"stage": st.stage, "params": st.params, "rows_in": rows_in, "rows_out": rows_out,
              "dropped": drops, "seconds": round(seconds, 4), "info": info}
    return _StageRun(
        record,
        dropped.with_columns(pl.lit(st.stage).alias("stage"))
        if dropped is not None and dropped.height else None,
        clusters.with_columns(pl.lit(st.stage).alias("stage"))
        if clusters is not None and clusters.height else None)


def _report(ui: _Progress, st: StageSpec, run: _StageRun, seconds: float) -> None:
    r = run.record
    ui.line(f"[bold]{st.stage}[/] {r['rows_in']} -> {r['rows_out']}"
            + (f"  dropped {r['dropped']}" if r["dropped"] else "") + f"  ({seconds:.2f}s)")


def _row_wise(ds, schema: pa.Schema, group: list[tuple[int, str, StageSpec, Step]],
              ctx: StageContext, rows_in: int, eval_sets: tuple[str, ...], ui: _Progress):
    """Fused block map of consecutive row-wise stages: (kept dataset, rows, stage runs)."""
    t0 = time.perf_counter()
    columns = schema.names
    probe = _probe(group, schema, ctx)
    stages = [(idx, where, st.stage, st.params, eval_sets) for idx, where, st, _ in group]
    tagged = ds.map_batches(_row_wise_block, fn_kwargs={"stages": stages, "ctx": ctx.lend()},
                            batch_format="pyarrow", zero_copy_batch=True).materialize()
    side = _collect(tagged.map_batches(_tagged_rows, batch_format="pyarrow"))
    figures: list[dict[str, Any]] = []
    if side is not None:
        figures = [json.loads(x) for x in side[INFO].drop_nulls().to_list()]
    kept_columns = columns
    runs = []
    seconds_total = time.perf_counter() - t0
    for idx, _where, st, _step in group:
        mine = [f[str(idx)] for f in figures if str(idx) in f]
        if mine:
            kept_columns = mine[0]["kept_columns"]
        dropped = None
        if side is not None:
            d = side.filter(pl.col(STAGE) == idx).sort(KEY)
            cols = mine[0]["dropped_columns"] if mine else d.columns
            dropped = d.select([c for c in cols if c != KEY])
        seconds = sum(m["seconds"] for m in mine)
        run = _record(st, rows_in, dropped, seconds, _merge_info(probe[idx], [m["info"] for m in mine]),
                      None)
        rows_in = run.record["rows_out"]
        runs.append(run)
        _report(ui, st, run, seconds_total / len(group))
    kept = tagged.map_batches(_kept_rows, fn_kwargs={"columns": kept_columns},
                              batch_format="pyarrow")
    if any(c not in columns for c in kept_columns):  # a step added columns: ask Ray
        return kept, _schema(kept, schema), rows_in, runs
    return kept, pa.schema([schema.field(c) for c in kept_columns]), rows_in, runs


def _schema(ds, known: pa.Schema) -> pa.Schema:
    """The dataset's Arrow schema; `known` when Ray cannot say (no rows left)."""
    schema = ds.schema()
    if schema is None:
        return known
    return schema.base_schema if hasattr(schema, "base_schema") else schema




def _keyed(ds, schema: pa.Schema, idx: int, where: str, st: StageSpec, step: Step,
           ctx: StageContext, rows_in: int, ui: _Progress):
    """A dedup stage: bucket map, one shuffle, clusters on the driver, tagging map."""
    import inspect

    t0 = time.perf_counter()
    _probe([(idx, where, st, step)], schema, ctx)  # bad settings fail as on one machine
    from pipelines.ray_dedup import KEYED, drop_tagged
    from pipelines.spec import STAGES

    module, attr = STAGES[st.stage]
    func = getattr(importlib.import_module(module), attr)
    kw = {k: p.default for k, p in inspect.signature(func).parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY}
    kw.update(step.kwargs)
    ds = ds.materialize()
    try:
        tags, clusters, info = KEYED[st.stage](ds, kw, rows_in)
    except Exception as exc:
        inner = _unwrap(exc)
        if inner is not exc:
            raise DataError(f"{where} ({st.stage}): {inner}") from None
        raise
    kept, dropped = drop_tagged(ds, tags)
    seconds = time.perf_counter() - t0
    run = _record(st, rows_in, dropped, seconds, _jsonable(info), clusters)
    _report(ui, st, run, seconds)
    return kept, run.record["rows_out"], run


# ---------------------------------------------------------------- other stages
def _on_driver(ds, schema: pa.Schema, where: str, st: StageSpec, step: Step, ctx: StageContext,
               rows_in: int, ui: _Progress):
    """A stage that needs all its rows at once (clustering, rollouts), or any stage once no
    row is left: run it on the driver, as the local engine does."""
    import ray

    from pipelines.curation import run_step

    df = _collect(ds) if rows_in else None
    df = df.sort(KEY) if df is not None else pl.from_arrow(schema.empty_table())
    assert isinstance(df, pl.DataFrame)
    try:
        kept, run = run_step(st, step, df, ctx, where, ui)
    except ValueError as exc:
        raise DataError(f"{where} ({st.stage}): {exc}") from exc
    if run.dropped is not None:
        run.dropped = run.dropped.drop(KEY)
    table = _arrow(kept)
    return ray.data.from_arrow(table), table.schema, run.record["rows_out"], run


# ---------------------------------------------------------------- the run
def _sorted_tables(ds, shard_rows: int) -> Iterator[pa.Table]:
    """The kept rows in row order, one shard-sized table at a time."""
    for batch in ds.sort(KEY).iter_batches(batch_size=shard_rows, batch_format="pyarrow"):
        df = pl.from_arrow(batch)
        assert isinstance(df, pl.DataFrame)
        yield final_table(df)


def run_curation_ray(spec: str | os.PathLike | dict | CurationSpec, out_dir: str | os.PathLike, *,
                     progress: bool = True, address: str | None = None) -> dict[str, Any]:
    """`pipelines.curation.run_curation` on Ray Data: same arguments, same files, same manifest
    (timings aside). Joins the cluster at `address` ("auto", "HOST:PORT") or starts a local
    one (see `connect`), and shuts down only a cluster it started.

    >>> run_curation_ray({"sources": [{"path": "x.jsonl", "preset": "gsm8k"}]}, "out")  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    require_ray()
    spec = load_spec(spec if not isinstance(spec, os.PathLike) else Path(spec))
    plan = [(i, where, st, step) for i, (where, st, step) in enumerate(spec.steps())]
    import ray

    started = connect(address)
    _configure()
    ui = _Progress(progress)
    try:
        ds, quarantine, inputs, records_in, rows = _ingest(spec, ui)
        schema = pa.schema([*SAMPLE_SCHEMA, pa.field(KEY, pa.int64())])
        ctx = stage_context(spec, ui)
        eval_sets = tuple(e.name for e in spec.eval_sets)
        runs: list[_StageRun] = []
        n = rows
        i = 0
        try:
            while i < len(plan):
                idx, where, st, step = plan[i]
                if step.row_wise and n:
                    j = i
                    while j < len(plan) and plan[j][3].row_wise:
                        j += 1
                    ds, schema, n, group_runs = _row_wise(ds, schema, plan[i:j], ctx, n, eval_sets, ui)
                    runs.extend(group_runs)
                    i = j
                    continue
                if st.stage in _KEYED_STAGES and n:
                    ds, n, run = _keyed(ds, schema, idx, where, st, step, ctx, n, ui)
                else:
                    ds, schema, n, run = _on_driver(ds, schema, where, st, step, ctx, n, ui)
                runs.append(run)
                i += 1
            out = Path(out_dir)
            shards = write_shards(_sorted_tables(ds, spec.output.shard_rows), out,
                                  spec.output.compression)
        except Exception as exc:
            inner = _unwrap(exc)
            if inner is not exc:
                raise inner from None
            raise
        manifest = write_outputs(spec, out, shards, quarantine, runs, inputs, records_in,
                                 ctx.loaded, rows)
        manifest["engine"] = "ray"
        return finish(manifest, out_dir, t_start, ui)
    finally:
        if started:
            ray.shutdown()


__all__ = ["INSTALL", "connect", "ray_available", "require_ray", "row_key", "run_curation_ray"]

