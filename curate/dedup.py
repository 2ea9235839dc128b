"""Deduplication stages: exact, near-duplicate text (MinHash LSH) and near-duplicate images.

Every stage keeps one representative per cluster of duplicates, the row with
the smallest ``id`` (ties: the earliest row), so the result does not depend on
the input order. Dropped rows carry ``drop_reason`` and ``duplicate_of`` (the
representative's id); ``info["clusters"]`` is a frame ``(id, cluster_id)`` of
every row in a cluster of two or more, where ``cluster_id`` is the
representative's id.

>>> import polars as pl
>>> df = pl.DataFrame({"id": ["b", "a", "c"], "prompt": ["Two  apples", "two apples", "pears"]})
>>> out = dedup_exact(df)
>>> out.kept["id"].to_list(), out.dropped["duplicate_of"].to_list()
(['a', 'c'], ['a'])
"""

from __future__ import annotations

import functools
import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from curate.answers import normalize_answer
from curate.lazy import lazy_import
from curate.stage import DROP_REASON, StageOutput

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from curate import minhash
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")
    pl = lazy_import("polars")
    minhash = lazy_import("curate.minhash")

_ROW = "__dedup_row"
_KEY = "__dedup_key"
_MAX_BUCKET_PAIRS = 64  # buckets larger than this are linked as a star, not all pairs
# odd multipliers of the band hash that finds the rows sharing an LSH bucket


def normalize_text(col: str | pl.Expr) -> pl.Expr:
    """Text as exact dedup compares it: NFKC, lower case, whitespace runs collapsed, trimmed.

    >>> pl.select(normalize_text(pl.lit("  Ｔwo\\n apples "))).item()
    'two apples'
    """
    expr = pl.col(col) if isinstance(col, str) else col
    return (
        expr.fill_null("")
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def _image_key(df: pl.DataFrame) -> pl.Expr:
    """The sorted sha256s of a row's images, joined ("" for a text-only row).

    An image without a sha256 counts by its path, so two unhashed images at
    different paths are never taken for the same image.
    """
    if "images" not in df.columns:
        return pl.lit("")
    ident = pl.coalesce(pl.element().struct.field("sha256"),
                        pl.lit("path:") + pl.element().struct.field("path").fill_null(""))
    return pl.col("images").list.eval(ident).list.sort().list.join(",").fill_null("")


def _check_columns(df: pl.DataFrame, stage: str, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{stage}: missing column(s) {missing}; the frame has {df.columns}")


def _split_clusters(
    df: pl.DataFrame,
    labels: np.ndarray | pl.Series,
    reason: str,
    info: dict,
    similarity: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> StageOutput:
    """Keep the smallest-id row of each label; drop the rest with `reason`.

    `labels` gives each row its cluster (rows alone in their label are untouched).
    `similarity(rows, representative_rows)`, when given, fills a ``similarity``
    column on the dropped rows.
    """
    work = df.with_row_index(_ROW).with_columns(pl.Series(_KEY, labels))
    order = [pl.col("id"), pl.col(_ROW)]
    work = work.with_columns(
        pl.col("id").sort_by(order).first().over(_KEY).alias("duplicate_of"),
        pl.col(_ROW).sort_by(order).first().over(_KEY).alias("__rep_row"),
        pl.len().over(_KEY).alias("__size"),
    )
    internal = [_ROW, _KEY, "__rep_row", "__size"]
    is_rep = pl.col(_ROW) == pl.col("__rep_row")
    kept = work.filter(is_rep).drop(*internal, "duplicate_of")
    dropped = work.filter(~is_rep).with_columns(pl.lit(reason).alias(DROP_REASON))
    if similarity is not None:
        sim = similarity(dropped[_ROW].to_numpy().astype(np.int64),
                         dropped["__rep_row"].to_numpy().astype(np.int64))
        dropped = dropped.with_columns(pl.Series("similarity", sim, dtype=pl.Float64))
    dropped = dropped.drop(*internal)
    members = work.filter(pl.col("__size") > 1)
    info["clusters"] = members.select("id", pl.col("duplicate_of").alias("cluster_id"))
    info["n_clusters"] = members["duplicate_of"].n_unique() if members.height else 0
    info["rows_in_clusters"] = members.height
    return StageOutput(kept=kept, dropped=dropped, info=info)


def dedup_exact(df: pl.DataFrame, *, text_col: str = "prompt") -> StageOutput:
    """Drop rows whose normalized `text_col` and image sha256s equal an earlier cluster member's.

    Text is compared after `normalize_text` (NFKC, case, whitespace); images by
    their sha256, order-insensitive. Reason: ``exact_duplicate``.

    >>> df = pl.DataFrame({"id": ["x", "y"], "prompt": ["What is 2+2?", "what is 2+2? "]})
    >>> dedup_exact(df).drops_by_reason()
    {'exact_duplicate': 1}
    """
    _check_columns(df, "dedup_exact", "id", text_col)
    key = df.select(
        pl.concat_str([normalize_text(text_col), _image_key(df)], separator="\x1f")
    ).to_series()
    return _split_clusters(df, key, "exact_duplicate", {})


@functools.cache
def _band_keys() -> np.ndarray:
    return minhash.odd_keys(0xB4D, 64)


def _band_hash(band: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a (rows, r) uint32 band: equal bands, equal hashes."""
    band_keys = _band_keys()
    h = np.zeros(len(band), np.uint64)
    for j in range(band.shape[1]):
        h += band[:, j].astype(np.uint64) * band_keys[j % len(band_keys)]
        h ^= h >> np.uint64(29)
    return h


def _shared_rows(h: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows whose hash some other row also has."""
    return np.flatnonzero(pl.Series(h, dtype=pl.UInt64).is_duplicated().to_numpy())


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: filling an index creates millions of small
    containers (no cycles), and each collection would rescan all of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def lsh_index(sig: np.ndarray, rows: np.ndarray, *, threshold: float, params: tuple[int, int]):
    """A datasketch ``MinHashLSH`` holding signature rows `rows` under keys ``rows``, built
    without per-row MinHash objects, and the buckets holding more than one key.

    The bucket key of a row in each band is computed for all rows at once and is
    the same bytes datasketch derives itself (``MinHashLSH._H`` of the band's hash
    values), so the index answers ``query`` for any affine32 ``MinHash`` with the
    same ``seed`` and ``num_perm`` exactly as one filled by ``insert``. Returns
    ``(lsh, buckets)``: `buckets` lists, for every band, the members of each bucket
    with two or more keys, read back from the index.
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=sig.shape[1], params=params)
    with _gc_paused():
        buckets = _fill_index(lsh, sig, rows)
    return lsh, buckets


def _plain_dict(storage) -> dict | None:
    """The dict behind datasketch's default in-memory storage, or None for any other storage."""
    from datasketch.storage import DictListStorage, DictSetStorage

    d = getattr(storage, "_dict", None)
    return d if type(storage) in (DictSetStorage, DictListStorage) and isinstance(d, dict) else None


def _fill_index(lsh, sig: np.ndarray, rows: np.ndarray) -> list[list[set[int]]]:
    ids = rows.tolist()
    swapped = sig[rows].byteswap()  # datasketch: bytes(hashvalues[lo:hi].byteswap().data)
    band_keys, buckets = [], []
    for (lo, hi), table in zip(lsh.hashranges, lsh.hashtables, strict=True):
        band = np.ascontiguousarray(swapped[:, lo:hi])
        keys = band.view(np.dtype((np.void, band.itemsize * (hi - lo)))).ravel().tolist()
        band_keys.append(keys)
        shared = _shared_rows(_band_hash(band)).tolist()
        d = _plain_dict(table)
        if d is not None:  # the in-memory default: fill its dict of sets in C
            # one set per key; the keys of shared buckets then get their other members
            d.update(zip(keys, map(set, zip(ids, strict=True)), strict=True))
            for j in shared:
                d[keys[j]].add(ids[j])
        else:
            for key, i in zip(keys, ids, strict=True):
                table.insert(key, i)
        buckets.append([table.get(key) for key in dict.fromkeys(keys[j] for j in shared)])
    d = _plain_dict(lsh.keys)
    if d is not None:
        d.update(zip(ids, map(list, zip(*band_keys, strict=True)), strict=True))
    else:
        for i, hs in zip(ids, zip(*band_keys, strict=True), strict=True):
            lsh.keys.insert(i, *hs)
    lsh._minhash_scheme = "affine32"  # what the first insert of an affine32 MinHash records
    return buckets


def _drop_index(lsh) -> None:
    """Empty an in-memory index now. Its millions of buckets would otherwise wait for
    the cyclic collector (the index references itself through a bound method),
    which frees them ~10x slower, at some later, unrelated moment."""
    with _gc_paused():
        for storage in (*lsh.hashtables, lsh.keys):
            d = _plain_dict(storage)
            if d is not None:
                d.clear()


def _bucket_pairs(buckets: list[list[set[int]]]) -> np.ndarray:
    """Candidate pairs (i < j) of the keys that share a bucket in any band, unique and sorted."""
    groups = [g for band in buckets for g in band]
    if not groups:
        return np.zeros((0, 2), np.int64)
    sizes = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
    members = np.fromiter((k for g in groups for k in g), dtype=np.int64, count=int(sizes.sum()))
    gid = np.repeat(np.arange(len(groups)), sizes)
    members = members[np.lexsort((members, gid))]  # each bucket's members ascending
    starts = np.zeros(len(groups), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    firsts, seconds = [], []
    for size in np.unique(sizes).tolist():
        at = starts[sizes == size]
        if size <= _MAX_BUCKET_PAIRS:
            i, j = np.triu_indices(size, k=1)
            firsts.append(members[(at[:, None] + i).ravel()])
            seconds.append(members[(at[:, None] + j).ravel()])
        else:  # a star keeps huge buckets linear; verification still applies per edge
            firsts.append(np.repeat(members[at], size - 1))
            seconds.append(members[(at[:, None] + np.arange(1, size)).ravel()])
    left, right = np.concatenate(firsts), np.concatenate(seconds)
    width = np.int64(max(int(right.max()), 0) + 1)
    code = np.unique(left * width + right)
    return np.stack([code // width, code % width], axis=1)


def _agreement(sig: np.ndarray, left: np.ndarray, right: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Estimated Jaccard similarity (share of equal MinHash values) of row pairs."""
    out = np.empty(len(left), dtype=np.float64)
    for lo in range(0, len(left), chunk):
        out[lo : lo + chunk] = (sig[left[lo : lo + chunk]] == sig[right[lo : lo + chunk]]).mean(axis=1)
    return out


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    # scipy.sparse loads in a quarter second: only when a run gets here, so a spec
    # error is reported without it
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def lsh_params(threshold: float, num_perm: int, recall_at_threshold: float = 0.95) -> tuple[int, int]:
    """Bands and rows ``(b, r)`` that make a pair at Jaccard `threshold` a candidate with
    probability >= `recall_at_threshold`, with the most rows per band (fewest weak candidates).

    datasketch's default optimum balances false positives and negatives and
    finds a pair at the threshold only ~40% of the time (b=9, r=13 for 0.8/128);
    every candidate here is verified on its signatures afterwards, so the index
    is tuned for recall instead.

    >>> lsh_params(0.8, 128)
    (18, 7)
    """
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if b < 2:
            break
        if 1.0 - (1.0 - threshold**r) ** b >= recall_at_threshold:
            best = (b, r)
    return best


def near_duplicate_clusters(
    sig: np.ndarray, *, threshold: float = 0.8, seed: int = 1
) -> tuple[np.ndarray, dict]:
    """Cluster labels of rows from their MinHash signatures (uint32, datasketch affine32).

    Rows go into a datasketch ``MinHashLSH`` index (`lsh_index`: bucket keys
    computed for all rows at once); every pair that shares a bucket is checked
    against the signatures (estimated Jaccard >= threshold) and the confirmed
    pairs are joined into connected components. Rows with an all-EMPTY
    signature (no tokens) are never clustered. `seed` is the signatures' seed:
    it does not change the index, only which MinHash objects may query it.
    """
    n, num_perm = sig.shape
    t0 = time.perf_counter()
    nonempty = np.flatnonzero(~(sig == minhash.EMPTY).all(axis=1))
    lsh, buckets = lsh_index(sig, nonempty, threshold=threshold, params=lsh_params(threshold, num_perm))
    pairs = _bucket_pairs(buckets)
    bands, rows_per_band = lsh.b, lsh.r
    del buckets
    _drop_index(lsh)
    t1 = time.perf_counter()
    est = _agreement(sig, pairs[:, 0], pairs[:, 1])
    ok = est >= threshold
    labels = _components(n, pairs[ok, 0], pairs[ok, 1])
    info = {
        "lsh_bands": bands,
        "lsh_rows_per_band": rows_per_band,
        "rows_without_tokens": int(n - len(nonempty)),
        "pairs_checked": int(len(pairs)),
        "pairs_confirmed": int(ok.sum()),
        "seconds_lsh": round(t1 - t0, 4),
        "seconds_verify": round(time.perf_counter() - t1, 4),
    }
    return labels, info


def _clustered_rows(labels: np.ndarray) -> np.ndarray:
    """Rows whose label is shared with at least one other row."""
    return np.flatnonzero(np.bincount(labels)[labels] > 1)


def _refine(labels: np.ndarray, rows: np.ndarray, keys: Sequence[str]) -> tuple[np.ndarray, int]:
    """Split the clusters of `rows` so that members share their key; (new labels, clusters split)."""
    _, code = np.unique(np.array(keys, dtype=object), return_inverse=True)
    width = int(code.max()) + 1
    groups, new = np.unique(labels[rows] * width + code, return_inverse=True)
    _, per_cluster = np.unique(groups // width, return_counts=True)
    out = labels.copy()
    out[rows] = int(labels.max()) + 1 + new  # fresh labels, disjoint from the singletons'
    return out, int((per_cluster > 1).sum())


def split_by_answer(df: pl.DataFrame, labels: np.ndarray, answer_col: str) -> tuple[np.ndarray, int]:
    """Split each cluster of near-duplicate texts by its members' normalized answers.

    Templated items ("arrange the letters of the word X") share most of their
    word n-grams yet are different problems: their answers differ. Members of a
    cluster stay together only when `normalize_answer` of `answer_col` agrees. A
    row without an answer says nothing against merging: it joins the answer of
    its cluster's smallest-id answered row. Returns the new labels and how many
    clusters were split. Only rows in clusters are normalized.

    >>> df = pl.DataFrame({"id": ["a", "b", "c", "d"], "answer": ["1,000", "1000", "7", None]})
    >>> labels, n_split = split_by_answer(df, np.array([0, 0, 0, 0]), "answer")
    >>> labels.tolist(), n_split   # "a" and "b" agree, "d" joins "a"; "c" is another problem
    ([1, 1, 2, 1], 1)
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = _clustered_rows(labels)
    if not len(rows):
        return labels, 0
    answers = df.get_column(answer_col).cast(pl.Utf8).gather(rows).to_list()
    types = (df.get_column("answer_type").cast(pl.Utf8).gather(rows).to_list()
             if "answer_type" in df.columns else [None] * len(rows))
    ids = df.get_column("id").cast(pl.Utf8).gather(rows).to_list()
    norm = [normalize_answer(a, t) if a and a.strip() else "" for a, t in zip(answers, types, strict=True)]
    first: dict[int, tuple[str, str]] = {}  # label -> (smallest answered id, its answer)
    for lab, i, a in zip(labels[rows].tolist(), ids, norm, strict=True):
        if a and (lab not in first or i < first[lab][0]):
            first[lab] = (i, a)
    norm = [a or first.get(lab, ("", ""))[1] for lab, a in zip(labels[rows].tolist(), norm, strict=True)]
    return _refine(labels, rows, norm)


def split_by_images(df: pl.DataFrame, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Split each cluster of near-duplicate texts by its members' images (sha256 sets).

    "How many triangles are in the figure?" over two different figures is two
    problems. Near-identical images (a re-encoded copy) are `dedup_images`'s
    job; here only the same files stay together.

    >>> img = pl.Struct({"path": pl.Utf8, "sha256": pl.Utf8})
    >>> df = pl.DataFrame({"images": [[{"path": "a.png", "sha256": "aa"}],
    ...                               [{"path": "b.png", "sha256": "bb"}],
    ...                               [{"path": "c.png", "sha256": "aa"}]]}, schema={"images": pl.List(img)})
    >>> split_by_images(df, np.array([0, 0, 0]))
    (array([1, 2, 1]), 1)
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = _clustered_rows(labels)
    if not len(rows) or "images" not in df.columns:
        return labels, 0
    keys = df.select(_image_key(df)).to_series().gather(rows).to_list()
    return _refine(labels, rows, keys)


def dedup_near(
    df: pl.DataFrame,
    *,
    text_col: str = "prompt",
    shingle_size: int = 5,
    num_perm: int = 128,
    threshold: float = 0.8,
    seed: int = 1,
    answer_col: str | None = "answer",
) -> StageOutput:
    """Drop near-duplicate texts: MinHash over word `shingle_size`-grams + LSH at `threshold`.

    Signatures are computed vectorized over batches (curate.minhash); the index
    is datasketch's MinHashLSH; candidate pairs are confirmed on the signatures
    (estimated Jaccard >= `threshold`) and clustered transitively. When the frame
    has `answer_col` (the Sample schema's ``answer``; None or "" turns it off), a
    cluster is then split by normalized answer (`split_by_answer`): two texts
    that differ in a word or a number and have different answers are different
    problems. Rows with images stay merged only when their image files are the
    same (`split_by_images`). Dropped rows get ``near_duplicate``, ``duplicate_of``
    and ``similarity`` (estimated Jaccard to their representative);
    ``info["clusters_split_by_answer"]`` and ``["clusters_split_by_images"]`` count the splits.

    >>> base = "Natalia sold clips to 48 of her friends in April and then half as many in May"
    >>> df = pl.DataFrame({"id": ["a", "b", "c"],
    ...                    "prompt": [base, base + " .", "Weng earns 12 an hour for babysitting"]})
    >>> out = dedup_near(df, threshold=0.7)
    >>> out.kept["id"].to_list(), out.dropped["duplicate_of"].to_list()
    (['a', 'c'], ['a'])
    """
    _check_columns(df, "dedup_near", "id", text_col)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"dedup_near: threshold must be in (0, 1], got {threshold}")
    t0 = time.perf_counter()
    texts = df.get_column(text_col).cast(pl.Utf8).to_arrow()
    sig = minhash.minhash_signatures(texts, num_perm=num_perm, shingle_size=shingle_size, seed=seed)
    t_sig = time.perf_counter() - t0
    labels, info = near_duplicate_clusters(sig, threshold=threshold, seed=seed)
    info = {"seconds_signatures": round(t_sig, 4), **info}
    if answer_col and answer_col in df.columns:
        labels, info["clusters_split_by_answer"] = split_by_answer(df, labels, answer_col)
    if "images" in df.columns:
        labels, info["clusters_split_by_images"] = split_by_images(df, labels)
    return _split_clusters(df, labels, "near_duplicate", info,
                           similarity=lambda rows, reps: _agreement(sig, rows, reps))


def hamming_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Pairs (i < j) of 64-bit hashes within `max_distance` bits, found without all pairs.

    Pigeonhole: split each hash into ``max_distance + 1`` bands; two hashes within
    the distance agree on at least one band, so only rows sharing a band are compared.

    >>> hamming_pairs(np.array([0b1011, 0b1001, 1 << 40], dtype=np.uint64), 1).tolist()
    [[0, 1]]
    """
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    bands = max_distance + 1
    edges = np.linspace(0, 64, bands + 1).astype(int)
    cand = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi == lo:
            continue
        band = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        groups = (
            pl.DataFrame({"band": band, "row": np.arange(n)})
            .group_by("band")
            .agg(pl.col("row").sort())
            .filter(pl.col("row").list.len() > 1)
        )["row"].to_list()
        for members in groups:
            m = np.asarray(members)
            i, j = np.triu_indices(len(m), k=1)
            cand.append(np.stack([m[i], m[j]], axis=1))
    if not cand:
        return np.zeros((0, 2), np.int64)
    pairs = np.unique(np.concatenate(cand), axis=0)
    dist = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
    return pairs[dist <= max_distance]


def _phash(path: str) -> int | None:
    import imagehash
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(str(imagehash.phash(im)), 16)
    except (OSError, ValueError):
        return None


def dedup_images(
    df: pl.DataFrame,
    *,
    max_distance: int = 4,
    text_col: str | None = "prompt",
    image_root: str | None = None,
) -> StageOutput:
    """Drop rows whose images are perceptual near-duplicates (pHash Hamming <= `max_distance`).

    Two rows match when they have the same number of images and each image is
    within `max_distance` bits of the other row's image at the same position.
    With `text_col` set (the default) their normalized text must also be equal,
    so one figure reused by different questions is not merged; ``text_col=None``
    compares images alone. Each distinct file (by sha256, else path) is hashed
    once; unreadable images are skipped and counted (``valid_images`` is the
    stage that drops them). Relative image paths are read under `image_root`
    when given. Reason: ``near_duplicate_image``.

    >>> import tempfile, os
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> grid = Image.new("L", (64, 64))
    >>> grid.putdata([255 * ((x // 8 + y // 8) % 2) for y in range(64) for x in range(64)])
    >>> grid.save(os.path.join(d, "a.png")); grid.resize((128, 128)).save(os.path.join(d, "b.png"))
    >>> img = pl.Struct({"path": pl.Utf8, "sha256": pl.Utf8})
    >>> df = pl.DataFrame({"id": ["x", "y"], "prompt": ["Count the squares."] * 2,
    ...                    "images": [[{"path": "a.png", "sha256": None}],
    ...                               [{"path": "b.png", "sha256": None}]]},
    ...                   schema={"id": pl.Utf8, "prompt": pl.Utf8, "images": pl.List(img)})
    >>> dedup_images(df, image_root=d).dropped["duplicate_of"].to_list()   # the upscaled copy
    ['x']
    """
    _check_columns(df, "dedup_images", "id", "images")
    if not 0 <= max_distance < 64:
        raise ValueError(f"dedup_images: max_distance must be in [0, 63], got {max_distance}")
    flat = (
        df.select(pl.col("images"))
        .with_row_index(_ROW)
        .explode("images")
        .filter(pl.col("images").is_not_null())
        .with_columns(
            pl.col("images").struct.field("path").alias("path"),
            pl.col("images").struct.field("sha256").alias("sha256"),
        )
        .with_columns(pl.int_range(pl.len()).over(_ROW).alias("pos"))
        .with_columns(pl.coalesce("sha256", "path").alias("file_key"))
    )
    files = flat.unique("file_key", keep="first").sort("file_key")
    paths = files["path"].to_list()
    if image_root is not None:
        paths = [os.path.join(image_root, p) if p else p for p in paths]
    # one decode per distinct file: Pillow has no batch API
    hashes = [_phash(p) if p else None for p in paths]
    files = files.select("file_key").with_columns(pl.Series("phash", hashes, dtype=pl.UInt64))
    flat = flat.join(files, on="file_key", how="left")
    unreadable = flat.filter(pl.col("phash").is_null())
    hashed = flat.filter(pl.col("phash").is_not_null())
    # rows whose images all hashed; their first image drives the candidate search
    n_img = flat.group_by(_ROW).agg(pl.len().alias("n"), pl.col("phash").null_count().alias("bad"))
    good_rows = n_img.filter(pl.col("bad") == 0)[_ROW].to_numpy()
    first = hashed.filter((pl.col("pos") == 0) & pl.col(_ROW).is_in(good_rows)).sort(_ROW)
    rows = first[_ROW].to_numpy().astype(np.int64)
    pairs = hamming_pairs(first["phash"].to_numpy(), max_distance)
    left, right = rows[pairs[:, 0]], rows[pairs[:, 1]]
    if len(left):
        by_row = hashed.group_by(_ROW).agg(pl.col("phash").sort_by("pos"))
        ph = dict(zip(by_row[_ROW].to_list(), by_row["phash"].to_list(), strict=True))
        keep = np.array([_images_match(ph[i], ph[j], max_distance) for i, j in zip(left, right, strict=True)])
        if text_col is not None:
            norm = df.select(normalize_text(text_col)).to_series().to_numpy()
            keep &= norm[left] == norm[right]
        left, right = left[keep], right[keep]
    labels = _components(df.height, left, right)
    info = {
        "images_hashed": int(files["phash"].is_not_null().sum()),
        "images_unreadable": int(unreadable.height),
        "pairs_checked": int(len(pairs)),
        "pairs_confirmed": int(len(left)),
    }
    return _split_clusters(df, labels, "near_duplicate_image", info)


def _images_match(a: Sequence[int], b: Sequence[int], max_distance: int) -> bool:
    return len(a) == len(b) and all(bin(x ^ y).count("1") <= max_distance for x, y in zip(a, b, strict=True))
