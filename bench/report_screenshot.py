"""Render `thresher report` in headless Chromium and save a screenshot to look at.

Uses the trainer's quickstart run when one exists under runs/ (any run folder
with rollouts/), else a realistic synthetic run (pipelines.demo_run). Needs
Debian's chromium (`apt-get install -y chromium`).

    .venv/bin/python bench/report_screenshot.py            # -> bench/results/report.png
    .venv/bin/python bench/report_screenshot.py --run runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate.io import write_json_atomic  # noqa: E402
from pipelines.query import connect  # noqa: E402
from pipelines.report import render_html, run_figures  # noqa: E402


def _rel(path: Path) -> str:
    """`path` relative to the project when inside it, so the JSON does not name this machine."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def find_run() -> Path | None:
    runs = sorted(p.parent for p in (ROOT / "runs").glob("*/rollouts") if any(p.glob("*.parquet")))
    quick = [r for r in runs if "quickstart" in r.name]
    return (quick or runs or [None])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="run folder (default: runs/*quickstart*, else a synthetic run)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "report.png"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2600)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 1
    run = Path(args.run) if args.run else find_run()
    source = "run"
    if run is None:
        from pipelines.demo_run import synthetic_run

        run = synthetic_run(Path(tempfile.mkdtemp()) / "synthetic", steps=80, n_prompts=600, batch=32)
        source = "synthetic"
    t0 = time.perf_counter()
    html = render_html(run_figures(connect(run)))
    render_s = time.perf_counter() - t0
    page = Path(tempfile.mkdtemp()) / "report.html"
    page.write_text(html, encoding="utf-8")
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    shot = out.with_name(f".{out.name}.tmp.png")  # chromium writes here; renamed when complete
    profile = tempfile.mkdtemp()
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           f"--screenshot={shot}", f"--window-size={args.width},{args.height}", page.as_uri()]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    shot_s = time.perf_counter() - t0
    if proc.returncode != 0 or not shot.exists():
        shot.unlink(missing_ok=True)
        print(proc.stderr[-2000:], file=sys.stderr)
        return 1
    os.replace(shot, out)
    result = {"run": _rel(Path(run).resolve()), "source": source, "html_bytes": len(html.encode()), "svg_plots": html.count("<svg"),
              "empty_plots": html.count(">no data<"), "external_refs": html.count("src=\"http") + html.count("href=\"http"),
              "render_s": round(render_s, 3), "screenshot_s": round(shot_s, 2), "screenshot": _rel(out)}
    write_json_atomic(result, ROOT / "bench" / "results" / "report_screenshot.json")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
