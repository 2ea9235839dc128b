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


def test_random_noise_is_near_misses_on_a_share_of_rows():
    t = generate("add", 2000, seed=2, max_level=2, solution_noise=0.3)
    assert t.equals(generate("add", 2000, seed=2, max_level=2, solution_noise=0.3,
                             noise_style="random"))
    wrong = [r for r in t.to_pylist() if r["solution"] != "\\boxed{" + r["answer"] + "}"]
    assert 0.26 < len(wrong) / t.num_rows < 0.34
    for r in wrong:  # one digit nudged
        got = r["solution"][len("\\boxed{"):-1]
        assert len(got) == len(r["answer"])
        assert sum(a != b for a, b in zip(got, r["answer"], strict=True)) == 1
        assert json.loads(r["meta"])["noisy"]


def test_teacher_bugs():
    from curate.synthetic import teacher_bug

    assert teacher_bug("add", "add:89+7=") == "86"        # forgets the carry
    assert teacher_bug("add", "add:6+8=") == "4"
    assert teacher_bug("add", "add:12+30=") == "42"       # no carry: right
    assert teacher_bug("radd", "rad:89+7=") == "68"
    assert teacher_bug("mul", "mul:47*8=") == "326"       # 7*8=56: writes 6, drops the 5
    assert teacher_bug("mul", "mul:12*3=") == "36"
    assert teacher_bug("cmp", "max:9,31=") == "9"         # string comparison
    assert teacher_bug("cmp", "max:31,29=") == "31"
    assert teacher_bug("count", "cnt:a:abca=") == "1"     # skips the first letter
    assert teacher_bug("count", "cnt:b:abcb=") == "2"
    assert teacher_bug("sort", "srt:3142=") == "1342"     # the last digit stays put
    assert teacher_bug("sort", "srt:3124=") == "1234"


@pytest.mark.parametrize("domain", ["add", "mul", "cmp", "count", "sort"])
def test_systematic_noise_makes_the_teachers_mistake_the_mode(domain):
    from curate.synthetic import teacher_bug

    t = generate(domain, 3000, seed=4, max_level=2, solution_noise=0.35, noise_style="systematic")
    rows = t.to_pylist()
    right = ["\\boxed{" + r["answer"] + "}" for r in rows]
    wrong = [r["solution"] != ok for r, ok in zip(rows, right, strict=True)]
    # the teacher is as often wrong as the random one ...
    assert 0.31 < sum(wrong) / len(rows) < 0.39
    assert wrong == [json.loads(r["meta"])["noisy"] for r in rows]
    # ... but on the problems its misconception touches it is wrong most of the time,
    # and always in the same way
    touched = [r for r in rows if teacher_bug(domain, r["prompt"]) != r["answer"]]
    assert len(touched) > 0.15 * len(rows)
    bugged = [r["solution"] == "\\boxed{" + teacher_bug(domain, r["prompt"]) + "}" for r in touched]
    assert sum(bugged) / len(touched) > 0.6
    # the answers the verifier checks are never noisy
    assert all(r["solution"] == ok for r, ok in zip(rows, right, strict=True)
               if not json.loads(r["meta"])["noisy"])


def test_noise_style_is_checked_and_splits_pass_it_to_train_only():
    with pytest.raises(ValueError, match="noise_style"):
        generate("add", 3, solution_noise=0.3, noise_style="sloppy")
    train, held = make_splits(400, 50, seed=0, max_level=2, solution_noise=0.35,
                              noise_style="systematic")
    assert not any(json.loads(m)["noisy"] for m in held.column("meta").to_pylist())
    assert any(json.loads(m)["noisy"] for m in train.column("meta").to_pylist())
