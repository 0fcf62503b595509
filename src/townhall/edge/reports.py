"""Listener counts reported by stream workers, as the origin keeps them.

A worker reports *all* its spaces every second, and each report replaces the
last one from the same node: a space missing from the new report is reported
as 0, so a worker that was restarted (its first report is empty) or whose last
listener left zeroes its share instead of leaving a stale count behind.

Each worker's relay is itself one connection of the origin's fan-out, which
the origin counts as a listener; the worker therefore reports its own
listeners minus that relay (so -1 while a relay idles through its grace
period) and the sum over nodes is the number of people listening.

A report may also carry the worker's ``figures`` (WorkerFigures: bytes out,
relay lag...), the counters it keeps anyway, so the node's GET /metrics shows its
stream workers without prometheus-client's multiprocess mode (townhall.metrics).

Pure logic: the origin's route feeds reports in and writes what comes out to
the shared state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Final

MAX_SPACES_PER_REPORT: Final = 10_000
"""A worker carries at most this many live spaces in one report; more is refused."""
MAX_REPORT_BYTES: Final = 1024 * 1024
"""Largest report body the origin reads (from an authenticated worker): 10,000 spaces'
counts and ``one_stream.MAX_OPENED_PER_REPORT`` openings fit."""
MAX_NODES: Final = 1_024
"""Distinct worker node ids remembered; a node id is stable per worker slot, so this
bounds a misbehaving (but authenticated) sender, not a real deployment."""


MAX_PEOPLE_PER_SPACE: Final = 24
"""Signed-in listener ids a report names per space: the room shows a few faces and a
count (state.base.AUDIENCE_REPORT_MAX), never the crowd."""
MAX_LISTENER_ID_LENGTH: Final = 64


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


def parse_people(value: object) -> dict[str, list[str]]:
    """The optional ``people`` object of a report, checked: space id → the signed-in
    listener ids streaming there (at most MAX_PEOPLE_PER_SPACE; an empty list says that
    nobody signed in is any more)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportRefused("people must be an object")
    if len(value) > MAX_SPACES_PER_REPORT:
        raise ReportRefused(f"at most {MAX_SPACES_PER_REPORT} spaces per report")
    people: dict[str, list[str]] = {}
    for space_id, ids in value.items():
        if not isinstance(ids, list) or len(ids) > MAX_PEOPLE_PER_SPACE:
            raise ReportRefused(f"people of a space: a list of at most {MAX_PEOPLE_PER_SPACE}")
        if not all(isinstance(i, str) and len(i) <= MAX_LISTENER_ID_LENGTH for i in ids):
            raise ReportRefused("people of a space must be listener ids")
        people[str(space_id)] = ids
    return people


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """One stream worker's own counters, as its last report gave them."""

    listeners: int = 0
    bytes_out: int = 0
    """Every byte its fan-outs handed to listeners since the worker started (a counter)."""
    cut_slow: int = 0
    """Listeners cut for falling behind, since the worker started (a counter)."""
    relay_lag_s: float = 0.0
    """Age of the newest chunk from the origin, the oldest over its relays: a relay
    that stalls shows here long before its listeners complain."""
    relays: int = 0

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def parse_figures(value: object) -> WorkerFigures:
    """The optional ``figures`` object of a report, checked: known names, finite
    non-negative numbers (unknown names are ignored so workers may add figures first)."""
    if value is None:
        return WorkerFigures()
    if not isinstance(value, dict):
        raise ReportRefused("figures must be an object")
    known: dict[str, float | int] = {}
    for field in fields(WorkerFigures):
        number = value.get(field.name, 0)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ReportRefused(f"figures.{field.name} must be a number")
        if not math.isfinite(number) or number < 0:
            raise ReportRefused(f"figures.{field.name} must be finite and >= 0")
        known[field.name] = float(number) if field.type == "float" else int(number)
    return WorkerFigures(**known)  # type: ignore[arg-type]


class ListenerReports:
    """The last report of every worker node."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, int]] = {}
        self._figures: dict[str, WorkerFigures] = {}

    def replace(
        self, node_id: str, counts: Mapping[str, int], figures: WorkerFigures | None = None
    ) -> list[tuple[str, int]]:
        """Take ``node_id``'s new report; returns the (space_id, count) pairs that changed,
        zeros for the spaces it no longer reports."""
        previous = self._last.pop(node_id, {})
        self._figures.pop(node_id, None)
        if len(self._last) >= MAX_NODES:
            oldest = next(iter(self._last))
            self._last.pop(oldest)
            self._figures.pop(oldest, None)
        changed = [(space, n) for space, n in counts.items() if previous.get(space) != n]
        changed += [(space, 0) for space in previous if space not in counts and previous[space]]
        self._last[node_id] = {space: count for space, count in counts.items() if count}
        if figures is not None:
            self._figures[node_id] = figures
        return changed

    def nodes(self) -> list[str]:
        return list(self._last)

    def counts(self) -> dict[str, dict[str, int]]:
        """node id → space id → listeners, as last reported (zeros left out)."""
        return {node: dict(counts) for node, counts in self._last.items()}

    def figures(self) -> dict[str, WorkerFigures]:
        """node id → the figures of its last report that carried any."""
        return dict(self._figures)
