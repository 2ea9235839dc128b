"""`thresher run` and `thresher train` end to end on a tiny config (curation included)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines.cli import main

TINY = """
[run]
dir = "{run}"
seed = 0
device = "cpu"
threads = 1

[data]
domains = ["add", "cmp", "count", "sort"]
max_level = 1
n_rl = 120
n_sft = 60
n_eval = 20
solution_noise = 0.2

[model]
hidden_size = 32
num_layers = 1
num_heads = 2
intermediate_size = 64

[sft]
max_steps = 10
batch_size = 16
lr = 3e-3

[grpo]
steps = 3
prompts_per_step = 4
group_size = 4
max_new_tokens = 6
save_every = 2

[eval]
max_new_tokens = 6
k = 2
"""


def test_thresher_run_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(run=run))
    assert main(["run", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(run) in out and "read_parquet(" in out

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["grpo"]["steps"] == 3
    assert 0 <= manifest["eval"]["cold_start"] <= 1 and "gain" in manifest["eval"]
    # what the sampler bought: snapshots at steps 2 and 3, so step 3 is the one era compared
    sv = manifest["sampler"]
    assert sv["steps_compared"] == [3, 3] and sv["groups_compared"] == 4
    assert 0 <= sv["uniform_expected"] <= 1 and [e["snapshot_step"] for e in sv["uniform_eras"]] == [2, 3]
    # curated sets exist, went through curation, and are disjoint from the held-out split
    assert (run / "data" / "rl" / "manifest.json").exists()
    held = set(pq.read_table(run / "data" / "eval" / "eval.parquet").column("prompt").to_pylist())
    rl = {p for f in (run / "data" / "rl").glob("*.parquet")
          for p in pq.read_table(f, columns=["prompt"]).column("prompt").to_pylist()}
    assert held and rl and not held & rl
    # the pasted query works on the rollout log
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{run}/rollouts/*.parquet')").fetchall()[0][0]
    assert n == 3 * 4 * 4
    assert (run / "checkpoints" / "sft" / "final" / "config.json").exists()
    assert len(list((run / "stats").glob("stats-*.parquet"))) >= 2
    modes = set(pq.read_table(run / "eval" / "grpo.parquet").column("mode").to_pylist())
    assert modes == {"greedy", "sampled"}
    assert "[grpo]" in (run / "config.toml").read_text()

    # a second run resumes: nothing retrained, same log
    assert main(["run", str(cfg), "--no-progress"]) == 0
    again = duckdb.sql(f"SELECT count(*) FROM read_parquet('{run}/rollouts/*.parquet')").fetchall()[0][0]
    assert again == n


def test_unknown_config_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(TINY.format(run=tmp_path / "r").replace("group_size = 4", "group_sise = 4"))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "grpo.group_sise: unknown key" in err and str(cfg) in err


def test_thresher_train_on_files(tmp_path):
    from curate.io import write_parquet_atomic
    from curate.synthetic import make_splits

    train, held = make_splits(80, 10, domains=("cmp",), seed=0, max_level=1)
    write_parquet_atomic(train, tmp_path / "train.parquet")
    write_parquet_atomic(held, tmp_path / "eval.parquet")
    cfg = tmp_path / "train.toml"
    cfg.write_text(f"""
[run]
dir = "{tmp_path / 'run'}"
device = "cpu"
[data]
sft = "{tmp_path / 'train.parquet'}"
rl = "{tmp_path / 'train.parquet'}"
eval = "{tmp_path / 'eval.parquet'}"
[model]
hidden_size = 32
num_layers = 1
num_heads = 2
intermediate_size = 64
[sft]
max_steps = 5
[grpo]
steps = 2
prompts_per_step = 2
group_size = 2
max_new_tokens = 4
""")
    assert main(["train", str(cfg), "--no-progress"]) == 0
    manifest = json.loads((Path(tmp_path) / "run" / "manifest.json").read_text())
    assert manifest["grpo"]["steps"] == 2 and 0 <= manifest["eval_accuracy"] <= 1
