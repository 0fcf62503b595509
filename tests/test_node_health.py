"""Join answers after an edge died (townhall.service.listener_nodes, node_health): the
dead edge stays in the registry with its last load until its heartbeats expire; a
re-join must not be sent back to it, and one probe per edge serves a whole crowd."""

from __future__ import annotations

import asyncio

from townhall.service.listener_nodes import REGISTRY_TTL_S, ListenerNodes
from townhall.service.node_health import NodeHealth
from townhall.state.base import NodeInfo
from townhall.state.memory import MemoryState

DEAD = "http://127.0.0.1:1"
ALIVE = "http://127.0.0.1:2"
NODE_TTL_S = 5.0


class Probes:
    """A health probe (PeerNodes.answers) that counts its calls: DEAD never answers."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def answers(self, url: str) -> bool:
        self.calls.append(url)
        await asyncio.sleep(0.01)
        return url != DEAD


async def _two_edges(clock: list[float]) -> MemoryState:
    """Edge "a" (dead, less loaded: the registry's first choice) and edge "b"."""
    state = MemoryState(clock=lambda: clock[0])
    await state.beat(NodeInfo("a", DEAD, "edge", load=1, holds_stages=False), NODE_TTL_S)
    await state.beat(NodeInfo("b", ALIVE, "edge", load=50, holds_stages=False), NODE_TTL_S)
    return state


async def _no_stage(space_id: str) -> str | None:
    return None


async def test_a_rejoin_is_sent_to_an_edge_that_answers_and_a_crowd_costs_one_probe() -> None:
    clock = [1000.0]
    probes = Probes()
    nodes = ListenerNodes(await _two_edges(clock), _no_stage, NodeHealth(probes.answers))
    assert (await nodes.bases("s")).live == DEAD, "the registry alone still names it"

    crowd = await asyncio.gather(*(nodes.bases("s", rejoin=True) for _ in range(20)))
    assert {bases.live for bases in crowd} == {ALIVE}
    assert probes.calls.count(DEAD) == 1
    assert (await nodes.bases("s")).live == ALIVE, "no join goes to an edge found silent"
    assert probes.calls.count(DEAD) == 1


async def test_an_edge_found_silent_is_chosen_again_once_it_beats_again() -> None:
    clock = [1000.0]
    probes = Probes()
    state = await _two_edges(clock)
    nodes = ListenerNodes(state, _no_stage, NodeHealth(probes.answers, clock=lambda: clock[0]))
    assert (await nodes.bases("s", rejoin=True)).live == ALIVE
    clock[0] += 1.0  # a later heartbeat (it restarted)...
    await state.beat(NodeInfo("a", DEAD, "edge", load=0, holds_stages=False), NODE_TTL_S)
    await asyncio.sleep(REGISTRY_TTL_S)  # ...and the registry is read again
    assert (await nodes.bases("s")).live == DEAD


async def test_an_edge_that_answers_is_trusted_a_while_without_a_probe_per_join() -> None:
    clock = [1000.0]
    probes = Probes()
    state = MemoryState(clock=lambda: clock[0])
    await state.beat(NodeInfo("b", ALIVE, "edge", load=0, holds_stages=False), NODE_TTL_S)
    nodes = ListenerNodes(state, _no_stage, NodeHealth(probes.answers, clock=lambda: clock[0]))
    for _ in range(5):
        assert (await nodes.bases("s", rejoin=True)).live == ALIVE
    assert probes.calls == [ALIVE]
