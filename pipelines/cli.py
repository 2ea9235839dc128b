"""The `thresher` command line.

Each verb lives in its own module under `pipelines.commands`, imported only
when that verb runs, so `thresher query` never pays for importing torch.
A command module exposes `add_arguments(parser)` and `run(args) -> int`.

Errors belong to the library: anything a user can act on is a
`curate.errors.ThresherError` (a config key, a data file, a log), which this
module only formats (one line, exit code 2); any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from curate.errors import ThresherError

# verb -> (module, one-line help). Order is the order of `thresher --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "curate": ("pipelines.commands.curate", "build a dataset from a TOML curation spec"),
    "train": ("pipelines.commands.train", "train (SFT cold start or GRPO) from a TOML config"),
    "run": ("pipelines.commands.run", "the main job: curate, cold start, then GRPO"),
    "rollout": ("pipelines.commands.rollout", "sample and verify K responses per prompt with a model"),
    "export": ("pipelines.commands.export", "write a dataset as verl's or TRL's RL parquet"),
    "query": ("pipelines.commands.query", "SQL (DuckDB) over rollout logs and stats"),
    "stats": ("pipelines.commands.stats", "terminal summary of a run"),
    "report": ("pipelines.commands.report", "self-contained HTML report of a run"),
    "logs": ("pipelines.commands.logs", "import other trainers' logs; curate from logs"),
    "mixture": ("pipelines.commands.mixture", "data-mixture optimization (propose, fit, optimize, search)"),
}


# the name command modules raise for a bad command line: the library's base class
UserError = ThresherError


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thresher",
        description="Curate, sample and train: data tooling for RL post-training.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb not in COMMANDS:
        verb = None
    parser = build_parser(verb)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.verb][0])
    try:
        return int(module.run(args) or 0)
    except ThresherError as exc:
        print(f"thresher {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
