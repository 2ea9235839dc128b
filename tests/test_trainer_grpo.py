"""GRPO on a tiny model: updates, ignored constant groups, rollout log, exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from curate.rollout_log import ROLLOUT_SCHEMA
from curate.synthetic import make_suite
from trainer import GRPOConfig, GRPOTrainer, build_tiny_model, char_tokenizer, combine
from trainer.modeling import TinyModelSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


def odd_length_reward(prompts, completions, **_):
    """Varies within a group for a random model, so every group is informative."""
    return [float(len(c) % 2) for c in completions]


def constant_reward(prompts, completions, **_):
    return [1.0] * len(completions)


def _trainer(tmp_path, reward_fn, **cfg):
    tok = char_tokenizer()
    model = build_tiny_model(tok, SPEC, seed=0)
    data = make_suite(40, seed=0, max_level=1)
    config = GRPOConfig(**{"steps": 2, "prompts_per_step": 4, "group_size": 4,
                           "max_new_tokens": 6, "lr": 1e-2, "device": "cpu", **cfg})
    reward = combine({"correct": (reward_fn, 1.0)})
    return GRPOTrainer(model, tok, data, config, tmp_path / "run", reward=reward)


def test_one_step_changes_the_parameters_and_logs_every_response(tmp_path):
    tr = _trainer(tmp_path, odd_length_reward)
    before = [p.detach().clone() for p in tr.model.parameters()]
    m = tr.train_step()
    assert m.informative_ratio > 0
    changed = sum(not torch.equal(b, p) for b, p in zip(before, tr.model.parameters(), strict=True))
    assert changed > 0
    part = tmp_path / "run" / "rollouts" / "part-00000001-0000.parquet"
    table = pq.read_table(part)
    assert table.schema.equals(ROLLOUT_SCHEMA)
    assert table.num_rows == 4 * 4
    assert sorted(set(table.column("response_idx").to_pylist())) == [0, 1, 2, 3]
    assert set(table.column("group").to_pylist()) == {0, 1, 2, 3}
    assert table.column("step").to_pylist() == [1] * 16
    assert table.column("sampler").to_pylist()[0] == "thompson"
    assert table.column("p_estimate").null_count == 0
    # the statistics store saw every response
    assert int(sum(tr.stats.to_arrow().column("n_seen").to_pylist())) == 16


def test_constant_reward_groups_are_ignored_by_the_loss(tmp_path):
    tr = _trainer(tmp_path, constant_reward)
    before = [p.detach().clone() for p in tr.model.parameters()]
    m = tr.train_step()
    assert m.informative_ratio == 0
    assert m.loss == 0
    assert all(torch.equal(b, p) for b, p in zip(before, tr.model.parameters(), strict=True))
    adv = pq.read_table(tmp_path / "run" / "rollouts" / "part-00000001-0000.parquet").column("advantage")
    assert set(adv.to_pylist()) == {0.0}


def test_kl_and_inner_updates_run(tmp_path):
    tr = _trainer(tmp_path, odd_length_reward, beta=0.05, inner_updates=2, minibatches=2,
                  loss_agg="sequence", adv_scale="batch")
    m = tr.train_step()
    assert m.kl >= 0
    assert (tmp_path / "run" / "checkpoints" / "reference" / "config.json").exists()


CHILD = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_trainer_grpo import SPEC, odd_length_reward
    from curate.synthetic import make_suite
    from trainer import GRPOConfig, GRPOTrainer, build_tiny_model, char_tokenizer, combine
    tok = char_tokenizer()
    model = build_tiny_model(tok, SPEC, seed=0)
    cfg = GRPOConfig(steps=5, prompts_per_step=4, group_size=4, max_new_tokens=6, lr=1e-2,
                     save_every=2, device="cpu")
    GRPOTrainer(model, tok, make_suite(40, seed=0, max_level=1), cfg, sys.argv[1], run_id="t",
                reward=combine({{"correct": (odd_length_reward, 1.0)}})).train()
    """
)


def _run_child(script: Path, run_dir: Path, kill_at: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "THRESHER_KILL_AT"}
    if kill_at:
        env["THRESHER_KILL_AT"] = kill_at
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, str(script), str(run_dir)], env=env, cwd=REPO,
                          capture_output=True, timeout=300).returncode


def _log(run_dir: Path):
    table = pq.read_table(run_dir / "rollouts").drop_columns(["ts"])
    return table.sort_by([("step", "ascending"), ("group", "ascending"),
                          ("response_idx", "ascending")]).to_pylist()


@pytest.mark.parametrize("kill_at", ["after_log:3"])
def test_resume_after_kill_gives_the_same_log(tmp_path, kill_at):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(REPO / "tests")))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _run_child(script, straight, None) == 0
    # killed after step 3's log part is written but before its checkpoint (last one: step 2)
    assert _run_child(script, killed, kill_at) == -signal.SIGKILL
    steps_before = sorted({r["step"] for r in _log(killed)})
    assert steps_before == [1, 2, 3]
    assert _run_child(script, killed, None) == 0
    a, b = _log(straight), _log(killed)
    assert len(a) == 5 * 4 * 4
    assert a == b


def test_shared_prefix_sampler_matches_transformers_generate():
    from trainer.generation import generate, generate_groups

    tok = char_tokenizer()
    model = build_tiny_model(tok, SPEC, seed=1)
    prompts = ["add:1+2=", "max:13,4=", "srt:312="]
    torch.manual_seed(0)
    ours = generate_groups(model, tok, prompts, 2, 6, temperature=1e-5)  # ~argmax
    ref = generate(model, tok, [p for p in prompts for _ in range(2)], 6, do_sample=False)
    assert ours.texts == ref.texts
    assert torch.equal(ours.response_mask, ref.response_mask)
    sampled = generate_groups(model, tok, prompts, 4, 6, temperature=1.0)
    assert sampled.response_ids.shape[0] == 12 and len(set(sampled.texts)) > 1
