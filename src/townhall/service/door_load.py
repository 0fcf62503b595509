"""What the admitting nodes can take now, as the pacing's input (domain/pacing.py Load).

One node: its door's report (admission rate, listener slots, listeners, the space's
waiting room). Several nodes: every node that beats in the registry admits at the same
configured rate and holds the same number of slots (one settings file per deployment),
so capacity is this node's times the live nodes, listeners are the registry's sum, and
the waiting room is the larger of this node's queue and the shared arrival counters.
The registry is read once per wave (once a second), never per follower.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from townhall.domain.pacing import Load
from townhall.service.door import Door
from townhall.state.base import State, StateUnavailable

log = logging.getLogger(__name__)

LoadReader = Callable[[str], Awaitable[Load]]


def door_load(door: Door, state: State | None = None) -> LoadReader:
    async def load(space_id: str) -> Load:
        stats = door.stats()
        local = Load(
            admissions_per_s=float(stats["max_admissions_per_s"]),
            max_listeners=int(stats["max_listeners"]),
            listeners=int(stats["listeners"]),
            waiting=int(stats["queues"].get(space_id, {}).get("waiting", 0)),
        )
        if state is None:
            return local
        try:
            nodes = await state.nodes()
            issued, admitted = await state.waiting_counters(space_id)
        except StateUnavailable:
            return local  # this node's own figures: slower than the cluster could, never faster
        count = max(1, len(nodes))
        return Load(
            admissions_per_s=local.admissions_per_s * count,
            max_listeners=local.max_listeners * count,
            listeners=max(local.listeners, int(sum(node.load for node in nodes))),
            waiting=max(local.waiting, issued - admitted),
        )

    return load
