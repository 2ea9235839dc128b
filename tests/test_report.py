"""`thresher report` / `thresher stats` and the SVG helper."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.demo_run import synthetic_run
from pipelines.query import connect
from pipelines.report import render_html, run_figures
from pipelines.svgplot import bar_chart, line_chart, nice_ticks

FIX = Path(__file__).parent / "fixtures" / "logs"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return synthetic_run(tmp_path_factory.mktemp("r") / "demo", steps=12, n_prompts=120, batch=8, stats_every=4)


def test_report_is_self_contained_with_every_plot(run):
    html = render_html(run_figures(connect(run)))
    assert html.count("<svg") == 9 and ">no data<" not in html
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", html)  # no external assets
    assert "<script" not in html
    for title in ("Mean reward per step", "Accuracy per step", "Informative-group ratio",
                  "Difficulty (pass rate) at start and end", "Accuracy per domain", "Selection vs posterior mean",
                  "Response length per step"):
        assert title in html, title
    # every line chart has a drawn line, every histogram has bars
    assert html.count("<polyline") >= 5 and html.count("<rect") > 50


def test_figures_match_the_log(run):
    import polars as pl
    figs = run_figures(connect(run))
    raw = pl.read_parquet(sorted((run / "rollouts").glob("*.parquet")))
    h = figs["headline"]
    assert h["rows"] == raw.height and h["steps"] == 12 and h["prompts"] == raw["sample_id"].n_unique()
    last = raw.filter(pl.col("step") == 11)
    assert h["accuracy_last"] == pytest.approx(last["correct"].mean())
    d = figs["difficulty"]
    assert sum(d["start"]) == sum(d["end"]) == 120  # every prompt of the first and last snapshots


def test_cli_report_and_stats(run, capsys):
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").read_text().startswith("<!doctype html>")
    assert main(["stats", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "informative groups" in out and "per domain" in out
    # one run with snapshots: what the sampler got against a uniform draw, steps 1-11
    flat = " ".join(out.split())  # the console wraps long lines
    assert re.search(r"informative groups, steps 1-11: [\d.]+ against ~[\d.]+ .*: [\d.]+x", flat)


def test_report_of_an_imported_single_step_log(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["logs", "import", str(FIX / "math_eval_3.jsonl"), "--out", str(tmp_path / "r")]) == 0
    html = render_html(run_figures(connect(tmp_path / "r")))
    # no sampler data in an evaluation dump: those plots say so instead of drawing nothing
    assert html.count("<svg") == 9 and ">no data<" in html


def test_svg_helpers():
    assert nice_ticks(0, 59)[-1] >= 59 and nice_ticks(0.47, 0.86)[0] <= 0.47
    svg = line_chart([("a", [0, 1, 2], [0.0, float("nan"), 1.0])], title="T", xlabel="x", ylabel="y")
    assert svg.count("<polyline") == 1 and ">T<" in svg
    assert ">no data<" in line_chart([], title="E", xlabel="x", ylabel="y")
    bars = bar_chart([0, 0.5, 1], [("s", [1, 3]), ("t", [2, 0])], title="B", xlabel="x", ylabel="y")
    assert bars.count('fill-opacity="0.85"') == 4


def test_stats_sparkline_bins_the_whole_curve():
    from pipelines.commands.stats import _spark

    rising = [i / 599 for i in range(600)]
    line = _spark(rising, width=24)
    assert len(line) == 24
    assert line[0] == "▁" and line[-1] == "█"  # the start of the run stays in view
    assert list(line) == sorted(line)          # a rising curve never dips
    assert _spark([1.0, float("nan"), None, 0.0], width=24) == "█▁"
    assert _spark([]) == ""
