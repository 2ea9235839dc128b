"""curate.filters: each quality stage keeps/drops the right rows, with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from curate.filters import charset, length_bounds, unverifiable, valid_choices, valid_images
from curate.ingest import read_samples
from curate.stage import DROP_REASON

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def _balanced(df: pl.DataFrame, out) -> None:
    assert out.kept.height + out.dropped.height == df.height
    assert out.dropped[DROP_REASON].null_count() == 0
    assert out.kept.columns == df.columns


def test_unverifiable_on_real_math_keeps_everything_checkable():
    df = pl.from_arrow(read_samples(EXAMPLES / "math" / "test.jsonl", "math").samples)
    out = unverifiable(df)
    _balanced(df, out)
    # real MATH answers are all checkable, except the odd malformed one
    assert out.kept.height >= df.height - 3
    planted = df.head(4).with_columns(
        pl.Series("answer", [None, "x^{", "a long prose answer that nobody can check", "4"]),
        pl.Series("answer_type", ["numeric", "expression", "text", "numeric"]),
    )
    out = unverifiable(planted)
    _balanced(planted, out)
    assert out.drops_by_reason() == {"missing_answer": 1, "unparseable_expression": 1,
                                     "free_form_text": 1}
    assert out.kept["answer"].to_list() == ["4"]


def test_length_bounds_reasons():
    df = pl.DataFrame({"prompt": ["ok prompt", "x", "y" * 50, "fine again"],
                       "answer": ["1", "2", "3", "z" * 30]})
    out = length_bounds(df, min_prompt_chars=3, max_prompt_chars=40, max_answer_chars=20)
    _balanced(df, out)
    assert out.kept["prompt"].to_list() == ["ok prompt"]
    assert dict(zip(out.dropped["prompt"].str.slice(0, 2), out.dropped[DROP_REASON], strict=True)) == {
        "x": "prompt_too_short", "yy": "prompt_too_long", "fi": "answer_too_long"}


def test_charset_scripts_and_encoding():
    df = pl.DataFrame({"prompt": ["Compute $\\int_0^1 x\\,dx$.", "Вычислите сумму 2+2", "2+2=?",
                                  "broken \ufffd text", "tab\tand newline\n ok", "nul\x00byte"]})
    out = charset(df)
    _balanced(df, out)
    assert out.kept["prompt"].to_list() == ["Compute $\\int_0^1 x\\,dx$.", "2+2=?",
                                            "tab\tand newline\n ok"]
    assert out.drops_by_reason() == {"bad_encoding": 2, "wrong_script": 1}
    assert charset(df, scripts=["Latin", "Cyrillic"]).drops_by_reason() == {"bad_encoding": 2}
    with pytest.raises(ValueError, match="unknown script"):
        charset(df, scripts=["Klingon"])


def test_valid_images_missing_broken_and_required(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4), "red").save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    img = lambda p: [{"path": str(p), "sha256": "x"}]  # noqa: E731
    df = pl.DataFrame({"prompt": ["a", "b", "c", "d"],
                       "images": [img(good), img(tmp_path / "gone.png"), img(broken), []]})
    out = valid_images(df)
    _balanced(df, out)
    assert out.kept["prompt"].to_list() == ["a", "d"]
    assert out.drops_by_reason() == {"broken_image": 1, "missing_image": 1}
    assert valid_images(df, require_images=True).drops_by_reason()["no_image"] == 1


def test_valid_images_on_shipped_mathv_rows():
    df = pl.from_arrow(read_samples(EXAMPLES / "mathv" / "testmini.jsonl", "mathv").samples)
    out = valid_images(df, require_images=True)
    assert out.kept.height == df.height == 40


def test_valid_choices():
    meta = lambda opts: json.dumps({"options": opts})  # noqa: E731
    df = pl.DataFrame({
        "answer": ["B", "E", "blue", "C", "(A)", "Z", "7"],
        "answer_type": ["choice", "choice", "choice", "choice", "choice", "choice", "numeric"],
        "meta": [meta(["1", "2", "3"]), meta(["1", "2", "3"]), meta(["red", "blue"]), "{}", "{}",
                 "{}", "{}"],
    })
    out = valid_choices(df)
    _balanced(df, out)
    assert out.kept["answer"].to_list() == ["B", "blue", "C", "(A)", "7"]
    assert out.drops_by_reason() == {"answer_not_in_options": 2}
