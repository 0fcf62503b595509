"""Tiny inline-SVG charts: lines over time, a scatter, horizontal bars. Pure.

Why hand-made: the report must open anywhere, offline, years later, as one
file; a JavaScript charting library would need the network or be vendored.
A line chart is a few polylines and some ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

WIDTH = 760
HEIGHT = 250
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 40
"""Room for the title and, below it, the legend."""
LEGEND_Y = 31
MARGIN_BOTTOM = 36
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
TICKS = 5
"""Target number of tick intervals per axis; the step is rounded to a nice number."""

Point = tuple[float, float | None]
Series = tuple[str, Sequence[Point]]


def nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at or above ``value`` (> 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def axis(top: float) -> tuple[float, float]:
    """(axis end, tick step): a nice step, about TICKS of them, the end a multiple of it."""
    step = nice_ceiling(top / TICKS) if top > 0 else 1.0
    return max(math.ceil(top / step - 1e-9), 1) * step, step


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def _frame(title: str, y_label: str, x_max: float, y_max: float,
           x_label: str, y_format: Callable[[float], str]) -> list[str]:
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{MARGIN_LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>',
    ]
    _, y_step = axis(y_max)
    for i in range(round(y_max / y_step) + 1):
        y_value = i * y_step
        y = MARGIN_TOP + plot_h - plot_h * y_value / y_max
        out.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" '
                   f'y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{escape(y_format(y_value))}</text>')
    _, x_step = axis(x_max)
    for i in range(round(x_max / x_step) + 1):
        x_value = i * x_step
        x = MARGIN_LEFT + plot_w * x_value / x_max
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 15}" font-size="11" '
                   f'text-anchor="middle">{escape(_fmt(x_value))}</text>')
    out.append(f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" font-size="11" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="12" y="{MARGIN_TOP + plot_h / 2:.1f}" font-size="11" '
               f'text-anchor="middle" transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2:.1f})">'
               f'{escape(y_label)}</text>')
    return out


def _legend(labels: Sequence[str]) -> list[str]:
    out = []
    x = WIDTH - MARGIN_RIGHT
    for i, label in reversed(list(enumerate(labels))):
        text_w = 7 * len(label) + 18
        x -= text_w
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{LEGEND_Y - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 13}" y="{LEGEND_Y}" font-size="11">{escape(label)}</text>')
    return out


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_label: str = "",
    x_label: str = "run time (s)",
    y_format: Callable[[float], str] = _fmt,
) -> str:
    """Lines of (x, y) points; a y of None breaks the line (no data that second)."""
    xs = [x for _, points in series for x, _ in points]
    ys = [y for _, points in series for _, y in points if y is not None]
    x_max, _ = axis(max(xs, default=1.0))
    y_max, _ = axis(max(ys, default=1.0))
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    out = _frame(title, y_label, x_max, y_max, x_label, y_format)
    for i, (_, points) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        run: list[str] = []
        for x, y in [*points, (0.0, None)]:
            if y is None:
                if len(run) == 1:
                    cx, cy = run[0].split(",")
                    out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
                elif run:
                    out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                               f'points="{" ".join(run)}"/>')
                run = []
                continue
            px = MARGIN_LEFT + plot_w * x / x_max
            py = MARGIN_TOP + plot_h - plot_h * min(y, y_max) / y_max
            run.append(f"{px:.1f},{py:.1f}")
    if not ys:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="12" text-anchor="middle" '
                   'fill="#777">no data</text>')
    out.extend(_legend([label for label, _ in series]))
    out.append("</svg>")
    return "\n".join(out)


def scatter_chart(
    title: str,
    points: Sequence[tuple[float, float]],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool = True,
) -> str:
    """Dots, plus the y = x line when ``diagonal`` (told == actual)."""
    top = max([max(x, y) for x, y in points] or [1.0])
    axis_max, _ = axis(top)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    out = _frame(title, y_label, axis_max, axis_max, x_label, _fmt)
    if diagonal:
        out.append(f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" '
                   f'x2="{MARGIN_LEFT + plot_w}" y2="{MARGIN_TOP}" stroke="#aaa" '
                   'stroke-dasharray="4 3"/>')
    for x, y in points:
        px = MARGIN_LEFT + plot_w * x / axis_max
        py = MARGIN_TOP + plot_h - plot_h * y / axis_max
        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{PALETTE[0]}" '
                   'fill-opacity="0.5"/>')
    if not points:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="12" text-anchor="middle" '
                   'fill="#777">nobody waited</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(title: str, items: Sequence[tuple[str, float]]) -> str:
    """Horizontal bars, one per (label, value), largest first as given."""
    bar_h = 18
    height = MARGIN_TOP + bar_h * max(len(items), 1) + 12
    label_w = 230
    plot_w = WIDTH - label_w - MARGIN_RIGHT - 60
    top = max([v for _, v in items] or [1.0]) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{MARGIN_LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = MARGIN_TOP + i * bar_h
        w = plot_w * value / top
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" '
                   f'text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" '
                   f'fill="{PALETTE[1]}"/>')
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="11">'
                   f'{escape(f"{value:g}")}</text>')
    if not items:
        out.append(f'<text x="{label_w}" y="{MARGIN_TOP + 13}" font-size="12" fill="#777">'
                   'none</text>')
    out.append("</svg>")
    return "\n".join(out)
