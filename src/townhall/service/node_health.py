"""Which listener nodes answer, as listeners coming back from a dropped stream find out.

A node that dies (SIGKILL) stays in the registry, with the load of its last heartbeat,
until its heartbeats expire (NODE_TTL_TICKS): a join answer chosen from the registry
alone would send its listeners, re-joining at once, back to the dead edge for seconds,
and a page's back-off makes each miss cost more. So a re-join (a ticket in hand: the
stream dropped) has the edge chosen for it probed first; a SIGKILLed node refuses
connections at once. A node found silent is left out of every join's choice until it
beats again (a newer heartbeat: it restarted, or was only slow), or leaves the registry;
one found answering is trusted for TRUST_S. However large the crowd that re-joins at
once, a node is probed by one call at a time and at most once per TRUST_S while up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from townhall.state.base import NodeInfo

TRUST_S: Final = 1.0
"""A node found answering is not probed again for this long."""


class NodeHealth:
    def __init__(
        self,
        answers: Callable[[str], Awaitable[bool]],
        trust_s: float = TRUST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`answers(public_url)` is the health probe (PeerNodes.answers)."""
        self._answers = answers
        self._trust_s = trust_s
        self._clock = clock
        self._silent: dict[str, float] = {}
        """Node id -> the heartbeat (last_beat) it had when found silent."""
        self._up: dict[str, float] = {}
        """Node id -> when it last answered a probe (clock)."""
        self._probes: dict[str, asyncio.Future[bool]] = {}

    def is_silent(self, node: NodeInfo) -> bool:
        """Found silent, and has not beaten since."""
        return self._silent.get(node.node_id) == node.last_beat

    async def answers(self, node: NodeInfo) -> bool:
        """Whether the node answers now (probed unless known either way)."""
        if self.is_silent(node):
            return False
        if self._clock() - self._up.get(node.node_id, float("-inf")) < self._trust_s:
            return True
        probe = self._probes.get(node.node_id)
        if probe is None:
            probe = asyncio.ensure_future(self._probe(node))
            self._probes[node.node_id] = probe
        return await asyncio.shield(probe)

    async def _probe(self, node: NodeInfo) -> bool:
        try:
            up = await self._answers(node.public_url)
        finally:
            del self._probes[node.node_id]
        if up:
            self._up[node.node_id] = self._clock()
            self._silent.pop(node.node_id, None)
        else:
            self._silent[node.node_id] = node.last_beat
            self._up.pop(node.node_id, None)
        return up

    def keep_only(self, registered: Iterable[str]) -> None:
        """Forgets the nodes that left the registry (bounded by the registry's size)."""
        keep = set(registered)
        for verdicts in (self._silent, self._up):
            for node_id in [node_id for node_id in verdicts if node_id not in keep]:
                del verdicts[node_id]
