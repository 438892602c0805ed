"""The run report's charts as inline SVG (bars, lines, a sparkline): drawn here, so the page
needs no script and fetches nothing."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def _label(value: float) -> str:
    """12,345 / 68.83 / 0.003161: whole numbers from 100 up, 4 significant digits below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def svg_bars(labels: Sequence[str], values: Sequence[float], *, title: str, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG: one <rect class="bar"> per value."""
    width, left, bar, gap = 640, 170, 18, 6
    height = 30 + len(values) * (bar + gap)
    top = max([abs(v) for v in values] + [1e-12])
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{html.escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 20 + i * (bar + gap)
        w = (width - left - 90) * abs(value) / top
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{html.escape(str(label))}</text>')
        parts.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{_COLORS[0]}"/>'
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{_label(value)}{html.escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_lines(series: Mapping[str, Sequence[tuple[str, float]]], *, title: str) -> str:
    """A line chart as inline SVG: one <polyline class="line"> per series, x = the dates."""
    width, height, left, bottom = 640, 260, 60, 30
    dates = sorted({d for points in series.values() for d, _ in points})
    values = [v for points in series.values() for _, v in points]
    top = max([*values, 1e-12])
    span = max(len(dates) - 1, 1)

    def xy(d: str, v: float) -> str:
        x = left + (width - left - 130) * dates.index(d) / span
        y = height - bottom - (height - bottom - 20) * v / top
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{html.escape(title)}</title>",
    ]
    if dates:
        parts.append(f'<text x="{left}" y="{height - 8}">{dates[0]}</text>')
        parts.append(f'<text x="{width - 130}" y="{height - 8}" text-anchor="end">{dates[-1]}</text>')
    parts.append(f'<text x="4" y="24">{top:,.0f}</text>')
    for i, (name, points) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        pts = " ".join(xy(d, v) for d, v in sorted(points))
        parts.append(f'<polyline class="line" fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        if len(points) == 1:  # a single day: a dot, since a line needs two points
            parts.append(
                f'<circle cx="{xy(*points[0]).split(",")[0]}" cy="{xy(*points[0]).split(",")[1]}" '
                f'r="4" fill="{color}"/>'
            )
        parts.append(f'<text x="{width - 120}" y="{20 + 16 * i}" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_sparkline(values: Sequence[float | None], *, title: str) -> str:
    """A small trend line as inline SVG: a <polyline class="trend"> per stretch of runs with a
    value (a run without one is a gap; a lone value a dot)."""
    width, height = 120, 24
    known = [v for v in values if v is not None]
    low, span = (min(known), (max(known) - min(known)) or 1.0) if known else (0.0, 1.0)
    step = (width - 4) / max(len(values) - 1, 1)
    segments: list[list[tuple[float, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            segments.append([])
        else:
            segments[-1].append((2 + i * step, height - 3 - (height - 6) * (v - low) / span))
    marks = []
    for seg in filter(None, segments):
        if len(seg) == 1:
            marks.append(f'<circle class="trend" cx="{seg[0][0]:.1f}" cy="{seg[0][1]:.1f}" r="2"/>')
        else:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            marks.append(f'<polyline class="trend" fill="none" stroke-width="1.5" points="{points}"/>')
    return (
        f'<svg class="spark" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'stroke="{_COLORS[0]}" fill="{_COLORS[0]}"><title>{html.escape(title)}</title>{"".join(marks)}</svg>'
    )
