"""Placement by load (townhall.nodes.placement): pure, so tested without a server."""

from __future__ import annotations

from townhall.nodes.placement import (
    LISTENERS_PER_ORIGIN,
    SPACES_PER_ORIGIN,
    choose_origin,
    headroom,
)
from townhall.state import NodeInfo


def _node(node_id: str, **figures: float | int | bool) -> NodeInfo:
    return NodeInfo(node_id, f"http://{node_id}", **figures)  # type: ignore[arg-type]


def test_an_idle_origin_has_all_its_headroom_and_the_busiest_resource_decides() -> None:
    assert headroom(_node("a")) == 1.0
    assert headroom(_node("a", cpu=0.5)) == 0.5
    assert headroom(_node("a", cpu=0.1, stages=SPACES_PER_ORIGIN // 2)) == 0.5
    assert headroom(_node("a", load=LISTENERS_PER_ORIGIN)) == 0.0


def test_the_origin_with_the_most_headroom_gets_the_space() -> None:
    nodes = [_node("a", cpu=0.6), _node("b", cpu=0.2), _node("c", stages=10)]
    chosen = choose_origin(nodes)
    assert chosen is not None and chosen.node_id == "b"


def test_edges_and_excluded_nodes_never_get_a_stage() -> None:
    nodes = [_node("edge", holds_stages=False), _node("dead"), _node("busy", cpu=0.9)]
    chosen = choose_origin(nodes, excluded=["dead"])
    assert chosen is not None and chosen.node_id == "busy"
    assert choose_origin([_node("edge", holds_stages=False)]) is None
    assert choose_origin([]) is None


def test_the_preferred_node_keeps_a_near_tie_but_not_a_clear_loss() -> None:
    nodes = [_node("a", cpu=0.22), _node("b", cpu=0.20)]
    assert choose_origin(nodes, prefer="a").node_id == "a"  # type: ignore[union-attr]
    assert choose_origin(nodes, prefer="zz").node_id == "b"  # type: ignore[union-attr]
    nodes = [_node("a", cpu=0.6), _node("b", cpu=0.2)]
    assert choose_origin(nodes, prefer="a").node_id == "b"  # type: ignore[union-attr]


def test_survivors_agree_on_equal_headroom_whatever_the_order() -> None:
    nodes = [_node("node-b"), _node("node-a"), _node("node-c")]
    for order in (nodes, nodes[::-1], nodes[1:] + nodes[:1]):
        assert choose_origin(order).node_id == "node-a"  # type: ignore[union-attr]
