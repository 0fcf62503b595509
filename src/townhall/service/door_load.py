"""The door's report as the pacing's input (domain/pacing.py Load).

One node: what this node's door admits and holds. With several nodes each door
admits its own share, so the sum over the registry's nodes is the true capacity;
until the registry carries these figures this node's own is used (conservative:
it never overfills, it only paces slower than the whole cluster could take).
"""

from __future__ import annotations

from collections.abc import Callable

from townhall.domain.pacing import Load
from townhall.service.door import Door


def door_load(door: Door) -> Callable[[str], Load]:
    def load(space_id: str) -> Load:
        stats = door.stats()
        queue = stats["queues"].get(space_id, {})
        return Load(
            admissions_per_s=float(stats["max_admissions_per_s"]),
            max_listeners=int(stats["max_listeners"]),
            listeners=int(stats["listeners"]),
            waiting=int(queue.get("waiting", 0)),
        )

    return load
