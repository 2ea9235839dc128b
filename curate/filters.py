"""Quality filters RL recipes use, each a stage returning StageOutput.

* `unverifiable`: answers no reward can check (missing, free-form prose,
  expressions math-verify cannot parse).
* `length_bounds`: prompt and answer length limits (characters).
* `charset`: mojibake / control characters and prompts not mostly in the
  wanted scripts (a cheap language filter: Unicode script ratio).
* `valid_images`: image files that are missing or do not decode.
* `valid_choices`: multiple-choice items whose answer is not one of the options.

All take and return polars DataFrames in the Sample schema and label every
dropped row with a `drop_reason`.

>>> import polars as pl
>>> df = pl.DataFrame({"prompt": ["What is 2+2?", "x"], "answer": ["4", "1"]})
>>> length_bounds(df, min_prompt_chars=5).drops_by_reason()
{'prompt_too_short': 1}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from curate.answers import ANSWER_TYPES, CHOICE_LETTERS, _choice_letter, math_parseable
from curate.lazy import lazy_import
from curate.stage import DROP_REASON, StageOutput, row_wise, split_by_mask

if TYPE_CHECKING:
    import polars as pl
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    pl = lazy_import("polars")


def _split_reasons(df: pl.DataFrame, reason: pl.Expr) -> StageOutput:
    """Keep rows whose `reason` expression is null; drop the rest labelled with it."""
    labelled = df.with_columns(reason.alias(DROP_REASON))
    kept = labelled.filter(pl.col(DROP_REASON).is_null()).drop(DROP_REASON)
    dropped = labelled.filter(pl.col(DROP_REASON).is_not_null())
    return StageOutput(kept=kept, dropped=dropped)


@row_wise
def unverifiable(df: pl.DataFrame, *, max_text_words: int = 6, check_math: bool = True
                 ) -> StageOutput:
    """Drop rows whose answer no reward can verify.

    Reasons: ``missing_answer`` (null/blank), ``unknown_answer_type``,
    ``free_form_text`` (a text answer longer than `max_text_words` words: an
    essay or proof, not something to compare), ``unparseable_expression``
    (math-verify cannot parse the gold expression, so no response could ever
    be marked correct).

    >>> import polars as pl
    >>> df = pl.DataFrame({"answer": ["4", None, "x^{", "a b c d e f g h"],
    ...                    "answer_type": ["numeric", "numeric", "expression", "text"]})
    >>> unverifiable(df).drops_by_reason()
    {'free_form_text': 1, 'missing_answer': 1, 'unparseable_expression': 1}
    """
    ans = pl.col("answer")
    reason = (
        pl.when(ans.is_null() | (ans.str.strip_chars() == "")).then(pl.lit("missing_answer"))
        .when(~pl.col("answer_type").is_in(list(ANSWER_TYPES))).then(pl.lit("unknown_answer_type"))
        .when((pl.col("answer_type") == "text")
              & (ans.str.strip_chars().str.split(" ").list.len() > max_text_words))
        .then(pl.lit("free_form_text"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )
    out = _split_reasons(df, reason)
    if check_math and out.kept.height:
        exprs = out.kept.filter(pl.col("answer_type") == "expression")["answer"].unique()
        bad = [a for a in exprs.to_list() if not math_parseable(a)]  # sympy: one call per distinct answer
        if bad:
            second = split_by_mask(
                out.kept, ~((pl.col("answer_type") == "expression") & pl.col("answer").is_in(bad)),
                "unparseable_expression",
            )
            out = StageOutput(kept=second.kept, dropped=pl.concat([out.dropped, second.dropped],
                                                                  how="diagonal_relaxed"))
    return out


@row_wise
def length_bounds(df: pl.DataFrame, *, min_prompt_chars: int = 1, max_prompt_chars: int = 8000,
                  min_answer_chars: int = 1, max_answer_chars: int = 256) -> StageOutput:
    """Drop prompts or answers outside character-length bounds.

    Reasons: ``prompt_too_short``, ``prompt_too_long``, ``answer_too_short``,
    ``answer_too_long`` (a null answer counts as length 0).

    >>> import polars as pl
    >>> df = pl.DataFrame({"prompt": ["What is 2+2?", "Hi", "Name a prime."],
    ...                    "answer": ["4", "5", None]})
    >>> length_bounds(df, min_prompt_chars=5).drops_by_reason()
    {'answer_too_short': 1, 'prompt_too_short': 1}
    """
    p = pl.col("prompt").fill_null("").str.strip_chars().str.len_chars()
    a = pl.col("answer").fill_null("").str.strip_chars().str.len_chars()
    reason = (
        pl.when(p < min_prompt_chars).then(pl.lit("prompt_too_short"))
        .when(p > max_prompt_chars).then(pl.lit("prompt_too_long"))
        .when(a < min_answer_chars).then(pl.lit("answer_too_short"))
        .when(a > max_answer_chars).then(pl.lit("answer_too_long"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )
    return _split_reasons(df, reason)


@row_wise
def charset(df: pl.DataFrame, *, scripts: Sequence[str] = ("Latin",), min_script_ratio: float = 0.5,
            column: str = "prompt") -> StageOutput:
    """Drop text with mojibake/control characters or not mostly in `scripts`.

    The script ratio is letters in any of `scripts` (Unicode script names:
    Latin, Greek, Cyrillic, Han, Arabic, ...) over all letters; text with no
    letters (pure math) passes. Reasons: ``bad_encoding`` (U+FFFD or C0
    control characters other than tab/newline), ``wrong_script``.

    >>> import polars as pl
    >>> df = pl.DataFrame({"prompt": ["Solve x+1=2.", "Решите уравнение", "bad \\ufffd byte"]})
    >>> charset(df).drops_by_reason()
    {'bad_encoding': 1, 'wrong_script': 1}
    """
    if not scripts:
        raise ValueError("charset: scripts must name at least one Unicode script, e.g. ['Latin']")
    text = pl.col(column).fill_null("")
    letters = text.str.count_matches(r"\p{L}")
    wanted = text.str.count_matches("[" + "".join(rf"\p{{{s}}}" for s in scripts) + "]")
    reason = (
        pl.when(text.str.contains(r"\x{FFFD}|[\x00-\x08\x0B\x0C\x0E-\x1F]")).then(pl.lit("bad_encoding"))
        .when((letters > 0) & (wanted.cast(pl.Float64) / letters < min_script_ratio))
        .then(pl.lit("wrong_script"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )
    try:
        return _split_reasons(df, reason)
    except pl.exceptions.ComputeError as exc:  # an unknown script name
        raise ValueError(f"charset: unknown script in {list(scripts)!r}: expected Unicode script "
                         f"names such as Latin, Greek, Cyrillic, Han ({exc})") from exc


def _image_status(path: str, verify: bool) -> str | None:
    if not os.path.isfile(path):
        return "missing_image"
    if not verify:
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()  # checks structure without decoding every pixel
    except Exception:  # PIL raises many kinds for a corrupt file
        return "broken_image"
    return None


@row_wise
def valid_images(df: pl.DataFrame, *, verify: bool = True, require_images: bool = False
                 ) -> StageOutput:
    """Drop rows whose image files are missing or do not decode (PIL verify).

    Each distinct path is checked once. Reasons: ``missing_image``,
    ``broken_image``, and ``no_image`` when `require_images` is set.

    >>> import polars as pl
    >>> img = pl.Struct({"path": pl.Utf8, "sha256": pl.Utf8})
    >>> df = pl.DataFrame({"prompt": ["What is drawn?", "Count the dots."],
    ...                    "images": [[{"path": "/nonexistent/a.png", "sha256": None}], []]},
    ...                   schema={"prompt": pl.Utf8, "images": pl.List(img)})
    >>> valid_images(df, require_images=True).drops_by_reason()
    {'missing_image': 1, 'no_image': 1}
    """
    paths = df.select(pl.col("images").list.eval(pl.element().struct.field("path"))
                      .explode().drop_nulls().unique().sort()).to_series().to_list()
    status = {p: s for p in paths if (s := _image_status(p, verify)) is not None}
    bad_missing = [p for p, s in status.items() if s == "missing_image"]
    bad_broken = [p for p, s in status.items() if s == "broken_image"]
    img_paths = pl.col("images").list.eval(pl.element().struct.field("path"))
    reason = (
        pl.when(img_paths.list.eval(pl.element().is_in(bad_missing)).list.any())
        .then(pl.lit("missing_image"))
        .when(img_paths.list.eval(pl.element().is_in(bad_broken)).list.any())
        .then(pl.lit("broken_image"))
        .when(pl.lit(require_images) & (pl.col("images").list.len().fill_null(0) == 0))
        .then(pl.lit("no_image"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )
    return _split_reasons(df, reason)


def _choice_ok(meta: str | None, answer: str | None) -> bool:
    options = (json.loads(meta).get("options") if meta and meta.startswith("{") else None) or []
    a = (answer or "").strip()
    letter = _choice_letter(a)
    if not options:
        return letter is not None
    if letter is not None and letter in CHOICE_LETTERS[: len(options)]:
        return True
    return a in [str(o).strip() for o in options]


@row_wise
def valid_choices(df: pl.DataFrame) -> StageOutput:
    """Drop multiple-choice rows whose answer is not among their options.

    Options come from ``meta["options"]``; the answer must be one of the
    option letters (A.. for the number of options) or one option's text.
    Without options, the answer must be a single letter A-J. Reason:
    ``answer_not_in_options``.

    >>> import polars as pl
    >>> df = pl.DataFrame({"answer": ["B", "F", "x"], "answer_type": ["choice"] * 3,
    ...                    "meta": ['{"options": ["1", "2"]}', '{"options": ["1", "2"]}', '{}']})
    >>> valid_choices(df).drops_by_reason()
    {'answer_not_in_options': 2}
    """
    is_choice = pl.col("answer_type") == "choice"
    choice_rows = df.filter(is_choice).select("meta", "answer").unique()
    # one check per distinct (options, answer) pair
    bad = choice_rows.filter(
        ~pl.struct("meta", "answer").map_elements(lambda r: _choice_ok(r["meta"], r["answer"]),
                                                  return_dtype=pl.Boolean)
    ) if choice_rows.height else choice_rows
    flagged = df.join(bad.with_columns(pl.lit(True).alias("_bad")), on=["meta", "answer"],
                      how="left", nulls_equal=True, maintain_order="left")
    keep = ~(is_choice & pl.col("_bad").fill_null(False))
    out = split_by_mask(flagged, keep, "answer_not_in_options")
    return StageOutput(kept=out.kept.drop("_bad"), dropped=out.dropped.drop("_bad"))
