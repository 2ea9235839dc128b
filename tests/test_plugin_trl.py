"""ThresherGRPOTrainer: a real trl.GRPOTrainer on a tiny config-built model, on CPU."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_DISABLED", "true")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from sampling import SampleStats, ThompsonSampler  # noqa: E402
from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer  # noqa: E402
from trainer.plugins.trl import make_trainer_class  # noqa: E402

IDS = ["easy", "p1", "p2", "p3", "p4", "p5"]
G = 4  # completions per prompt
B = 2  # prompts per generation batch


def _reward(completions, sample_id, **kwargs):
    # "easy" is always solved; the others are solved by half of each group.
    return [1.0 if sid == "easy" else float(i % 2) for i, sid in enumerate(sample_id)]


def _trainer(tmp_path, run_name, max_steps, save_steps=None, difficulty=None):
    """A ThresherGRPOTrainer (Thompson) on a tiny model; rollouts go to tmp_path/run_name."""
    tok = char_tokenizer()
    model = build_tiny_model(tok, TinyModelSpec(hidden_size=32, num_layers=2, num_heads=2,
                                                intermediate_size=64, max_positions=64))
    train = datasets.Dataset.from_dict({"prompt": [f"{i}: 1+1=" for i in IDS], "sample_id": IDS})
    cols = {"id": IDS, **({"difficulty": difficulty} if difficulty else {})}
    stats = SampleStats.from_samples(pa.table(cols))
    sampler = ThompsonSampler(stats, group_size=G, seed=0)
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=B * G, num_generations=G,
        max_completion_length=4, max_steps=max_steps, learning_rate=1e-4, logging_steps=100,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
        report_to=[], use_cpu=True, seed=0, bf16=False, dataloader_num_workers=0,
    )
    return make_trainer_class()(model=model, reward_funcs=_reward, args=args, train_dataset=train,
                                processing_class=tok, sampler=sampler, run_dir=tmp_path / run_name,
                                run_id="t")


def test_thompson_sampler_drives_grpo(tmp_path):
    # "easy" starts as the most uncertain-looking prompt, so Thompson picks it early.
    trainer = _trainer(tmp_path, "run", max_steps=12, difficulty=[0.5] + [None] * 5)
    stats = trainer.thresher_stats
    trainer.train()

    # One store update per generation batch, one entry per completion.
    assert trainer.thresher_updates == 12
    table = stats.to_arrow().to_pydict()
    seen = dict(zip(table["sample_id"], table["n_seen"], strict=True))
    assert sum(seen.values()) == 12 * B * G
    assert all(v % G == 0 for v in seen.values())

    parts = sorted((tmp_path / "run" / "rollouts").glob("part-*.parquet"))
    assert len(parts) == 12
    log = pq.read_table(parts).to_pydict()
    assert len(log["sample_id"]) == 12 * B * G
    # The log's ids are exactly the store's counts, and rewards follow the reward function.
    for sid in IDS:
        assert log["sample_id"].count(sid) == seen[sid]
    easy = [r for s, r in zip(log["sample_id"], log["reward"], strict=True) if s == "easy"]
    assert easy and all(r == 1.0 for r in easy)
    assert set(log["step"]) == set(range(1, 13))
    assert log["sampler"][0] == "thompson"
    assert all(0.0 <= p <= 1.0 for p in log["p_estimate"])  # the posterior mean at selection
    # The one-batch lag: every rewarded batch matched the draw it came from (else a
    # RuntimeError), and at most the prefetched draw is left unrewarded.
    assert len(trainer._thresher_repeat.pending) <= 1

    # The sampler's choices change with the rewards: "easy" is picked early, then dropped.
    easy_steps = sorted({s for s, i in zip(log["step"], log["sample_id"], strict=True) if i == "easy"})
    assert easy_steps and easy_steps[0] <= 2
    assert max(easy_steps) <= 6, easy_steps  # never in the second half of the run
    for sid in IDS[1:]:
        assert seen[sid] > 0


def test_repeat_layout_matches_trl_and_is_identical_across_processes():
    from trl.trainer.utils import RepeatSampler

    from sampling import UniformSampler
    from trainer.plugins.trl import ThresherRepeatSampler

    ids = [f"s{i}" for i in range(10)]
    ref = list(RepeatSampler(list(range(10)), mini_repeat_count=3, batch_size=2, repeat_count=2, seed=0))

    def stream():
        stats = SampleStats.from_samples(pa.table({"id": ids[::-1]}))  # store order != dataset order
        return list(ThresherRepeatSampler(UniformSampler(stats, seed=7), ids, mini_repeat_count=3,
                                          batch_size=2, repeat_count=2, num_batches=5))

    ours = stream()
    assert len(ours) == len(ref) == 5 * 2 * 3 * 2
    for out in (ours, ref):  # chunk = 2 distinct indices, each 3 times in a row, chunk twice
        for c in range(5):
            chunk = out[c * 12:(c + 1) * 12]
            assert chunk[:6] == chunk[6:]
            assert chunk[0:3] == [chunk[0]] * 3 and chunk[3:6] == [chunk[3]] * 3
            assert chunk[0] != chunk[3]
    assert stream() == ours  # same seed, same store: the same stream on every process
    assert sorted(set(ours)) == list(range(10))  # uniform covers the set in one pass


def test_unknown_store_id_is_a_clear_error():
    from sampling import UniformSampler
    from trainer.plugins.trl import ThresherRepeatSampler

    stats = SampleStats.from_samples(pa.table({"id": ["a", "zz"]}))
    with pytest.raises(ValueError, match="zz"):
        ThresherRepeatSampler(UniformSampler(stats), ["a", "b"], mini_repeat_count=2, batch_size=1)


def test_checkpoints_carry_the_store_and_resume_continues_it(tmp_path):
    first = _trainer(tmp_path, "run", max_steps=4, save_steps=2)
    first.train()
    ckpt = tmp_path / "out" / "checkpoint-2"
    saved = SampleStats.load(ckpt / "thresher_stats.parquet")
    assert sum(saved.to_arrow().column("n_seen").to_pylist()) == 2 * B * G  # rewards of steps 1-2
    assert SampleStats.load_sampler_state(ckpt / "thresher_stats.parquet") is not None
    assert (ckpt / "thresher_state.json").exists()

    # a fresh process resumes from step 2: store and sampler come back, steps 3-4 are trained
    resumed = _trainer(tmp_path, "resumed", max_steps=4)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.thresher_updates == 2
    assert sum(resumed.thresher_stats.to_arrow().column("n_seen").to_pylist()) == 4 * B * G
    log = pq.read_table(sorted((tmp_path / "resumed" / "rollouts").glob("part-*.parquet")))
    assert sorted(set(log.column("step").to_pylist())) == [3, 4]
    # the restored store, not a fresh one, was updated: steps 1-2 are still counted
    assert resumed.thresher_stats.step == 4
