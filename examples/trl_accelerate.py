"""ThresherGRPOTrainer across processes, as a lab runs it (CPU: two processes, gloo).

    HF_HUB_OFFLINE=1 .venv/bin/accelerate launch --multi_gpu --num_processes 2 \\
        examples/trl_accelerate.py --out runs/trl-2proc --steps 4

Every process builds the same store and sampler (same seed); TRL gathers the
rewards of all processes and the plugin updates each store identically, so the
samplers draw the same prompt stream; only the main process writes the rollout
log. For checking that promise, each process also writes (under OUT/ranks/):
its store snapshot after training (`stats-rank<r>.parquet`, with the sampler's
RNG state), the prompt ids its sampler drew per step (`draws-rank<r>.json`), and
the completions its reward function scored (`completions-rank<r>.jsonl`).
tests/test_plugin_trl_multiprocess.py runs this and compares them.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import pyarrow as pa  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from sampling import SampleStats, ThompsonSampler  # noqa: E402
from trainer.modeling import TinyModelSpec, build_tiny_model, char_tokenizer  # noqa: E402
from trainer.plugins.trl import make_trainer_class  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/trl-2proc")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=12)
    args = ap.parse_args()
    out = Path(args.out)
    rank = int(os.environ.get("RANK", "0"))
    (out / "ranks").mkdir(parents=True, exist_ok=True)

    ids = [f"p{i:02d}" for i in range(args.prompts)]
    train = Dataset.from_dict({"prompt": [f"{i}: {i}+{i}=" for i in range(args.prompts)],
                               "answer": [str(2 * i) for i in range(args.prompts)], "sample_id": ids})
    stats = SampleStats.from_samples(pa.table({"id": ids}))
    sampler = ThompsonSampler(stats, group_size=4, seed=0)
    draws: list[dict] = []
    next_rows = sampler.next_rows

    def recording_next_rows(n, step=None, **kw):  # what this process's sampler drew
        rows = next_rows(n, step=step, **kw)
        draws.append({"step": step, "ids": stats.ids[rows].tolist()})
        return rows

    sampler.next_rows = recording_next_rows
    completions_file = (out / "ranks" / f"completions-rank{rank}.jsonl").open("w")

    def reward(completions, sample_id, **kw):
        # a prompt's reward depends on its id and the completion, so groups are informative
        values = [float((len(c) + int(s[1:])) % 2) for c, s in zip(completions, sample_id, strict=True)]
        for c, s, v in zip(completions, sample_id, values, strict=True):
            completions_file.write(json.dumps({"sample_id": s, "completion": c, "reward": v}) + "\n")
        completions_file.flush()
        return values

    tok = char_tokenizer()
    model = build_tiny_model(tok, TinyModelSpec(hidden_size=32, num_layers=2, num_heads=2,
                                                intermediate_size=64, max_positions=64))
    config = GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=4, num_generations=4,
        max_completion_length=6, max_steps=args.steps, learning_rate=1e-4, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, bf16=False, seed=0,
        dataloader_num_workers=0,
    )
    trainer = make_trainer_class()(model=model, reward_funcs=reward, args=config, train_dataset=train,
                                   processing_class=tok, sampler=sampler, run_dir=out, run_id="trl-2proc")
    trainer.train()
    completions_file.close()
    stats.save(out / "ranks" / f"stats-rank{rank}.parquet", sampler=sampler)
    (out / "ranks" / f"draws-rank{rank}.json").write_text(json.dumps(draws))
    if trainer.accelerator.is_main_process:
        print(f"{trainer.accelerator.num_processes} processes ({trainer.accelerator.state.backend}), "
              f"{trainer.thresher_updates} store updates; "
              f"rollouts -> {out}/rollouts")


if __name__ == "__main__":
    main()
