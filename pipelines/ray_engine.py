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
  broadcasts the drops to a tagging block map.
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


_BUCKET_ROWS_PER_PARTITION = 2_000_000  # ~90 MB of band keys: what one reduce task holds


def _partitions(bucket_rows: int) -> int:
    """Shuffle partitions for `bucket_rows` bucket rows: twice the cluster's CPUs, more as the
    data grows, so that one reduce task's share (its memory) stays bounded."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 2))
    return max(4, 2 * cpus, -(-bucket_rows // _BUCKET_ROWS_PER_PARTITION))


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


def _row_wise(ds, group: list[tuple[int, str, StageSpec, Step]], ctx: StageContext,
              rows_in: int, eval_sets: tuple[str, ...], ui: _Progress):
    """Fused block map of consecutive row-wise stages: (kept dataset, rows, stage runs)."""
    t0 = time.perf_counter()
    columns = ds.schema().names
    probe = _probe(group, _schema(ds), ctx)
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
    return kept, rows_in, runs


def _schema(ds) -> pa.Schema:
    schema = ds.schema()
    return schema.base_schema if hasattr(schema, "base_schema") else schema


# ---------------------------------------------------------------- keyed stages: buckets
def group_pairs(groups: Sequence[np.ndarray], cap: int | None) -> np.ndarray:
    """Candidate pairs (i < j) of the members of each group (each sorted ascending): all
    pairs of a group of at most `cap` members (always when None), else a star from its
    smallest member, as `curate.dedup` links LSH buckets.

    >>> group_pairs([np.array([1, 5, 9]), np.array([2, 3, 4, 7])], cap=3).tolist()
    [[1, 5], [1, 9], [2, 3], [2, 4], [2, 7], [5, 9]]
    """
    firsts, seconds = [], []
    for g in groups:
        g = np.asarray(g, dtype=np.int64)
        if len(g) < 2:
            continue
        if cap is None or len(g) <= cap:
            i, j = np.triu_indices(len(g), k=1)
            firsts.append(g[i])
            seconds.append(g[j])
        else:
            firsts.append(np.repeat(g[0], len(g) - 1))
            seconds.append(g[1:])
    if not firsts:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.stack([np.concatenate(firsts), np.concatenate(seconds)], axis=1), axis=0)


def _bucket_table(keys: np.ndarray, buckets: np.ndarray, parts: int, counter: int = 0) -> pa.Table:
    """Bucket rows (PART, BUCKET, KEY) from keys and a (rows, width) uint8 array of bucket
    bytes; `counter` > 0 adds a row carrying that count (key -1 - counter)."""
    n, width = buckets.shape
    h = np.frombuffer(np.ascontiguousarray(_mix(buckets)).tobytes(), dtype=np.uint64)
    part = (h % np.uint64(parts)).astype(np.int32)
    if counter:
        keys = np.append(keys, _COUNTER - counter)
        part = np.append(part, np.int32(0))
        buckets = np.vstack([buckets, np.zeros((1, width), np.uint8)])
        n += 1
    data = pa.py_buffer(np.ascontiguousarray(buckets).tobytes())
    binary = pa.Array.from_buffers(pa.binary(width), n, [None, data]) if width else \
        pa.array([b""] * n, pa.binary())
    return pa.table({PART: pa.array(part), BUCKET: binary.cast(pa.binary()),
                     KEY: pa.array(keys.astype(np.int64))})


def _mix(buckets: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of bytes (which partition a bucket goes to)."""
    h = np.full(len(buckets), 0x9E3779B97F4A7C15, dtype=np.uint64)
    width = buckets.shape[1]
    padded = np.zeros((len(buckets), -(-width // 8) * 8), np.uint8)
    padded[:, :width] = buckets
    words = padded.view(np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j]
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
    return h


def _pairs_in_partition(block: pa.Table, cap: int | None) -> pa.Table:
    """One shuffle partition's buckets -> candidate pairs (a, b) of row keys, plus the
    partition's counters as rows with a negative `a`."""
    df = pl.from_arrow(block)
    assert isinstance(df, pl.DataFrame)
    counted = int((_COUNTER - df.filter(pl.col(KEY) < 0)[KEY]).sum())
    groups = (df.filter(pl.col(KEY) >= 0).group_by(BUCKET).agg(pl.col(KEY).sort())
              .filter(pl.col(KEY).list.len() > 1))[KEY].to_list()
    pairs = group_pairs([np.asarray(g, dtype=np.int64) for g in groups], cap)
    a = np.append(pairs[:, 0], _COUNTER)
    b = np.append(pairs[:, 1], counted)
    return pa.table({"a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64())})


def _candidate_pairs(buckets_ds, cap: int | None, parts: int) -> tuple[np.ndarray, int]:
    """The one shuffle of a keyed stage: (unique candidate pairs of row keys, counter)."""
    pairs = buckets_ds.groupby(PART, num_partitions=parts).map_groups(
        _pairs_in_partition, fn_kwargs={"cap": cap}, batch_format="pyarrow")
    got = _collect(pairs)
    if got is None:
        return np.zeros((0, 2), np.int64), 0
    counter = int(got.filter(pl.col("a") < 0)["b"].sum())
    got = got.filter(pl.col("a") >= 0)
    arr = np.stack([got["a"].to_numpy(), got["b"].to_numpy()], axis=1).astype(np.int64)
    return (np.unique(arr, axis=0) if len(arr) else np.zeros((0, 2), np.int64)), counter


def _gather(ds, keys: np.ndarray, fn, **kwargs) -> pl.DataFrame:
    """The rows whose key is in `keys` (a few percent), through block map `fn`, sorted by key."""
    import ray

    ref = ray.put(pa.array(keys, pa.int64()))
    got = _collect(ds.map_batches(_gather_block, fn_kwargs={"keys": ref, "fn": fn, "kwargs": kwargs},
                                  batch_format="pyarrow"))
    return got.sort(KEY) if got is not None else pl.DataFrame()


def _gather_block(block: pa.Table, keys, fn, kwargs: dict[str, Any]) -> pa.Table:
    import pyarrow.compute as pc
    import ray

    keys = ray.get(keys) if isinstance(keys, ray.ObjectRef) else keys
    sub = block.filter(pc.is_in(block[KEY], value_set=keys))
    df = pl.from_arrow(sub)
    assert isinstance(df, pl.DataFrame)
    return _arrow(fn(df, **kwargs))


def _drop_tagged(ds, tags: pl.DataFrame):
    """Split `ds` by the driver's drops `tags` (KEY + evidence columns, in the local order):
    (kept dataset, dropped rows with their evidence on the driver, in row order)."""
    import ray

    columns = ds.schema().names
    ref = ray.put(_arrow(tags))
    kept = ds.map_batches(_untagged_block, fn_kwargs={"tags": ref}, batch_format="pyarrow")
    if not tags.height:
        return kept, None
    dropped = _collect(ds.map_batches(_tagged_block, fn_kwargs={"tags": ref}, batch_format="pyarrow"))
    assert dropped is not None
    extras = [c for c in tags.columns if c != KEY]
    return kept, dropped.sort(KEY).select([c for c in columns if c != KEY] + extras)


def _untagged_block(block: pa.Table, tags) -> pa.Table:
    import pyarrow.compute as pc
    import ray

    tags = ray.get(tags) if isinstance(tags, ray.ObjectRef) else tags
    return block.filter(pc.invert(pc.is_in(block[KEY], value_set=tags[KEY])))


def _tagged_block(block: pa.Table, tags) -> pa.Table:
    import pyarrow.compute as pc
    import ray

    tags = ray.get(tags) if isinstance(tags, ray.ObjectRef) else tags
    sub = pl.from_arrow(block.filter(pc.is_in(block[KEY], value_set=tags[KEY])))
    assert isinstance(sub, pl.DataFrame)
    return _arrow(sub.join(pl.from_arrow(tags), on=KEY, how="left", maintain_order="left"))


def _resolve(sub: pl.DataFrame, left: np.ndarray, right: np.ndarray, reason: str, info: dict,
             split=None, similarity=None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Clusters of the gathered rows `sub` (row order) from confirmed edges (positions in
    `sub`), representatives picked by `curate.dedup._split_clusters`, as on one machine:
    (drops: KEY + evidence, clusters: id, cluster_id, info)."""
    from curate.dedup import _components, _split_clusters

    labels = _components(sub.height, left, right)
    if split is not None:
        labels = split(sub, labels, info)
    out = _split_clusters(sub, labels, reason, info, similarity=similarity)
    extras = [c for c in out.dropped.columns if c not in sub.columns]
    clusters = out.info.pop("clusters")
    return out.dropped.select(KEY, *extras), clusters, out.info


def _positions(sub: pl.DataFrame, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = sub[KEY].to_numpy()
    return np.searchsorted(keys, pairs[:, 0]), np.searchsorted(keys, pairs[:, 1])


# dedup_exact --------------------------------------------------------------------
def _exact_buckets(block: pa.Table, text_col: str, parts: int) -> pa.Table:
    """Bucket rows of dedup_exact: a 64-bit hash of the normalized text and image sha256s.
    Rows that share it are gathered and compared on the text itself, so a hash collision
    costs a gathered row, never a wrong drop."""
    df = pl.from_arrow(block)
    assert isinstance(df, pl.DataFrame)
    h = df.select(_exact_key(df, text_col).hash(seed=0x7E57)).to_series().to_numpy().astype(np.uint64)
    raw = np.ascontiguousarray(h.astype("<u8")).view(np.uint8).reshape(-1, 8)
    return _bucket_table(block[KEY].to_numpy(), raw, parts)


def _exact_key(df: pl.DataFrame, text_col: str) -> pl.Expr:
    """What dedup_exact compares (curate.dedup.dedup_exact's key): the normalized text and
    the image sha256s."""
    from curate.dedup import _image_key, normalize_text

    return pl.concat_str([normalize_text(text_col), _image_key(df)], separator="\x1f")


def _exact_gather(df: pl.DataFrame, text_col: str) -> pl.DataFrame:
    return df.select(KEY, "id", _exact_key(df, text_col).alias("__exact"))


def _dedup_exact(ds, kw: dict[str, Any], rows: int) -> tuple[pl.DataFrame, pl.DataFrame | None, dict]:
    parts = _partitions(rows)
    buckets = ds.map_batches(_exact_buckets, fn_kwargs={"text_col": kw["text_col"], "parts": parts},
                             batch_format="pyarrow")
    pairs, _ = _candidate_pairs(buckets, cap=1, parts=parts)  # a star per bucket: who shares one
    sub = _gather(ds, np.unique(pairs), _exact_gather, text_col=kw["text_col"])
    if not sub.height:
        return pl.DataFrame({KEY: []}, schema={KEY: pl.Int64}), None, \
            {"n_clusters": 0, "rows_in_clusters": 0}
    # the clusters are the rows with equal keys, as on one machine (the hash only gathered them)
    labels = sub["__exact"].rank("dense").to_numpy().astype(np.int64)
    from curate.dedup import _split_clusters

    out = _split_clusters(sub.drop("__exact"), labels, "exact_duplicate", {})
    extras = [c for c in out.dropped.columns if c not in sub.columns]
    clusters = out.info.pop("clusters")
    return out.dropped.select(KEY, *extras), clusters, out.info


# dedup_near ---------------------------------------------------------------------
def _signatures(df: pl.DataFrame, text_col: str, num_perm: int, shingle_size: int, seed: int
                ) -> np.ndarray:
    from curate.minhash import minhash_signatures

    texts = df.get_column(text_col).cast(pl.Utf8).to_arrow()
    return minhash_signatures(texts, num_perm=num_perm, shingle_size=shingle_size, seed=seed)


def _near_buckets(block: pa.Table, sig_kw: dict[str, Any], bands: int, rows: int, parts: int
                  ) -> pa.Table:
    from curate.minhash import EMPTY

    df = pl.from_arrow(block)
    assert isinstance(df, pl.DataFrame)
    sig = _signatures(df, **sig_kw)
    keys = block[KEY].to_numpy()
    ne = ~(sig == EMPTY).all(axis=1)
    sig, keys = sig[ne], keys[ne]
    out = []
    for b in range(bands):
        band = np.ascontiguousarray(sig[:, b * rows:(b + 1) * rows]).view(np.uint8)
        prefix = np.full((len(band), 2), b, np.uint16).view(np.uint8)[:, :2]
        out.append((keys, np.hstack([prefix, band]) if len(band) else np.zeros((0, 2 + 4 * rows), np.uint8)))
    all_keys = np.concatenate([k for k, _ in out]) if out else np.zeros(0, np.int64)
    all_b = np.vstack([b for _, b in out]) if out else np.zeros((0, 2 + 4 * rows), np.uint8)
    return _bucket_table(all_keys, all_b, parts, counter=int((~ne).sum()))


def _near_gather(df: pl.DataFrame, sig_kw: dict[str, Any], columns: list[str]) -> pl.DataFrame:
    sig = _signatures(df, **sig_kw)
    return df.select(KEY, *columns).with_columns(
        pl.Series(SIG, [r.tobytes() for r in sig], dtype=pl.Binary))


def _dedup_near(ds, kw: dict[str, Any], n_rows: int) -> tuple[pl.DataFrame, pl.DataFrame | None, dict]:
    from curate.dedup import _agreement, lsh_params, split_by_answer, split_by_images

    t0 = time.perf_counter()
    sig_kw = {k: kw[k] for k in ("text_col", "num_perm", "shingle_size", "seed")}
    bands, rows = lsh_params(kw["threshold"], kw["num_perm"])
    parts = _partitions(n_rows * bands)
    buckets = ds.map_batches(_near_buckets, fn_kwargs={"sig_kw": sig_kw, "bands": bands,
                                                       "rows": rows, "parts": parts},
                             batch_format="pyarrow")
    pairs, without_tokens = _candidate_pairs(buckets, cap=_max_bucket_pairs(), parts=parts)
    t1 = time.perf_counter()
    names = ds.schema().names
    answer_col = kw["answer_col"] if kw["answer_col"] and kw["answer_col"] in names else None
    columns = ["id", *[c for c in (answer_col, "answer_type", "images") if c and c in names]]
    columns = list(dict.fromkeys(columns))
    sub = _gather(ds, np.unique(pairs), _near_gather, sig_kw=sig_kw, columns=columns)
    if sub.height:
        sig = np.frombuffer(b"".join(sub[SIG].to_list()), dtype=np.uint32).reshape(sub.height, -1)
        sub = sub.drop(SIG)
    else:
        sig = np.zeros((0, kw["num_perm"]), np.uint32)
        sub = pl.DataFrame({KEY: [], **{c: [] for c in columns}})
    left, right = _positions(sub, pairs)
    est = _agreement(sig, left, right)
    ok = est >= kw["threshold"]
    info: dict[str, Any] = {
        "seconds_signatures": 0.0,
        "lsh_bands": bands, "lsh_rows_per_band": rows, "rows_without_tokens": without_tokens,
        "pairs_checked": int(len(pairs)), "pairs_confirmed": int(ok.sum()),
        "seconds_lsh": round(t1 - t0, 4), "seconds_verify": round(time.perf_counter() - t1, 4),
    }

    def split(frame: pl.DataFrame, labels: np.ndarray, info: dict) -> np.ndarray:
        if answer_col:
            labels, info["clusters_split_by_answer"] = split_by_answer(frame, labels, answer_col)
        if "images" in names:
            labels, info["clusters_split_by_images"] = split_by_images(frame, labels)
        return labels

    return _resolve(sub, left[ok], right[ok], "near_duplicate", info, split=split,
                    similarity=lambda r, reps: _agreement(sig, r, reps))


def _max_bucket_pairs() -> int:
    from curate.dedup import _MAX_BUCKET_PAIRS

    return _MAX_BUCKET_PAIRS


# dedup_images -------------------------------------------------------------------
_PHASHES: dict[str, int | None] = {}


def _image_hashes(block: pa.Table, image_root: str | None) -> pa.Table:
    """Append each row's image pHashes (in image order; null for an unreadable file)."""
    from curate.dedup import _phash

    imgs = block["images"].to_pylist()
    out = []
    for row in imgs:
        hashes = []
        for im in row or []:
            if im is None:
                continue
            path = im.get("path")
            if path and image_root is not None:
                path = os.path.join(image_root, path)
            key = f"{im.get('sha256') or ''}|{path}"
            if key not in _PHASHES:
                _PHASHES[key] = _phash(path) if path else None
            hashes.append(_PHASHES[key])
        out.append(hashes)
    return block.append_column(PHASH, pa.array(out, pa.list_(pa.uint64())))


def _image_files(block: pa.Table) -> pa.Table:
    """Each image of the block: its file key (sha256, else path) and whether it hashed."""
    df = pl.from_arrow(block.select(["images", PHASH]))
    assert isinstance(df, pl.DataFrame)
    files = [(im.get("sha256") or im.get("path"), h is not None)
             for ims, hs in zip(df["images"].to_list(), df[PHASH].to_list(), strict=True)
             for im, h in zip([i for i in (ims or []) if i is not None], hs, strict=True)]
    return pa.table({"file_key": pa.array([f for f, _ in files], pa.string()),
                     "ok": pa.array([o for _, o in files], pa.bool_())})


def _image_buckets(block: pa.Table, max_distance: int, parts: int) -> pa.Table:
    ph = block[PHASH].to_pylist()
    good = [i for i, h in enumerate(ph) if h and all(x is not None for x in h)]
    keys = block[KEY].to_numpy()[good]
    first = np.array([ph[i][0] for i in good], dtype=np.uint64)
    edges = np.linspace(0, 64, max_distance + 2).astype(int)
    out_k, out_b = [], []
    for bi, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        if hi == lo:
            continue
        band = (first >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        raw = np.hstack([np.full((len(band), 1), bi, np.uint8),
                         band.astype("<u8").view(np.uint8).reshape(-1, 8)])
        out_k.append(keys)
        out_b.append(raw)
    if not out_k:
        return _bucket_table(np.zeros(0, np.int64), np.zeros((0, 9), np.uint8), parts)
    return _bucket_table(np.concatenate(out_k), np.vstack(out_b), parts)


def _image_gather(df: pl.DataFrame, text_col: str | None) -> pl.DataFrame:
    from curate.dedup import normalize_text

    cols = [KEY, "id", PHASH]
    out = df.select(cols)
    if text_col is not None:
        out = out.with_columns(df.select(normalize_text(text_col)).to_series().alias("__text"))
    return out


def _dedup_images(ds, kw: dict[str, Any], rows: int) -> tuple[pl.DataFrame, pl.DataFrame | None, dict]:
    from curate.dedup import _images_match

    hashed = ds.map_batches(_image_hashes, fn_kwargs={"image_root": kw["image_root"]},
                            batch_format="pyarrow").materialize()
    files = _collect(hashed.map_batches(_image_files, batch_format="pyarrow"))
    parts = _partitions(rows * (kw["max_distance"] + 1))
    buckets = hashed.map_batches(_image_buckets, fn_kwargs={
        "max_distance": kw["max_distance"], "parts": parts}, batch_format="pyarrow")
    pairs, _ = _candidate_pairs(buckets, cap=None, parts=parts)
    sub = _gather(hashed, np.unique(pairs), _image_gather, text_col=kw["text_col"])
    if not sub.height:
        sub = pl.DataFrame({KEY: [], "id": []}, schema={KEY: pl.Int64, "id": pl.Utf8})
    left, right = _positions(sub, pairs)
    ph = sub[PHASH].to_list() if sub.height else []
    first = np.array([p[0] for p in ph], dtype=np.uint64)
    if len(pairs):
        near = np.bitwise_count(first[left] ^ first[right]) <= kw["max_distance"]
        left, right = left[near], right[near]
    n_checked = len(left)
    if len(left):
        keep = np.array([_images_match(ph[i], ph[j], kw["max_distance"])
                         for i, j in zip(left, right, strict=True)])
        if kw["text_col"] is not None:
            text = sub["__text"].to_numpy()
            keep &= text[left] == text[right]
        left, right = left[keep], right[keep]
    n_files = files.unique("file_key") if files is not None else None
    info = {
        "images_hashed": int(n_files.filter(pl.col("ok")).height) if n_files is not None else 0,
        "images_unreadable": int((~files["ok"]).sum()) if files is not None else 0,
        "pairs_checked": int(n_checked),
        "pairs_confirmed": int(len(left)),
    }
    sub = sub.drop([c for c in (PHASH, "__text") if c in sub.columns])
    return _resolve(sub, left, right, "near_duplicate_image", info)


KEYED = {"dedup_exact": _dedup_exact, "dedup_near": _dedup_near, "dedup_images": _dedup_images}


def _keyed(ds, idx: int, where: str, st: StageSpec, step: Step, ctx: StageContext, rows_in: int,
           ui: _Progress):
    """A dedup stage: bucket map, one shuffle, clusters on the driver, tagging map."""
    import inspect

    t0 = time.perf_counter()
    _probe([(idx, where, st, step)], _schema(ds), ctx)  # bad settings fail as on one machine
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
    kept, dropped = _drop_tagged(ds, tags)
    seconds = time.perf_counter() - t0
    run = _record(st, rows_in, dropped, seconds, _jsonable(info), clusters)
    _report(ui, st, run, seconds)
    return kept, run.record["rows_out"], run


# ---------------------------------------------------------------- other stages
def _on_driver(ds, where: str, st: StageSpec, step: Step, ctx: StageContext, rows_in: int,
               ui: _Progress):
    """A stage that needs all its rows at once (clustering, rollouts): run it on the driver."""
    import ray

    from pipelines.curation import run_step

    df = _collect(ds)
    df = df.sort(KEY) if df is not None else pl.from_arrow(_schema(ds).empty_table())
    assert isinstance(df, pl.DataFrame)
    try:
        kept, run = run_step(st, step, df, ctx, where, ui)
    except ValueError as exc:
        raise DataError(f"{where} ({st.stage}): {exc}") from exc
    if run.dropped is not None:
        run.dropped = run.dropped.drop(KEY)
    return ray.data.from_arrow(_arrow(kept)), run.record["rows_out"], run


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
        ctx = stage_context(spec, ui)
        eval_sets = tuple(e.name for e in spec.eval_sets)
        runs: list[_StageRun] = []
        n = rows
        i = 0
        try:
            while i < len(plan):
                idx, where, st, step = plan[i]
                if step.row_wise:
                    j = i
                    while j < len(plan) and plan[j][3].row_wise:
                        j += 1
                    ds, n, group_runs = _row_wise(ds, plan[i:j], ctx, n, eval_sets, ui)
                    runs.extend(group_runs)
                    i = j
                    continue
                if st.stage in KEYED:
                    ds, n, run = _keyed(ds, idx, where, st, step, ctx, n, ui)
                else:
                    ds, n, run = _on_driver(ds, where, st, step, ctx, n, ui)
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


__all__ = ["INSTALL", "connect", "group_pairs", "ray_available", "require_ray", "row_key",
           "run_curation_ray"]

