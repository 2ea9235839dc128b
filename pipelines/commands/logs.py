"""`thresher logs`: bring other trainers' rollout logs in, and curate the next data from a log.

    thresher logs import OUTPUT_DIR/completions --format trl --out runs/trl-run
    thresher logs import ../shared/data/Qwen2.5-Math/math_cot_100.jsonl --out runs/qwen-eval
    thresher logs curate runs/qwen-eval --out data/from-logs

`import` writes a thresher run folder (RUN/rollouts/part-*.parquet, RUN/manifest.json)
that `thresher query/stats/report` read. `curate` reads any log (a run folder or
a foreign log with --format) and writes the SFT set, preference pairs, expert
queue, routed RL set and a manifest with counts (curate.from_logs.build_from_log).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from curate.importers import FORMATS

    sub = parser.add_subparsers(dest="logs_cmd", metavar="{import,curate}", required=True)
    imp = sub.add_parser("import", help="convert a foreign rollout log into a thresher run folder")
    imp.add_argument("src", help="log file, folder or glob")
    imp.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    imp.add_argument("--out", required=True, help="run folder to write")
    imp.add_argument("--run-id", help="run_id for logs without one (default: the source folder name)")
    imp.add_argument("--correct-threshold", type=float, default=0.5,
                     help="correct = reward >= this where the log has no correctness (default 0.5)")
    imp.add_argument("--tokenizer", help="open-instruct: local tokenizer path to decode token ids")
    cur = sub.add_parser("curate", help="route prompts and build SFT / preference / expert / RL sets from a log")
    cur.add_argument("log", help="a run folder, or a foreign log with --format")
    cur.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    cur.add_argument("--out", required=True, help="output folder")
    cur.add_argument("--never-max", type=float, default=0.0, help="pass rate <= this: expert queue (default 0)")
    cur.add_argument("--always-min", type=float, default=1.0, help="pass rate >= this: solved, dropped (default 1)")
    cur.add_argument("--distill-below", type=float, default=1.0,
                     help="inconsistent prompts below this pass rate are self-distilled; the rest stay RL (default 1)")
    cur.add_argument("--min-n", type=int, default=2, help="prompts with fewer rollouts are 'insufficient'")
    cur.add_argument("--best-of", type=int, default=2, help="SFT responses kept per prompt (best by reward)")
    cur.add_argument("--max-tokens", type=int, help="drop longer responses from the SFT set")
    cur.add_argument("--pairs-per-prompt", type=int, default=2)
    cur.add_argument("--seed", type=int, default=0)


def _read(src: str, fmt: str, **kw):
    from curate.importers import import_info, read_rollouts
    from pipelines.commands import warnings_to_stderr

    with warnings_to_stderr():
        table = read_rollouts(src, fmt, **kw)
    return table, import_info(table)


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from curate.io import write_json_atomic

    if args.logs_cmd == "import":
        from curate.rollout_log import RolloutWriter

        table, info = _read(args.src, args.format, run_id=args.run_id, correct_threshold=args.correct_threshold,
                            tokenizer=args.tokenizer)
        out = Path(args.out)
        run_id = table.column("run_id")[0].as_py() if table.num_rows else (args.run_id or out.name)
        writer = RolloutWriter(out, run_id=run_id)
        df = pl.from_arrow(table)
        for _, part in df.group_by("step", maintain_order=True):  # one part per step, as the trainer writes
            writer.write(part.to_arrow())
        if info["bad_lines"]:  # unparseable lines: quarantined with file, line and error, not lost
            from curate.io import write_parquet_atomic

            write_parquet_atomic(pl.DataFrame(info["bad_lines"]).to_arrow(), out / "quarantine" / "import.parquet")
            print(f"quarantined {len(info['bad_lines'])} unparseable line(s) in {out}/quarantine/import.parquet",
                  file=sys.stderr)
        manifest_path = out / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        manifest["import"] = info
        write_json_atomic(manifest, manifest_path)
        flag = " (sample_id derived from prompt text)" if info.get("derived_sample_id") else ""
        print(f"imported {table.num_rows} rollouts of {info.get('prompts')} prompts ({info['format']}){flag} "
              f"into {out}/rollouts")
        return 0
    table, info = _read(args.log, args.format)
    from curate.from_logs import build_from_log

    run_manifest = Path(args.log) / "manifest.json"
    if run_manifest.is_file():  # a run made by `logs import`: carry how its ids were made
        earlier = json.loads(run_manifest.read_text()).get("import")
        if earlier:
            info["original_import"] = earlier
            info["derived_sample_id"] = bool(info.get("derived_sample_id") or earlier.get("derived_sample_id"))

    manifest = build_from_log(table, args.out, never_max=args.never_max, distill_below=args.distill_below,
                              always_min=args.always_min, min_n=args.min_n, best_of=args.best_of,
                              max_tokens=args.max_tokens, max_pairs_per_prompt=args.pairs_per_prompt,
                              seed=args.seed, source=info)
    r = manifest["routes"]
    print(f"{manifest['input']['prompts']} prompts: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    print(f"sft {manifest['sft']['rows']} rows, preference {manifest['preference']['pairs']} pairs, "
          f"expert queue {manifest['expert_queue']['prompts']}, rl {manifest['rl']['prompts']} -> {args.out}")
    return 0
