"""Which node a join answer sends a listener to: pure choice, no I/O.

The registry (State.nodes) says each node's role and its load (live-stream listeners)
as of its last heartbeat, once a tick. A flash crowd arrives far faster than that: a
choice by the registry alone would send a whole second's joins to the one edge that
looked idlest. So the joining node also counts the listeners it sent each edge since
that edge's last heartbeat (`sent`), and compares load + sent: the crowd is spread
evenly from the first join, and the counts start over when the edge reports again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from townhall.nodes.roles import serves_listeners
from townhall.state.base import NodeInfo


def listener_nodes(nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
    """The registered nodes that take listeners when a deployment has them (its edges)."""
    return [node for node in nodes if serves_listeners(node.role)]


def least_loaded(candidates: Iterable[NodeInfo], sent: Mapping[str, int]) -> NodeInfo | None:
    """The candidate with the least load plus the listeners already `sent` to it since
    its last heartbeat; ties go to the lowest node id, so every node decides alike."""
    return min(
        candidates,
        key=lambda node: (node.load + sent.get(node.node_id, 0), node.node_id),
        default=None,
    )


@dataclass
class SentSinceBeat:
    """Listeners sent to each node since the heartbeat the choice last read of it."""

    counts: dict[str, int] = field(default_factory=dict)
    beats: dict[str, float] = field(default_factory=dict)

    def refresh(self, nodes: Iterable[NodeInfo]) -> None:
        """Forget what was sent to a node that beat since (its load counts them now),
        and every node that left the registry (bounded by the registry's size)."""
        current = {node.node_id: node.last_beat for node in nodes}
        for node_id in list(self.counts):
            if self.beats.get(node_id) != current.get(node_id):
                del self.counts[node_id]
        self.beats = current

    def sent(self, node_id: str) -> None:
        self.counts[node_id] = self.counts.get(node_id, 0) + 1
