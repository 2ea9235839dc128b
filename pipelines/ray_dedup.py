"""The dedup stages on Ray Data (pipelines.ray_engine): one shuffle each, clusters on the driver.

Each stage is three passes over the (materialized) rows and one decision on
the driver, and picks exactly the local engine's representatives:

1. a block map emits bucket rows ``(partition, bucket bytes, row key)``: the
   hashed normalized text (dedup_exact), the 18 MinHash LSH band values
   (dedup_near), the pHash bands of the first image (dedup_images);
2. one ``groupby(partition).map_groups`` shuffle turns each partition's buckets
   into candidate pairs of row keys (`group_pairs`: all pairs, or a star from
   the smallest member for big LSH buckets, as `curate.dedup._bucket_pairs`);
3. only the rows in a pair come back to the driver (`gather`), which confirms
   the pairs and builds connected components over the edge list with the local
   engine's functions (`curate.dedup`), then `drop_tagged` splits the rows by the
   broadcast drops.

Connected components run on the driver because there is one edge per
confirmed duplicate (a few percent of the rows), and because the local engine's
`_split_clusters` then picks the same representative (smallest id, ties by row
order); a distributed union-find would need several shuffles and make the
survivor depend on scheduling.

>>> group_pairs([np.array([3, 8])], cap=None).tolist()
[[3, 8]]
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.ray_engine import _COUNTER, BUCKET, KEY, PART, PHASH, SIG, _arrow, _collect

_BUCKET_ROWS_PER_PARTITION = 2_000_000  # ~90 MB of band keys: what one reduce task holds


def _partitions(bucket_rows: int) -> int:
    """Shuffle partitions for `bucket_rows` bucket rows: twice the cluster's CPUs, more as the
    data grows, so that one reduce task's share (its memory) stays bounded."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 2))
    return max(4, 2 * cpus, -(-bucket_rows // _BUCKET_ROWS_PER_PARTITION))


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


def gather(ds, keys: np.ndarray, fn, **kwargs) -> pl.DataFrame:
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


def drop_tagged(ds, tags: pl.DataFrame):
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
    sub = gather(ds, np.unique(pairs), _exact_gather, text_col=kw["text_col"])
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
    sub = gather(ds, np.unique(pairs), _near_gather, sig_kw=sig_kw, columns=columns)
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
    sub = gather(hashed, np.unique(pairs), _image_gather, text_col=kw["text_col"])
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
