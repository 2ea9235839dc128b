"""read_rollouts: every format on a small real-format fixture, and bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.importers import (
    RolloutImportError,
    RolloutImportWarning,
    detect_format,
    import_info,
    read_rollouts,
)
from curate.rollout_log import ROLLOUT_SCHEMA, RolloutWriter
from curate.schema import sample_id

FIX = Path(__file__).parent / "fixtures" / "logs"
MATH_COT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "Qwen2.5-Math" / "math_cot_100.jsonl"


def quiet_read(*args, **kw) -> pa.Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RolloutImportWarning)
        return read_rollouts(*args, **kw)


def schema_ok(t: pa.Table) -> None:
    assert t.schema.remove_metadata() == ROLLOUT_SCHEMA
    for name in ("run_id", "step", "sample_id", "response_idx", "prompt", "response", "reward"):
        assert t.column(name).null_count == 0, name


@pytest.mark.parametrize("path,fmt", [
    (FIX / "trl", "trl"), (FIX / "trl" / "completions", "trl"), (FIX / "verl", "verl"),
    (FIX / "open_instruct", "open_instruct"), (FIX / "plain.jsonl", "jsonl"),
    (FIX / "math_eval_3.jsonl", "math_eval"),
])
def test_detect_format(path, fmt):
    assert detect_format(path) == fmt


def test_trl_completions_parquet():
    with pytest.warns(RolloutImportWarning, match="no stable prompt id"):
        t = read_rollouts(FIX / "trl", "trl")
    schema_ok(t)
    df = pl.from_arrow(t)
    assert df.height == 12 and df["step"].unique().sort().to_list() == [1, 2]
    # total reward = sum of the reward functions (TRL's default weights of 1)
    assert df["reward"].sort().unique().to_list() == [0.5, 1.5]
    # correctness comes from the accuracy reward function, not from the total
    assert df.filter(pl.col("reward") == 0.5)["correct"].to_list() == [False] * 4
    assert df["sample_id"].n_unique() == 3
    assert set(df["sample_id"]) == {sample_id(q) for q in ("What is 2+3?", "What is 7*6?", "What is 10-4?")}
    info = import_info(t)
    assert info["derived_sample_id"] is True and info["reward_columns"] == ["accuracy_reward", "format_reward"]
    # groups: one per prompt per step, responses numbered within it
    g = df.group_by("step", "group").agg(pl.col("sample_id").n_unique(), pl.col("response_idx").sort())
    assert g["sample_id"].to_list() == [1] * 6 and all(r == [0, 1] for r in g["response_idx"].to_list())


def test_trl_conversational_prompt_id_from_user_turns(tmp_path):
    d = tmp_path / "completions"
    d.mkdir()
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
    pd.DataFrame({"step": [3, 3], "prompt": [prompt, prompt],
                  "completion": [[{"role": "assistant", "content": "5"}], [{"role": "assistant", "content": "6"}]],
                  "accuracy_reward": [1.0, 0.0], "advantage": [0.5, -0.5]}).to_parquet(d / "completions_00003.parquet")
    df = pl.from_arrow(quiet_read(tmp_path, "trl"))
    assert df["sample_id"].unique().to_list() == [sample_id("What is 2+3?")]
    assert json.loads(df["prompt"][0])[0]["role"] == "system"  # the prompt is kept losslessly
    assert df["response"].to_list() == ["5", "6"] and df["correct"].to_list() == [True, False]


def test_verl_rollout_data_dir():
    t = quiet_read(FIX / "verl")
    schema_ok(t)
    df = pl.from_arrow(t)
    assert df.height == 12 and df["step"].unique().sort().to_list() == [1, 2]
    # correctness from verl's `acc` extra, ids from the prompt text and its ground truth
    src = [json.loads(x) for f in ("1.jsonl", "2.jsonl") for x in (FIX / "verl" / f).read_text().splitlines()]
    assert df["correct"].to_list() == [r["acc"] for r in src]
    assert df["sample_id"].to_list() == [sample_id(r["input"], r["gts"]) for r in src]
    assert import_info(t)["derived_sample_id"] is True


def test_open_instruct_token_ids_and_tokenizer():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = read_rollouts(FIX / "open_instruct")
    messages = [str(w.message) for w in caught if issubclass(w.category, RolloutImportWarning)]
    assert any("token ids only" in m for m in messages) and any("no stable prompt id" in m for m in messages)
    schema_ok(t)
    df = pl.from_arrow(t)
    assert df.height == 8 and df["domain"].unique().to_list() == ["gsm8k"]
    assert df["prompt_tokens"].to_list()[:2] == [4, 4] and df["response_tokens"].min() == 2
    # the "length" finish reason marks a response that is not well formed
    assert df["format_ok"].to_list().count(False) == 1
    assert df["correct"].to_list() == (df["reward"] >= 0.5).to_list()
    assert import_info(t)["token_ids_as_text"] is True

    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(96 + (i % 26)) for i in ids)

    df2 = pl.from_arrow(quiet_read(FIX / "open_instruct", tokenizer=Tok()))
    assert df2["prompt"][0] == Tok().decode([101, 7, 8, 9])
    assert df2["sample_id"].n_unique() == 2


def test_plain_jsonl_and_explicit_ids(tmp_path):
    df = pl.from_arrow(quiet_read(FIX / "plain.jsonl"))
    assert df.height == 6 and df["correct"].sum() == 3
    p = tmp_path / "with_ids.jsonl"
    p.write_text("".join(json.dumps({"id": "q1", "prompt": "x", "response": r, "reward": w, "step": 4}) + "\n"
                         for r, w in (("a", 1), ("b", 0))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RolloutImportWarning)  # an id column: no derivation warning
        t = read_rollouts(p)
    assert pl.from_arrow(t)["sample_id"].to_list() == ["q1", "q1"]
    assert import_info(t)["derived_sample_id"] is False


def test_math_eval_fixture_and_full_file():
    t = quiet_read(FIX / "math_eval_3.jsonl")
    schema_ok(t)
    recs = [json.loads(x) for x in (FIX / "math_eval_3.jsonl").read_text().splitlines()]
    df = pl.from_arrow(t)
    assert df["correct"].to_list() == [s for r in recs for s in r["score"]]
    assert df["reward"].to_list() == [s[0] for r in recs for s in r["pred_score"]]
    assert df["sample_id"].unique(maintain_order=True).to_list() == [sample_id(r["question"], r["gt"]) for r in recs]
    if not MATH_COT.exists():
        pytest.skip(f"{MATH_COT} absent (the shared data folder is not here)")
    full = pl.from_arrow(quiet_read(MATH_COT))
    lines = [json.loads(x) for x in MATH_COT.read_text().splitlines()]
    assert full.height == 800 and full["sample_id"].n_unique() == 100
    assert full["correct"].sum() == sum(sum(r["score"]) for r in lines)


def test_thresher_run_and_truncated_part(tmp_path):
    w = RolloutWriter(tmp_path, "r1")
    for step in range(3):
        w.write({"step": [step] * 2, "sample_id": ["a", "b"], "response_idx": [0, 0], "prompt": ["p", "q"],
                 "response": ["x", "y"], "reward": [1.0, 0.0]})
    part = w.part_path(1)
    part.write_bytes(part.read_bytes()[:50])  # a torn part
    with pytest.warns(RolloutImportWarning, match=part.name):
        t = read_rollouts(tmp_path)
    assert t.num_rows == 4 and sorted(set(t.column("step").to_pylist())) == [0, 2]
    assert import_info(t)["skipped"][0]["file"].endswith(part.name)
    for step in (0, 2):
        w.part_path(step).write_bytes(b"PAR1 nope")
    with pytest.raises(RolloutImportError, match="no readable part"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_rollouts(tmp_path)


def test_missing_column_names_file_and_column(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps({"prompt": "x", "response": "y"}) + "\n")
    with pytest.raises(RolloutImportError, match=r"log\.jsonl: missing column 'reward'"):
        read_rollouts(p, "jsonl")
    d = tmp_path / "run" / "rollouts"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"step": [0], "sample_id": ["a"], "response_idx": [0], "prompt": ["p"],
                             "response": ["r"], "run_id": ["x"]}), d / "part-00000000-0000.parquet")
    with pytest.raises(RolloutImportError, match=r"part-00000000-0000\.parquet: missing column 'reward'"):
        read_rollouts(tmp_path / "run", "thresher")


def test_wrong_type_names_file_line_and_column(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text("".join(json.dumps({"prompt": "x", "response": "y", "reward": r}) + "\n" for r in (1.0, "high")))
    with pytest.raises(RolloutImportError, match=r"log\.jsonl:2: column 'reward': expected double"):
        read_rollouts(p)
    d = tmp_path / "run" / "rollouts"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"step": [0], "sample_id": ["a"], "response_idx": [0], "prompt": ["p"],
                             "response": ["r"], "run_id": ["x"], "reward": ["very good"]}),
                   d / "part-00000000-0000.parquet")
    with pytest.raises(RolloutImportError, match=r"part-00000000-0000\.parquet: column 'reward': expected double"):
        read_rollouts(tmp_path / "run")


def test_torn_jsonl_line_is_quarantined_not_lost(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text(json.dumps({"prompt": "x", "response": "y", "reward": 1}) + "\n" + '{"prompt": "x", "resp\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = read_rollouts(p)
    assert any("log.jsonl:2: skipped a line" in str(w.message) for w in caught)
    assert t.num_rows == 1 and import_info(t)["bad_lines"][0]["line"] == 2


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(RolloutImportError, match="unknown format"):
        read_rollouts(FIX / "plain.jsonl", "wandb")
    with pytest.raises(RolloutImportError, match="no such file"):
        read_rollouts(tmp_path / "nope.jsonl", "jsonl")


def test_glob_of_run_folders(tmp_path):
    for run in ("r1", "r2"):
        RolloutWriter(tmp_path / run, run).write({"step": [0], "sample_id": ["a"], "response_idx": [0],
                                                  "prompt": ["p"], "response": ["x"], "reward": [1.0]})
    t = read_rollouts(str(tmp_path / "r*"), "thresher")
    assert sorted(t.column("run_id").to_pylist()) == ["r1", "r2"]
