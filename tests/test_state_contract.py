"""One contract for every State backend: the in-memory one and Redis (a real redis-server).

Where two nodes matter, each test gets two *views* of the same state: for Redis two
clients of one database (two nodes), for memory the same object (one process).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from townhall.domain.spaces import Space, SpaceState, User
from townhall.domain.stage import Role, Stage
from townhall.state import MemoryState, NodeInfo, RedisState, State

Views = tuple[State, State]


@pytest.fixture(params=["memory", "redis"])
async def views(request: pytest.FixtureRequest) -> AsyncIterator[Views]:
    if request.param == "memory":
        memory = MemoryState()
        yield memory, memory
        return
    url = request.getfixturevalue("redis_url")
    first, second = RedisState(url), RedisState(url)
    for state in (first, second):
        await state.start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def _space(state: SpaceState = SpaceState.LIVE) -> Space:
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    return Space("abcdefghijkm", "Town hall", User("host1", "ann"), state, now, started_at=now)


async def test_space_records_are_shared(views: Views) -> None:
    a, b = views
    assert await b.get_space("abcdefghijkm") is None
    space = _space()
    await a.put_space(space)
    assert await b.get_space(space.id) == space
    ended = replace(space.end(datetime.now(UTC)), recording_seconds=12.5)
    await b.put_space(ended)
    assert await a.get_space(space.id) == ended


async def test_stage_updates_are_atomic_across_nodes(views: Views) -> None:
    a, b = views
    await a.put_stage("s1", Stage(host_id="host1"))
    users = [f"user{i}" for i in range(40)]

    async def ask(state: State, user: str) -> None:
        await state.update_stage("s1", lambda stage: stage.request_to_speak(user))

    await asyncio.gather(*(ask(a if i % 2 else b, user) for i, user in enumerate(users)))
    stage = await a.get_stage("s1")
    assert stage is not None and sorted(stage.requests) == sorted(users)


async def test_a_refused_change_writes_nothing(views: Views) -> None:
    a, b = views
    await a.put_stage("s1", Stage(host_id="host1"))

    def refused(stage: Stage) -> None:
        stage.names["x"] = "written before the refusal"
        stage.put_on_stage("nobody", "x", Role.SPEAKER)  # not a moderator: Forbidden

    with pytest.raises(Exception) as raised:
        await b.update_stage("s1", refused)
    assert not isinstance(raised.value, KeyError)
    stage = await a.get_stage("s1")
    assert stage is not None and "x" not in stage.names
    with pytest.raises(KeyError):
        await a.update_stage("no-such-space", lambda stage: None)


async def test_a_stage_read_is_a_copy(views: Views) -> None:
    a, _ = views
    await a.put_stage("s1", Stage(host_id="host1"))
    copy = await a.get_stage("s1")
    assert copy is not None
    copy.removed.add("someone")
    again = await a.get_stage("s1")
    assert again is not None and again.removed == set()


async def test_reactions_are_totalled_across_nodes(views: Views) -> None:
    a, b = views
    for state, emoji in ((a, "🔥"), (b, "🔥"), (b, "👏")):
        await state.add_reaction("s1", emoji)
    assert await a.reactions("s1") == {"🔥": 2, "👏": 1}
    assert await b.reactions("other") == {}


async def test_listener_counts_are_summed_and_a_silent_node_stops_counting(views: Views) -> None:
    a, b = views
    await a.report_listeners("s1", "node-a", 30, ttl_s=60)
    await b.report_listeners("s1", "node-b", 12, ttl_s=0.3)
    assert await a.listeners("s1") == 42
    await b.report_listeners("s1", "node-a", 31, ttl_s=60)  # a new report replaces the old
    assert await b.listeners("s1") == 43
    await asyncio.sleep(0.5)
    assert await a.listeners("s1") == 31
    assert await a.listeners("other") == 0


async def test_the_peak_is_the_highest_sum_across_nodes_and_outlives_the_end(
    views: Views,
) -> None:
    a, b = views
    assert await a.peak_listeners("s1") == 0
    await a.report_listeners("s1", "node-a", 30, ttl_s=60)
    await b.report_listeners("s1", "node-b", 12, ttl_s=60)
    await b.report_listeners("s1", "node-b", 2, ttl_s=60)  # the sum falls: the peak stays
    assert await b.peak_listeners("s1") == 42
    await a.report_listeners("s1", "node-a", 35, ttl_s=60)
    assert await a.peak_listeners("s1") == 42, "37 now, never more than 42"
    await a.report_listeners("s1", "node-a", 41, ttl_s=60)
    assert await b.peak_listeners("s1") == 43
    await b.forget("s1")
    assert await a.listeners("s1") == 0
    assert await a.peak_listeners("s1") == 43, "kept for the host's end-of-space summary"
    assert await a.peak_listeners("other") == 0


async def test_the_arrival_sequence_is_one_across_nodes(views: Views) -> None:
    a, b = views
    numbers = await asyncio.gather(*(s.next_arrival("s1") for s in [a, b] * 50))
    assert sorted(numbers) == list(range(1, 101))
    assert await a.next_arrival("other") == 1


async def test_admitted_advances_by_at_most_n_and_never_past_the_sequence(views: Views) -> None:
    a, b = views
    assert await a.advance_admitted("s1", 5) == 0  # nobody arrived: nobody to admit
    for _ in range(12):
        await b.next_arrival("s1")
    assert await a.advance_admitted("s1", 5) == 5
    assert await b.advance_admitted("s1", 0) == 5
    results = await asyncio.gather(*(s.advance_admitted("s1", 3) for s in [a, b] * 3))
    assert sorted(results) == [8, 11, 12, 12, 12, 12]  # atomic steps, capped at the sequence
    assert await a.waiting_counters("s1") == (12, 12)
    await a.next_arrival("s1")
    assert await b.advance_admitted("s1", 100) == 13


async def test_attack_mode_is_shared_and_expires(views: Views) -> None:
    a, b = views
    assert await b.attack_mode() is None
    await a.set_attack_mode("on", ttl_s=0.3)
    assert await b.attack_mode() == "on"
    await asyncio.sleep(0.5)
    assert await b.attack_mode() is None


async def test_placement_and_the_node_registry(views: Views) -> None:
    a, b = views
    await a.place_stage("s1", "node-a")
    assert await b.stage_node("s1") == "node-a"
    await a.beat(NodeInfo("node-a", "http://127.0.0.1:8001", "all", 120.0), ttl_s=60)
    await b.beat(NodeInfo("node-b", "http://127.0.0.1:8002", "all", 3.0), ttl_s=0.3)
    found = await a.node("node-b")
    assert found is not None and found.public_url == "http://127.0.0.1:8002"
    assert found.load == 3.0 and found.last_beat > 0
    assert {node.node_id for node in await b.nodes()} == {"node-a", "node-b"}
    await asyncio.sleep(0.5)
    assert await a.node("node-b") is None
    assert [node.node_id for node in await a.nodes()] == ["node-a"]


async def test_node_figures_travel_with_the_heartbeat(views: Views) -> None:
    a, b = views
    sent = NodeInfo("node-e", "http://127.0.0.1:8003", "edge", 7.0, 0.0, False, 3, 0.25)
    await a.beat(sent, ttl_s=60)
    found = await b.node("node-e")
    assert found is not None
    assert (found.holds_stages, found.stages, found.cpu) == (False, 3, 0.25)


async def test_claiming_a_stage_is_atomic_and_only_one_survivor_wins(views: Views) -> None:
    a, b = views
    assert await a.claim_stage("s2", None, "node-a")  # placed nowhere yet
    assert await b.stage_node("s2") == "node-a"
    assert not await b.claim_stage("s2", None, "node-b")
    claims = await asyncio.gather(
        *(view.claim_stage("s2", "node-a", node) for view, node in ((a, "x"), (b, "y")) * 5)
    )
    assert claims.count(True) == 1
    winner = await a.stage_node("s2")
    assert winner in ("x", "y") and await b.stage_node("s2") == winner
    assert not await a.claim_stage("s2", "node-a", "node-z")  # the old holder is gone


async def test_changes_reach_every_node(views: Views) -> None:
    a, b = views
    heard: list[tuple[str, str]] = []
    arrived = asyncio.Event()

    def on_change(space_id: str, node_id: str) -> None:
        heard.append((space_id, node_id))
        arrived.set()

    b.subscribe(on_change, lambda: None)
    await a.publish("s1", "node-a")
    await asyncio.wait_for(arrived.wait(), timeout=1.0)
    assert heard == [("s1", "node-a")]
    assert a.healthy and b.healthy


async def test_forget_drops_everything_per_space_but_the_totals(views: Views) -> None:
    a, b = views
    await a.put_space(_space())
    await a.put_stage("s1", Stage(host_id="host1"))
    await a.add_reaction("s1", "🔥")
    await a.report_listeners("s1", "node-a", 5, ttl_s=60)
    await a.next_arrival("s1")
    await a.advance_admitted("s1", 1)
    await a.place_stage("s1", "node-a")
    await b.forget("s1")
    assert await a.get_stage("s1") is None
    assert await a.reactions("s1") == {"🔥": 1}, "kept for the host's end-of-space summary"
    assert await a.listeners("s1") == 0
    assert await a.waiting_counters("s1") == (0, 0)
    assert await a.stage_node("s1") is None
    with pytest.raises(KeyError):
        await a.update_stage("s1", lambda stage: None)
