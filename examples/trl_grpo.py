"""Thresher's Thompson sampler, statistics store and rollout log inside trl.GRPOTrainer.

Runs on CPU in well under a minute with a tiny model built from a config (no
download): 64 GSM8K prompts shipped in examples/data, 8 completions each.

    HF_HUB_OFFLINE=1 .venv/bin/python examples/trl_grpo.py --run-dir runs/trl-demo --steps 4
    duckdb -c "SELECT step, count(*), avg(reward) FROM read_parquet('runs/trl-demo/rollouts/*.parquet') GROUP BY step"
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from curate.schema import sample_id  # noqa: E402
from sampling import SampleStats, ThompsonSampler  # noqa: E402
from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer  # noqa: E402
from trainer.plugins.trl import make_trainer_class  # noqa: E402
from trainer.rewards import verifiable_reward  # noqa: E402

DATA = Path(__file__).parent / "data" / "gsm8k" / "train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/trl-demo")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=64)
    args = ap.parse_args()

    rows = [json.loads(line) for line in DATA.open()][: args.prompts]
    prompts = [r["question"] + "\nAnswer: " for r in rows]
    answers = [r["answer"].rsplit("####", 1)[-1].strip() for r in rows]
    ids = [sample_id(p, a) for p, a in zip(prompts, answers, strict=True)]
    # TRL passes extra dataset columns to the reward functions; `sample_id` keys the store.
    train = Dataset.from_dict({"prompt": prompts, "answer": answers, "sample_id": ids})

    stats = SampleStats.from_samples(pa.table({"id": ids}))
    sampler = ThompsonSampler(stats, group_size=8, seed=0)

    tok = char_tokenizer()
    model = build_tiny_model(tok, TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2,
                                                intermediate_size=128, max_positions=512))
    config = GRPOConfig(
        output_dir=str(Path(args.run_dir) / "trl"), per_device_train_batch_size=16,
        num_generations=8, max_completion_length=16, max_steps=args.steps,
        learning_rate=1e-5, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, bf16=False, seed=0,
    )
    ThresherGRPOTrainer = make_trainer_class()  # noqa: N806 (a class)
    trainer = ThresherGRPOTrainer(
        model=model, reward_funcs=verifiable_reward, args=config, train_dataset=train,
        processing_class=tok, sampler=sampler, run_dir=args.run_dir, run_id="trl-demo",
    )
    trainer.train()
    path = stats.save(args.run_dir, sampler=sampler)
    seen = stats.to_arrow().column("n_seen").to_numpy()
    print(f"{trainer.thresher_updates} store updates, {int(seen.sum())} completions on "
          f"{int((seen > 0).sum())} prompts; stats -> {path}; rollouts -> {args.run_dir}/rollouts/")


if __name__ == "__main__":
    main()
