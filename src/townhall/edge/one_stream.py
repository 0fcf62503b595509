"""One ticket, one live stream per node, across the origin and its stream workers.

Within one process a second connection with the same ticket replaces the first
(``LiveFanout.attach(..., replace=True)``). With stream workers the kernel
picks the process (SO_REUSEPORT), so one ticket could hold one stream per
worker plus one on the origin. This closes that gap without a round trip when
a stream opens: every process keeps serving at once, and the *newest* stream
of a ticket wins a moment later.

* A worker notes each stream it opens (space, listener id, when) and sends the
  ones opened since its last report with its count report (townhall.edge.reports).
* The origin keeps a bounded map ticket -> (node, opened) of the latest stream
  it heard of (the origin's own streams go in directly). A report's opening
  that is newer than the holder on another node queues a cut for that node;
  one that is older than a holder elsewhere comes back at once as a cut for
  the reporting worker itself.
* Each report's answer carries the worker's queued cuts (``replaced``): cut the
  connections of that ticket that opened *before* the newer one, so a newer
  reconnect on the same worker in the meantime is never cut.

Times are ``time.monotonic()``, one clock for every process of a node
(CLOCK_MONOTONIC), so openings on different processes compare directly. The
older stream ends within two report intervals (the newer one's report, then
the older holder's next report) plus their round trips: about 2 s by default.
A restarted worker keeps its node id; stale holds pointing at it only produce
cuts that find no older connection there and do nothing. Pure logic, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple

from townhall.audience.fanout import LiveFanout

ORIGIN_NODE: Final = "origin"
"""The node id of the origin process's own streams (workers' ids name their port)."""
MAX_OPENED_PER_REPORT: Final = 5_000
"""Openings one report carries (~170 KB, bench/one_stream.py); a worker with more reports
again at once (20 ms apart) until they are all sent."""
MAX_PENDING_OPENINGS: Final = 100_000
"""Openings a worker keeps for its next reports; past this (a report-less origin for a
long crowd) the oldest are dropped and counted: only their duplicate check is lost."""
MAX_HOLDS: Final = 200_000
"""Tickets the origin remembers (the latest stream of each); the least recently opened
is forgotten first, which only matters for a ticket that then reconnects elsewhere."""
MAX_CUTS_PER_NODE: Final = 100_000
"""Cuts queued for one node until its next report; past this the oldest are dropped."""
MAX_CUTS_PER_ANSWER: Final = 5_000
"""Cuts one report answer carries; more wait for the next answer."""
MAX_NODES: Final = 1_024
"""Nodes with queued cuts; node ids are stable per worker slot (see edge.reports)."""

StreamKey = tuple[str, str]
"""(space_id, listener_id): one ticket."""


class OpeningsRefused(ValueError):
    pass


class Opening(NamedTuple):
    """A stream of ``listener_id`` in ``space_id`` opened (or, in a cut: older than) ``at``.
    A named tuple: one is made per stream opened, on the hot path (a third of the cost of
    a frozen dataclass)."""

    space_id: str
    listener_id: str
    at: float


def to_wire(openings: Iterable[Opening]) -> dict[str, list[list[str | float]]]:
    """``{space_id: [[listener_id, at], ...]}``: the report's ``opened`` and the answer's
    ``replaced`` (grouped by space: one crowd is mostly one space)."""
    wire: dict[str, list[list[str | float]]] = {}
    for opening in openings:
        wire.setdefault(opening.space_id, []).append([opening.listener_id, round(opening.at, 6)])
    return wire


def parse_wire(value: object, limit: int) -> list[Opening]:
    """The checked form of ``to_wire``'s output (None: none), at most ``limit`` entries."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise OpeningsRefused("openings must be an object")
    parsed: list[Opening] = []
    for space_id, entries in value.items():
        if not isinstance(entries, list):
            raise OpeningsRefused("each space's openings must be a list")
        for entry in entries:
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or not isinstance(entry[0], str)
                or not isinstance(entry[1], int | float)
                or isinstance(entry[1], bool)
            ):
                raise OpeningsRefused("each opening must be [listener_id, time]")
            parsed.append(Opening(str(space_id), entry[0], float(entry[1])))
            if len(parsed) > limit:
                raise OpeningsRefused(f"at most {limit} openings")
    return parsed


class Openings:
    """A worker's streams opened since its last report (bounded; oldest dropped)."""

    def __init__(self, limit: int = MAX_PENDING_OPENINGS) -> None:
        self._pending: deque[Opening] = deque(maxlen=limit)
        self.dropped = 0

    def opened(self, space_id: str, listener_id: str, at: float) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(Opening(space_id, listener_id, at))

    def take(self, limit: int = MAX_OPENED_PER_REPORT) -> list[Opening]:
        """The oldest ``limit`` openings, for one report."""
        return [self._pending.popleft() for _ in range(min(limit, len(self._pending)))]

    def put_back(self, openings: list[Opening]) -> None:
        """A report that failed: its openings go first in the next one (room permitting)."""
        room = (self._pending.maxlen or 0) - len(self._pending)
        keep = openings[max(0, len(openings) - room) :] if room > 0 else []
        self.dropped += len(openings) - len(keep)
        self._pending.extendleft(reversed(keep))

    def __len__(self) -> int:
        return len(self._pending)


@dataclass(frozen=True, slots=True)
class _Hold:
    node: str
    at: float


class TicketHolders:
    """The origin's view: which node holds each ticket's latest stream, and the cuts each
    node must still make because a newer stream of the ticket opened elsewhere."""

    def __init__(self, max_holds: int = MAX_HOLDS) -> None:
        self._holds: OrderedDict[StreamKey, _Hold] = OrderedDict()
        self._max_holds = max_holds
        self._cuts: dict[str, OrderedDict[StreamKey, float]] = {}
        self.superseded = 0
        """Streams found older than one of the same ticket on another node."""

    def record(self, node: str, openings: Iterable[Opening]) -> None:
        """Take ``node``'s new streams; queues the cuts they make necessary (for other
        nodes, or for ``node`` itself when it reports a stream older than another's)."""
        for opening in openings:
            key = (opening.space_id, opening.listener_id)
            held = self._holds.get(key)
            if held is None or held.node == node:
                if held is None or opening.at >= held.at:
                    self._hold(key, _Hold(node, opening.at))
            elif opening.at >= held.at:
                self._queue_cut(held.node, key, opening.at)
                self._hold(key, _Hold(node, opening.at))
            else:
                self._queue_cut(node, key, held.at)

    def cuts_for(self, node: str, limit: int = MAX_CUTS_PER_ANSWER) -> list[Opening]:
        """The cuts queued for ``node`` (at most ``limit``; the rest stay queued): cut the
        ticket's connections there that opened before ``at``."""
        queued = self._cuts.get(node)
        if not queued:
            return []
        taken = [queued.popitem(last=False) for _ in range(min(limit, len(queued)))]
        if not queued:
            del self._cuts[node]
        return [Opening(space, listener, at) for (space, listener), at in taken]

    def __len__(self) -> int:
        return len(self._holds)

    def _hold(self, key: StreamKey, hold: _Hold) -> None:
        self._holds[key] = hold
        self._holds.move_to_end(key)
        while len(self._holds) > self._max_holds:
            self._holds.popitem(last=False)

    def _queue_cut(self, node: str, key: StreamKey, before: float) -> None:
        self.superseded += 1
        queued = self._cuts.get(node)
        if queued is None:
            if len(self._cuts) >= MAX_NODES:
                self._cuts.pop(next(iter(self._cuts)))
            queued = self._cuts[node] = OrderedDict()
        queued[key] = max(before, queued.get(key, before))
        while len(queued) > MAX_CUTS_PER_NODE:
            queued.popitem(last=False)


def cut_replaced(cuts: Iterable[Opening], fanout_of: Callable[[str], LiveFanout | None]) -> int:
    """Apply cuts to this process's fan-outs (``fanout_of``: a space's, or None);
    returns the connections closed."""
    closed = 0
    for cut in cuts:
        fanout = fanout_of(cut.space_id)
        if fanout is not None:
            closed += fanout.cut_older(cut.listener_id, cut.at)
    return closed
