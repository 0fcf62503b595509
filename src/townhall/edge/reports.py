"""Listener counts reported by stream workers, as the origin keeps them.

A worker reports *all* its spaces every second, and each report replaces the
last one from the same node: a space missing from the new report is reported
as 0, so a worker that was restarted (its first report is empty) or whose last
listener left zeroes its share instead of leaving a stale count behind.

Each worker's relay is itself one connection of the origin's fan-out, which
the origin counts as a listener; the worker therefore reports its own
listeners minus that relay (so -1 while a relay idles through its grace
period) and the sum over nodes is the number of people listening.

Pure logic: the origin's route feeds reports in and writes what comes out to
the shared state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

MAX_SPACES_PER_REPORT: Final = 10_000
"""A worker carries at most this many live spaces in one report; more is refused."""
MAX_REPORT_BYTES: Final = 1024 * 1024
"""Largest report body the origin reads (from an authenticated worker): 10,000 spaces'
counts and ``one_stream.MAX_OPENED_PER_REPORT`` openings fit."""
MAX_NODES: Final = 1_024
"""Distinct worker node ids remembered; a node id is stable per worker slot, so this
bounds a misbehaving (but authenticated) sender, not a real deployment."""


class ReportRefused(ValueError):
    pass


def parse_counts(value: object) -> dict[str, int]:
    """The ``counts`` object of a report, checked: space id → int."""
    if not isinstance(value, dict):
        raise ReportRefused("counts must be an object")
    if len(value) > MAX_SPACES_PER_REPORT:
        raise ReportRefused(f"at most {MAX_SPACES_PER_REPORT} spaces per report")
    counts: dict[str, int] = {}
    for space_id, count in value.items():
        if not isinstance(count, int) or isinstance(count, bool):
            raise ReportRefused("every count must be an integer")
        counts[str(space_id)] = count
    return counts


class ListenerReports:
    """The last report of every worker node."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, int]] = {}

    def replace(self, node_id: str, counts: Mapping[str, int]) -> list[tuple[str, int]]:
        """Take ``node_id``'s new report; returns the (space_id, count) pairs that changed,
        zeros for the spaces it no longer reports."""
        previous = self._last.pop(node_id, {})
        if len(self._last) >= MAX_NODES:
            self._last.pop(next(iter(self._last)))
        changed = [(space, n) for space, n in counts.items() if previous.get(space) != n]
        changed += [(space, 0) for space in previous if space not in counts and previous[space]]
        self._last[node_id] = {space: count for space, count in counts.items() if count}
        return changed

    def nodes(self) -> list[str]:
        return list(self._last)
