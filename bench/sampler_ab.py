"""Thompson vs uniform prompt sampling on the same rollout budget, in one run.

Both arms start from the same cold-start checkpoint and run GRPO for the same
number of steps x prompts x group size (the same rollout budget) on the same
RL set; only the sampler differs. The figure is the informative-group ratio
(share of groups whose rewards differ, i.e. that carry a gradient), read back
from each arm's Parquet rollout log with DuckDB, plus held-out accuracy.
Writes bench/results/sampler_ab.json.

    .venv/bin/python bench/sampler_ab.py             # ~4 minutes on 2 CPU cores
    .venv/bin/python bench/sampler_ab.py --steps 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--prompts-per-step", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--sft-steps", type=int, default=900)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "sampler_ab.json"))
    args = ap.parse_args()

    import duckdb
    import torch

    torch.set_num_threads(args.threads)
    from trainer.modeling import quiet_transformers

    quiet_transformers()
    from curate.io import write_json_atomic
    from curate.synthetic import make_splits
    from trainer import (
        GRPOConfig,
        GRPOTrainer,
        SFTConfig,
        build_tiny_model,
        char_tokenizer,
    )
    from trainer.evaluation import accuracy, evaluate
    from trainer.modeling import TinyModelSpec, load_pretrained
    from trainer.sft import cold_start

    work = Path(tempfile.mkdtemp(prefix="sampler_ab_"))
    train, held = make_splits(6000, 300, seed=0, max_level=2, solution_noise=0.35)
    import numpy as np

    train = train.take(np.random.default_rng(0).permutation(train.num_rows))  # mix the domains
    sft_set, rl_set = train.slice(0, 2000), train.slice(2000)
    tok = char_tokenizer()
    print(f"cold start: SFT {args.sft_steps} steps ...", flush=True)
    _, _, cold_dir = cold_start(lambda: (build_tiny_model(tok, TinyModelSpec(128, 3, 4, 512), seed=0), tok),
                                sft_set, SFTConfig(max_steps=args.sft_steps, batch_size=64, lr=1e-3,
                                                   warmup_steps=50, device="cpu"), work / "sft")

    arms = {}
    for name in ("uniform", "thompson"):
        model, tok = load_pretrained(cold_dir)
        cfg = GRPOConfig(steps=args.steps, prompts_per_step=args.prompts_per_step,
                         group_size=args.group_size, max_new_tokens=10, lr=2e-4, sampler=name,
                         save_every=10_000, device="cpu", seed=0)
        run = work / name
        tr = GRPOTrainer(model, tok, rl_set, cfg, run)
        print(f"GRPO with the {name} sampler, {args.steps} steps ...", flush=True)
        tr.train()
        row = duckdb.sql(f"""
            WITH g AS (
              SELECT step, "group", max(reward) > min(reward) AS informative, avg(correct::INT) AS acc
              FROM read_parquet('{run}/rollouts/*.parquet') GROUP BY step, "group")
            SELECT avg(informative::INT), count(*), avg(acc) FROM g""").fetchall()[0]
        arms[name] = {
            "informative_group_ratio": row[0], "groups": row[1], "rollouts": row[1] * args.group_size,
            "train_accuracy": row[2],
            "held_out_sampled_pass@1": accuracy(evaluate(tr.model, tok, held, 10, k=4,
                                                         temperature=1.0, seed=0)),
        }
    ratio = arms["thompson"]["informative_group_ratio"] / arms["uniform"]["informative_group_ratio"]
    result = {"setup": vars(args) | {"out": None}, "arms": arms,
              "thompson_over_uniform_informative_ratio": ratio}
    print(json.dumps(result, indent=2))
    print(f"\ninformative-group ratio: uniform {arms['uniform']['informative_group_ratio']:.3f}, "
          f"thompson {arms['thompson']['informative_group_ratio']:.3f} -> {ratio:.2f}x uniform "
          f"(same budget: {arms['thompson']['rollouts']} rollouts each)")
    write_json_atomic(result, args.out)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
