"""`thresher report RUN`: a self-contained HTML report of a run (inline SVG plots).

    thresher report runs/quickstart                 # writes runs/quickstart/report.html
    thresher report 'runs/*' --out compare.html     # several runs in one report
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (or a glob of run folders)")
    parser.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    parser.add_argument("--title", help="page title")


def run(args: argparse.Namespace) -> int:
    from curate.io import write_text_atomic
    from pipelines.commands import open_runs
    from pipelines.report import render_html, run_figures

    lake = open_runs(args.run)
    out = Path(args.out) if args.out else lake.runs[0] / "report.html"
    write_text_atomic(render_html(run_figures(lake), title=args.title), out)
    print(f"wrote {out}")
    return 0
