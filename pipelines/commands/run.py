"""`thresher run CONFIG`: curate the synthetic sets, cold-start SFT, then GRPO.

    thresher run examples/quickstart.toml
    thresher run examples/quickstart.toml --run-dir runs/try2 --no-progress
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="TOML job config (see examples/quickstart.toml)")
    parser.add_argument("--run-dir", default=None, help="override [run] dir")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bars")
    parser.add_argument("--fresh", action="store_true",
                        help="delete an existing run directory first instead of resuming it")


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from pipelines.job import RunConfig, load_config, run_job

    cfg = load_config(args.config, RunConfig)
    run_dir = Path(args.run_dir or cfg.run.dir)
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    run_job(cfg, run_dir, progress=not args.no_progress)
    return 0
