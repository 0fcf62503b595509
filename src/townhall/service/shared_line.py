"""The waiting room's numbers, shared by every node of a deployment.

With one node the door's waiting room keeps its counters in memory. With many, a
place in line must be one number whichever node hands it out or is polled: the State
holds each space's arrival sequence and "admitted up to" (townhall.state: an INCR and
a short Lua script), and each node's room follows them. A join that must wait costs
one call to the State; a join admitted at once (nobody in line) costs none, and polls
are answered from the room's copy, which `sync` refreshes every line tick: each node
adds what its own admission rate granted since the last sync and takes in the other
nodes' arrivals and admissions. The numbers of the priority lane stay per node.

The line moves at the sum of the nodes' rates, not at this node's: `sync` measures the
pace of the shared "admitted up to" (a moving average over LINE_RATE_TAU_S) and gives
it to the room for its ETAs, so a place in line is told the wait every node's
admissions make, and a node that dies slows the ETAs as it slows the line.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable

from townhall.admission.waiting_room import WaitingRoom
from townhall.state import State

LINE_RATE_TAU_S = 3.0
"""Time constant of the line's measured pace: a few line ticks' worth of admissions."""


class SharedLine:
    def __init__(self, state: State, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._clock = clock
        self._pushed: dict[str, float] = {}
        """Per space with a room here: our counter's value once the last sync was in."""
        self._paces: dict[str, tuple[float, float, float]] = {}
        """Per space: (when, the shared admitted-up-to then, its measured pace per s)."""

    @staticmethod
    def epoch(space_id: str) -> int:
        """The same on every node, so a queue token from one checks out on another."""
        return zlib.crc32(space_id.encode())

    async def number(self, space_id: str) -> int:
        """The next place in the space's one line (0-based, as the room counts)."""
        return await self._state.next_arrival(space_id) - 1

    async def sync(self, space_id: str, room: WaitingRoom) -> None:
        """Adds the admissions this node's room granted since the last sync to the shared
        counter, then takes in every node's arrivals and admissions."""
        counters = room.state.normal
        own = counters.admitted_upto - self._pushed.get(space_id, 0.0)
        whole = int(own) if own >= 1 else 0
        if whole:
            await self._state.advance_admitted(space_id, whole)
        arrivals, admitted = await self._state.waiting_counters(space_id)
        room.follow(arrivals, float(admitted))
        self._pushed[space_id] = counters.admitted_upto - (own - whole)
        room.line_rate = self._pace(space_id, admitted, waiting=arrivals > admitted)

    def _pace(self, space_id: str, admitted: int, waiting: bool) -> float:
        """Admissions per second of the whole line, averaged while anyone waits (an empty
        line admits nobody by number and says nothing of its pace)."""
        now = self._clock()
        then, before, pace = self._paces.get(space_id, (now, admitted, 0.0))
        dt = now - then
        if dt > 0 and waiting:
            weight = 1.0 - math.exp(-dt / LINE_RATE_TAU_S)
            pace += weight * ((admitted - before) / dt - pace)
        self._paces[space_id] = (now, admitted, pace)
        return pace

    def forget(self, space_id: str) -> None:
        self._pushed.pop(space_id, None)
        self._paces.pop(space_id, None)
