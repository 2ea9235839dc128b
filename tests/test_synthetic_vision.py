"""Visual verifiable tasks: schema, image files, determinism, answers, image required, splits."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from curate.answers import extract_answer, is_equivalent
from curate.schema import SAMPLE_SCHEMA, sample_id
from curate.synthetic_vision import (
    COLOURS,
    IMAGE_PX,
    PALETTE,
    VISION_DOMAINS,
    generate_vision,
    grid_side,
    make_vision_splits,
    make_vision_suite,
    text_only_prior,
)


def _grid_of(path: str, g: int) -> np.ndarray:
    """Read the cell colours back from the PNG (the centre pixel of each cell)."""
    px = np.asarray(Image.open(path).convert("RGB"))
    cell = IMAGE_PX // g
    centres = px[cell // 2::cell, cell // 2::cell]
    match = (centres[:, :, None, :] == PALETTE[None, None, :, :]).all(-1)
    assert match.any(-1).all(), "every cell is a palette colour"
    return match.argmax(-1)


def _answer_from_image(domain: str, prompt: str, grid: np.ndarray) -> str:
    """An independent solver of each task from the decoded pixels."""
    g = grid.shape[0]
    if domain == "bars":
        heights = (grid != 0).sum(axis=0)
        assert np.sort(heights)[-1] > np.sort(heights)[-2], "the tallest bar is unique"
        for c in range(g):  # bars stand on the bottom row with no gaps
            assert (grid[g - heights[c]:, c] != 0).all()
        return str(int(heights.argmax()) + 1)
    if domain == "majority":
        a, b = prompt[4:-1].split(",")
        na, nb = (int((grid == COLOURS.index(c)).sum()) for c in (a, b))
        assert na != nb
        return a if na > nb else b
    if domain == "vcount":
        return str(int((grid == COLOURS.index(prompt[4:-1])).sum()))
    if domain == "cell":
        r, c = (int(v) - 1 for v in prompt[3:-1].split(","))
        return COLOURS[int(grid[r, c])]
    raise AssertionError(domain)


@pytest.mark.parametrize("domain", VISION_DOMAINS)
def test_rows_are_samples_whose_answers_the_image_gives(domain, tmp_path):
    t = generate_vision(domain, 60, tmp_path, seed=5)
    assert t.schema.equals(SAMPLE_SCHEMA)
    for row in t.to_pylist():
        (img,) = row["images"]
        data = open(img["path"], "rb").read()
        assert hashlib.sha256(data).hexdigest() == img["sha256"]
        assert row["id"] == sample_id(row["prompt"], row["answer"], [img["sha256"]])
        meta = json.loads(row["meta"])
        assert meta["grid"] == grid_side(meta["level"]) and 1 <= meta["level"] <= 4
        assert Image.open(img["path"]).size == (IMAGE_PX, IMAGE_PX)
        grid = _grid_of(img["path"], meta["grid"])
        assert _answer_from_image(domain, row["prompt"], grid) == row["answer"]
        # the usual verifier accepts the cold-start solution
        assert is_equivalent(extract_answer(row["solution"]), row["answer"], row["answer_type"])


def test_deterministic_and_content_addressed(tmp_path):
    a = generate_vision("cell", 30, tmp_path / "a", seed=2)
    b = generate_vision("cell", 30, tmp_path / "b", seed=2)
    c = generate_vision("cell", 30, tmp_path / "a", seed=3)
    assert a.drop_columns(["images"]).equals(b.drop_columns(["images"]))
    sha = lambda t: [im[0]["sha256"] for im in t.column("images").to_pylist()]  # noqa: E731
    assert sha(a) == sha(b) and sha(a) != sha(c)
    files = list((tmp_path / "a").iterdir())
    assert len(files) == len(set(sha(a)) | set(sha(c)))  # one file per distinct picture
    assert not [f for f in files if f.name.startswith(".")]  # no temp files left


def test_level_knob(tmp_path):
    for level in (1, 2, 3, 4):
        t = generate_vision("majority", 20, tmp_path, seed=0, level=level)
        metas = [json.loads(m) for m in t.column("meta").to_pylist()]
        assert {m["level"] for m in metas} == {level}
        assert {m["grid"] for m in metas} == {4 if level <= 2 else 8}
    easy = generate_vision("bars", 200, tmp_path, seed=0, max_level=2)
    assert {json.loads(m)["level"] for m in easy.column("meta").to_pylist()} == {1, 2}
    with pytest.raises(ValueError, match="level must be in 1..4"):
        generate_vision("bars", 2, tmp_path, level=5)
    with pytest.raises(ValueError, match="unknown visual domain 'pie'"):
        generate_vision("pie", 2, tmp_path)


def test_image_is_required(tmp_path):
    """An image-blind answerer is near chance: the prior every visual gain is measured against."""
    t = make_vision_suite(2000, tmp_path, seed=0)
    prior = text_only_prior(t)
    assert set(prior) == set(VISION_DOMAINS)
    assert prior["bars"] < 0.3 and prior["vcount"] < 0.2 and prior["cell"] < 0.5  # (few rows per position: an optimistic bound)
    assert prior["majority"] < 0.6  # two colours named in the prompt: a coin flip
    # the same prompt text has many different answers
    per_prompt = t.group_by(["domain", "prompt"]).aggregate([("answer", "count_distinct")])
    by_domain = {}
    for d, n in zip(per_prompt["domain"].to_pylist(), per_prompt["answer_count_distinct"].to_pylist(),
                    strict=True):
        by_domain[d] = max(by_domain.get(d, 0), n)
    assert by_domain == {"bars": 8, "majority": 2, "vcount": 10, "cell": 4}


def test_splits_disjoint_and_sized(tmp_path):
    train, held = make_vision_splits(120, 20, tmp_path, seed=1, shuffle=True)
    assert (train.num_rows, held.num_rows) == (120, 20)
    assert set(train.column("id").to_pylist()).isdisjoint(held.column("id").to_pylist())
    doms = held.column("domain").to_pylist()
    assert {d: doms.count(d) for d in VISION_DOMAINS} == {"bars": 5, "majority": 5, "vcount": 5,
                                                          "cell": 5}
    again, _ = make_vision_splits(120, 20, tmp_path, seed=1, shuffle=True)
    assert again.equals(train)
    only = pa.concat_tables([train, held]).column("domain").unique().to_pylist()
    assert set(only) == set(VISION_DOMAINS)


@pytest.mark.parametrize("style", ["systematic", "random"])
def test_fallible_teacher_changes_only_solutions(style, tmp_path):
    clean = make_vision_suite(400, tmp_path, domains=("majority", "vcount"), seed=0, max_level=2)
    noisy = make_vision_suite(400, tmp_path, domains=("majority", "vcount"), seed=0, max_level=2,
                              solution_noise=0.3, noise_style=style)
    for col in ("id", "prompt", "images", "answer"):  # the rows and images do not depend on the noise
        assert clean[col] == noisy[col]
    wrong = [extract_answer(s) != a for s, a in zip(noisy["solution"].to_pylist(),
                                                    noisy["answer"].to_pylist(), strict=True)]
    marked = [json.loads(m)["noisy"] for m in noisy["meta"].to_pylist()]
    assert wrong == marked and 0.22 < np.mean(wrong) < 0.38
    if style == "systematic":  # every wrong solution is the misconception's answer
        for r, bad in zip(noisy.to_pylist(), wrong, strict=True):
            if bad:
                grid = _grid_of(r["images"][0]["path"], json.loads(r["meta"])["grid"])
                expect = r["prompt"][4:-1].split(",")[0] if r["domain"] == "majority" else \
                    str(int((grid == COLOURS.index(r["prompt"][4:-1])).sum()) - 1)
                assert extract_answer(r["solution"]) == expect
