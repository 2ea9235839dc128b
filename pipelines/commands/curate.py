"""`thresher curate SPEC --out DIR`: run a TOML curation spec (see pipelines.spec)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="TOML curation spec")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress output")


def run(args: argparse.Namespace) -> int:
    from pipelines.spec import load_spec

    spec = load_spec(args.spec)  # a typo fails here, before the data libraries load
    from pipelines.curation import run_curation

    manifest = run_curation(spec, args.out, progress=not args.no_progress)
    print(f"{manifest['rows_out']} rows -> {args.out} "
          f"(dropped {manifest['dropped']}, quarantined {manifest['quarantined']}, "
          f"content {manifest['content_hash'][:16]})")
    return 0
