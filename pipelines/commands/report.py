"""`thresher report RUN`: a self-contained HTML report of a run (inline SVG plots).

    thresher report runs/quickstart                 # writes runs/quickstart/report.html
    thresher report 'runs/*' --out compare.html     # several runs in one report
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (or a glob of run folders)")
    parser.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    parser.add_argument("--title", help="page title")


def run(args: argparse.Namespace) -> int:
    from curate.io import write_text_atomic
    from pipelines.cli import UserError
    from pipelines.query import LakeError, connect
    from pipelines.report import render_html, run_figures

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            lake = connect(args.run)
        except LakeError as exc:
            raise UserError(str(exc)) from exc
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    out = Path(args.out) if args.out else lake.runs[0] / "report.html"
    write_text_atomic(render_html(run_figures(lake), title=args.title), out)
    print(f"wrote {out}")
    return 0
