"""Decontamination: drop training rows that overlap held-out evaluation items.

Two detectors, usable alone or together (``method="both"`` drops a row when
either fires):

- ``ngram``: word n-gram overlap. A row's score against an eval item is the
  number of distinct n-grams they share over the smaller of their two n-gram
  counts (the overlap coefficient), so an eval question pasted inside a longer
  prompt still scores 1.0. The row's score is its best eval item's. N-grams
  are hashed to 64 bits with the same tokenizer as near dedup (curate.minhash).
- ``embedding``: cosine similarity of all-MiniLM-L6-v2 sentence embeddings
  (the locally packaged model, see curate.embedding), which catches
  paraphrases that share few n-grams.

Dropped rows carry ``matched_eval`` (the eval text), ``matched_eval_index``
(its position in `eval_texts`) and ``similarity`` (the score that fired).
The default thresholds come from bench/decontam.py (see docs/dedup-decontam.md).

>>> import polars as pl
>>> evals = ["Janet has 3 apples and buys 5 more at the market. How many apples does she have now?"]
>>> df = pl.DataFrame({"id": ["a", "b"], "prompt": [evals[0], "Tom runs 5 miles a day for a week."]})
>>> out = decontaminate(df, evals, method="ngram")
>>> out.kept["id"].to_list(), out.dropped["matched_eval_index"].to_list()
(['b'], [0])
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from curate.config import signature_model
from curate.errors import ConfigError
from curate.lazy import lazy_import
from curate.stage import DROP_REASON, SpecView, StageContext, StageOutput, Step

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from curate import minhash
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")
    pl = lazy_import("polars")
    minhash = lazy_import("curate.minhash")

Method = Literal["ngram", "embedding", "both"]
METHODS = ("ngram", "embedding", "both")

# chosen on bench/decontam.py (GSM8K test paraphrases vs GSM8K train), see docs/dedup-decontam.md
DEFAULT_NGRAM = 8
DEFAULT_NGRAM_THRESHOLD = 0.5
DEFAULT_EMBED_THRESHOLD = 0.825


def _ngram_frame(texts: Sequence[str | None], n: int, who: str) -> tuple[pl.DataFrame, np.ndarray]:
    """Distinct (who, h) n-gram hashes per text, and each text's distinct n-gram count."""
    import pyarrow as pa

    sh = minhash.shingle_hashes64(pa.array(list(texts), type=pa.large_string()), n)
    frame = pl.DataFrame(
        {who: np.repeat(np.arange(len(texts), dtype=np.int64), sh.counts), "h": sh.hashes}
    ).unique(maintain_order=True)
    counts = np.bincount(frame[who].to_numpy(), minlength=len(texts))
    return frame, counts


def ngram_scores(
    texts: Sequence[str | None], eval_texts: Sequence[str | None], n: int = DEFAULT_NGRAM
) -> tuple[np.ndarray, np.ndarray]:
    """Best n-gram overlap coefficient of each text against `eval_texts`, and which eval item.

    Returns ``(score, eval_index)``; rows sharing no n-gram score 0.0 with index -1.

    >>> s, i = ngram_scores(["a b c d e", "x y z"], ["q a b c d e", "x y"], n=3)
    >>> s.tolist(), i.tolist()
    ([1.0, 0.0], [0, -1])
    """
    rows, row_n = _ngram_frame(texts, n, "row")
    evals, eval_n = _ngram_frame(eval_texts, n, "ev")
    score = np.zeros(len(texts), dtype=np.float64)
    best = np.full(len(texts), -1, dtype=np.int64)
    if rows.height == 0 or evals.height == 0:
        return score, best
    shared = rows.join(evals, on="h", how="inner").group_by("row", "ev").len("shared")
    if shared.height == 0:
        return score, best
    r = shared["row"].to_numpy()
    e = shared["ev"].to_numpy()
    coef = shared["shared"].to_numpy() / np.minimum(row_n[r], eval_n[e])
    top = (
        pl.DataFrame({"row": r, "ev": e, "coef": coef})
        .sort(["row", "coef", "ev"], descending=[False, True, False])
        .unique("row", keep="first")
    )
    score[top["row"].to_numpy()] = top["coef"].to_numpy()
    best[top["row"].to_numpy()] = top["ev"].to_numpy()
    return score, best


def embedding_scores(
    texts: Sequence[str | None],
    eval_texts: Sequence[str | None],
    *,
    batch_size: int = 64,
    chunk: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Best cosine similarity of each text's embedding to an eval item's, and which item.

    Raises curate.embedding.EmbeddingModelMissing when the packaged model is absent.
    """
    from curate.embedding import embed

    score = np.zeros(len(texts), dtype=np.float64)
    best = np.full(len(texts), -1, dtype=np.int64)
    if len(texts) == 0 or len(eval_texts) == 0:
        return score, best
    ev = embed(list(eval_texts), batch_size=batch_size)
    tx = embed(list(texts), batch_size=batch_size)
    for lo in range(0, len(texts), chunk):
        sims = tx[lo : lo + chunk] @ ev.T
        best[lo : lo + chunk] = sims.argmax(axis=1)
        score[lo : lo + chunk] = sims.max(axis=1)
    return score, best


def decontaminate(
    df: pl.DataFrame,
    eval_texts: list[str],
    *,
    method: Method = "ngram",
    ngram: int = DEFAULT_NGRAM,
    ngram_threshold: float = DEFAULT_NGRAM_THRESHOLD,
    embed_threshold: float = DEFAULT_EMBED_THRESHOLD,
    text_col: str = "prompt",
    batch_size: int = 64,
) -> StageOutput:
    """Drop rows of `df` whose `text_col` overlaps an item of `eval_texts`.

    ``method="ngram"`` drops rows whose n-gram overlap coefficient with some
    eval item is >= `ngram_threshold` (reason ``contaminated_ngram``);
    ``"embedding"`` drops rows whose embedding cosine similarity is >=
    `embed_threshold` (``contaminated_embedding``) and raises
    curate.embedding.EmbeddingModelMissing, naming the package to install, when
    the packaged model is absent; ``"both"`` applies both (the n-gram reason
    wins when both fire) and falls back to n-grams with a warning when the
    model is absent.

    >>> import polars as pl
    >>> evals = ["A train leaves at 3 pm going 60 miles per hour. When does it arrive 180 miles away?"]
    >>> df = pl.DataFrame({"prompt": ["Solve this: " + evals[0], "What is 7 times 8?"]})
    >>> out = decontaminate(df, evals)
    >>> out.drops_by_reason(), round(out.dropped["similarity"][0], 2)
    ({'contaminated_ngram': 1}, 1.0)
    """
    if method not in METHODS:
        raise ValueError(f"decontaminate: method must be one of {METHODS}, got {method!r}")
    if text_col not in df.columns:
        raise ValueError(f"decontaminate: missing column {text_col!r}; the frame has {df.columns}")
    if ngram < 1:
        raise ValueError(f"decontaminate: ngram must be >= 1, got {ngram}")
    for name, value in (("ngram_threshold", ngram_threshold), ("embed_threshold", embed_threshold)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"decontaminate: {name} must be in (0, 1], got {value}")
    texts = df.get_column(text_col).cast(pl.Utf8).to_list()
    evals = [t or "" for t in eval_texts]
    info: dict = {"method": method, "n_eval_texts": len(evals)}

    use_ngram = method in ("ngram", "both")
    use_embed = method in ("embedding", "both")
    if use_embed:
        from curate.embedding import EmbeddingModelMissing, model_path

        try:
            model_path()
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            if method == "embedding":
                raise exc if isinstance(exc, EmbeddingModelMissing) else EmbeddingModelMissing(str(exc)) from exc
            warnings.warn(f"decontaminate(method='both'): {exc}; using n-gram overlap only",
                          stacklevel=2)
            info["warning"] = f"embedding model unavailable, n-gram only: {exc}"
            use_embed = False
    info["method_used"] = "both" if use_ngram and use_embed else ("ngram" if use_ngram else "embedding")

    n = df.height
    hit = np.zeros(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    sim = np.zeros(n, dtype=np.float64)
    match = np.full(n, -1, dtype=np.int64)
    if use_embed:
        t0 = time.perf_counter()
        e_score, e_idx = embedding_scores(texts, evals, batch_size=batch_size)
        fire = e_score >= embed_threshold
        hit |= fire
        reason[fire], sim[fire], match[fire] = "contaminated_embedding", e_score[fire], e_idx[fire]
        info.update(embed_threshold=embed_threshold, rows_embedding=int(fire.sum()),
                    seconds_embedding=round(time.perf_counter() - t0, 4))
    if use_ngram:  # second, so that its reason wins when both fire
        t0 = time.perf_counter()
        n_score, n_idx = ngram_scores(texts, evals, ngram)
        fire = n_score >= ngram_threshold
        hit |= fire
        reason[fire], sim[fire], match[fire] = "contaminated_ngram", n_score[fire], n_idx[fire]
        info.update(ngram=ngram, ngram_threshold=ngram_threshold, rows_ngram=int(fire.sum()),
                    seconds_ngram=round(time.perf_counter() - t0, 4))

    dropped_rows = np.flatnonzero(hit)
    eval_arr = np.asarray(evals, dtype=object)
    dropped = df[dropped_rows].with_columns(
        pl.Series(DROP_REASON, reason[dropped_rows].tolist(), dtype=pl.Utf8),
        pl.Series("matched_eval", eval_arr[match[dropped_rows]].tolist() if len(dropped_rows) else [],
                  dtype=pl.Utf8),
        pl.Series("matched_eval_index", match[dropped_rows], dtype=pl.Int64),
        pl.Series("similarity", sim[dropped_rows], dtype=pl.Float64),
    )
    return StageOutput(kept=df.filter(pl.Series(~hit)), dropped=dropped, info=info)


class Decontaminate(Step):
    """The `decontaminate` stage: builds its eval index from its own configuration.

    Keys: those of `decontaminate` (method, ngram, thresholds, ...) plus
    ``against``: the eval sets to check against, by [[eval_sets]] name or by path
    (relative to the spec file); all declared eval sets when absent. The texts
    come from the `StageContext`, like any resource a step needs.

    >>> import polars as pl
    >>> from curate.stage import StageContext
    >>> ctx = StageContext({"held-out": lambda: ["What is the capital city of France, in one word?"]})
    >>> step = Decontaminate.build({"ngram": 4, "against": ["held-out"]})
    >>> step.run(pl.DataFrame({"prompt": ["What is the capital city of France, in one word?",
    ...                                    "Name a prime."]}), ctx).drops_by_reason()
    {'contaminated_ngram': 1}
    """

    name = "decontaminate"
    row_wise = True  # every row is scored against the eval index on its own
    Params = signature_model(decontaminate, name, skip_first=True, skip=("eval_texts",),
                             extra={"against": (list[str] | None, None)})

    @classmethod
    def check(cls, params: dict, spec: SpecView, where: str) -> dict:
        against = params.get("against")
        if spec.enabled and not against and not spec.eval_sets:
            raise ConfigError(f"{where}: needs eval sets: add [[eval_sets]] or give `against = [paths]`")
        if against:
            params = {**params, "against": [a if a in spec.eval_sets else spec.resolve(a)
                                            for a in against]}
        return params

    def run(self, df: pl.DataFrame, ctx: StageContext) -> StageOutput:
        kwargs = dict(self.kwargs)
        texts = ctx.eval_texts(kwargs.pop("against", None))
        return decontaminate(df, texts, **kwargs)
