"""`thresher rollout` vs TRL's generation: prompts/s and generated tokens/s on CPU, one run.

Same model (the quickstart's tiny char-level Qwen2 built from
examples/quickstart.toml), same prompts (the first N rows of examples/data's
GSM8K + MATH set, curated by examples/curate_math.toml), same settings: K
samples per prompt at temperature 1, top-p 1, no top-k, at most M new tokens,
B prompts (B x K sequences) per generate call, one torch thread.

- thresher: `trainer.rollout.run_rollouts`, the code behind `thresher rollout`
  (batches by prompt length, prefills each prompt once and samples K from its
  KV cache, verifies with trainer.rewards, writes the Parquet log).
- TRL (the baseline): `trl.GRPOTrainer._generate` on the same batches in
  TRL's layout (each prompt repeated K times, `model.generate` with TRL's
  GenerationConfig), then the same verifier over its completions.

    .venv/bin/python bench/rollout.py                 # ~3 minutes on 2 CPU cores
    .venv/bin/python bench/rollout.py --prompts 32    # quicker

Prints ratios thresher / TRL and writes bench/results/rollout.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-prompts", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "rollout.json"))
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from curate.io import write_json_atomic
    from pipelines.curation import read_curated, run_curation
    from pipelines.rollout import load_model
    from trainer.rewards import verifiable_reward
    from trainer.rollout import RolloutSettings, run_rollouts

    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    run_curation(REPO / "examples" / "curate_math.toml", tmp / "data", progress=False)
    data = read_curated(tmp / "data").slice(0, args.prompts)
    model, tok, _ = load_model(REPO / "examples" / "quickstart.toml", device="cpu")
    settings = RolloutSettings(k=args.k, max_new_tokens=args.max_new_tokens, temperature=1.0,
                               top_p=1.0, seed=0, batch_prompts=args.batch_prompts)

    # --- thresher rollout
    t = time.perf_counter()
    m = run_rollouts(data, model, tok, tmp / "run", settings, progress=False)["rollout"]
    ours_s = time.perf_counter() - t
    ours = {"seconds": round(ours_s, 3), "prompts": m["prompts_sampled"], "responses": m["responses"],
            "generated_tokens": m["generated_tokens"],
            "prompts_per_s": round(m["prompts_sampled"] / ours_s, 3),
            "tokens_per_s": round(m["generated_tokens"] / ours_s, 1)}

    # --- TRL's generation, same model and settings
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    prompts = data.column("prompt").to_pylist()
    answers = data.column("answer").to_pylist()
    types = data.column("answer_type").to_pylist()
    b = args.batch_prompts
    cfg = GRPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=b * args.k,
                     num_generations=args.k, max_completion_length=args.max_new_tokens,
                     temperature=1.0, top_p=1.0, top_k=0, report_to=[], use_cpu=True, bf16=False,
                     seed=0, save_strategy="no", logging_steps=1000)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=cfg, train_dataset=Dataset.from_dict({"prompt": prompts}),
                          processing_class=tok)
    model.eval()
    torch.manual_seed(0)
    n_tok = 0
    t = time.perf_counter()
    for i in range(0, len(prompts), b):
        batch = [p for p in prompts[i:i + b] for _ in range(args.k)]  # TRL's RepeatSampler layout
        out = trainer._generate(batch)
        completion_ids, completions = out[1], out[3]
        n_tok += sum(len(c) for c in completion_ids)
        rep = range(i, min(i + b, len(prompts)))
        verifiable_reward(batch, [str(c) for c in completions],
                          answer=[answers[j] for j in rep for _ in range(args.k)],
                          answer_type=[types[j] for j in rep for _ in range(args.k)])
    trl_s = time.perf_counter() - t
    base = {"seconds": round(trl_s, 3), "prompts": len(prompts), "responses": len(prompts) * args.k,
            "generated_tokens": n_tok, "prompts_per_s": round(len(prompts) / trl_s, 3),
            "tokens_per_s": round(n_tok / trl_s, 1)}

    ratios = {"prompts_per_s": round(ours["prompts_per_s"] / base["prompts_per_s"], 2),
              "tokens_per_s": round(ours["tokens_per_s"] / base["tokens_per_s"], 2)}
    import trl

    result = {"settings": vars(args) | {"temperature": 1.0, "top_p": 1.0, "top_k": 0},
              "model": "examples/quickstart.toml (tiny char-level Qwen2, built from the config)",
              "data": "examples/curate_math.toml (GSM8K + MATH), first rows",
              "thresher_rollout": ours, "trl_generate": base, "ratio_thresher_over_trl": ratios,
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "trl": trl.__version__},
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}}
    print(f"thresher rollout: {ours['prompts_per_s']:.2f} prompts/s, {ours['tokens_per_s']:,.0f} tokens/s "
          f"({ours['seconds']:.1f} s, {ours['generated_tokens']} tokens)")
    print(f"TRL _generate   : {base['prompts_per_s']:.2f} prompts/s, {base['tokens_per_s']:,.0f} tokens/s "
          f"({base['seconds']:.1f} s, {base['generated_tokens']} tokens)")
    print(f"ratio thresher / TRL: prompts/s x{ratios['prompts_per_s']}, tokens/s x{ratios['tokens_per_s']}")
    write_json_atomic(result, args.out)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
