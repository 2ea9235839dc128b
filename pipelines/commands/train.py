"""`thresher train CONFIG`: SFT and/or GRPO on Sample-schema files you already have.

Config sections: [run] (dir, seed, device), [data] (sft / rl / eval file paths:
Parquet, JSONL or a folder of Parquet), [model] (`path` to a local model, or
the shape of a tiny one), [sft] (SFTConfig) and/or [grpo] (GRPOConfig).
A config with a [data] table of synthetic-suite keys is a `thresher run` config.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="TOML training config")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bars")


def run(args: argparse.Namespace) -> int:
    from pipelines.job import TrainConfig, load_config, train_job

    cfg = load_config(args.config, TrainConfig)
    train_job(cfg, progress=not args.no_progress)
    return 0
