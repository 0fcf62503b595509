"""An edge's copy of each live program: relayed once from its origin, fanned out here.

An edge holds no stage. The first listener of a space on this edge (the main process's
own live stream, or one of its stream workers asking for its relay) opens one relay
from the node that holds the space's stage, over the origin's existing relay protocol
(GET /internal/program/{id}.aac behind a relay token, townhall.edge.relay); every
later listener of the space here is one more connection of that relay's fan-out. So
the origin sends each program once per edge, whatever the edge's audience.

Why HTTP and not Redis pub/sub: measured side by side in bench/relay_transport.py
(see bench/README.md), the HTTP relay adds less lag and costs the edge less CPU, the
origin already serves it, and it keeps the program's bytes off the Redis that every
node's state depends on.

The relays are the stream workers' (townhall.edge.relay.Relays), one set per origin:
a refusal is remembered a second, a relay lingers `relay_grace_s` after its last
listener, and the space's end closes the fan-out (listeners get EOF). Removals are not
taken from the origin's report answers here: this process reads the shared stage
itself (the API's `is_removed`) before a listener streams.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from cachetools import LRUCache

from townhall.admission.signing import Signer
from townhall.audience.fanout import LiveFanout
from townhall.audience.pollers import RecentPollers
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge.relay import Origin, Refusal, Relay, Relays
from townhall.edge.reports import ListenerReports, WorkerFigures
from townhall.state.base import State

MAX_HLS_SPACES = 10_000
"""Spaces whose HLS pollers this edge counts (the least recently polled go first)."""
MAX_ORIGINS = 256
"""Origins this edge keeps relay sets for; one without relays is dropped past it."""
NO_WAIT_FOR_REMOVALS = 0.0
"""Removals are read from the shared state here, not waited for from the origin."""


@dataclass(frozen=True, slots=True)
class RelayedProgram:
    """One program this edge relays, as its metrics show it."""

    space_id: str
    origin: str
    """The public URL of the origin it is relayed from."""
    listeners: int
    """Connections of this process's fan-out (each stream worker's relay is one)."""
    lag_s: float
    """Age of the newest chunk from the origin (0 before the first): grows when the
    origin's link stalls, long before listeners complain."""


class ProgramRefused(Exception):
    """The program cannot be relayed here: `refusal` says what to answer the listener."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


NOT_PLACED = Refusal(409, "not_live", "this space's stage runs on no node right now")


class _Arrival:
    """One listener waiting for the relay to flow (townhall.edge.relay.Waiter)."""

    def __init__(self, listener_id: str) -> None:
        self.listener_id = listener_id
        self.answer: asyncio.Future[LiveFanout] = asyncio.get_running_loop().create_future()

    def start_stream(self, fanout: LiveFanout) -> None:
        if not self.answer.done():
            self.answer.set_result(fanout)

    def refuse(self, refusal: Refusal) -> None:
        if not self.answer.done():
            self.answer.set_exception(ProgramRefused(refusal))


def origin_of(public_url: str, node_id: str, signer: Signer) -> Origin:
    """Where the relay connects: the stage's node as the registry names it."""
    parts = urlsplit(public_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Origin(parts.hostname or "127.0.0.1", port, node_id, signer)


class RelayedPrograms:
    def __init__(
        self,
        state: State,
        signer: Signer,
        node_id: str,
        audio: AudioSettings,
        edge: EdgeSettings,
        workers: ListenerReports,
    ) -> None:
        """`node_id` is this edge's: the origin names its relay connection after it;
        `workers` is what this edge's stream workers last reported (its load)."""
        self._workers = workers
        self._state = state
        self._signer = signer
        self._node_id = node_id
        self._audio = audio
        self._edge = edge
        self._by_origin: dict[str, Relays] = {}
        self._closed_bytes_out = 0
        self._closed_cut_slow = 0
        """Counters of relay sets dropped (idle, past MAX_ORIGINS)."""
        self._hls_pollers: LRUCache[str, RecentPollers] = LRUCache(MAX_HLS_SPACES)

    async def fanout(self, space_id: str, listener_id: str) -> LiveFanout:
        """The space's fan-out here, once its relay flows (opened by this call if need
        be); ProgramRefused with the origin's answer (or ours) otherwise."""
        relays = self._relaying(space_id) or await self._relays_for(space_id)
        arrival = _Arrival(listener_id)
        relay = relays.join(space_id, arrival)
        try:
            return await arrival.answer
        finally:
            if relay is not None:
                relay.forget(arrival)

    def _relaying(self, space_id: str) -> Relays | None:
        """The relay set that relays the space now: a crowd's connections after the
        first cost no shared-state round trip."""
        for relays in self._by_origin.values():
            if relays.relay(space_id) is not None:
                return relays
        return None

    async def _relays_for(self, space_id: str) -> Relays:
        """The relay set of the node that holds the space's stage, as the state says."""
        node_id = await self._state.stage_node(space_id)
        node = await self._state.node(node_id) if node_id else None
        if node is None:
            raise ProgramRefused(NOT_PLACED)
        relays = self._by_origin.get(node.public_url)
        if relays is None:
            if len(self._by_origin) >= MAX_ORIGINS:
                for url in [url for url, idle in self._by_origin.items() if not len(idle)]:
                    dropped = self._by_origin.pop(url).figures(time.monotonic())
                    self._closed_bytes_out += dropped.bytes_out  # counters never go back
                    self._closed_cut_slow += dropped.cut_slow
            origin = origin_of(node.public_url, self._node_id, self._signer)
            relays = Relays(origin, self._audio, self._edge, NO_WAIT_FOR_REMOVALS)
            self._by_origin[node.public_url] = relays
        return relays

    def _relay(self, space_id: str) -> Relay | None:
        relays = self._relaying(space_id)
        return None if relays is None else relays.relay(space_id)

    def set_removed(self, space_id: str, removed: frozenset[str]) -> int:
        """Who is removed from a space relayed here (the shared stage's word): refused
        from now on, and cut if listening here; returns the connections cut."""
        relay = self._relay(space_id)
        return 0 if relay is None else relay.set_removed(removed)

    def removed_in(self, space_id: str) -> frozenset[str] | None:
        """The removed set of a space relayed here (None when it is not), for this
        edge's stream workers' report answers."""
        relay = self._relay(space_id)
        return None if relay is None else relay.removed

    def relays(self, space_id: str) -> bool:
        return self._relay(space_id) is not None

    def saw_hls(self, space_id: str, address: str, user_agent: str) -> None:
        """A playlist poll answered here (townhall.audience.pollers): an HLS listener of
        this edge, which the origin, seeing only the edge's cache, cannot count."""
        pollers = self._hls_pollers.get(space_id)
        if pollers is None:
            pollers = self._hls_pollers[space_id] = RecentPollers(self._audio.hls_listener_window_s)
        pollers.saw(address, user_agent)

    def counts(self) -> dict[str, int]:
        """Listeners per space here: live ones less each relay's own connection, which
        its origin counts (as townhall.edge.reports explains for stream workers), and
        HLS pollers."""
        counts: dict[str, int] = {}
        for relays in self._by_origin.values():
            for space_id, count in relays.counts().items():
                counts[space_id] = counts.get(space_id, 0) + count
        for space_id, pollers in list(self._hls_pollers.items()):
            if polling := pollers.count():
                counts[space_id] = counts.get(space_id, 0) + polling
            elif space_id not in counts:
                del self._hls_pollers[space_id]
                counts[space_id] = 0  # said once more: the last poller left
        return counts

    @property
    def listener_count(self) -> int:
        return sum(relays.listener_count for relays in self._by_origin.values())

    def programs(self, now: float) -> list[RelayedProgram]:
        """Every program relayed here now (`now`: time.monotonic), for the metrics."""
        return [
            RelayedProgram(
                relay.space_id,
                origin,
                relay.fanout.listener_count,
                0.0 if relay.last_chunk_at is None else max(0.0, now - relay.last_chunk_at),
            )
            for origin, relays in self._by_origin.items()
            for relay in relays
        ]

    def figures(self, now: float) -> WorkerFigures:
        """This process's relay counters, as a stream worker reports its own."""
        each = [relays.figures(now) for relays in self._by_origin.values()]
        return WorkerFigures(
            listeners=sum(figures.listeners for figures in each),
            bytes_out=self._closed_bytes_out + sum(figures.bytes_out for figures in each),
            cut_slow=self._closed_cut_slow + sum(figures.cut_slow for figures in each),
            relay_lag_s=max((figures.relay_lag_s for figures in each), default=0.0),
            relays=sum(figures.relays for figures in each),
        )

    def hls_counts(self) -> dict[str, int]:
        """HLS listeners per space polling this edge now."""
        return {space_id: pollers.count() for space_id, pollers in self._hls_pollers.items()}

    @property
    def load(self) -> int:
        """Live listeners this edge holds, its stream workers' included: what the
        registry's heartbeat carries and join answers compare. Each worker's relay is one
        connection here and reports its listeners less that relay: the sum is exact."""
        by_workers = self._workers.counts().values()
        return self.listener_count + sum(n for counts in by_workers for n in counts.values())

    @property
    def relay_count(self) -> int:
        """Programs relayed here now: one upstream connection each."""
        return sum(len(relays) for relays in self._by_origin.values())

    def end_streams(self) -> None:
        """Every relayed program's listeners are let go now (the node is stopping)."""
        for relays in self._by_origin.values():
            relays.end_streams()

    async def close(self) -> None:
        for relays in self._by_origin.values():
            await relays.close()
        self._by_origin.clear()
