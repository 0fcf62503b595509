"""Which node a join answer sends a listener to (townhall.nodes.edge_choice): pure."""

from __future__ import annotations

from collections import Counter

import pytest

from townhall.nodes.edge_choice import SentSinceBeat, least_loaded, listener_nodes
from townhall.nodes.roles import UnknownRole, check_role, holds_stages
from townhall.state.base import NodeInfo


def _node(node_id: str, role: str, load: float, beat: float = 1.0) -> NodeInfo:
    return NodeInfo(node_id, f"http://{node_id}:8080", role, load, last_beat=beat)


def test_listeners_go_to_edges_only() -> None:
    nodes = [_node("o1", "origin", 0), _node("a1", "all", 0), _node("e1", "edge", 50)]
    assert [node.node_id for node in listener_nodes(nodes)] == ["e1"]
    assert listener_nodes([_node("o1", "origin", 0), _node("a1", "all", 0)]) == []


def test_the_least_loaded_edge_wins_and_ties_are_decided_alike_everywhere() -> None:
    edges = [_node("e2", "edge", 10), _node("e1", "edge", 10), _node("e3", "edge", 30)]
    assert least_loaded(edges, {}) == edges[1]
    assert least_loaded(reversed(edges), {}) == edges[1]
    assert least_loaded([], {}) is None


def test_a_burst_between_heartbeats_is_spread_by_what_was_sent() -> None:
    """Between two heartbeats the registry's loads do not move; the listeners already
    sent count, so 300 joins over edges loaded 0, 100 and 200 level them out."""
    edges = [_node("e1", "edge", 0), _node("e2", "edge", 100), _node("e3", "edge", 200)]
    sent = SentSinceBeat()
    sent.refresh(edges)
    chosen: Counter[str] = Counter()
    for _ in range(300):
        node = least_loaded(edges, sent.counts)
        assert node is not None
        sent.sent(node.node_id)
        chosen[node.node_id] += 1
    assert chosen == {"e1": 200, "e2": 100}


def test_what_was_sent_is_forgotten_when_the_edge_beats_again_or_leaves() -> None:
    sent = SentSinceBeat()
    first = [_node("e1", "edge", 0, beat=1.0), _node("e2", "edge", 0, beat=1.0)]
    sent.refresh(first)
    sent.sent("e1")
    sent.sent("e2")
    sent.refresh([_node("e1", "edge", 1, beat=2.0), _node("e2", "edge", 0, beat=1.0)])
    assert sent.counts == {"e2": 1}
    sent.refresh([_node("e1", "edge", 1, beat=2.0)])
    assert sent.counts == {}


def test_roles() -> None:
    assert check_role("edge") == "edge"
    with pytest.raises(UnknownRole, match="origin"):
        check_role("relay")
    assert holds_stages("all") and holds_stages("origin") and not holds_stages("edge")
