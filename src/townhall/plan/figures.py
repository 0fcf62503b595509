"""The measured figures a plan is computed from (bench/figures.json, written by
`python -m bench`). Only measured numbers: a missing one is an error, not a default."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class FiguresError(ValueError):
    """The figures file is missing, unreadable or lacks a figure the plan needs."""


@dataclass(frozen=True)
class MeasuredFigures:
    listeners_per_core: float
    """Live listeners one core holds (CPU of the fan-out at the bench's chunk size)."""
    rss_bytes_per_listener: float
    node_base_rss_bytes: float
    """A node's resident memory with one live space and no listener."""
    space_cpu_share_of_core: float
    """One live space with one speaker, before any listener (the bench's idle phase)."""
    full_joins_per_s_per_core: float
    """Snapshot + join + first audio byte, per core of the node that answered them."""
    delivered_kbps_per_listener: float
    bitrate_bps: float
    """The bitrate those figures were measured at."""
    chunk_ms: int = 0
    """The live chunk size the fan-out was measured with (fewer, bigger writes are cheaper)."""
    measured_at: str = ""
    command: str = ""
    machine: str = ""

    @property
    def wire_overhead(self) -> float:
        """Bytes on the wire per byte of audio bitrate (ADTS framing), as delivered."""
        return self.delivered_kbps_per_listener * 1000 / self.bitrate_bps


NOT_FIGURES = ("chunk_ms", "measured_at", "command", "machine")
NEEDED = tuple(f.name for f in fields(MeasuredFigures) if f.name not in NOT_FIGURES)


def load_figures(path: Path) -> MeasuredFigures:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FiguresError(f"cannot read {path}: {error}") from None
    figures = {**data.get("figures", {}), "bitrate_bps": data.get("bitrate_bps")}
    missing = [name for name in NEEDED if not isinstance(figures.get(name), int | float)]
    if missing:
        raise FiguresError(
            f"{path} lacks {', '.join(missing)}: run `python -m bench` (townhall side) first"
        )
    machine = data.get("machine", {})
    return MeasuredFigures(
        **{name: float(figures[name]) for name in NEEDED},
        chunk_ms=int(data.get("chunk_ms") or 0),
        measured_at=str(data.get("measured_at", "")),
        command=str(data.get("command", "")),
        machine=f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
    )
