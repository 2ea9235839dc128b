"""pipelines.curation: spec validation, the runner's outputs, bad input end to end,
byte-identical reruns, and the `thresher curate` command."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.schema import SAMPLE_SCHEMA
from pipelines.cli import main
from pipelines.curation import read_curated, run_curation
from pipelines.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"
SHARED = ROOT.parent / "shared" / "data"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _filters_spec(paths: list[str], preset: str = "gsm8k", **extra) -> dict:
    return {"name": "t", "sources": [{"path": p, "preset": preset} for p in paths],
            "stages": [{"stage": "unverifiable"}, {"stage": "length_bounds", "min_prompt_chars": 10},
                       {"stage": "charset"}, {"stage": "valid_images"},
                       {"stage": "valid_choices"}], **extra}


def _check_balance(m: dict) -> None:
    assert m["balanced"]
    assert m["rows_in"] == m["records_in"] == m["rows_out"] + m["dropped"] + m["quarantined"]
    rows = m["rows_ingested"]
    for st in m["stages"]:
        assert st["rows_in"] == rows and st["rows_out"] + sum(st["dropped"].values()) == rows
        rows = st["rows_out"]
    assert rows == m["rows_out"]


def test_bad_input_is_quarantined_and_the_rest_is_processed(tmp_path):
    """The issue's must-show: each bad input names file, line, column and what was
    expected; the rest is processed; the manifest balances."""
    train = _jsonl(DATA / "gsm8k" / "train.jsonl")[:20]
    bad = _write_jsonl(tmp_path / "gsm8k.jsonl", [
        *train[:10],
        '{"question": "Tom has", "answer": ',            # line 11: malformed JSON
        {"answer": "#### 4"},                             # line 12: missing required column
        {"question": ["not", "text"], "answer": "#### 1"},  # line 13: value of the wrong type
        *train[10:],
    ])
    (tmp_path / "empty.jsonl").write_text("")             # an empty file
    img_dir = tmp_path / "mv"
    img_dir.mkdir()
    mv_rows = _jsonl(DATA / "mathv" / "testmini.jsonl")[:3]
    for r in mv_rows[:2]:
        (img_dir / "images").mkdir(exist_ok=True)
        (img_dir / r["image"]).write_bytes((DATA / "mathv" / r["image"]).read_bytes())
    mv = _write_jsonl(img_dir / "mv.jsonl", mv_rows)     # line 3: its image file is missing
    spec = _filters_spec([str(bad), str(tmp_path / "empty.jsonl")])
    spec["sources"].append({"path": str(mv), "preset": "mathv"})
    m = run_curation(spec, tmp_path / "out", progress=False)

    _check_balance(m)
    assert m["quarantined"] == 5 and m["rows_ingested"] == 22
    q = pl.read_parquet(tmp_path / "out" / "audit" / "quarantine.parquet")
    got = {(Path(f).name, line, col) for f, line, col in q.select("file", "line", "column").iter_rows()}
    assert got == {("gsm8k.jsonl", 11, None), ("gsm8k.jsonl", 12, "question"),
                   ("gsm8k.jsonl", 13, "question"), ("empty.jsonl", 0, None),
                   ("mv.jsonl", 3, "image")}
    errors = dict(zip(q["line"].to_list(), q["error"].to_list(), strict=True))
    assert "invalid JSON" in errors[11] and "expected" in errors[11]
    assert "missing required column 'question'" in errors[12]
    assert "expected a string, got list" in errors[13]
    assert "image file not found" in errors[3]
    assert "empty file" in errors[0]
    assert m["quarantine"]["by_column"] == {"(row)": 2, "image": 1, "question": 2}
    out = read_curated(tmp_path / "out")
    assert out.schema == SAMPLE_SCHEMA and out.num_rows == m["rows_out"] == 22


def test_outputs_layout_manifest_and_dropped_rows(tmp_path):
    rows = _jsonl(DATA / "gsm8k" / "train.jsonl")[:30]
    rows[3] = rows[3] | {"question": "short?"}            # dropped by length_bounds
    rows[4] = rows[4] | {"question": "Сколько будет два плюс два, спросил учитель?"}  # charset
    src = _write_jsonl(tmp_path / "in.jsonl", rows)
    spec = _filters_spec([str(src)], output={"shard_rows": 7, "compression": "zstd"})
    out = tmp_path / "out"
    m = run_curation(spec, out, progress=False)
    _check_balance(m)
    assert m["rows_out"] == 28
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-{k:05d}.parquet" for k in range(4)]
    assert [s["rows"] for s in m["output"]["shards"]] == [7, 7, 7, 7]
    dropped = pl.read_parquet(out / "audit" / "dropped.parquet")
    assert sorted(zip(dropped["stage"], dropped["drop_reason"], strict=True)) == [
        ("charset", "wrong_script"), ("length_bounds", "prompt_too_short")]
    by_stage = {s["stage"]: s for s in m["stages"]}
    assert by_stage["length_bounds"]["dropped"] == {"prompt_too_short": 1}
    assert by_stage["length_bounds"]["params"] == {"min_prompt_chars": 10}
    assert all(s["seconds"] >= 0 for s in m["stages"])
    assert json.loads((out / "manifest.json").read_text())["content_hash"] == m["content_hash"]
    assert json.loads((out / "spec.json").read_text())["name"] == "t"
    # a rerun with bigger shards leaves no stale shard behind
    spec["output"] = {"shard_rows": 100}
    run_curation(spec, out, progress=False)
    assert [p.name for p in out.glob("*.parquet")] == ["part-00000.parquet"]
    assert not list(out.rglob("*.tmp"))


def test_same_spec_and_inputs_give_byte_identical_outputs(tmp_path):
    spec = _filters_spec([str(DATA / "gsm8k" / "train.jsonl"), str(DATA / "gsm8k" / "test.jsonl")],
                         output={"shard_rows": 500})
    a = run_curation(spec, tmp_path / "a", progress=False)
    b = run_curation(spec, tmp_path / "b", progress=False)
    assert a["content_hash"] == b["content_hash"]
    assert a["output"]["dropped"]["sha256"] == b["output"]["dropped"]["sha256"]
    for name in ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
                 "audit/quarantine.parquet", "audit/dropped.parquet", "spec.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # and the hash follows the content: one changed input row changes it
    rows = _jsonl(DATA / "gsm8k" / "test.jsonl")
    rows[0]["question"] += " Explain."
    changed = _write_jsonl(tmp_path / "test.jsonl", rows)
    spec["sources"][1]["path"] = str(changed)
    assert run_curation(spec, tmp_path / "c", progress=False)["content_hash"] != a["content_hash"]


@pytest.mark.parametrize("patch, needle", [
    ({"sorces": []}, "unknown key 'sorces'"),
    ({"sources": [{"path": "x.jsonl", "preset": "gsm8k", "colour": 1}]}, "unknown key 'sources.0.colour'"),
    ({"sources": [{"path": "x.jsonl", "preset": "gsm9k"}]}, "sources.0.preset: Input should be 'gsm8k'"),
    ({"sources": [{"path": "x.jsonl"}]}, "give `preset`"),
    ({"sources": []}, "sources: List should have at least 1 item"),
    ({"stages": [{"stage": "dedupe"}]}, "unknown stage 'dedupe': expected one of"),
    ({"stages": [{"stage": "length_bounds", "max_chars": 5}]},
     "stages[0] (length_bounds): unknown key 'max_chars': allowed keys are min_prompt_chars"),
    ({"stages": [{"stage": "length_bounds", "max_prompt_chars": "lots"}]},
     "stages[0] (length_bounds).max_prompt_chars: Input should be a valid integer"),
    ({"output": {"shard_rows": 0}}, "output.shard_rows: Input should be greater than 0"),
    ({"output": {"compression": "lzma"}}, "output.compression: Input should be 'zstd'"),
])
def test_spec_errors_name_the_key_and_what_is_allowed(patch, needle):
    spec = {"sources": [{"path": "x.jsonl", "preset": "gsm8k"}]} | patch
    with pytest.raises(ValueError) as exc:
        load_spec(spec)
    assert needle in str(exc.value)


def test_toml_spec_paths_are_relative_to_the_spec_file(tmp_path):
    (tmp_path / "d").mkdir()
    _write_jsonl(tmp_path / "d" / "in.jsonl", _jsonl(DATA / "gsm8k" / "test.jsonl")[:5])
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "rel"\ninputs = [{path = "d/in.jsonl", preset = "gsm8k"}]\n'
                    '[[stages]]\nstage = "unverifiable"\n')
    m = run_curation(spec, tmp_path / "out", progress=False)
    assert m["rows_out"] == 5 and m["inputs"][0]["files"] == [str(tmp_path / "d" / "in.jsonl")]
    spec.write_text('name = "x"\n[[sources]]\npath = "d/in.jsonl"\npreset = "gsm8k"\ntypo = 1\n')
    with pytest.raises(ValueError, match=r"spec.toml: unknown key 'sources.0.typo'"):
        load_spec(spec)
    spec.write_text("name = ")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_spec(spec)


def test_cli_curate_runs_and_reports_user_errors(tmp_path, capsys):
    _write_jsonl(tmp_path / "in.jsonl", _jsonl(DATA / "gsm8k" / "test.jsonl")[:8])
    spec = tmp_path / "s.toml"
    spec.write_text('[[sources]]\npath = "in.jsonl"\npreset = "gsm8k"\n[[stages]]\nstage = "charset"\n')
    assert main(["curate", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "8 rows" in capsys.readouterr().out
    assert pq.read_metadata(tmp_path / "o" / "part-00000.parquet").num_rows == 8
    spec.write_text('[[sources]]\npath = "in.jsonl"\npreset = "gsm8k"\nbogus = true\n')
    assert main(["curate", str(spec), "--out", str(tmp_path / "o2")]) == 2
    assert "unknown key 'sources.0.bogus'" in capsys.readouterr().err
    spec.write_text('[[sources]]\npath = "missing/*.jsonl"\npreset = "gsm8k"\n')
    assert main(["curate", str(spec), "--out", str(tmp_path / "o3")]) == 2
    assert "missing/*.jsonl" in capsys.readouterr().err


# ------------------------------------------------------- with dedup + decontamination

def test_example_spec_dedups_and_decontaminates_planted_rows(tmp_path):
    """examples/curate_math.toml's recipe, with planted duplicates and leaks."""
    train = _jsonl(DATA / "gsm8k" / "train.jsonl")[:200]
    test = _jsonl(DATA / "gsm8k" / "test.jsonl")
    planted = [
        train[5],                                                         # exact duplicate
        train[6] | {"question": train[6]["question"].replace(".", " .", 1)
                    .replace("How", "how", 1) + " "},                     # near duplicate
        test[7],                                                          # a test item leaked in
    ]
    src = _write_jsonl(tmp_path / "train.jsonl", train + planted)
    spec = load_spec(EXAMPLES / "curate_math.toml").model_dump(mode="json")
    spec["sources"] = [{"path": str(src), "preset": "gsm8k"}]
    m = run_curation(spec, tmp_path / "out", progress=False)
    _check_balance(m)
    by_stage = {s["stage"]: sum(s["dropped"].values()) for s in m["stages"]}
    assert by_stage["dedup_exact"] >= 1
    assert by_stage["dedup_exact"] + by_stage["dedup_near"] == 2
    assert by_stage["decontaminate"] >= 1
    out = read_curated(tmp_path / "out")
    prompts = out.column("prompt").to_pylist()
    assert test[7]["question"] not in prompts
    assert prompts.count(train[5]["question"]) == 1
    # distinct problems are not merged: every original train row survives
    assert m["rows_out"] == 200 - sum(by_stage[k] for k in ("unverifiable", "length_bounds", "charset"))


def test_example_spec_runs_on_the_shipped_data(tmp_path):
    m = run_curation(EXAMPLES / "curate_math.toml", tmp_path / "out", progress=False)
    _check_balance(m)
    assert m["records_in"] == 1500
    decon = next(s for s in m["stages"] if s["stage"] == "decontaminate")
    # 63 of the shipped MATH rows are MATH-500 problems
    assert sum(decon["dropped"].values()) >= 63
    assert m["eval_sets"] == {"gsm8k-test": 300, "math-500": 500}


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not present")
def test_shared_spec_on_the_real_sets(tmp_path):
    m = run_curation(EXAMPLES / "curate_shared.toml", tmp_path / "out", progress=False)
    _check_balance(m)
    assert m["records_in"] == 7473 + 5000 + 304 and m["quarantined"] == 0
    decon = next(s for s in m["stages"] if s["stage"] == "decontaminate")
    assert sum(decon["dropped"].values()) >= 490  # MATH-500 is a subset of MATH test
    out = read_curated(tmp_path / "out")
    assert set(out.column("source").to_pylist()) == {"gsm8k", "math", "mathv"}
    assert sum(len(x) > 0 for x in out.column("images").to_pylist()) > 250


def test_decontaminate_against_names_and_paths_and_disabled_stages(tmp_path):
    train = _jsonl(DATA / "gsm8k" / "train.jsonl")[:40]
    test = _jsonl(DATA / "gsm8k" / "test.jsonl")[:40]
    src = _write_jsonl(tmp_path / "train.jsonl", train + test[:3])       # 3 leaked test items
    held = _write_jsonl(tmp_path / "held.jsonl", test)
    base = {"sources": [{"path": str(src), "preset": "gsm8k"}],
            "eval_sets": [{"name": "other", "path": str(DATA / "math" / "math500.jsonl"),
                           "preset": "math"}]}
    by_path = run_curation(base | {"stages": [
        {"stage": "length_bounds", "enabled": False, "min_prompt_chars": 10_000},
        {"stage": "decontaminate", "against": [str(held)]}]}, tmp_path / "a", progress=False)
    assert [s["stage"] for s in by_path["stages"]] == ["decontaminate"]
    assert by_path["rows_out"] == 40 and by_path["eval_sets"] == {str(held): 40}
    by_name = run_curation(base | {"stages": [{"stage": "decontaminate", "against": ["other"]}]},
                           tmp_path / "b", progress=False)
    assert by_name["rows_out"] == 43 and by_name["eval_sets"] == {"other": 500}
