"""How bench.cluster_rehearsal judges a run: goodput against the capacity of the edges
alive each second, over the saturated seconds only. Pure: timeline rows in, figures out."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster_rehearsal import capacity_goodput


def _row(t: float, admitted: int, waiting: int = 0, **errors: int) -> dict[str, object]:
    return {"t": t, "admitted": admitted, "first_audio": admitted, "waiting": waiting,
            "errors": {kind.replace("_", ":"): n for kind, n in errors.items()}}  # fmt: skip


def test_capacity_counts_the_edges_alive_in_each_saturated_second() -> None:
    rows = [
        _row(1, 5),  # not saturated: nobody waits, nothing shed
        _row(2, 40, waiting=300),
        _row(3, 38, waiting=280),
        _row(4, 20, waiting=250),  # after the kill at t=3.5: one edge of two admits
        _row(5, 19, **{"5xx_503": 2}),  # shed, so saturated
    ]
    figures = capacity_goodput(rows, rate=20.0, edges=2, kill_t=3.5)
    assert figures["saturated_s"] == 4
    assert figures["capacity_admissions"] == 40 + 40 + 20 + 20
    assert figures["admitted"] == 40 + 38 + 20 + 19
    assert figures["share"] == round(117 / 120, 4)


def test_without_a_kill_or_saturation() -> None:
    rows = [_row(1, 30, waiting=10), _row(2, 30, waiting=5)]
    assert capacity_goodput(rows, rate=20.0, edges=2, kill_t=None)["share"] == 0.75
    idle = capacity_goodput([_row(1, 3)], rate=20.0, edges=2, kill_t=None)
    assert idle["saturated_s"] == 0 and idle["share"] is None
