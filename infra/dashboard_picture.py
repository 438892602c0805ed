"""A picture of the stack's CloudWatch dashboard: its widgets where the dashboard body puts them
(CloudWatch's 24-column grid), each with its title and the metrics it plots, and under them the
stack's alarms. Drawn from `infra.template` (the body the stack deploys), so it cannot drift from
it; no AWS account needed. `python -m infra.dashboard_picture` writes docs/cloudwatch-dashboard.svg,
`--check` fails when the committed picture is not what the template draws (make test runs it).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from html import escape
from typing import Any

from include.settings import PROJECT_ROOT
from infra.monitoring import alarms, dashboard_body

PICTURE_FILE = PROJECT_ROOT / "docs" / "cloudwatch-dashboard.svg"
COLUMN, ROW = 44, 30  # pixels per grid column and per grid row
MARGIN, LINE = 12, 15
LABEL_WIDTH = 200  # pixels per column of metric labels in a widget
TEXT_WIDTH = 170  # characters per line of a text widget


def _label(row: list[Any]) -> str:
    options = row[-1] if isinstance(row[-1], dict) else {}
    return str(options.get("label") or row[1])


def _text(
    x: float, y: float, text: str, size: int = 12, weight: str = "normal", fill: str = "#16191f"
) -> str:
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" font-weight="{weight}" fill="{fill}">'
        f"{escape(text)}</text>"
    )


def _widget(widget: dict[str, Any]) -> list[str]:
    x, y = MARGIN + widget["x"] * COLUMN, MARGIN + widget["y"] * ROW
    w, h = widget["width"] * COLUMN - 6, widget["height"] * ROW - 6
    props = widget["properties"]
    out = [
        f'<rect class="widget" x="{x}" y="{y}" width="{w}" height="{h}" rx="4" '
        'fill="#ffffff" stroke="#aab7b8"/>'
    ]
    if widget["type"] == "text":
        title, *rest = [line.lstrip("# ") for line in props["markdown"].splitlines()]
        lines = [title, *textwrap.wrap(" ".join(rest), TEXT_WIDTH)]
        out.append(_text(x + 10, y + 20, lines[0], 15, "bold"))
        out += [
            _text(x + 10, y + 20 + LINE * (i + 1), line, 11, fill="#545b64")
            for i, line in enumerate(lines[1:])
        ]
        return out
    out.append(_text(x + 10, y + 20, props["title"], 13, "bold"))
    out.append(_text(x + 10, y + 36, f"{props['stat']} per day", 10, fill="#687078"))
    labels = [_label(row) for row in props["metrics"]]
    per_column = max(1, (h - 50) // LINE)
    columns = max(1, w // LABEL_WIDTH)
    if len(labels) > per_column * columns:
        keep = per_column * columns - 1
        labels = [*labels[:keep], f"... and {len(labels) - keep} more"]
    for i, label in enumerate(labels):
        lx, ly = x + 10 + (i // per_column) * LABEL_WIDTH, y + 54 + (i % per_column) * LINE
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 14}" y2="{ly - 4}" stroke="#0073bb" stroke-width="2"/>'
        )
        out.append(_text(lx + 20, ly, label, 11))
    for i, line in enumerate((props.get("annotations") or {}).get("horizontal", [])):
        out.append(
            _text(
                x + w - 140, y + 20 + i * 13, f"line at {line['value']}: {line['label']}", 10, fill="#d13212"
            )
        )
    return out


def svg() -> str:
    widgets = dashboard_body()["widgets"]
    bottom = max(w["y"] + w["height"] for w in widgets)
    found = alarms()
    width = 2 * MARGIN + 24 * COLUMN
    alarm_top = MARGIN + bottom * ROW + 16
    height = alarm_top + 24 + LINE * len(found) + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f2f3f3"/>',
    ]
    for widget in widgets:
        parts += _widget(widget)
    parts.append(_text(MARGIN, alarm_top + 10, "Alarms (to the stack's SNS topic)", 13, "bold"))
    for i, resource in enumerate(found.values()):
        props = resource["Properties"]
        parts.append(
            _text(
                MARGIN + 10,
                alarm_top + 28 + i * LINE,
                f"{props['AlarmName']}: {props['AlarmDescription']}",
                11,
                fill="#d13212",
            )
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.dashboard_picture", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="fail when the picture is out of date")
    args = parser.parse_args(argv)
    text = svg()
    if args.check:
        if not PICTURE_FILE.exists() or PICTURE_FILE.read_text() != text:
            print(
                f"{PICTURE_FILE.name} is out of date: run python -m infra.dashboard_picture", file=sys.stderr
            )
            return 1
        return 0
    PICTURE_FILE.write_text(text)
    print(f"wrote {PICTURE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
