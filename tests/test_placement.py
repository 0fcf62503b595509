"""Placement by load (townhall.nodes.placement): pure, so tested without a server; and
used by going live (two origins in one process)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from conftest import CHEAP_ARGON2, NO_CAPTIONS, NO_LAG_DOOR
from townhall.config import load_settings
from townhall.nodes.cpu import ProcessCpu
from townhall.nodes.placement import (
    LISTENERS_PER_ORIGIN,
    SPACES_PER_ORIGIN,
    choose_origin,
    headroom,
)
from townhall.service.spaces import node_id_for
from townhall.services import build_services
from townhall.state import MemoryState, NodeInfo


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


async def test_a_space_started_on_a_busy_origin_goes_live_on_the_free_one(
    tmp_path: Path,
) -> None:
    """Two origins in one process on one State and one store: A's heartbeat says it is
    busy (90 % of a core), so a space its host starts through A is placed on B, and B
    starts the stage when it hears of it; A runs none."""
    shared = MemoryState()
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    env = {**CHEAP_ARGON2, **NO_CAPTIONS, **NO_LAG_DOOR, "TOWNHALL_STORE": store}
    one_hour = {"snapshot_tick_s": 3_600.0}  # no tick re-beats during the test
    nodes = [
        build_services(
            load_settings(env, data_dir=tmp_path / name, port=port, **one_hour), state=shared
        )
        for name, port in (("a", 18001), ("b", 18002))
    ]
    for services in nodes:
        await services.start()
    a, b = nodes
    try:
        # Both "nodes" are this one process, so their measured CPU is the same figure:
        # the heartbeats say instead that A is busy and B idle.
        for services, cpu in ((a, 0.9), (b, 0.0)):
            info = await shared.node(node_id_for(services.settings.node_url))
            assert info is not None
            await shared.beat(replace(info, cpu=cpu), ttl_s=60)
        host = await a.accounts.sign_up("host", "correct horse")
        space = await a.spaces.create(host, "Placed by load")
        space_id = space.data["id"]

        live = await a.spaces.go_live(host, space_id)

        assert live.data["state"] == "live"
        assert await shared.stage_node(space_id) == node_id_for(b.settings.node_url)
        for _ in range(100):  # B starts the stage when the change reaches it
            if b.spaces.rooms.get(space_id) is not None:
                break
            await asyncio.sleep(0.02)
        assert b.spaces.rooms.get(space_id) is not None
        assert a.spaces.rooms.get(space_id) is None
        assert await a.spaces.stage_url(space_id) == b.settings.node_url
    finally:
        for services in reversed(nodes):
            await services.stop()


def test_the_heartbeats_cpu_is_cores_used_since_the_previous_one() -> None:
    clocks = {"cpu": 10.0, "wall": 100.0}
    meter = ProcessCpu(lambda: clocks["cpu"], lambda: clocks["wall"])
    clocks.update(cpu=10.5, wall=101.0)
    assert meter.cores() == 0.5
    clocks.update(cpu=12.5, wall=102.0)  # two threads busy for the whole second
    assert meter.cores() == 2.0
    assert meter.cores() == 0.0  # no time passed
