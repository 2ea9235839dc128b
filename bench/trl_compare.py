"""Thresher's GRPOTrainer vs TRL's GRPOTrainer: same model, data, group size, batch, steps.

Both start from the same cold-start checkpoint (a tiny char-level Qwen2, SFT
on the synthetic suite), train on the same RL prompts with the same reward
(correctness + 0.1 x format: the very same callables), group size, prompts per
step, completion length, learning rate and loss (DAPO token-level, clip 0.2 /
0.28, no KL), sampling prompts uniformly (TRL has no dynamic sampler). Prints
seconds per step and held-out accuracy, ours / TRL, and writes
bench/results/trl_compare.json.

    .venv/bin/python bench/trl_compare.py            # ~5 minutes on 2 CPU cores
    .venv/bin/python bench/trl_compare.py --steps 10 # quicker

The vision arm (`--arm vision`) runs the same comparison on image prompts: a
tiny Qwen2-VL cold-started on the visual quickstart's tasks (majority, vcount;
or the SFT checkpoint and RL set of a `thresher run examples/quickstart_vision.toml`
run with `--cold-run RUN`), our multimodal GRPO step (shared prefill, tower
once per image) against TRL's `GRPOTrainer` with `trainer.vision.trl_processor`
and TRL's conversational image prompts; results in
bench/results/trl_compare_vision.json.

    .venv/bin/python bench/trl_compare.py --arm vision --steps 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def held_out_accuracy(model, tok, held) -> dict[str, float]:
    """Greedy accuracy and sampled pass@1 (k = 4, T = 1) on the held-out rows."""
    from trainer.evaluation import accuracy, evaluate

    model.eval()
    return {"greedy": accuracy(evaluate(model, tok, held, 10)),
            "sampled_pass@1": accuracy(evaluate(model, tok, held, 10, k=4, temperature=1.0, seed=0))}


def run_ours(model, tok, rl_set, out: Path, steps: int, prompts: int, group: int, lr: float
             ) -> tuple[Any, float]:
    """Our GRPOTrainer (uniform sampler): the trainer and seconds per step after a warm-up step."""
    from trainer import GRPOConfig, GRPOTrainer

    cfg = GRPOConfig(steps=steps, prompts_per_step=prompts, group_size=group, max_new_tokens=10,
                     lr=lr, sampler="uniform", save_every=10_000, device="cpu", seed=0)
    ours = GRPOTrainer(model, tok, rl_set, cfg, out)
    ours.train_step()  # warm-up step, not timed (same for TRL)
    t0 = time.perf_counter()
    ours.train()
    return ours, (time.perf_counter() - t0) / (steps - 1)


def run_trl(model, reward_funcs: list, ds, processing_class, out: Path, steps: int, prompts: int,
            group: int, lr: float) -> tuple[Any, float, float]:
    """TRL's GRPOTrainer with the settings our trainer uses (DAPO loss, clip 0.2/0.28, no KL,
    group-scaled rewards): the trainer, seconds per step after the warm-up step, wall seconds."""
    import transformers
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    targs = TRLConfig(
        output_dir=str(out), per_device_train_batch_size=prompts * group, num_generations=group,
        gradient_accumulation_steps=1, max_completion_length=10, max_steps=steps, learning_rate=lr,
        lr_scheduler_type="constant", warmup_steps=0, loss_type="dapo", epsilon=0.2, epsilon_high=0.28,
        beta=0.0, scale_rewards="group", temperature=1.0, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=10_000, bf16=False, reward_weights=[1.0, 0.1],
        seed=0, dataloader_num_workers=0,
    )
    step_times: list[float] = []

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, s, c, **kw):
            step_times.append(time.perf_counter() - self.t)

    trl = TRLTrainer(model=model, reward_funcs=reward_funcs, args=targs, train_dataset=ds,
                     processing_class=processing_class, callbacks=[Timer()])
    t0 = time.perf_counter()
    trl.train()
    wall = time.perf_counter() - t0
    return trl, sum(step_times[1:]) / max(1, len(step_times) - 1), wall  # skip warm-up, as ours


def report(setup: dict, cold_acc: dict, ours: tuple, trl: tuple, what: str, out: str) -> None:
    """Print and write one arm's result: our step time and accuracy against TRL's."""
    from curate.io import write_json_atomic

    (ours_s, ours_acc), (trl_s, trl_total, trl_acc) = ours, trl
    result = {
        "setup": setup,
        "cold_start_accuracy": cold_acc,
        "ours": {"s_per_step": ours_s, "accuracy": ours_acc},
        "trl": {"s_per_step": trl_s, "wall_s": trl_total, "accuracy": trl_acc,
                "version": __import__("trl").__version__},
        "ratio_s_per_step_ours_over_trl": ours_s / trl_s,
    }
    print(json.dumps(result, indent=2))
    print(f"\nseconds/step{what}: ours {ours_s:.3f}  TRL {trl_s:.3f}  -> ours = "
          f"{ours_s / trl_s:.2f}x TRL")
    print(f"held-out sampled pass@1: cold {cold_acc['sampled_pass@1']:.3f}  ours "
          f"{ours_acc['sampled_pass@1']:.3f}  TRL {trl_acc['sampled_pass@1']:.3f}")
    write_json_atomic(result, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--prompts-per-step", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--sft-steps", type=int, default=900)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="default bench/results/trl_compare[_vision].json")
    ap.add_argument("--arm", choices=["text", "vision"], default="text")
    ap.add_argument("--cold-run", default=None,
                    help="vision arm: a quickstart_vision run dir whose SFT checkpoint and RL set to reuse")
    args = ap.parse_args()
    name = "trl_compare.json" if args.arm == "text" else "trl_compare_vision.json"
    args.out = args.out or str(REPO / "bench" / "results" / name)
    if args.arm == "vision":
        return vision_arm(args)

    import torch

    torch.set_num_threads(args.threads)
    from trainer.modeling import quiet_transformers

    quiet_transformers()
    from curate.synthetic import make_splits
    from trainer import (
        SFTConfig,
        build_tiny_model,
        char_tokenizer,
    )
    from trainer.modeling import TinyModelSpec, load_pretrained
    from trainer.rewards import format_reward, verifiable_reward
    from trainer.sft import cold_start

    work = Path(tempfile.mkdtemp(prefix="trl_compare_"))
    train, held = make_splits(6000, 300, seed=0, max_level=2, solution_noise=0.35)
    import numpy as np

    train = train.take(np.random.default_rng(0).permutation(train.num_rows))  # mix the domains
    sft_set, rl_set = train.slice(0, 2000), train.slice(2000)
    tok = char_tokenizer()
    print(f"cold start: SFT {args.sft_steps} steps ...", flush=True)
    _, _, cold_dir = cold_start(lambda: (build_tiny_model(tok, TinyModelSpec(128, 3, 4, 512), seed=0), tok),
                                sft_set, SFTConfig(max_steps=args.sft_steps, batch_size=64, lr=1e-3,
                                                   warmup_steps=50, device="cpu"), work / "sft")

    base_model, _ = load_pretrained(cold_dir)
    cold_acc = held_out_accuracy(base_model, tok, held)
    G, P, steps, lr = args.group_size, args.prompts_per_step, args.steps, 2e-4

    # ---- ours
    model, tok = load_pretrained(cold_dir)
    ours, ours_s = run_ours(model, tok, rl_set, work / "ours", steps, P, G, lr)
    ours_acc = held_out_accuracy(ours.model, tok, held)

    # ---- TRL
    from datasets import Dataset

    model, tok = load_pretrained(cold_dir)
    ds = Dataset.from_dict({"prompt": rl_set.column("prompt").to_pylist(),
                            "answer": rl_set.column("answer").to_pylist(),
                            "answer_type": rl_set.column("answer_type").to_pylist()})
    trl, trl_s, trl_total = run_trl(model, [verifiable_reward, format_reward], ds, tok,
                                    work / "trl", steps, P, G, lr)
    trl_acc = held_out_accuracy(trl.model, tok, held)

    setup = {"steps": steps, "prompts_per_step": P, "group_size": G, "lr": lr,
             "max_new_tokens": 10, "model": "Qwen2 128x3 char-level (0.8M)",
             "threads": args.threads, "device": "cpu"}
    report(setup, cold_acc, (ours_s, ours_acc), (trl_s, trl_total, trl_acc), "", args.out)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def vision_arm(args) -> int:
    """Ours vs TRL on image prompts: same tiny Qwen2-VL cold start, prompts, rewards, loss."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from trainer.modeling import quiet_transformers

    quiet_transformers()
    from trainer import SFTConfig
    from trainer.modeling import load_pretrained
    from trainer.rewards import format_reward, verifiable_reward
    from trainer.sft import cold_start
    from trainer.vision import TinyVLMSpec, build_tiny_vlm, trl_processor, vision_tokenizer

    work = Path(tempfile.mkdtemp(prefix="trl_compare_vision_"))
    if args.cold_run:
        from pipelines.job import read_split

        run = Path(args.cold_run)
        rl_set, held = read_split(run, "rl"), read_split(run, "eval")
        cold_dir = run / "checkpoints" / "sft" / "final"
    else:
        from curate.synthetic_vision import make_vision_splits

        train, held = make_vision_splits(5000, 300, work / "images", ("majority", "vcount"), seed=0,
                                         max_level=2, solution_noise=0.3, noise_style="systematic")
        train = train.take(np.random.default_rng(0).permutation(train.num_rows))
        sft_set, rl_set = train.slice(0, 2000), train.slice(2000)
        tok = vision_tokenizer()
        print(f"cold start: SFT {args.sft_steps} steps ...", flush=True)
        _, _, cold_dir = cold_start(
            lambda: (build_tiny_vlm(tok, TinyVLMSpec(max_positions=128), seed=0), tok), sft_set,
            SFTConfig(max_steps=args.sft_steps, batch_size=32, lr=2e-3, warmup_steps=20,
                      max_length=48, device="cpu"), work / "sft")
    held = held.slice(0, 200)

    model, tok = load_pretrained(cold_dir)
    cold_acc = held_out_accuracy(model, tok, held)
    G, P, steps, lr = args.group_size, args.prompts_per_step, args.steps, 5e-4

    # ---- ours: shared prefill (vision tower once per image), update on the informative groups
    ours, ours_s = run_ours(model, tok, rl_set, work / "ours", steps, P, G, lr)
    ours_acc = held_out_accuracy(ours.model, tok, held)

    # ---- TRL: conversational prompts with an image each, the same reward callables
    from datasets import Dataset
    from PIL import Image

    model, tok = load_pretrained(cold_dir)
    refs = rl_set.column("images").to_pylist()
    ds = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}]
                   for p in rl_set.column("prompt").to_pylist()],
        "image": [Image.open(r[0]["path"]).convert("RGB") for r in refs],
        "answer": rl_set.column("answer").to_pylist(),
        "answer_type": rl_set.column("answer_type").to_pylist()})

    def text_of(completions):  # TRL hands conversational completions as message lists
        return [c[-1]["content"] if isinstance(c, list) else c for c in completions]

    def correct(prompts, completions, **kw):
        return verifiable_reward(prompts, text_of(completions), **kw)

    def fmt(prompts, completions, **kw):
        return format_reward(prompts, text_of(completions), **kw)

    trl, trl_s, trl_total = run_trl(model, [correct, fmt], ds, trl_processor(model, tok),
                                    work / "trl", steps, P, G, lr)
    trl_acc = held_out_accuracy(trl.model, tok, held)

    n_params = sum(p.numel() for p in model.parameters())
    setup = {"steps": steps, "prompts_per_step": P, "group_size": G, "lr": lr,
             "max_new_tokens": 10, "model": f"tiny Qwen2-VL ({n_params / 1e6:.2f}M, 16 image "
             "tokens per 32x32 image)", "tasks": "majority, vcount (quickstart_vision)",
             "threads": args.threads, "device": "cpu", "cold_run": args.cold_run}
    report(setup, cold_acc, (ours_s, ours_acc), (trl_s, trl_total, trl_acc), " (image prompts)",
           args.out)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
