"""Where a join answer sends the listener: the least-loaded edge, else the stage's node.

The registry is read at most once per `REGISTRY_TTL_S` per node (a join costs no Redis
round trip of its own), and the choice itself is townhall.nodes.edge_choice's. With no
edge registered, listeners go where they always went: the node that holds the stage
(absolute URLs), or this node (relative ones) when it holds it itself. A re-join (the
listener's stream dropped: its edge may have died) is sent only to an edge that answers
(townhall.service.node_health), and no join goes to an edge found silent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from townhall.config import Settings
from townhall.nodes.edge_choice import SentSinceBeat, least_loaded, listener_nodes
from townhall.service.node_health import NodeHealth
from townhall.state.base import NodeInfo, State, StateUnavailable

REGISTRY_TTL_S = 0.5
"""How stale the registry this node chooses from may be (nodes beat once a tick)."""


@dataclass(frozen=True)
class StreamBases:
    """Base URLs a join answer's links start with; None means this node's own."""

    live: str | None
    hls: str | None


def advertised_stream_url(settings: Settings) -> str:
    """Where other nodes send this node's live listeners: its stream workers' port
    (`stream_public_url`, else its public URL's host with the stream port) when it has
    workers; empty (its public URL) otherwise."""
    edge = settings.edge
    if not edge.stream_workers:
        return ""
    if edge.stream_public_url:
        return edge.stream_public_url.rstrip("/")
    public = urlsplit(settings.node_url)
    host = public.hostname or settings.host
    host = f"[{host}]" if ":" in host else host
    return f"{public.scheme or 'http'}://{host}:{edge.resolved_stream_port(settings.port)}"


class ListenerNodes:
    def __init__(
        self,
        state: State,
        stage_url: Callable[[str], Awaitable[str | None]],
        health: NodeHealth,
    ) -> None:
        """`stage_url` is Spaces.stage_url: the stage's node when it is not this one;
        `health` says which edges answer (probed for re-joins)."""
        self._health = health
        self._state = state
        self._stage_url = stage_url
        self._nodes: list[NodeInfo] = []
        self._read_at = float("-inf")
        self._sent = SentSinceBeat()

    async def bases(self, space_id: str, rejoin: bool = False) -> StreamBases:
        """Where to listen; `rejoin`: the listener's stream dropped, so the edge chosen
        must answer first (each one found silent is left out and the next chosen)."""
        nodes = await self._registry()
        edge = self._choose(nodes)
        while rejoin and edge is not None and not await self._health.answers(edge):
            edge = self._choose(nodes)
        if edge is not None:
            self._sent.sent(edge.node_id)
            return StreamBases(edge.stream_url or edge.public_url, edge.public_url)
        stage_url = await self._stage_url(space_id)
        return StreamBases(stage_url, stage_url)

    def _choose(self, nodes: list[NodeInfo]) -> NodeInfo | None:
        answering = [node for node in listener_nodes(nodes) if not self._health.is_silent(node)]
        return least_loaded(answering, self._sent.counts)

    async def _registry(self) -> list[NodeInfo]:
        now = time.monotonic()
        if now - self._read_at >= REGISTRY_TTL_S:
            with contextlib.suppress(StateUnavailable):  # the last read serves meanwhile
                self._nodes = await self._state.nodes()
            self._read_at = now
            self._sent.refresh(self._nodes)
            self._health.keep_only(node.node_id for node in self._nodes)
        return self._nodes
