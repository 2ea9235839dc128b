"""The figures of a run, for `thresher stats` (terminal) and `thresher report` (HTML).

`run_figures(lake)` computes every figure once with DuckDB (the named queries
plus a few report-only ones); `render_html(figures)` turns them into a single
self-contained HTML page with inline SVG plots (no external assets).

>>> import tempfile, pathlib
>>> from curate.rollout_log import RolloutWriter
>>> from pipelines.query import connect
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> w = RolloutWriter(run, "demo")
>>> for s in range(3):
...     _ = w.write({"step": [s] * 4, "sample_id": ["a", "a", "b", "b"], "group": [0, 0, 1, 1],
...                  "response_idx": [0, 1, 0, 1], "prompt": ["p"] * 4, "response": ["r"] * 4,
...                  "reward": [1.0, 0.0, 1.0, 1.0], "correct": [True, False, True, True]})
>>> figs = run_figures(connect(run))
>>> figs["headline"]["steps"], round(figs["headline"]["accuracy_last"], 2)
(3, 0.75)
>>> "<svg" in render_html(figs)
True
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from pipelines.query import Lake, run_named
from pipelines.svgplot import bar_chart, line_chart
from sampling.calibration import expected_calibration_error

HIST_EDGES = [i / 10 for i in range(11)]
IMAGE_PROMPTS = 8  # image prompts the report shows beside their pass rates


def _q(lake: Lake, sql: str) -> pl.DataFrame:
    rel = lake.sql(sql)
    t = rel.arrow()
    return pl.from_arrow(t.read_all() if hasattr(t, "read_all") else t)


def _named(lake: Lake, name: str) -> pl.DataFrame:
    t = run_named(lake, name).arrow()
    return pl.from_arrow(t.read_all() if hasattr(t, "read_all") else t)


def _hist(values: np.ndarray) -> list[float]:
    counts, _ = np.histogram(np.clip(values, 0, 1), bins=HIST_EDGES)
    return counts.astype(float).tolist()


def run_figures(lake: Lake) -> dict[str, Any]:
    """Every figure of the report as small polars frames and numbers."""
    curve = _named(lake, "reward_curve")
    info = _named(lake, "informative_ratio")
    domains = _named(lake, "domain_curves")
    length = _named(lake, "length_vs_reward")
    rates = _named(lake, "pass_rates")
    stuck = _named(lake, "stuck_prompts")
    n_rows = _q(lake, "SELECT count(*) AS n, count(DISTINCT sample_id) AS prompts, "
                      "count(DISTINCT run_id) AS runs FROM rollouts").row(0, named=True)
    steps = curve["step"].unique().sort().to_list()
    k = max(1, len(steps) // 10)  # first / last tenth of the steps (at least one step)
    first, last = steps[:k], steps[-k:]
    head = curve.filter(pl.col("step").is_in(first))
    tail = curve.filter(pl.col("step").is_in(last))
    headline = {
        "runs": int(n_rows["runs"]), "rows": int(n_rows["n"]), "prompts": int(n_rows["prompts"]),
        "steps": len(steps), "first_steps": f"{first[0]}-{first[-1]}" if steps else "-",
        "last_steps": f"{last[0]}-{last[-1]}" if steps else "-",
        "reward_first": _mean(head["reward_mean"]), "reward_last": _mean(tail["reward_mean"]),
        "accuracy_first": _mean(head["accuracy"]), "accuracy_last": _mean(tail["accuracy"]),
        "informative_first": _mean(info.filter(pl.col("step").is_in(first))["informative_ratio"]),
        "informative_last": _mean(info.filter(pl.col("step").is_in(last))["informative_ratio"]),
        "length_first": _mean(head["response_tokens_mean"]), "length_last": _mean(tail["response_tokens_mean"]),
    }
    # difficulty at start and end: posterior means of the first and last stats snapshots,
    # else per-prompt pass rates over the first / last tenth of the steps
    snaps = _q(lake, "SELECT DISTINCT snapshot_step FROM stats ORDER BY 1")["snapshot_step"].to_list()
    if len(snaps) >= 1:
        def post(step: int) -> np.ndarray:
            return _q(lake, f"SELECT alpha / (alpha + beta) AS p FROM stats WHERE snapshot_step = {int(step)} "
                            "AND alpha IS NOT NULL")["p"].to_numpy()
        diff_start, diff_end = post(snaps[0]), post(snaps[-1])
        diff_source = f"posterior mean pass rate, stats snapshots at step {snaps[0]} and {snaps[-1]}"
        population = diff_end
    else:
        def window(ss: list[int]) -> np.ndarray:
            lst = ",".join(str(int(s)) for s in ss) or "NULL"
            return _q(lake, "SELECT avg(CAST(correct AS DOUBLE)) AS p FROM rollouts "
                            f"WHERE step IN ({lst}) GROUP BY sample_id")["p"].to_numpy()
        diff_start, diff_end = window(first), window(last)
        diff_source = "observed pass rate per prompt over the first and last tenth of the steps (no stats snapshot)"
        population = _q(lake, "SELECT avg(CAST(correct AS DOUBLE)) AS p FROM rollouts GROUP BY sample_id")["p"].to_numpy()
    # sampler selection: p_estimate at selection (one per group) against what the group then scored
    sel = _q(lake, """
        SELECT any_value(p_estimate) AS p_est, avg(CAST(correct AS DOUBLE)) AS acc, any_value(sampler) AS sampler
        FROM rollouts WHERE p_estimate IS NOT NULL
        GROUP BY run_id, step, coalesce("group", hash(sample_id))""")
    calib = None
    if sel.height:
        calib = (sel.with_columns(bin=(pl.col("p_est").clip(0, 0.9999) * 10).floor() / 10)
                 .group_by("bin").agg(pl.col("acc").mean().alias("observed"), pl.col("p_est").mean().alias("predicted"),
                                      pl.len().alias("groups")).sort("bin"))
    bins = rates.group_by(
        pl.when(pl.col("pass_rate") <= 0).then(pl.lit("never")).when(pl.col("pass_rate") >= 1).then(pl.lit("always"))
        .when(pl.col("pass_rate") < 0.3).then(pl.lit("hard")).when(pl.col("pass_rate") < 0.7).then(pl.lit("medium"))
        .otherwise(pl.lit("easy")).alias("bin")).len()
    return {
        "image_prompts": image_prompts(lake),
        "runs": [str(r) for r in lake.runs], "skipped": lake.skipped, "headline": headline,
        "curve": curve, "informative": info, "domains": domains, "length": length, "stuck": stuck,
        "difficulty": {"start": _hist(diff_start), "end": _hist(diff_end), "source": diff_source,
                       "n_start": len(diff_start), "n_end": len(diff_end)},
        "difficulty_bins": dict(zip(bins["bin"].to_list(), bins["len"].to_list(), strict=True)),
        "selection": {"selected": _hist(sel["p_est"].to_numpy()) if sel.height else [],
                      "population": _hist(population), "calibration": calib,
                      "ece": _ece(sel),
                      "samplers": sorted(x for x in sel["sampler"].unique().to_list() if x) if sel.height else []},
    }


def image_prompts(lake: Lake, n: int = IMAGE_PROMPTS) -> pl.DataFrame:
    """Up to `n` image prompts spread over the range of pass rates (lowest to highest),
    with their first image reference, domain, prompt text, responses and pass rate.

    Empty for a text-only run (or a log older than the `images` column).
    """
    rows = _q(lake, """
        SELECT sample_id, any_value(domain) AS domain, any_value(prompt) AS prompt,
               any_value(images[1].path) AS path, any_value(images[1].sha256) AS sha256,
               count(*) AS responses, avg(CAST(correct AS DOUBLE)) AS pass_rate
        FROM rollouts WHERE images IS NOT NULL AND len(images) > 0
        GROUP BY sample_id ORDER BY pass_rate, responses DESC, sample_id""")
    if rows.height <= n:
        return rows
    pick = np.unique(np.linspace(0, rows.height - 1, n).round().astype(int))
    return rows[pick.tolist()]


def _image_tag(path: str | None) -> str:
    """An <img> with the file inlined (the report stays one self-contained file), or a note."""
    import base64
    import mimetypes

    try:
        with open(path or "", "rb") as fh:
            data = fh.read()
    except OSError:
        return f"<span class='warn'>image unavailable: {html.escape(str(path))}</span>"
    mime = mimetypes.guess_type(path or "")[0] or "image/png"
    return (f"<img alt='{html.escape(str(path))}' src='data:{mime};base64,"
            f"{base64.b64encode(data).decode()}' style='width:96px;image-rendering:pixelated'>")


def _ece(sel: pl.DataFrame) -> float | None:
    """Expected calibration error of the groups' p_estimate against their accuracy."""
    known = sel.drop_nulls(["p_est", "acc"])
    if not known.height:
        return None
    return expected_calibration_error(known["p_est"].to_numpy(), known["acc"].to_numpy())


def _mean(s: pl.Series) -> float:
    v = s.drop_nulls().mean() if s.len() else None
    return float(v) if v is not None else math.nan


def _by_run(df: pl.DataFrame, y: str, label: str = "") -> list[tuple[str, list, list]]:
    out = []
    for (run,), part in df.sort("step").group_by("run_id", maintain_order=True):
        name = f"{label}{run}" if df["run_id"].n_unique() > 1 else label.rstrip(" ")
        out.append((name, part["step"].to_list(), part[y].to_list()))
    return out


def _normalise(vals: list[float]) -> list[float]:
    total = sum(vals) or 1.0
    return [v / total for v in vals]


def plots(figs: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section title, caption, svg) for each plot of the report."""
    curve, info, dom = figs["curve"], figs["informative"], figs["domains"]
    out = []
    out.append(("Reward", "Mean reward of every response, per step.",
                line_chart(_by_run(curve, "reward_mean", "reward "), title="Mean reward per step",
                           xlabel="step", ylabel="mean reward")))
    out.append(("Accuracy", "Share of responses judged correct, per step.",
                line_chart(_by_run(curve, "accuracy", "accuracy "), title="Accuracy per step",
                           xlabel="step", ylabel="accuracy", ylim=(0, 1))))
    out.append(("Informative groups", "Share of groups whose rewards are not all equal (a group with one "
                "reward has zero advantage: no learning signal).",
                line_chart(_by_run(info, "informative_ratio", "informative "), title="Informative-group ratio",
                           xlabel="step", ylabel="informative groups / groups", ylim=(0, 1))))
    d = figs["difficulty"]
    out.append(("Difficulty at start and end", f"Histogram of {d['source']}; "
                f"{d['n_start']} and {d['n_end']} prompts.",
                bar_chart(HIST_EDGES, [("start", d["start"]), ("end", d["end"])],
                          title="Difficulty (pass rate) at start and end", xlabel="pass rate",
                          ylabel="prompts")))
    # A domain gets a handful of responses per step, so raw per-step lines are
    # noise; average over windows of steps (about 40 points a line), weighted by
    # responses, and plot each window at its mean step.
    series = []
    n_steps = dom["step"].n_unique() if dom.height else 0
    width = max(1, math.ceil(n_steps / 40))
    for (name,), part in dom.sort("step").group_by("domain", maintain_order=True):
        agg = (part.with_columns(((pl.col("step") - 1) // width).alias("_w"))
               .group_by("_w")
               .agg(((pl.col("accuracy") * pl.col("responses")).sum() / pl.col("responses").sum())
                    .alias("accuracy"),
                    pl.col("step").mean().alias("step"))
               .sort("_w"))
        series.append((str(name), agg["step"].to_list(), agg["accuracy"].to_list()))
    window_note = f"averaged over windows of {width} steps" if width > 1 else "per step"
    out.append(("Per-domain accuracy", f"Accuracy {window_note}, one line per domain.",
                line_chart(series[:10], title="Accuracy per domain", xlabel="step", ylabel="accuracy",
                           ylim=(0, 1))))
    sel = figs["selection"]
    samplers = ", ".join(sel["samplers"]) or "no sampler recorded p_estimate"
    out.append(("Sampler selection vs posterior mean",
                f"Where the sampler picked prompts ({samplers}): posterior mean at selection of the picked "
                "groups, against the posterior means of the whole prompt set (both normalised).",
                bar_chart(HIST_EDGES, [("selected", _normalise(sel["selected"])),
                                       ("all prompts", _normalise(sel["population"]))] if sel["selected"] else [],
                          title="Selection vs posterior mean", xlabel="posterior mean pass rate",
                          ylabel="share")))
    cal, ece = sel["calibration"], sel["ece"]
    out.append(("Posterior calibration", "Observed group accuracy against the posterior mean the sampler "
                "saw when it picked the group (dashed: perfect calibration)"
                + (f"; expected calibration error {ece:.3f} (10 bins, weighted by groups)."
                   if ece is not None else "."),
                line_chart([("observed", cal["predicted"].to_list(), cal["observed"].to_list())] if cal is not None
                           else [], title="Posterior mean vs observed accuracy", xlabel="posterior mean at selection",
                           ylabel="observed accuracy", ylim=(0, 1), diagonal=True, markers=True)))
    out.append(("Response length", "Mean response length (tokens) per step.",
                line_chart(_by_run(curve, "response_tokens_mean", "length "), title="Response length per step",
                           xlabel="step", ylabel="tokens")))
    ln = figs["length"]
    edges = ln["len_from"].to_list() + ln["len_to"].to_list()[-1:] if ln.height else [0, 1]
    out.append(("Length vs reward", "Accuracy of responses by length bucket.",
                bar_chart(edges, [("accuracy", ln["accuracy"].to_list())] if ln.height else [],
                          title="Accuracy by response length", xlabel="response tokens", ylabel="accuracy")))
    return out


def _num(v: float, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3g}"


def render_html(figs: dict[str, Any], *, title: str | None = None) -> str:
    """A self-contained HTML page: headline table, plots as inline SVG, stuck prompts."""
    h = figs["headline"]
    title = title or "Thresher run report: " + ", ".join(figs["runs"])
    rows = [("runs", h["runs"], ""), ("responses", f"{h['rows']:,}", ""), ("prompts", f"{h['prompts']:,}", ""),
            ("steps", h["steps"], "")]
    trend = [("mean reward", _num(h["reward_first"]), _num(h["reward_last"])),
             ("accuracy", _num(h["accuracy_first"], True), _num(h["accuracy_last"], True)),
             ("informative groups", _num(h["informative_first"], True), _num(h["informative_last"], True)),
             ("response tokens", _num(h["length_first"]), _num(h["length_last"]))]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#f6f6f4}"
             "h1{font-size:22px}h2{font-size:16px;margin:4px 0}.grid{display:grid;grid-template-columns:"
             "repeat(auto-fill,minmax(580px,1fr));gap:16px}.card{background:#fff;border:1px solid #ddd;"
             "border-radius:6px;padding:10px}.cap{font-size:12px;color:#555;margin:4px 0 8px}table{border-collapse:"
             "collapse;font-size:13px;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}"
             ".warn{color:#a40}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='cap'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by <code>thresher report</code>.</p>",
             "<div style='display:flex;gap:24px;flex-wrap:wrap;margin-bottom:16px'><table>"]
    parts += [f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v, _ in rows]
    parts.append("</table><table><tr><th></th><th>first steps " + html.escape(h["first_steps"]) +
                 "</th><th>last steps " + html.escape(h["last_steps"]) + "</th></tr>")
    parts += [f"<tr><th>{k}</th><td>{a}</td><td>{b}</td></tr>" for k, a, b in trend]
    bins = figs["difficulty_bins"]
    parts.append("</table><table><tr><th>difficulty bin (all rollouts)</th><th>prompts</th></tr>")
    parts += [f"<tr><td>{b}</td><td>{bins.get(b, 0)}</td></tr>" for b in ("never", "hard", "medium", "easy", "always")]
    parts.append("</table></div>")
    for s in figs["skipped"]:
        parts.append(f"<p class='warn'>skipped unreadable part {html.escape(s['file'])}: {html.escape(s['error'])}</p>")
    parts.append("<div class='grid'>")
    for name, cap, svg in plots(figs):
        parts.append(f"<div class='card'><h2>{html.escape(name)}</h2><p class='cap'>{html.escape(cap)}</p>{svg}</div>")
    parts.append("</div>")
    imgs = figs.get("image_prompts")
    if imgs is not None and imgs.height:
        parts.append(f"<h2 style='margin-top:18px'>Image prompts ({imgs.height}, from the hardest to "
                     "the easiest): the image beside its pass rate over every response</h2><table>"
                     "<tr><th>image</th><th>pass rate</th><th>responses</th><th>domain</th>"
                     "<th>prompt</th><th>sample_id</th></tr>")
        for r in imgs.iter_rows(named=True):
            parts.append(f"<tr><td>{_image_tag(r['path'])}</td><td>{_num(r['pass_rate'], True)}</td>"
                         f"<td>{r['responses']}</td><td>{html.escape(str(r['domain']))}</td>"
                         f"<td>{html.escape(str(r['prompt'])[:90])}</td>"
                         f"<td><code>{html.escape(str(r['sample_id'])[:12])}</code></td></tr>")
        parts.append("</table>")
    stuck = figs["stuck"]
    if stuck.height:
        parts.append(f"<h2 style='margin-top:18px'>Stuck prompts ({stuck.height}): sampled in 2+ steps, never solved</h2><table>"
                     "<tr><th>sample_id</th><th>domain</th><th>n</th><th>steps</th><th>last step</th><th>prompt</th></tr>")
        for r in stuck.head(15).iter_rows(named=True):
            parts.append(f"<tr><td><code>{html.escape(str(r['sample_id'])[:12])}</code></td><td>{html.escape(str(r['domain']))}"
                         f"</td><td>{r['n']}</td><td>{r['steps']}</td><td>{r['last_step']}</td>"
                         f"<td>{html.escape(str(r['prompt'])[:90])}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)
