"""Where a space's stage goes: the healthy origin with the most headroom.

Pure: it reads the node registry's heartbeats (townhall.state.base.NodeInfo) and
decides, with no I/O, so every node that asks about the same registry gets the same
answer. Used when a space goes live and when a space must be re-placed because the
origin that held it stopped heartbeating (townhall.service.spaces).

"Healthy" is "in the registry": a node that misses its heartbeats leaves it (the
State expires it), so it is never chosen. An origin is any node that holds stages,
whatever its role is called (`all` or `origin`); an edge never gets a stage.

Headroom is one number in [.., 1]: one minus the busiest of the node's measured
resources, each as a share of what one origin core carries: its process CPU (in
cores), its live stages (against SPACES_PER_ORIGIN, the issue's target of 20 live
spaces per origin core) and its live-stream listeners (against LISTENERS_PER_ORIGIN).
The busiest resource decides because it is the one that runs out first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from townhall.state.base import NodeInfo

SPACES_PER_ORIGIN: Final = 20
"""Live spaces one origin core carries (issue 8: >= 20 live spaces per origin core)."""
LISTENERS_PER_ORIGIN: Final = 10_000
"""Live-stream listeners one node serves before it is full (order of the measured
capacity: bench/README); edges carry the crowd, so this rarely decides."""
TIE_MARGIN: Final = 0.25
"""Headroom closer than this counts as equal: the preferred node (the one asked, so the
host's offer needs no hop) keeps the space rather than chase a measurement's noise (a
node's CPU over one second moves by tenths with the API requests it happens to serve)."""


def headroom(node: NodeInfo) -> float:
    """1.0 for an idle origin, 0 or less for one that is full on some resource."""
    busiest = max(
        node.cpu,
        node.stages / SPACES_PER_ORIGIN,
        node.load / LISTENERS_PER_ORIGIN,
    )
    return 1.0 - busiest


def origins(nodes: Iterable[NodeInfo], excluded: Iterable[str] = ()) -> list[NodeInfo]:
    """The registered nodes that may hold a stage, without the `excluded` ids."""
    out = set(excluded)
    return [node for node in nodes if node.holds_stages and node.node_id not in out]


def choose_origin(
    nodes: Iterable[NodeInfo], prefer: str | None = None, excluded: Iterable[str] = ()
) -> NodeInfo | None:
    """The origin with the most headroom, or None when there is none. Equal headroom
    (within TIE_MARGIN) goes to `prefer` when it is a candidate, else to the lowest
    node id, so survivors deciding the same re-placement agree."""
    candidates = origins(nodes, excluded)
    if not candidates:
        return None
    best = min(candidates, key=lambda node: (-headroom(node), node.node_id))
    preferred = next((node for node in candidates if node.node_id == prefer), None)
    if preferred is not None and headroom(preferred) >= headroom(best) - TIE_MARGIN:
        return preferred
    return best

