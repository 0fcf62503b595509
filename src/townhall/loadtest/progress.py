"""The one-line live view in the terminal, refreshed every second.

Why one line: an operator watching a rehearsal needs to see at a glance
whether people are getting in and hearing audio, and whether errors appear;
a scrolling log hides that. When the output is not a terminal (CI, a file)
a plain line is printed every few seconds instead of redrawing.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

PLAIN_EVERY_S = 5
"""Seconds between lines when stdout/stderr is not a terminal."""
MAX_ERROR_KINDS = 4
"""Error kinds shown on the line (the most frequent); the report has them all."""


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def format_line(row: dict[str, Any], totals: dict[str, Any]) -> str:
    """``row`` is the timeline row just closed; ``totals`` the counts so far. Pure."""
    errors: Counter[str] = Counter(totals.get("errors", {}))
    shown = " ".join(f"{k}={v}" for k, v in errors.most_common(MAX_ERROR_KINDS)) or "none"
    parts = [
        f"t={row['t']:.0f}s",
        f"arr {totals['arrivals']} (+{row['arrivals']}/s)",
        f"adm {totals['admitted']}",
        f"wait {row['waiting']}",
        f"strm {row['streaming']}",
        f"ttfa p50 {_seconds(totals.get('ttfa_p50'))} p99 {_seconds(totals.get('ttfa_p99'))}",
        f"err {sum(errors.values())} [{shown}]",
    ]
    if row.get("server.cpu_percent") is not None:
        parts.append(f"srv cpu {row['server.cpu_percent']:.0f}%")
    if row.get("server.loop_lag_ms") is not None:
        parts.append(f"lag {row['server.loop_lag_ms']:.0f}ms")
    parts.append(f"cli cpu {row.get('client.cpu_percent', 0):.0f}%")
    return " | ".join(parts)


class ProgressPrinter:
    def __init__(self, out: TextIO | None = None, *, interactive: bool | None = None):
        self._out = out or sys.stderr
        self._interactive = self._out.isatty() if interactive is None else interactive
        self._count = 0
        self._width = 0

    def update(self, row: dict[str, Any], totals: dict[str, Any]) -> None:
        line = format_line(row, totals)
        self._count += 1
        if self._interactive:
            pad = " " * max(0, self._width - len(line))
            self._width = len(line)
            self._out.write(f"\r{line}{pad}")
            self._out.flush()
        elif self._count % PLAIN_EVERY_S == 0:
            self._out.write(line + "\n")
            self._out.flush()

    def finish(self) -> None:
        if self._interactive and self._width:
            self._out.write("\n")
            self._out.flush()
