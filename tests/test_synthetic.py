"""The synthetic verifiable task suite: schema, determinism, difficulty knob, splits."""

from __future__ import annotations

import json

import pytest

from curate.schema import SAMPLE_SCHEMA, sample_id
from curate.synthetic import DOMAINS, generate, make_splits, make_suite


@pytest.mark.parametrize("domain", DOMAINS)
def test_rows_are_samples_with_checkable_answers(domain):
    t = generate(domain, 50, seed=3)
    assert t.schema.equals(SAMPLE_SCHEMA)
    for row in t.to_pylist():
        assert row["id"] == sample_id(row["prompt"], row["answer"])
        assert row["solution"] == "\\boxed{" + row["answer"] + "}"
        assert 1 <= json.loads(row["meta"])["level"] <= 4
        assert row["domain"] == domain


def test_answers_are_correct():
    rows = {d: generate(d, 30, seed=1).to_pylist() for d in DOMAINS}
    for r in rows["add"]:
        a, b = r["prompt"][4:-1].split("+")
        assert int(r["answer"]) == int(a) + int(b)
    for r in rows["radd"]:
        a, b = r["prompt"][4:-1].split("+")
        assert r["answer"] == str(int(a) + int(b))[::-1]
    for r in rows["mul"]:
        a, b = r["prompt"][4:-1].split("*")
        assert int(r["answer"]) == int(a) * int(b)
    for r in rows["cmp"]:
        a, b = r["prompt"][4:-1].split(",")
        assert int(r["answer"]) == max(int(a), int(b))
    for r in rows["count"]:
        _, letter, s = r["prompt"][:-1].split(":")
        assert int(r["answer"]) == s.count(letter)
    for r in rows["sort"]:
        assert r["answer"] == "".join(sorted(r["prompt"][4:-1]))


def test_seeded_and_level_controls_difficulty():
    assert generate("mul", 20, seed=5).equals(generate("mul", 20, seed=5))
    assert not generate("mul", 20, seed=5).equals(generate("mul", 20, seed=6))
    easy = generate("add", 100, seed=0, level=1).column("prompt").to_pylist()
    hard = generate("add", 100, seed=0, level=4).column("prompt").to_pylist()
    assert max(len(p) for p in easy) < min(len(p) for p in hard)
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        generate("poetry", 3)


def test_splits_are_disjoint_and_balanced():
    train, held = make_splits(300, 60, domains=("add", "cmp", "count"), seed=0)
    assert train.num_rows == 300 and held.num_rows == 60
    assert not set(train.column("id").to_pylist()) & set(held.column("id").to_pylist())
    assert sorted(held.column("domain").to_pylist()).count("cmp") == 20
    assert len(set(train.column("id").to_pylist())) == train.num_rows


def test_suite_weights_shift_the_mix():
    t = make_suite(400, domains=("add", "radd"), weights=(3, 1), seed=0)
    doms = t.column("domain").to_pylist()
    assert doms.count("add") > 2 * doms.count("radd") > 0
    with pytest.raises(ValueError, match="weights"):
        make_suite(10, domains=("add",), weights=(1, 2))


def test_shuffle_keeps_rows_and_mixes_domains():
    plain, _ = make_splits(200, 20, domains=("add", "cmp"), seed=0)
    mixed, _ = make_splits(200, 20, domains=("add", "cmp"), seed=0, shuffle=True)
    assert sorted(plain.column("id").to_pylist()) == sorted(mixed.column("id").to_pylist())
    assert set(mixed.slice(0, 40).column("domain").to_pylist()) == {"add", "cmp"}
