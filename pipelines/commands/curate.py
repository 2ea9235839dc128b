"""`thresher curate SPEC --out DIR [--engine local|ray] [--address auto|HOST:PORT]`: run a
TOML curation spec (see pipelines.spec) in one process or on Ray Data (pipelines.ray_engine)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="TOML curation spec")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--no-progress", action="store_true", help="no live progress output")
    parser.add_argument("--engine", choices=["local", "ray"], default=None,
                        help="where the stages run (default: the spec's `engine`, else local); "
                        "ray needs `pip install 'thresher[ray]'`; the output bytes are the same")
    parser.add_argument("--address", default=None,
                        help="with --engine ray: the cluster to join (auto, HOST:PORT); "
                        "default: start a local one")


def run(args: argparse.Namespace) -> int:
    from pipelines.spec import load_spec

    spec = load_spec(args.spec)  # a typo fails here, before the data libraries load
    from pipelines.curation import run_curation

    manifest = run_curation(spec, args.out, progress=not args.no_progress, engine=args.engine,
                            address=args.address)
    print(f"{manifest['rows_out']} rows -> {args.out} "
          f"(dropped {manifest['dropped']}, quarantined {manifest['quarantined']}, "
          f"content {manifest['content_hash'][:16]})")
    return 0
