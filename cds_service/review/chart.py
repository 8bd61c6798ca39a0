"""Horizontal bar charts as inline SVG, drawn on the server (no JavaScript)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

BAR_HEIGHT = 22
GAP = 8
LABEL_WIDTH = 340
BAR_WIDTH = 380
VALUE_WIDTH = 80


def bar_chart(title: str, rows: Sequence[tuple[str, float]],
              fmt: Callable[[float], str] = lambda v: f"{v:g}", max_value: float | None = None) -> Markup:
    """An accessible SVG: role=img with a title; each bar has its label and value as text."""
    top = max((v for _, v in rows), default=0) if max_value is None else max_value
    height = max(len(rows), 1) * (BAR_HEIGHT + GAP) + GAP
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="t-{id(rows)}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="chart">',
             f'<title id="t-{id(rows)}">{escape(title)}</title>']
    if not rows:
        parts.append(f'<text x="0" y="{BAR_HEIGHT}" font-size="14">No data</text>')
    for i, (label, value) in enumerate(rows):
        y = GAP + i * (BAR_HEIGHT + GAP)
        length = 0 if not top else max(1.0, BAR_WIDTH * value / top) if value else 0
        short = label if len(label) <= 44 else label[:43] + "…"
        parts.append(
            f'<g><text x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT - 6}" text-anchor="end" '
            f'font-size="13">{escape(short)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" fill="#2b6cb0">'
            f'<title>{escape(label)}: {escape(fmt(value))}</title></rect>'
            f'<text x="{LABEL_WIDTH + length + 6:.1f}" y="{y + BAR_HEIGHT - 6}" font-size="13">'
            f'{escape(fmt(value))}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))
