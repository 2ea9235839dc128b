"""Fill mode (DAPO dynamic sampling): exactly B informative groups per update, every rollout
logged and counted, the store sees every group, the round cap, exact resume."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import torch
from test_trainer_grpo import _log, _run_child  # the tests folder is on sys.path

from curate.synthetic import make_suite
from pipelines.query import connect, run_named
from trainer import GRPOConfig, GRPOTrainer, build_tiny_model, char_tokenizer, combine
from trainer.modeling import TinyModelSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
G = 4


def some_prompts_informative(prompts, completions, sample_id, **_):
    """About a third of the prompts get mixed rewards (k % 2 within the group), the rest all 1."""
    return [float(k % 2) if sum(map(ord, sid)) % 3 == 0 else 1.0
            for k, sid in enumerate(sample_id)]


def constant_reward(prompts, completions, **_):
    return [1.0] * len(completions)


def _trainer(run_dir, reward_fn, **cfg):
    tok = char_tokenizer()
    model = build_tiny_model(tok, SPEC, seed=0)
    config = GRPOConfig(**{"steps": 2, "prompts_per_step": 3, "group_size": G, "max_new_tokens": 4,
                           "lr": 1e-2, "device": "cpu", "fill": True, "sampler": "uniform", **cfg})
    return GRPOTrainer(model, tok, make_suite(60, seed=0, max_level=1), config, run_dir,
                       reward=combine({"correct": (reward_fn, 1.0)}), run_id="t")


def test_fill_mode_updates_on_exactly_b_informative_groups_and_logs_every_rollout(tmp_path):
    tr = _trainer(tmp_path / "run", some_prompts_informative)
    history = tr.train()
    log = pq.read_table(tmp_path / "run" / "rollouts").to_pylist()
    for m in history:
        assert m.extra["kept_groups"] == 3
        assert m.extra["rounds"] >= 1 and m.extra["fill_short"] == 0
        rows = [r for r in log if r["step"] == m.step]
        assert len(rows) == m.extra["rollouts"] == G * m.extra["groups"]
        kept = [r for r in rows if r["kept"]]
        assert len(kept) == 3 * G
        assert all(r["advantage"] != 0 for r in kept)  # only informative groups are kept
        groups = {r["group"] for r in rows}
        assert groups == set(range(int(m.extra["groups"])))  # group index unique in the step
        # no prompt twice in one step, although it took several rounds
        ids = [r["sample_id"] for r in rows if r["response_idx"] == 0]
        assert len(ids) == len(set(ids))
    # the store saw every rollout, kept or not
    assert int(sum(tr.stats.to_arrow().column("n_seen").to_pylist())) == len(log)
    # the DuckDB cost query reproduces the counts
    cost = run_named(connect(tmp_path / "run"), "rollout_cost").fetchall()[0]
    assert cost[2] == len(log)
    assert cost[5] == 3 * len(history)


def test_fill_mode_stops_at_the_round_cap_without_signal(tmp_path):
    tr = _trainer(tmp_path / "run", constant_reward, steps=1, fill_max_rounds=3)
    before = [p.detach().clone() for p in tr.model.parameters()]
    m = tr.train_step()
    assert m.extra["rounds"] == 3 and m.extra["fill_short"] == 1 and m.extra["kept_groups"] == 0
    assert m.loss == 0
    assert all(torch.equal(b, p) for b, p in zip(before, tr.model.parameters(), strict=True))
    log = pq.read_table(tmp_path / "run" / "rollouts")
    assert log.num_rows == m.extra["rollouts"]
    assert not any(log.column("kept").to_pylist())
    assert len(list((tmp_path / "run" / "rollouts").glob("part-00000001-*.parquet"))) == 3


def test_fill_mode_stops_when_the_pool_is_drawn_dry_in_one_step(tmp_path):
    # 58 distinct prompts, rounds of 6 then at most 4 x 3 = 12: six rounds take every prompt,
    # and the seventh has none left to ask for (it used to ask for one and fail on an empty
    # batch)
    tr = _trainer(tmp_path / "run", constant_reward, steps=1, fill_max_rounds=8)
    m = tr.train_step()
    assert m.extra["rounds"] == 6 and m.extra["fill_short"] == 1 and m.extra["kept_groups"] == 0
    log = pq.read_table(tmp_path / "run" / "rollouts")
    ids = [r["sample_id"] for r in log.to_pylist() if r["response_idx"] == 0]
    assert len(ids) == len(set(ids)) == len(tr.stats) == 58  # every prompt once


def test_fill_mode_with_the_shared_store_trains_and_resumes_identically(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(f"""
        import sys
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from test_trainer_fill import _trainer, some_prompts_informative
        _trainer(sys.argv[1], some_prompts_informative, steps=4, save_every=2, sampler="thompson",
                 store_args={{"share": True, "group_keys": ["level"], "decay_unit": "visits"}},
                 ).train()
    """))

    assert _run_child(child, tmp_path / "a", None) == 0
    assert _run_child(child, tmp_path / "b", "after_log:3") == -signal.SIGKILL
    assert _run_child(child, tmp_path / "b", None) == 0
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert sum(r["kept"] for r in a) == 4 * 3 * G
    assert a == b


def test_importance_weights_scale_kept_advantages_to_mean_one():
    from types import SimpleNamespace

    from trainer.grpo import _importance_scale

    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])  # two groups of two
    a = SimpleNamespace(weight=[4.0, 1.0], keep=torch.tensor([True, True]), adv=adv.clone())
    b = SimpleNamespace(weight=[5.0], keep=torch.tensor([False]), adv=torch.tensor([1.0, -1.0]))
    _importance_scale([a, b], g=2)
    # kept weights 4 and 1 -> mean 2.5; the dropped group's weight does not count
    torch.testing.assert_close(a.adv, torch.tensor([1.6, -1.6, 0.4, -0.4]))
    plain = SimpleNamespace(weight=[1.0, 1.0], keep=torch.tensor([True, False]), adv=adv.clone())
    _importance_scale([plain], g=2)
    assert torch.equal(plain.adv, adv)


def test_fill_mode_with_a_thinning_sampler_logs_the_weighted_advantages(tmp_path):
    tr = _trainer(tmp_path / "run", some_prompts_informative, steps=3,
                  sampler_args={"thin_floor": 0.2, "importance": True},
                  store_args={"share": True, "group_keys": ["level"]})
    history = tr.train()
    log = pq.read_table(tmp_path / "run" / "rollouts").to_pylist()
    for m in history:
        kept = [r for r in log if r["step"] == m.step and r["kept"]]
        assert len(kept) == 3 * G
        # raw advantages are +-sqrt(3)/2 here (rewards 0, 1, 0, 1; unbiased std), and the
        # weights average 1 per update
        assert abs(sum(abs(r["advantage"]) for r in kept) / len(kept) - 3 ** 0.5 / 2) < 1e-5
    # after the first step the store has seen flat prompts, and thinning weighs them up
    later = {round(abs(r["advantage"]), 4) for r in log if r["step"] > 1 and r["kept"]}
    assert len(later) > 1
