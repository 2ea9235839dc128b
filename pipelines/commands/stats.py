"""`thresher stats RUN`: a terminal summary of a run (the figures of `thresher report`).

    thresher stats runs/quickstart
"""

from __future__ import annotations

import argparse
import math

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (or a glob of run folders)")


def _f(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3g}"


def _spark(values: list[float], width: int = 24) -> str:
    """A one-line sparkline of the whole curve: `width` equal bins of steps, each its mean.

    Binning (not the last N points) keeps the start of a run in view, and the
    mean smooths the step-to-step noise of a small batch.

    >>> _spark([0.0, 1.0, 2.0, 3.0], width=4)
    '▁▃▆█'
    """
    vals = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if vals.size == 0:
        return ""
    bins = [b.mean() for b in np.array_split(vals, min(width, vals.size))]
    lo, hi = min(bins), max(bins)
    ticks = "▁▂▃▄▅▆▇█"
    return "".join(ticks[int(round((v - lo) / ((hi - lo) or 1) * 7))] for v in bins)


def run(args: argparse.Namespace) -> int:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from pipelines.commands import open_runs
    from pipelines.report import run_figures

    lake = open_runs(args.run)
    figs = run_figures(lake)
    h = figs["headline"]
    con = Console()
    con.print(f"[bold]{', '.join(figs['runs'])}[/bold]: {h['rows']:,} responses, {h['prompts']:,} prompts, "
              f"{h['steps']} steps, {h['runs']} run(s)")
    t = Table(title="first vs last tenth of the steps")
    for c in ("", f"steps {h['first_steps']}", f"steps {h['last_steps']}"):
        t.add_column(c)
    t.add_column("curve (all steps)", no_wrap=True, min_width=24)
    curve, info = figs["curve"].sort("step"), figs["informative"].sort("step")
    t.add_row("mean reward", _f(h["reward_first"]), _f(h["reward_last"]), _spark(curve["reward_mean"].to_list()))
    t.add_row("accuracy", _f(h["accuracy_first"], True), _f(h["accuracy_last"], True),
              _spark(curve["accuracy"].to_list()))
    t.add_row("informative groups", _f(h["informative_first"], True), _f(h["informative_last"], True),
              _spark(info["informative_ratio"].to_list()))
    t.add_row("response tokens", _f(h["length_first"]), _f(h["length_last"]),
              _spark(curve["response_tokens_mean"].to_list()))
    con.print(t)
    d = figs["difficulty"]
    t = Table(title=f"difficulty: {d['source']}")
    t.add_column("pass rate")
    t.add_column("start", justify="right")
    t.add_column("end", justify="right")
    for i, (a, b) in enumerate(zip(d["start"], d["end"], strict=True)):
        t.add_row(f"{i / 10:.1f}-{(i + 1) / 10:.1f}", str(int(a)), str(int(b)))
    con.print(t)
    dom = (figs["domains"].group_by("domain")
           .agg(pl.col("accuracy").first().alias("first"), pl.col("accuracy").last().alias("last"),
                pl.col("responses").sum()).sort("domain"))
    t = Table(title="per domain (accuracy at first and last step)")
    for c in ("domain", "first", "last", "responses"):
        t.add_column(c)
    for r in dom.iter_rows(named=True):
        t.add_row(str(r["domain"]), _f(r["first"], True), _f(r["last"], True), f"{r['responses']:,}")
    con.print(t)
    bins = figs["difficulty_bins"]
    con.print("prompts by pass rate over all rollouts: " +
              ", ".join(f"{b} {bins.get(b, 0)}" for b in ("never", "hard", "medium", "easy", "always")))
    if figs["selection"]["ece"] is not None:
        con.print(f"sampler ({', '.join(figs['selection']['samplers'])}): expected calibration error "
                  f"of its posterior means = {figs['selection']['ece']:.3f} (10 bins, weighted by groups)")
    if len(lake.runs) == 1 and lake.stats_files:
        from pipelines.sampler_value import against_uniform, sampler_value

        if (compared := against_uniform(sampler_value(lake))) is not None:
            con.print(f"informative groups, {compared}")
    if figs["stuck"].height:
        con.print(f"[yellow]{figs['stuck'].height} stuck prompt(s)[/yellow] (sampled in 2+ steps, never solved): "
                  "thresher query RUN --named stuck_prompts")
    for s in figs["skipped"]:
        con.print(f"[red]skipped[/red] {s['file']}: {s['error']}")
    return 0
