"""curate.ingest: formats, presets, quarantine of bad rows, ids."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.ingest import expand_paths, guess_preset, read_samples
from curate.schema import SAMPLE_SCHEMA, sample_id

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"
SHARED = ROOT.parent / "shared" / "data"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_preset_on_shipped_rows():
    res = read_samples(EXAMPLES / "gsm8k" / "train.jsonl", "gsm8k")
    raw = _jsonl(EXAMPLES / "gsm8k" / "train.jsonl")
    t = res.samples
    assert t.schema == SAMPLE_SCHEMA and t.num_rows == len(raw) == 1000
    assert res.quarantine.num_rows == 0 and res.records == 1000
    row = t.slice(0, 1).to_pylist()[0]
    assert row["prompt"] == raw[0]["question"]
    assert row["answer"] == "72" and row["solution"] == raw[0]["answer"]
    assert row["answer_type"] == "numeric" and row["domain"] == "math" and row["source"] == "gsm8k"
    assert row["id"] == sample_id(raw[0]["question"], "72")
    assert len(set(t.column("id").to_pylist())) == t.num_rows


def test_math_preset_boxed_answers_domains_and_levels():
    res = read_samples(EXAMPLES / "math" / "test.jsonl", "math")
    rows = res.samples.to_pylist()
    assert len(rows) == 500 and res.quarantine.num_rows == 0
    first = rows[0]
    assert first["answer"] == "2" and first["domain"] == "algebra"
    assert json.loads(first["meta"])["level"] == 3
    domains = {r["domain"] for r in rows}
    assert "intermediate_algebra" in domains and "counting_probability" in domains
    # nested braces survive: some answer is a fraction of a root, etc.
    assert any(r["answer"].startswith("\\frac{") and r["answer"].count("{") >= 2 for r in rows)
    assert {r["answer_type"] for r in rows} >= {"numeric", "expression"}


def test_mathv_preset_images_options_and_choices():
    path = EXAMPLES / "mathv" / "testmini.jsonl"
    raw = {r["id"]: r for r in _jsonl(path)}
    res = read_samples(path, "mathv")
    rows = res.samples.to_pylist()
    assert len(rows) == len(raw) and res.quarantine.num_rows == 0
    for row in rows:
        meta = json.loads(row["meta"])
        src = raw[meta["id"]]
        (img,) = row["images"]
        assert Path(img["path"]) == (path.parent / src["image"]).resolve() or \
            Path(img["path"]).resolve() == (path.parent / src["image"]).resolve()
        assert img["sha256"] == hashlib.sha256(Path(img["path"]).read_bytes()).hexdigest()
        assert row["id"] == sample_id(row["prompt"], row["answer"], [img["sha256"]])
        if src["options"]:
            assert meta["options"] == src["options"] and row["answer_type"] == "choice"
            assert row["task"] == "choice" and row["prompt"].startswith(src["question"])
            assert len(row["prompt"]) > len(src["question"])  # the options are in the prompt


def test_sample_preset_keeps_synthetic_ids(tmp_path):
    from curate.synthetic import make_splits

    train, _ = make_splits(n_train=40, n_eval=4, seed=0)
    pq.write_table(train, tmp_path / "s.parquet")
    res = read_samples(tmp_path / "s.parquet", "sample")
    assert res.samples.column("id").to_pylist() == train.column("id").to_pylist()
    assert res.samples.column("answer").to_pylist() == train.column("answer").to_pylist()
    assert res.samples.column("domain").to_pylist() == train.column("domain").to_pylist()
    assert guess_preset(tmp_path / "s.parquet") == "sample"


def test_all_formats_give_the_same_samples(tmp_path):
    rows = _jsonl(EXAMPLES / "gsm8k" / "test.jsonl")[:50]
    _write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "b.json").write_text(json.dumps(rows))
    with open(tmp_path / "c.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["question", "answer"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    tables = [read_samples(tmp_path / f, "gsm8k").samples for f in
              ("a.jsonl", "b.json", "c.csv", "d.parquet")]
    assert all(t.num_rows == 50 for t in tables)
    assert all(t.equals(tables[0]) for t in tables[1:])
    # folders and globs expand to the same sorted files
    both = read_samples([tmp_path / "*.jsonl", tmp_path / "b.json"], "gsm8k")
    assert both.samples.num_rows == 100
    assert [Path(p).name for p in expand_paths(tmp_path)] == ["a.jsonl", "b.json", "c.csv", "d.parquet"]
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        read_samples(tmp_path / "nothing.jsonl", "gsm8k")


def test_explicit_mapping_and_preset_override(tmp_path):
    _write_jsonl(tmp_path / "q.jsonl", [{"q": "What is 6*7?", "a": 42, "topic": "Arithmetic"}])
    res = read_samples(tmp_path / "q.jsonl", mapping={"prompt": "q", "answer": "a", "domain": "topic",
                                                      "slug_domain": True, "meta": ["topic"]})
    row = res.samples.to_pylist()[0]
    assert (row["answer"], row["answer_type"], row["domain"]) == ("42", "numeric", "arithmetic")
    assert json.loads(row["meta"]) == {"topic": "Arithmetic"}
    res2 = read_samples(tmp_path / "q.jsonl", "gsm8k", mapping={"prompt": "q", "answer": "a",
                                                                 "answer_from": "value", "solution": None})
    assert res2.samples.column("answer").to_pylist() == ["42"]
    with pytest.raises(ValueError, match="unknown preset 'gsm9k'"):
        read_samples(tmp_path / "q.jsonl", "gsm9k")


def test_bad_rows_are_quarantined_with_file_line_column_and_expectation(tmp_path):
    good = {"question": "Tom has 3 apples and buys 2. How many?", "answer": "3+2=5\n#### 5"}
    f = _write_jsonl(tmp_path / "bad.jsonl", [
        good,
        '{"question": "broken", "answer": ',                       # line 2: malformed JSON
        {"answer": "#### 3"},                                       # line 3: missing column
        {"question": 17, "answer": "#### 3"},                       # line 4: wrong type
        {"question": "No marker here", "answer": "it is 4"},        # line 5: no '####'
        '[1, 2]',                                                   # line 6: not an object
        good | {"question": "Same but different"},                  # line 7: fine
    ])
    (tmp_path / "empty.jsonl").write_text("")
    res = read_samples([f, tmp_path / "empty.jsonl"], "gsm8k")
    assert res.samples.num_rows == 2
    assert res.records == 8 == res.samples.num_rows + res.quarantine.num_rows
    q = {(r["line"], r["column"]): r for r in res.quarantine.to_pylist()}
    assert "invalid JSON" in q[(2, None)]["error"] and "expected" in q[(2, None)]["error"]
    assert "missing required column 'question'" in q[(3, "question")]["error"]
    assert "expected a string, got int" in q[(4, "question")]["error"]
    assert "'####'" in q[(5, "answer")]["error"]
    assert "expected a JSON object" in q[(6, None)]["error"]
    empty = q[(0, None)]
    assert empty["file"].endswith("empty.jsonl") and "empty file" in empty["error"]
    msgs = res.errors()
    assert any(m.startswith(f"{f}:4: column 'question': expected a string") for m in msgs)
    assert all(r["file"] for r in res.quarantine.to_pylist())


def test_missing_image_and_bad_difficulty_are_quarantined(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ok.png").write_bytes(b"\x89PNG fake but present")
    f = _write_jsonl(tmp_path / "mv.jsonl", [
        {"question": "Which?", "options": ["1", "2"], "answer": "A", "image": "img/ok.png"},
        {"question": "Which?", "options": [], "answer": "3", "image": "img/gone.png"},
    ])
    res = read_samples(f, "mathv")
    assert res.samples.num_rows == 1
    (q,) = res.quarantine.to_pylist()
    assert (q["line"], q["column"]) == (2, "image")
    assert "image file not found" in q["error"] and "gone.png" in q["error"]
    g = _write_jsonl(tmp_path / "s.jsonl", [{"prompt": "p", "answer": "1", "difficulty": 3.0}])
    (q2,) = read_samples(g, "sample").quarantine.to_pylist()
    assert q2["column"] == "difficulty" and "expected a number in [0, 1]" in q2["error"]


def test_csv_row_with_wrong_field_count_names_its_line(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text('question,answer\n"What is 1+1?","#### 2"\n"only one field"\n"2+2?","#### 4"\n')
    res = read_samples(p, "gsm8k")
    assert res.samples.num_rows == 2
    (q,) = res.quarantine.to_pylist()
    assert q["line"] == 3 and "expected 2 fields" in q["error"]


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not present")
def test_full_shared_sets_ingest_cleanly():
    expected = {("grade-school-math/train.jsonl", "gsm8k"): 7473,
                ("grade-school-math/test.jsonl", "gsm8k"): 1319,
                ("math-evaluation-harness/math_test.jsonl", "math"): 5000,
                ("MATH-V/testmini.jsonl", "mathv"): 304}
    for (rel, preset), n in expected.items():
        res = read_samples(SHARED / rel, preset)
        assert (res.samples.num_rows, res.quarantine.num_rows) == (n, 0), rel
    # MATH-V test ships without its images: every row is quarantined, none lost
    res = read_samples(SHARED / "MATH-V" / "test.jsonl", "mathv")
    assert res.samples.num_rows + res.quarantine.num_rows == res.records == 3040
    assert set(res.quarantine.column("column").to_pylist()) == {"image"}


def test_limit_and_bad_meta_in_sample_rows(tmp_path):
    f = _write_jsonl(tmp_path / "s.jsonl", [
        {"prompt": "a?", "answer": "1", "meta": "{not json"},
        {"prompt": "b?", "answer": "2", "meta": '{"k": 1}'},
        {"prompt": "c?", "answer": "3"},
    ])
    res = read_samples(f, "sample", limit=2)
    assert res.records == 2 and res.samples.column("prompt").to_pylist() == ["b?"]
    (q,) = res.quarantine.to_pylist()
    assert (q["line"], q["column"]) == (1, "meta") and "expected a JSON object" in q["error"]
    assert json.loads(res.samples.column("meta")[0].as_py()) == {"k": 1}


def test_a_bad_utf8_line_costs_one_row(tmp_path):
    good = json.dumps({"question": "What is 3+4?", "answer": "#### 7"}).encode()
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(good + b"\n" + b'{"question": "caf\xe9", "answer": "#### 1"}\n' + good + b"\n")
    res = read_samples(p, "gsm8k")
    assert res.samples.num_rows == 2
    (q,) = res.quarantine.to_pylist()
    assert q["line"] == 2 and "not valid UTF-8" in q["error"]


def test_quarantine_keeps_the_raw_record(tmp_path):
    """Nothing lost: a bad line keeps its text (bad bytes escaped), so it can be fixed and re-ingested."""
    good = b'{"question": "1+1?", "answer": "#### 2"}\n'
    p = tmp_path / "in.jsonl"
    p.write_bytes(good + b'{"question": "torn\n' + b'[1, 2]\n' + b'{"question": "caf\xe9?", "answer": "#### 1"}\n')
    res = read_samples(p, "gsm8k")
    q = {r["line"]: r for r in res.quarantine.to_pylist()}
    assert res.samples.num_rows == 1 and sorted(q) == [2, 3, 4]
    assert q[2]["raw"] == '{"question": "torn' and "invalid JSON" in q[2]["error"]
    assert q[3]["raw"] == "[1, 2]" and "expected a JSON object" in q[3]["error"]
    assert q[4]["raw"] == '{"question": "caf\\xe9?", "answer": "#### 1"}' and "UTF-8" in q[4]["error"]
