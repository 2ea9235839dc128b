"""From rollout logs back to data: difficulty, routing, self-distilled SFT, preference pairs.

Input is any rollout log in `curate.rollout_log.ROLLOUT_SCHEMA` (an Arrow table, a
polars frame, or what `curate.importers.read_rollouts` returns).

- `pass_rates`: per prompt, the pass rate with a Wilson interval, unbiased
  pass@k (Chen et al., 2021) with an interval, reward mean / std, a difficulty bin.
- `filter_by_pass_rate`: the OpenMMReasoner / MMR1 / MedVLThinker filter: drop
  prompts the model always solves or never solves (configurable thresholds).
- `route_prompts`: after Metis-RISE, put each prompt in exactly one bucket:
  ``solved`` (drop), ``expert`` (never solved: an expert queue), ``distill``
  (solved inconsistently: self-distilled SFT rows), ``rl`` (keep for RL),
  ``insufficient`` (too few rollouts to tell).
- `self_distill`: rejection sampling of the model's own correct responses,
  best-of-n by reward, length and format filters, dedup of near-identical traces.
- `preference_pairs`: chosen = correct and well formed, rejected = incorrect, same
  prompt: prompt / chosen / rejected, the columns TRL's DPOTrainer reads.

>>> import polars as pl
>>> log = pl.DataFrame({"sample_id": ["a"] * 4 + ["b"] * 4, "prompt": ["p"] * 4 + ["q"] * 4,
...     "response": [r"so \\boxed{1}", "no", r"\\boxed{1} yes", "nope", "x", "y", "z", "w"],
...     "reward": [1.0, 0.0, 1.0, 0.0, 0, 0, 0, 0], "correct": [True, False, True, False] + [False] * 4})
>>> pass_rates(log, k=(1, 2)).select("sample_id", "pass_rate", "pass_at_2").rows()
[('a', 0.5, 0.8333333333333334), ('b', 0.0, 0.0)]
>>> dict(route_prompts(log).select("sample_id", "route").rows())
{'a': 'distill', 'b': 'expert'}
>>> preference_pairs(log).select("chosen", "rejected").height
2
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from scipy.special import comb, gammaln
from scipy.stats import norm

from curate.stage import DROP_REASON, StageOutput

ROUTES = ("solved", "expert", "distill", "rl", "insufficient")
# A response "looks finished" when it states a final answer in one of the usual tags.
DEFAULT_FORMAT_PATTERN = r"\\boxed\{|<answer>.*</answer>|(?i:final answer\s*[:is])"


def _frame(rollouts: Any) -> pl.DataFrame:
    if isinstance(rollouts, pl.LazyFrame):
        return rollouts.collect()
    if isinstance(rollouts, pa.Table):
        return pl.from_arrow(rollouts)
    if isinstance(rollouts, pl.DataFrame):
        return rollouts
    raise TypeError(f"expected a rollout log as pyarrow.Table or polars frame, got {type(rollouts).__name__}")


def _need(df: pl.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the rollout log lacks column {missing[0]!r} (has {df.columns})")


# ----------------------------------------------------------------------------- statistics


def wilson_interval(successes: np.ndarray, n: np.ndarray, confidence: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (vectorized; n = 0 gives [0, 1]).

    >>> lo, hi = wilson_interval(np.array([5]), np.array([10]))
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.237, 0.763)
    """
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = float(norm.ppf(0.5 + confidence / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, s / n, 0.0)
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = np.where((n > 0) & (s > 0), np.clip(centre - half, 0, 1), 0.0)  # exact ends, no float dust
    hi = np.where((n > 0) & (s < n), np.clip(centre + half, 0, 1), 1.0)
    return lo, hi


def pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k, 1 - C(n-c, k) / C(n, k), vectorized in log space; NaN where n < k.

    >>> pass_at_k(np.array([8, 8, 8]), np.array([0, 1, 8]), 1).tolist()
    [0.0, 0.125, 1.0]
    """
    n = np.asarray(n, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    f = n - c
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # exact binomials while they fit a float (n <= 1000), log-gamma beyond
        ratio = comb(f, k) / comb(n, k)
        big = n > 1000
        if big.any():
            log_ratio = gammaln(f + 1) - gammaln(np.maximum(f - k, 0) + 1) - gammaln(n + 1) + gammaln(
                np.maximum(n - k, 0) + 1)
            ratio = np.where(big, np.exp(log_ratio), ratio)
        out = np.where(f < k, 1.0, np.where(c == 0, 0.0, 1.0 - ratio))
    return np.where(n < k, np.nan, out)


def pass_rates(
    rollouts: Any,
    *,
    k: Sequence[int] = (1, 4, 8),
    confidence: float = 0.95,
    bins: Sequence[float] = (0.3, 0.7),
) -> pl.DataFrame:
    """Per-prompt pass rate, Wilson interval, unbiased pass@k with intervals, difficulty bin.

    Columns: sample_id, domain, prompt, n, n_correct, pass_rate, ci_low, ci_high,
    pass_at_<k> (+ _low/_high: the Wilson bounds carried through 1 - (1 - p)^k),
    reward_mean, reward_std, difficulty_bin ("never" | "hard" | "medium" | "easy" |
    "always", with `bins` the hard/medium/easy edges).

    >>> import polars as pl
    >>> log = pl.DataFrame({"sample_id": ["a"] * 4 + ["b"] * 2, "prompt": ["2+2?"] * 4 + ["7*6?"] * 2,
    ...                     "response": [r"\\boxed{4}", "it is 4", r"\\boxed{5}", r"\\boxed{4} done", "40", "48"],
    ...                     "reward": [1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
    ...                     "correct": [True, True, False, True, False, False]})
    >>> pass_rates(log, k=(2,)).select("sample_id", "n", "pass_rate", "pass_at_2", "difficulty_bin").rows()
    [('a', 4, 0.75, 1.0, 'easy'), ('b', 2, 0.0, 0.0, 'never')]
    """
    df = _frame(rollouts)
    _need(df, ("sample_id", "correct"), "pass_rates")
    first = [pl.col(c).first() for c in ("domain", "prompt") if c in df.columns]
    rew = [pl.col("reward").mean().alias("reward_mean"), pl.col("reward").std().alias("reward_std")] \
        if "reward" in df.columns else []
    agg = (df.group_by("sample_id", maintain_order=True)
           .agg(*first, pl.len().cast(pl.Int64).alias("n"),
                pl.col("correct").cast(pl.Int64).sum().alias("n_correct"), *rew)
           .sort("sample_id"))
    n = agg["n"].to_numpy()
    c = agg["n_correct"].to_numpy()
    lo, hi = wilson_interval(c, n, confidence)
    cols: dict[str, Any] = {"pass_rate": c / np.maximum(n, 1), "ci_low": lo, "ci_high": hi}
    for kk in k:
        cols[f"pass_at_{kk}"] = pass_at_k(n, c, kk)
        cols[f"pass_at_{kk}_low"] = np.where(n < kk, np.nan, 1 - (1 - lo) ** kk)
        cols[f"pass_at_{kk}_high"] = np.where(n < kk, np.nan, 1 - (1 - hi) ** kk)
    agg = agg.with_columns(**{name: pl.Series(v).fill_nan(None) for name, v in cols.items()})
    return agg.with_columns(difficulty_bin=difficulty_bins(pl.col("pass_rate"), bins))


def difficulty_bins(pass_rate: pl.Expr, edges: Sequence[float] = (0.3, 0.7)) -> pl.Expr:
    """never (0) / hard (< edges[0]) / medium (< edges[1]) / easy (< 1) / always (1)."""
    lo, hi = edges
    return (pl.when(pass_rate <= 0).then(pl.lit("never"))
            .when(pass_rate >= 1).then(pl.lit("always"))
            .when(pass_rate < lo).then(pl.lit("hard"))
            .when(pass_rate < hi).then(pl.lit("medium"))
            .otherwise(pl.lit("easy")))


# ----------------------------------------------------------------------------- filters and routing


def filter_by_pass_rate(rates: pl.DataFrame, *, low: float = 0.0, high: float = 1.0, min_n: int = 1
                        ) -> StageOutput:
    """Keep prompts with low < pass_rate < high and at least `min_n` rollouts.

    Drop reasons: ``never_solved`` (pass_rate <= low), ``always_solved``
    (pass_rate >= high), ``too_few_rollouts``. MMR1-style "keep 0 < p < 1" is the default;
    OpenMMReasoner / MedVLThinker-style bands are e.g. low=0.1, high=0.9.
    """
    p, n = pl.col("pass_rate"), pl.col("n")
    reason = (pl.when(n < min_n).then(pl.lit("too_few_rollouts"))
              .when(p <= low).then(pl.lit("never_solved"))
              .when(p >= high).then(pl.lit("always_solved")))
    labelled = rates.with_columns(reason.alias(DROP_REASON))
    out = StageOutput(kept=labelled.filter(pl.col(DROP_REASON).is_null()).drop(DROP_REASON),
                      dropped=labelled.filter(pl.col(DROP_REASON).is_not_null()))
    out.info = {"kept": out.kept.height, "dropped": out.drops_by_reason()}
    return out


def route_prompts(
    rollouts: Any,
    *,
    never_max: float = 0.0,
    distill_below: float = 1.0,
    always_min: float = 1.0,
    min_n: int = 2,
) -> pl.DataFrame:
    """Route every prompt to exactly one bucket (after Metis-RISE).

    With p the pass rate over n rollouts:
    ``insufficient`` if n < min_n; else ``expert`` if p <= never_max (never solved);
    ``solved`` if p >= always_min (drop); ``distill`` if p < distill_below (solved
    inconsistently: self-distill its correct responses); ``rl`` otherwise (kept
    for the next RL round). With the default distill_below = 1 every inconsistent
    prompt is distilled; lower it (e.g. 0.5) to keep the mostly-solved ones for RL.

    Returns `pass_rates` with a `route` column.

    >>> import polars as pl
    >>> log = pl.DataFrame({"sample_id": list("aabbcc") + ["d"], "correct": [1, 1, 0, 0, 1, 0, 1]})
    >>> route_prompts(log.with_columns(pl.col("correct").cast(bool))).select("sample_id", "route").rows()
    [('a', 'solved'), ('b', 'expert'), ('c', 'distill'), ('d', 'insufficient')]
    """
    if not (0 <= never_max < always_min <= 1 and distill_below <= always_min):
        raise ValueError("route_prompts needs 0 <= never_max < always_min <= 1 and distill_below <= always_min; "
                         f"got never_max={never_max}, distill_below={distill_below}, always_min={always_min}")
    rates = rollouts if isinstance(rollouts, pl.DataFrame) and "pass_rate" in rollouts.columns \
        else pass_rates(rollouts)
    p, n = pl.col("pass_rate"), pl.col("n")
    route = (pl.when(n < min_n).then(pl.lit("insufficient"))
             .when(p <= never_max).then(pl.lit("expert"))
             .when(p >= always_min).then(pl.lit("solved"))
             .when(p < distill_below).then(pl.lit("distill"))
             .otherwise(pl.lit("rl")))
    return rates.with_columns(route=route)


# ----------------------------------------------------------------------------- responses


def _well_formed(df: pl.DataFrame, format_pattern: str | None) -> pl.Expr:
    """format_ok where the log has it, else the response matches `format_pattern`."""
    by_text = pl.col("response").str.contains(format_pattern) if format_pattern else pl.lit(True)
    if "format_ok" in df.columns:
        return pl.col("format_ok").fill_null(by_text)
    return by_text


def _length(df: pl.DataFrame) -> pl.Expr:
    words = pl.col("response").str.count_matches(r"\S+").cast(pl.Int64)
    return pl.col("response_tokens").fill_null(words) if "response_tokens" in df.columns else words


_NORM_DROP = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")  # traces that differ only in punctuation are the same trace


def _near_duplicate_mask(df: pl.DataFrame, threshold: float, ngram: int = 3) -> np.ndarray:
    """True for a response whose word n-gram Jaccard with an earlier kept response of the
    same prompt is >= threshold (rows must be in preference order within each prompt)."""
    dup = np.zeros(df.height, dtype=bool)
    if threshold > 1 or df.height == 0:
        return dup
    ids = df["sample_id"].to_list()
    texts = df["response"].to_list()
    kept: dict[str, list[set]] = {}
    for i, (sid, text) in enumerate(zip(ids, texts, strict=True)):
        words = _NORM_DROP.split(_PUNCT.sub("", (text or "").lower()).strip())
        sh = {" ".join(words[j:j + ngram]) for j in range(max(1, len(words) - ngram + 1))}
        for other in kept.get(sid, ()):
            inter = len(sh & other)
            if inter and inter / len(sh | other) >= threshold:
                dup[i] = True
                break
        else:
            kept.setdefault(sid, []).append(sh)
    return dup


def self_distill(
    rollouts: Any,
    sample_ids: Sequence[str] | None = None,
    *,
    best_of: int = 1,
    min_tokens: int = 1,
    max_tokens: int | None = None,
    format_pattern: str | None = DEFAULT_FORMAT_PATTERN,
    dedup_threshold: float = 0.9,
) -> StageOutput:
    """Rejection-sample SFT rows from the model's own correct responses.

    For each prompt (restricted to `sample_ids`, e.g. the ``distill`` route): keep
    correct responses that are well formed (`format_ok`, else `format_pattern`) and
    within [min_tokens, max_tokens]; drop near-identical traces (word-trigram
    Jaccard >= `dedup_threshold` to a better one); keep the `best_of` best by reward
    (ties: shorter first). Kept rows are prompt / completion (TRL's prompt-completion
    SFT format) plus sample_id, domain, reward, response_tokens, run_id, step.
    Dropped rows carry `drop_reason`: not_selected, incorrect, bad_format, too_short,
    too_long, near_duplicate, beyond_best_of.

    >>> import polars as pl
    >>> log = pl.DataFrame({"sample_id": ["a"] * 4 + ["b"] * 2, "prompt": ["2+2?"] * 4 + ["7*6?"] * 2,
    ...                     "response": [r"\\boxed{4}", "it is 4", r"\\boxed{5}", r"\\boxed{4} done", "40", "48"],
    ...                     "reward": [1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
    ...                     "correct": [True, True, False, True, False, False]})
    >>> out = self_distill(log, ["a"], best_of=1)
    >>> out.kept.select("sample_id", "completion").rows()   # best reward, then the shorter trace
    [('a', '\\\\boxed{4}')]
    >>> dict(sorted(out.drops_by_reason().items()))
    {'bad_format': 1, 'beyond_best_of': 1, 'incorrect': 1, 'not_selected': 2}
    """
    df = _frame(rollouts)
    _need(df, ("sample_id", "prompt", "response", "reward", "correct"), "self_distill")
    df = df.with_columns(_len=_length(df), _ok=_well_formed(df, format_pattern))
    in_scope = pl.col("sample_id").is_in(list(sample_ids)) if sample_ids is not None else pl.lit(True)
    reason = (pl.when(~in_scope).then(pl.lit("not_selected"))
              .when(~pl.col("correct").fill_null(False)).then(pl.lit("incorrect"))
              .when(~pl.col("_ok")).then(pl.lit("bad_format"))
              .when(pl.col("_len") < min_tokens).then(pl.lit("too_short")))
    if max_tokens is not None:
        reason = reason.when(pl.col("_len") > max_tokens).then(pl.lit("too_long"))
    df = df.with_columns(reason.alias(DROP_REASON))
    cand = df.filter(pl.col(DROP_REASON).is_null()).sort(
        ["sample_id", "reward", "_len"], descending=[False, True, False])
    dup = _near_duplicate_mask(cand, dedup_threshold)
    cand = cand.with_columns(pl.when(pl.Series(dup)).then(pl.lit("near_duplicate")).alias(DROP_REASON))
    rank = pl.int_range(pl.len()).over("sample_id")
    uniq = cand.filter(pl.col(DROP_REASON).is_null()).with_columns(
        pl.when(rank >= best_of).then(pl.lit("beyond_best_of")).alias(DROP_REASON))
    kept = uniq.filter(pl.col(DROP_REASON).is_null())
    dropped = pl.concat([df.filter(pl.col(DROP_REASON).is_not_null()),
                         cand.filter(pl.col(DROP_REASON).is_not_null()),
                         uniq.filter(pl.col(DROP_REASON).is_not_null())], how="diagonal_relaxed")
    keep_cols = [c for c in ("sample_id", "domain", "prompt", "response", "reward", "_len", "run_id", "step")
                 if c in kept.columns]
    sft = kept.select(keep_cols).rename({"response": "completion", "_len": "response_tokens"})
    out = StageOutput(kept=sft, dropped=dropped.drop("_len", "_ok"))
    out.info = {"rows": sft.height, "prompts": sft["sample_id"].n_unique(), "dropped": out.drops_by_reason()}
    return out


def preference_pairs(
    rollouts: Any,
    sample_ids: Sequence[str] | None = None,
    *,
    max_pairs_per_prompt: int = 2,
    format_pattern: str | None = DEFAULT_FORMAT_PATTERN,
    seed: int = 0,
) -> pl.DataFrame:
    """DPO pairs from one log: chosen = correct and well formed, rejected = incorrect.

    Both sides answer the same prompt. A pair never holds two correct or two
    incorrect responses (a correct but badly formed response is neither chosen nor
    rejected). Chosen responses go best reward first (ties: shorter), each used
    once; rejected ones are drawn without replacement with `seed`, badly formed
    incorrect ones first. Up to `max_pairs_per_prompt` pairs a prompt.

    Columns: prompt, chosen, rejected (what TRL's DPOTrainer reads) then
    sample_id, chosen_reward, rejected_reward.

    >>> import polars as pl
    >>> log = pl.DataFrame({"sample_id": ["a"] * 4 + ["b"] * 2, "prompt": ["2+2?"] * 4 + ["7*6?"] * 2,
    ...                     "response": [r"\\boxed{4}", "it is 4", r"\\boxed{5}", r"\\boxed{4} done", "40", "48"],
    ...                     "reward": [1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
    ...                     "correct": [True, True, False, True, False, False]})
    >>> preference_pairs(log).select("prompt", "chosen", "rejected").rows()   # b has no correct side
    [('2+2?', '\\\\boxed{4}', '\\\\boxed{5}')]
    """
    df = _frame(rollouts)
    _need(df, ("sample_id", "prompt", "response", "reward", "correct"), "preference_pairs")
    if sample_ids is not None:
        df = df.filter(pl.col("sample_id").is_in(list(sample_ids)))
    df = df.with_columns(_ok=_well_formed(df, format_pattern), _len=_length(df),
                         _rand=pl.Series(np.random.default_rng(seed).random(df.height)))
    correct = pl.col("correct").fill_null(False)
    chosen = (df.filter(correct & pl.col("_ok")).unique(["sample_id", "response"], keep="first")
              .sort(["sample_id", "reward", "_len"], descending=[False, True, False])
              .with_columns(_r=pl.int_range(pl.len()).over("sample_id")))
    rejected = (df.filter(~correct).unique(["sample_id", "response"], keep="first")
                .sort(["sample_id", "_ok", "_rand"])
                .with_columns(_r=pl.int_range(pl.len()).over("sample_id")))
    pairs = chosen.filter(pl.col("_r") < max_pairs_per_prompt).select(
        "sample_id", "prompt", "_r", chosen="response", chosen_reward="reward").join(
        rejected.select("sample_id", "_r", rejected="response", rejected_reward="reward"),
        on=["sample_id", "_r"], how="inner")
    return pairs.sort("sample_id", "_r").select(
        "prompt", "chosen", "rejected", "sample_id", "chosen_reward", "rejected_reward")


# ----------------------------------------------------------------------------- the whole loop


def build_from_log(
    rollouts: Any,
    out_dir: str | Any,
    *,
    never_max: float = 0.0,
    distill_below: float = 1.0,
    always_min: float = 1.0,
    min_n: int = 2,
    best_of: int = 2,
    max_tokens: int | None = None,
    max_pairs_per_prompt: int = 2,
    dedup_threshold: float = 0.9,
    seed: int = 0,
    source: dict | None = None,
) -> dict:
    """Route a log's prompts and write the next data sets (all writes atomic).

    OUT/routes.parquet      every prompt: pass rate, intervals, pass@k, bin, route
    OUT/sft.parquet         self-distilled SFT rows (prompt, completion, ...) from ``distill`` prompts
    OUT/preference.parquet  prompt / chosen / rejected, exactly the columns TRL's DPOTrainer reads
    OUT/expert_queue.jsonl  never-solved prompts, for experts (or a stronger model) to answer
    OUT/rl.parquet          Sample-schema rows of the prompts still worth RL (``distill`` and
                            ``rl`` routes) with `difficulty` = observed pass rate
    OUT/manifest.json       counts of everything above, drops by reason, thresholds, import info

    Returns the manifest.
    """
    from pathlib import Path

    from curate.io import write_json_atomic, write_parquet_atomic, write_text_atomic
    from curate.schema import SAMPLE_SCHEMA, conform

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = _frame(rollouts)
    routes = route_prompts(df, never_max=never_max, distill_below=distill_below, always_min=always_min,
                           min_n=min_n)
    distill_ids = routes.filter(pl.col("route") == "distill")["sample_id"].to_list()
    sft = self_distill(df, distill_ids, best_of=best_of, max_tokens=max_tokens, dedup_threshold=dedup_threshold)
    pairs = preference_pairs(df, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)
    expert = routes.filter(pl.col("route") == "expert").select(
        "sample_id", *[c for c in ("domain", "prompt") if c in routes.columns], "n", "n_correct", "pass_rate",
        "ci_high")
    rl = routes.filter(pl.col("route").is_in(["distill", "rl"]))
    rl_samples = conform(pl.DataFrame({
        "id": rl["sample_id"], "source": pl.Series([f"rollouts:{(source or {}).get('format', 'thresher')}"] * rl.height,
                                                   dtype=pl.String),
        "domain": rl["domain"] if "domain" in rl.columns else None, "prompt": rl["prompt"],
        "difficulty": rl["pass_rate"], "n_rollouts": rl["n"],
    }).to_arrow(), SAMPLE_SCHEMA)
    write_parquet_atomic(routes.to_arrow(), out / "routes.parquet")
    write_parquet_atomic(sft.kept.to_arrow(), out / "sft.parquet")
    write_parquet_atomic(pairs.select("prompt", "chosen", "rejected").to_arrow(), out / "preference.parquet")
    write_text_atomic("".join(__import__("json").dumps(r, ensure_ascii=False) + "\n" for r in expert.to_dicts()),
                      out / "expert_queue.jsonl")
    write_parquet_atomic(rl_samples, out / "rl.parquet")
    route_counts = dict(routes.group_by("route").len().sort("route").iter_rows())
    manifest = {
        "input": {"rows": df.height, "prompts": routes.height, **({"import": source} if source else {})},
        "thresholds": {"never_max": never_max, "distill_below": distill_below, "always_min": always_min,
                       "min_n": min_n, "best_of": best_of, "max_tokens": max_tokens,
                       "max_pairs_per_prompt": max_pairs_per_prompt, "dedup_threshold": dedup_threshold,
                       "seed": seed},
        "routes": {r: int(route_counts.get(r, 0)) for r in ROUTES},
        "difficulty_bins": dict(routes.group_by("difficulty_bin").len().sort("difficulty_bin").iter_rows()),
        "sft": {"rows": sft.kept.height, "prompts": sft.kept["sample_id"].n_unique(),
                "dropped": sft.drops_by_reason(), "file": "sft.parquet"},
        "preference": {"pairs": pairs.height, "prompts": pairs["sample_id"].n_unique(), "file": "preference.parquet"},
        "expert_queue": {"prompts": expert.height, "file": "expert_queue.jsonl"},
        "rl": {"prompts": rl.height, "file": "rl.parquet"},
        "routes_file": "routes.parquet",
    }
    write_json_atomic(manifest, out / "manifest.json")
    return manifest
