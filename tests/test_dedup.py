"""Exact, near-duplicate and image dedup on real GSM8K rows with planted duplicates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.dedup import dedup_exact, dedup_images, dedup_near, hamming_pairs, lsh_index, lsh_params
from curate.minhash import (
    minhash_signatures,
    permutations,
    shingle_hashes,
    signatures_from_shingles,
    token_hashes,
)
from curate.schema import sample_id

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GSM8K_TRAIN = SHARED / "grade-school-math" / "train.jsonl"
MATHV_IMAGES = SHARED / "MATH-V" / "images"

needs_gsm8k = pytest.mark.skipif(not GSM8K_TRAIN.exists(), reason="../shared/data (GSM8K) is absent")


def _frame(questions: list[str], answers: list[str] | None = None) -> pl.DataFrame:
    answers = answers or [""] * len(questions)
    return pl.DataFrame({
        "id": [sample_id(q, a) for q, a in zip(questions, answers, strict=True)],
        "prompt": questions,
        "answer": answers,
    })


@pytest.fixture(scope="module")
def gsm8k() -> pl.DataFrame:
    if not GSM8K_TRAIN.exists():
        pytest.skip("../shared/data (GSM8K) is absent")
    rows = pl.read_ndjson(GSM8K_TRAIN).head(400)
    return _frame(rows["question"].to_list(), rows["answer"].to_list())


def _edit(text: str, kind: int) -> str:
    """A small edit of the kinds people make when they copy a problem."""
    words = text.split(" ")
    if kind == 0:  # drop one word in the middle
        del words[len(words) // 2]
    elif kind == 1:  # insert a filler word
        words.insert(len(words) // 3, "then")
    elif kind == 2:  # casing and punctuation spacing
        return text.replace(".", " .", 1).replace("How", "how", 1) + " "
    else:  # one word changed
        words[len(words) // 2] = "several"
    return " ".join(words)


# ------------------------------------------------------------------ exact


@needs_gsm8k
def test_exact_finds_planted_copies_and_keeps_smallest_id(gsm8k):
    src = gsm8k.head(200)
    copies = src[[3, 50, 51, 120]]
    planted = pl.concat([
        copies.with_columns(pl.col("prompt").str.to_uppercase() + "  "),  # case + whitespace
        copies.head(1).with_columns(pl.col("prompt").str.replace_all(" ", "\n")),
    ])
    planted = planted.with_columns(pl.concat_str([pl.col("id"), pl.lit("-copy")]).alias("id"))
    df = pl.concat([planted, src])  # copies first: the representative must not depend on order
    out = dedup_exact(df)
    assert out.drops_by_reason() == {"exact_duplicate": 5}
    assert out.kept.height == 200
    # the smallest id of each cluster is kept, whatever the row order
    assert sorted(out.kept["id"].to_list()) == sorted(src["id"].to_list())
    assert set(out.dropped["duplicate_of"].to_list()) == set(copies["id"].to_list())
    clusters = out.info["clusters"]
    assert clusters.columns == ["id", "cluster_id"] and clusters.height == 9
    assert out.info["n_clusters"] == 4


def test_exact_respects_images():
    img = lambda sha: [{"path": f"{sha}.png", "sha256": sha}]  # noqa: E731
    df = pl.DataFrame({
        "id": ["a", "b", "c", "d"],
        "prompt": ["Which shape?", "which shape?", "Which shape?", "Which shape?"],
        "images": [img("x"), img("x"), img("y"), [{"path": "p", "sha256": "y"}]],
    })
    out = dedup_exact(df)
    assert out.kept["id"].to_list() == ["a", "c"]
    assert dict(zip(out.dropped["id"], out.dropped["duplicate_of"], strict=True)) == {"b": "a", "d": "c"}


def test_exact_errors_name_the_missing_column():
    with pytest.raises(ValueError, match="missing column.*'question'"):
        dedup_exact(pl.DataFrame({"id": ["a"], "prompt": ["x"]}), text_col="question")


# ------------------------------------------------------------------ near


@needs_gsm8k
def test_near_finds_small_edits_and_does_not_merge_distinct_problems(gsm8k):
    src = gsm8k
    targets = list(range(0, 400, 25))  # 16 rows, four kinds of edit each
    edited = [_edit(src["prompt"][t], k % 4) for k, t in enumerate(targets)]
    planted = _frame(edited)
    df = pl.concat([src, planted]).sample(fraction=1.0, shuffle=True, seed=7)
    # GSM8K questions are ~45 words: one edited word moves 5 of ~40 five-word shingles
    # (Jaccard ~0.78), so short prompts use 3-word shingles (Jaccard ~0.87 for one edit)
    for x, t in zip(edited, targets, strict=True):
        sx, sy = _python_shingles(x, 3), _python_shingles(src["prompt"][t], 3)
        assert len(sx & sy) / len(sx | sy) >= 0.8
    out = dedup_near(df, shingle_size=3)
    assert out.drops_by_reason() == {"near_duplicate": len(targets)}
    clusters = out.info["clusters"]
    # every planted row shares a cluster with its source, and nothing else is merged
    cid = dict(zip(clusters["id"], clusters["cluster_id"], strict=True))
    for t, pid in zip(targets, planted["id"], strict=True):
        assert cid[src["id"][t]] == cid[pid]
    assert clusters.height == 2 * len(targets) and out.info["n_clusters"] == len(targets)
    assert out.kept.height == src.height
    assert out.dropped["similarity"].min() >= 0.8
    assert out.info["pairs_checked"] >= out.info["pairs_confirmed"] == len(targets)


@needs_gsm8k
def test_near_is_order_independent_and_deterministic(gsm8k):
    head = gsm8k.head(100)
    long_rows = [i for i, q in enumerate(head["prompt"]) if len(q.split()) >= 30][:5]
    df = pl.concat([head, _frame([_edit(head["prompt"][i], 0) for i in long_rows])])
    a = dedup_near(df, shingle_size=3)
    b = dedup_near(df.reverse(), shingle_size=3)
    assert sorted(a.kept["id"].to_list()) == sorted(b.kept["id"].to_list())
    assert a.dropped.height == 5


def test_near_threshold_and_shingle_size_are_honoured():
    base = "Tom has 12 marbles and gives 5 of them to his sister, then buys 3 more at the store"
    df = _frame([base, base.replace("sister", "brother")])
    # true 5-shingle Jaccard 0.5: MinHash estimates it within ~0.045 (one standard error),
    # so a threshold well under it merges the pair and one well over it does not
    assert dedup_near(df, threshold=0.3).dropped.height == 1
    assert dedup_near(df, threshold=0.95).dropped.height == 0
    # with 1-shingles one changed word out of 18 barely moves the Jaccard similarity
    assert dedup_near(df, shingle_size=1, threshold=0.85).dropped.height == 1


def test_empty_texts_are_not_near_duplicates():
    df = _frame(["", "  ", "...", "A real problem about seven apples and two pears"])
    out = dedup_near(df)
    assert out.dropped.height == 0 and out.info["rows_without_tokens"] == 3


def _signatures_with_shared_bands(n: int = 400, num_perm: int = 64, seed: int = 0) -> np.ndarray:
    """Random signatures where many rows copy some bands of another row (multi-key buckets)."""
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 2**32, size=(n, num_perm), dtype=np.uint32)
    for i in range(1, n, 2):
        src = int(rng.integers(0, i))
        cols = rng.random(num_perm) < 0.7
        sig[i, cols] = sig[src, cols]
    sig[:5] = sig[5]  # one bucket of six in every band
    return sig


def _reference_index(sig: np.ndarray, rows: np.ndarray, params: tuple[int, int], seed: int = 1):
    from datasketch import LeanMinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.8, num_perm=sig.shape[1], params=params)
    with lsh.insertion_session() as session:
        for i in rows.tolist():
            session.insert(i, LeanMinHash(seed=seed, hashvalues=sig[i], scheme="affine32"))
    return lsh


def _same_index(a, b) -> bool:
    return (all(dict(x._dict) == dict(y._dict) for x, y in zip(a.hashtables, b.hashtables, strict=True))
            and dict(a.keys._dict) == dict(b.keys._dict))


def test_lsh_index_is_the_index_datasketch_builds_and_answers_its_queries():
    from datasketch import LeanMinHash

    sig = _signatures_with_shared_bands()
    rows = np.arange(3, len(sig))  # rows 0-2 stay out of the index
    params = lsh_params(0.8, sig.shape[1])
    lsh, buckets = lsh_index(sig, rows, threshold=0.8, params=params)
    ref = _reference_index(sig, rows, params)
    assert _same_index(lsh, ref) and lsh._minhash_scheme == ref._minhash_scheme == "affine32"
    # the buckets returned are exactly the index's buckets with two or more keys
    for band, table in zip(buckets, ref.hashtables, strict=True):
        assert sorted(map(sorted, band)) == sorted(sorted(v) for v in table._dict.values() if len(v) > 1)
    assert any(len(b) == 3 for band in buckets for b in band)  # rows 3-5
    for i in range(len(sig)):
        m = LeanMinHash(seed=1, hashvalues=sig[i], scheme="affine32")
        assert sorted(lsh.query(m)) == sorted(ref.query(m))


def test_lsh_index_falls_back_to_public_inserts_for_other_storage(monkeypatch):
    import curate.dedup

    monkeypatch.setattr(curate.dedup, "_plain_dict", lambda storage: None)
    sig = _signatures_with_shared_bands(n=120)
    rows = np.arange(len(sig))
    params = lsh_params(0.8, sig.shape[1])
    lsh, _ = lsh_index(sig, rows, threshold=0.8, params=params)
    monkeypatch.undo()
    assert _same_index(lsh, _reference_index(sig, rows, params))


def test_near_clusters_a_bucket_larger_than_the_pair_limit():
    text = "A farmer has 17 cows and 23 sheep and sells a third of all the animals at the market on Monday"
    df = _frame([text] * 100 + ["Weng earns 12 an hour for babysitting and worked 50 minutes yesterday"])
    df = df.with_columns(pl.Series("id", [f"r{i:03d}" for i in range(df.height)]))
    out = dedup_near(df)
    assert out.kept["id"].to_list() == ["r000", "r100"]
    assert out.dropped.height == 99 and set(out.dropped["duplicate_of"]) == {"r000"}


# ------------------------------------------------------------------ signatures


def _python_shingles(text: str, k: int) -> set[str]:
    # the tokenizer of curate.minhash: runs of ASCII word characters or non-ASCII characters
    toks = re.findall(r"[0-9a-z_\u0080-\U0010ffff]+", text.lower())
    if len(toks) < k:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i : i + k]) for i in range(len(toks) - k + 1)}


@needs_gsm8k
def test_signatures_estimate_true_jaccard(gsm8k):
    texts = gsm8k["prompt"].to_list()[:40]
    pairs = [(t, _edit(t, k % 4)) for k, t in enumerate(texts)] + list(zip(texts, texts[1:], strict=False))
    sig = minhash_signatures([x for p in pairs for x in p], num_perm=256, shingle_size=3)
    for n, (x, y) in enumerate(pairs):
        sx, sy = _python_shingles(x, 3), _python_shingles(y, 3)
        true = len(sx & sy) / len(sx | sy)
        est = float((sig[2 * n] == sig[2 * n + 1]).mean())
        assert abs(est - true) < 0.15, (x, y, true, est)


def test_signatures_match_datasketch_bit_for_bit():
    from datasketch import MinHash

    texts = ["Natalia sold clips to 48 of her friends", "héllo wörld — 12 € each", "x", ""]
    sh = shingle_hashes(texts, 2)
    sig = signatures_from_shingles(sh, num_perm=64, seed=3)
    for i in range(len(texts)):
        m = MinHash(num_perm=64, seed=3, hashfunc=lambda h: h)
        for h in sh.hashes[sh.offsets[i] : sh.offsets[i + 1]].tolist():
            m.update(h)
        assert np.array_equal(m.hashvalues, sig[i])
    assert np.array_equal(MinHash(64, seed=3).permutations, np.array(permutations(64, 3)))


def test_tokens_never_span_documents_and_batches_agree():
    h_split, off = token_hashes(["ab", "cd"])
    h_joined, _ = token_hashes(["abcd"])
    assert off.tolist() == [0, 1, 2] and h_joined[0] not in h_split
    texts = [f"problem {i}: a farmer has {i} cows and {i + 3} sheep" for i in range(50)]
    whole = minhash_signatures(texts, num_perm=32)
    assert np.array_equal(whole, minhash_signatures(texts, num_perm=32, batch_size=7))


def test_token_hashes_equal_exactly_when_tokens_are_equal():
    rng = np.random.default_rng(3)
    pieces = ["a", "b", "ab", "x" * 8, "x" * 9, "x" * 16, "x" * 17, "y" * 40, "y" * 41, "é", "東京",
              "12", "_", "x" * 7 + "é", "Ab"]
    texts = [" ".join(rng.choice(pieces, size=int(rng.integers(0, 12)))) + rng.choice(["", ".", " ?"])
             for _ in range(300)]
    texts += ["x" * 9 + "-" + "x" * 9, "abcdefgh.abcdefgi", "abcdefghijklmnopq abcdefghijklmnopr"]
    h, off = token_hashes(texts)
    toks = [t for text in texts for t in re.findall(r"[0-9a-z_\u0080-\U0010ffff]+", text.lower())]
    assert len(toks) == len(h) and off[-1] == len(h)
    by_token: dict[str, int] = {}
    for t, v in zip(toks, h.tolist(), strict=True):
        assert by_token.setdefault(t, v) == v  # the same token always hashes alike
    assert len(set(by_token.values())) == len(by_token)  # distinct tokens never collide here


def test_signatures_are_the_same_in_another_process():
    texts = ["Weng earns $12 an hour for babysitting.", "Betty is saving money for a new wallet."]
    code = ("import json,sys; from curate.minhash import minhash_signatures as m;"
            f"print(json.dumps(m({texts!r}, num_perm=16).tolist()))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env=env)
    assert json.loads(out.stdout) == minhash_signatures(texts, num_perm=16).tolist()


# ------------------------------------------------------------------ images


def test_hamming_pairs_finds_all_pairs_within_distance():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = h ^ np.uint64(0b10110)  # 3 bits away
    allh = np.concatenate([h, flips])
    got = {tuple(p) for p in hamming_pairs(allh, 3).tolist()}
    brute = {(i, j) for i in range(600) for j in range(i + 1, 600)
             if bin(int(allh[i]) ^ int(allh[j])).count("1") <= 3}
    assert got == brute and len(got) >= 300


@pytest.mark.skipif(not MATHV_IMAGES.exists(), reason="../shared/data/MATH-V images are absent")
def test_images_near_duplicates_are_found(tmp_path):
    from PIL import Image

    originals = sorted(MATHV_IMAGES.iterdir())[:6]
    # a re-encoded, resized copy of the first image
    copy = tmp_path / "copy.jpg"
    with Image.open(originals[0]) as im:
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(copy, quality=80)
    paths = [str(p) for p in originals] + [str(copy), str(originals[1]), str(tmp_path / "missing.png")]
    prompts = [f"Question {i}" for i in range(6)] + ["Question 0", "A different question", "Question 9"]
    df = pl.DataFrame({
        "id": [f"r{i}" for i in range(len(paths))],
        "prompt": prompts,
        "images": [[{"path": p, "sha256": f"sha-{i}"}] for i, p in enumerate(paths)],
    })
    out = dedup_images(df)
    assert out.dropped["id"].to_list() == ["r6"] and out.dropped["duplicate_of"].to_list() == ["r0"]
    assert out.drops_by_reason() == {"near_duplicate_image": 1}
    assert out.info["images_unreadable"] == 1
    # the same figure under a different question is another problem, unless text is ignored
    loose = dedup_images(df, text_col=None)
    assert sorted(loose.dropped["id"].to_list()) == ["r6", "r7"]


# MATH test has these (the audit of the shared-data curation found 8 merged): one
# template, different words, different answers; 5-gram Jaccard right at 0.8
_TEMPLATE = "Determine the number of ways to arrange the letters of the word {}."


def test_near_keeps_templated_items_whose_answers_differ():
    words = ["ALABAMA", "COMBINATION", "PARABOLA", "ELLIPSE"]
    answers = ["210", "4989600", "6720", "1260"]
    df = _frame([_TEMPLATE.format(w) for w in words], answers)
    merged = dedup_near(df, shingle_size=1, threshold=0.7, answer_col=None)
    assert merged.dropped.height == 3  # text alone: one cluster of four
    out = dedup_near(df, shingle_size=1, threshold=0.7)
    assert out.dropped.height == 0 and out.info["clusters_split_by_answer"] == 1
    assert out.info["n_clusters"] == 0


def test_near_merges_when_answers_agree_after_normalization_or_are_missing():
    base = "Tom has 1200 marbles and gives 500 of them to his sister and his brother, how many are left"
    prompts = [base, base + " ?", base.replace("Tom", "Tom then"), "Weng earns 12 an hour"]
    df = _frame(prompts, ["700", "700.00", "", "12"])
    out = dedup_near(df, shingle_size=1, threshold=0.7)
    assert out.dropped.height == 2 and out.info["clusters_split_by_answer"] == 0
    kept = set(out.kept["id"])
    assert len(kept & set(df["id"][:3])) == 1 and df["id"][3] in kept
    # a different answer in the same cluster is split off; the unanswered row stays
    # with the smallest-id answered row
    df2 = _frame(prompts, ["700", "701", "", "12"])
    out2 = dedup_near(df2, shingle_size=1, threshold=0.7)
    assert out2.dropped.height == 1 and out2.info["clusters_split_by_answer"] == 1
    pair = sorted([min(df2["id"][:2]), df2["id"][2]])
    assert out2.dropped["id"].to_list() == [pair[1]]
    assert out2.dropped["duplicate_of"].to_list() == [pair[0]]


def _with_images(prompts: list[str], images: list[list[tuple[str, str | None]]]) -> pl.DataFrame:
    img = pl.Struct({"path": pl.Utf8, "sha256": pl.Utf8})
    return pl.DataFrame(
        {"id": [f"r{i}" for i in range(len(prompts))], "prompt": prompts,
         "images": [[{"path": p, "sha256": h} for p, h in row] for row in images]},
        schema={"id": pl.Utf8, "prompt": pl.Utf8, "images": pl.List(img)},
    )


def test_near_keeps_the_same_question_over_different_figures():
    q = "How many triangles can you count in the figure shown above, including the small ones?"
    df = _with_images([q, q + " ", q.replace("shown above", "above")],
                      [[("a.png", "aa")], [("b.png", "bb")], [("c.png", "aa")]])
    out = dedup_near(df, shingle_size=1, threshold=0.7)
    # r0 and r2 share the figure (same sha256): one problem; r1 has another figure
    assert out.dropped["id"].to_list() == ["r2"] and out.dropped["duplicate_of"].to_list() == ["r0"]
    assert out.info["clusters_split_by_images"] == 1


def test_unhashed_images_count_by_path():
    q = "Which shape comes next in the sequence?"
    df = _with_images([q, q, q], [[("a.png", None)], [("b.png", None)], [("a.png", None)]])
    assert dedup_exact(df).dropped["id"].to_list() == ["r2"]
    assert dedup_near(df, shingle_size=1).dropped["id"].to_list() == ["r2"]
