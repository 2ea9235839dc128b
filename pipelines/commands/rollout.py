"""`thresher rollout DATA --model M --k K --out RUN`: sample and verify K responses per prompt.

    thresher rollout runs/curate_math --model examples/quickstart.toml --k 8 --out runs/rollout

Writes RUN/rollouts/part-*.parquet (one row per response, the rollout-log schema)
and RUN/manifest.json. Rerun the same command after a kill: prompts already in
the log are not sampled again. Then `thresher logs curate RUN --out DIR` routes
the prompts, and the `difficulty` curation stage keeps a pass-rate band.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="curated folder (part-*.parquet), Parquet or JSONL in the Sample schema")
    parser.add_argument("--model", required=True,
                        help="local model directory (save_pretrained) or a TOML config with [model]")
    parser.add_argument("--out", required=True, help="run folder for the rollout log (resumed if present)")
    parser.add_argument("--k", type=int, default=8, help="responses per prompt (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="default 64")
    parser.add_argument("--temperature", type=float, default=1.0, help="default 1.0")
    parser.add_argument("--top-p", type=float, default=1.0, help="default 1.0")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--batch-prompts", type=int, default=16,
                        help="prompts per batch, batched by prompt length (default 16)")
    parser.add_argument("--limit", type=int, help="only the first N rows of the data")
    parser.add_argument("--engine", default="hf", choices=("hf", "vllm"),
                        help="hf: transformers (default); vllm: vLLM, when installed (GPU machines)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA + bf16 when a GPU is present, else CPU fp32")
    parser.add_argument("--chat-template", default="auto", choices=("auto", "none"),
                        help="auto: wrap prompts in the tokenizer's chat template when it has one")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pipelines.rollout import rollout_data
    from trainer.rollout import RolloutSettings

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = RolloutSettings(k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_p=args.top_p, seed=args.seed, batch_prompts=args.batch_prompts,
                               engine=args.engine, chat_template=args.chat_template)
    manifest = rollout_data(args.data, args.model, args.out, settings, device=args.device,
                            limit=args.limit, progress=not args.no_progress)
    r = manifest["rollout"]
    rate = (f", {r['prompts_per_s']:.2f} prompts/s, {r['tokens_per_s']:,.0f} tokens/s"
            if r["prompts_sampled"] else "")
    print(f"sampled {r['prompts_sampled']} prompts ({r['responses']} responses, {r['correct']} correct"
          f"{rate}); {r['prompts_skipped_already_logged']} already in the log; "
          f"{r['prompts_done']}/{r['prompts']} done -> {args.out}/rollouts")
    return 0
