"""A small inline-SVG plotting helper for self-contained HTML reports.

Line charts and (overlaid) bar charts with axes, nice ticks, labels and a
legend; no external assets, no JavaScript.

>>> svg = line_chart([("reward", [0, 1, 2], [0.1, 0.5, 0.7])], title="t", xlabel="step", ylabel="r")
>>> svg.startswith("<svg") and "polyline" in svg
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
W, H = 560, 340
ML, MR, MT, MB = 74, 16, 54, 48  # margins: left (y labels), right, top (title + legend), bottom (x labels)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi].

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9:  # the last tick covers hi, so no point falls off the plot
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.1e}"
    if abs(v) >= 1000:  # counts: 1,250 reads better than 1.25e+03
        return f"{v:,.0f}"
    return f"{v:.3g}"


class _Frame:
    def __init__(self, xlo: float, xhi: float, ylo: float, yhi: float) -> None:
        self.xt = nice_ticks(xlo, xhi)
        self.yt = nice_ticks(ylo, yhi)
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]

    def x(self, v: float) -> float:
        return ML + (v - self.x0) / ((self.x1 - self.x0) or 1) * (W - ML - MR)

    def y(self, v: float) -> float:
        return H - MB - (v - self.y0) / ((self.y1 - self.y0) or 1) * (H - MT - MB)


def _axes(f: _Frame, title: str, xlabel: str, ylabel: str) -> list[str]:
    out = [f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">{escape(title)}</text>']
    for t in f.yt:
        y = f.y(t)
        out.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12">{_fmt(t)}</text>')
    for t in f.xt:
        x = f.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{H - MB}" x2="{x:.1f}" y2="{H - MB + 5}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{H - MB + 18}" text-anchor="middle" font-size="12">{_fmt(t)}</text>')
    out.append(f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="#333"/>')
    out.append(f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="#333"/>')
    out.append(f'<text x="{(ML + W - MR) / 2}" y="{H - 10}" text-anchor="middle" font-size="13">{escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{(MT + H - MB) / 2}" text-anchor="middle" font-size="13" '
               f'transform="rotate(-90 14 {(MT + H - MB) / 2})">{escape(ylabel)}</text>')
    return out


def _legend(names: Sequence[str]) -> list[str]:
    # One row between the title and the plot area, so it never hides data.
    if len(names) < 2 and not (names and names[0]):
        return []
    widths = [28 + 7 * len(str(n)) for n in names]
    x = (W - sum(widths)) / 2
    y = 30
    out = []
    for i, (name, width) in enumerate(zip(names, widths, strict=True)):
        c = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x:.1f}" y="{y}" width="12" height="10" fill="{c}"/>')
        out.append(f'<text x="{x + 16:.1f}" y="{y + 9}" font-size="12">{escape(str(name))}</text>')
        x += width
    return out


def _empty(title: str, message: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img"><rect width="{W}" height="{H}" fill="#fafafa" stroke="#ddd"/>'
            f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="600">{escape(title)}</text>'
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="13" fill="#777">{escape(message)}</text></svg>')


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
               ylabel: str, ylim: tuple[float, float] | None = None, diagonal: bool = False,
               markers: bool = False) -> str:
    """Lines, one per (name, xs, ys); NaN / None points are skipped."""
    pts = [[(float(x), float(y)) for x, y in zip(xs, ys, strict=True)
            if x is not None and y is not None and math.isfinite(float(y))] for _, xs, ys in series]
    allp = [p for s in pts for p in s]
    if not allp:
        return _empty(title, "no data")
    xs = [p[0] for p in allp]
    ys = [p[1] for p in allp]
    ylo, yhi = ylim if ylim else (min(ys), max(ys))
    f = _Frame(min(xs), max(xs), ylo, yhi)
    out = _axes(f, title, xlabel, ylabel)
    if diagonal:
        lo, hi = max(f.x0, f.y0), min(f.x1, f.y1)
        out.append(f'<line x1="{f.x(lo):.1f}" y1="{f.y(lo):.1f}" x2="{f.x(hi):.1f}" y2="{f.y(hi):.1f}" '
                   'stroke="#999" stroke-dasharray="4 3"/>')
    for i, s in enumerate(pts):
        c = PALETTE[i % len(PALETTE)]
        if len(s) == 1 or markers:
            out.extend(f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill="{c}"/>' for x, y in s)
        if len(s) > 1:
            coords = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in s)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{c}" stroke-width="2"/>')
    out.extend(_legend([name for name, _, _ in series]))
    return _wrap(out, title)


def bar_chart(edges: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
              xlabel: str, ylabel: str) -> str:
    """Histogram-style bars over bins [edges[i], edges[i+1]); several series side by side."""
    if not series or not any(any(v for v in vals) for _, vals in series):
        return _empty(title, "no data")
    top = max(max(vals) for _, vals in series)
    f = _Frame(edges[0], edges[-1], 0, top)
    out = _axes(f, title, xlabel, ylabel)
    k = len(series)
    for j, (_, vals) in enumerate(series):
        c = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(vals):
            x0, x1 = f.x(edges[i]), f.x(edges[i + 1])
            w = (x1 - x0 - 2) / k
            xl = x0 + 1 + j * w
            out.append(f'<rect x="{xl:.1f}" y="{f.y(v):.1f}" width="{max(w, 0.5):.1f}" '
                       f'height="{max(f.y(0) - f.y(v), 0):.1f}" fill="{c}" fill-opacity="0.85"/>')
    out.extend(_legend([name for name, _ in series]))
    return _wrap(out, title)


def _wrap(parts: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" role="img" aria-label="{escape(title)}">'
            + "".join(parts) + "</svg>")
