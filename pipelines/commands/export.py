"""`thresher export DATA --format verl|trl --out DIR`: the RL parquet verl or TRL reads unchanged.

    thresher export runs/band --format verl --out runs/verl-data   # -> runs/verl-data/train.parquet
    thresher export runs/band --format trl --out runs/trl-data

DATA is a curated folder (part-*.parquet), a Parquet file or JSONL in the Sample
schema. Columns: see curate.export. Nothing is written when a row is bad.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="curated folder (part-*.parquet), Parquet or JSONL in the Sample schema")
    parser.add_argument("--format", required=True, choices=("verl", "trl"))
    parser.add_argument("--out", required=True, help="output folder: <split>.parquet + manifest.json")
    parser.add_argument("--split", default="train", help="file name and extra_info.split (default train)")
    parser.add_argument("--instruction", default="",
                        help="a line appended to every prompt, e.g. 'Put the final answer in \\boxed{}.'")
    parser.add_argument("--prompt-style", default="auto", choices=("auto", "plain", "chat"),
                        help="trl: plain text or chat messages (auto: chat when rows have images)")
    parser.add_argument("--limit", type=int, help="only the first N rows")


def run(args: argparse.Namespace) -> int:
    from curate.export import export
    from pipelines.rollout import read_data

    table = read_data(args.data, args.limit)
    m = export(table, args.out, args.format, split=args.split, instruction=args.instruction,
               prompt_style=args.prompt_style, where=str(args.data))
    if not m["rows"]:
        import sys

        print(f"warning: {args.data} has no rows; {args.out}/{m['file']} is empty", file=sys.stderr)
    print(f"exported {m['rows']} rows ({m['multimodal_rows']} with images) as {args.format} -> "
          f"{args.out}/{m['file']}")
    return 0
