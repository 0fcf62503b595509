"""One contract for every State backend: the in-memory one and Redis (a real redis-server).

Where two nodes matter, each test gets two *views* of the same state: for Redis two
clients of one database (two nodes), for memory the same object (one process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from townhall.domain.captions import CaptionsWithheld
from townhall.domain.moderation import AuditHead
from townhall.domain.spaces import Space, SpaceState, User
from townhall.domain.stage import Role, Stage
from townhall.state import MemoryState, NodeInfo, RedisState, State
from townhall.state.base import AUDIENCE_REPORT_MAX, MAX_SPACES_PER_NODE_REPORT, MAX_USERS_PER_EVENT

Views = tuple[State, State]

SHORT_TTL_S = 1.5
"""A TTL that must outlive the few round trips reading it back, on a loaded machine too
(0.3 s did not always)."""
EXPIRY_WAIT_S = 15.0
"""How long past the start of the wait an expiry may take to show."""


async def _eventually(read: Callable[[], Awaitable[object]], expected: object) -> None:
    """Polls `read` until it returns `expected`: an expiry is due after its TTL, and on
    a loaded machine some time after, so the test waits for it rather than a fixed time."""
    deadline = time.monotonic() + EXPIRY_WAIT_S
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, not {expected!r}"
        await asyncio.sleep(0.1)


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
    space = replace(_space(), captions=True, captions_withheld=CaptionsWithheld.NODE_LIMIT)
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
    await b.report_listeners("s1", "node-b", 12, ttl_s=SHORT_TTL_S)
    assert await a.listeners("s1") == 42
    await b.report_listeners("s1", "node-a", 31, ttl_s=60)  # a new report replaces the old
    assert await b.listeners("s1") == 43
    await _eventually(lambda: a.listeners("s1"), 31)
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


async def test_the_audience_is_each_fresh_nodes_people_once_and_bounded(
    views: Views,
) -> None:
    a, b = views
    ann, bob, cy = User("u1", "ann"), User("u2", "bob"), User("u3", "cy")
    assert await a.audience("s1") == []
    await a.report_audience("s1", "node-a", [ann, bob], ttl_s=60)
    await b.report_audience("s1", "node-b", [bob, cy], ttl_s=SHORT_TTL_S)
    assert sorted(p.username for p in await b.audience("s1")) == ["ann", "bob", "cy"]
    await _eventually(lambda: a.audience("s1"), [ann, bob])  # node b went quiet
    await b.report_audience("s1", "node-a", [cy], ttl_s=60)  # a new report replaces the old
    assert await a.audience("s1") == [cy]
    crowd = [User(f"id{i}", f"user{i}") for i in range(AUDIENCE_REPORT_MAX * 3)]
    await a.report_audience("s1", "node-a", crowd, ttl_s=60)
    await b.report_audience("s1", "node-b", crowd[::-1], ttl_s=60)
    assert len(await b.audience("s1")) == AUDIENCE_REPORT_MAX
    assert await a.audience("other") == []
    await a.forget("s1")
    assert await b.audience("s1") == []


async def test_one_node_report_updates_every_space_it_names_at_once(views: Views) -> None:
    a, b = views
    counts = {f"space-{i}": i % 7 for i in range(300)}
    await a.report_node_listeners("node-a", counts, ttl_s=60)
    await b.report_node_listeners("node-b", {"space-3": 10, "space-4": 1}, ttl_s=SHORT_TTL_S)
    assert await b.listeners("space-3") == 13
    assert await a.listeners("space-299") == 299 % 7
    assert await a.peak_listeners("space-4") == 5
    await a.report_node_listeners("node-a", {"space-3": 0}, ttl_s=60)  # zero: forgotten share
    await _eventually(lambda: b.listeners("space-3"), 0)  # node-b's expired, node-a's says 0
    assert await a.peak_listeners("space-3") == 13
    await a.report_node_listeners("node-a", {})  # an empty report is no update at all
    assert await a.listeners("space-6") == 6


async def test_a_node_report_is_bounded(views: Views) -> None:
    a, _ = views
    oversized = {f"s{i}": 1 for i in range(MAX_SPACES_PER_NODE_REPORT + 1)}
    with pytest.raises(ValueError, match="at most"):
        await a.report_node_listeners("node-a", oversized)
    assert await a.listeners("s0") == 0, "nothing of a refused report is written"


async def test_the_audit_head_is_shared_and_only_moves_forward(views: Views) -> None:
    a, b = views
    assert await a.audit_head() is None
    await a.advance_audit_head(AuditHead(3, "c" * 64))
    await b.advance_audit_head(AuditHead(2, "b" * 64))  # a late writer of an older entry
    assert await b.audit_head() == AuditHead(3, "c" * 64)
    await b.advance_audit_head(AuditHead(2**40, "d" * 64))
    assert await a.audit_head() == AuditHead(2**40, "d" * 64)


async def test_a_user_event_reaches_the_listeners_of_every_node(views: Views) -> None:
    a, b = views
    heard_on_a: list[tuple[list[str], bytes]] = []
    heard_on_b: list[tuple[list[str], bytes]] = []
    a.listen_user_events(lambda users, event: heard_on_a.append((list(users), event)))
    if b is not a:
        b.listen_user_events(lambda users, event: heard_on_b.append((list(users), event)))
    await a.publish_user_event(["u1", "u2"], '{"kind":"space_live","t":"é"}'.encode())
    expected = [(["u1", "u2"], '{"kind":"space_live","t":"é"}'.encode())]
    for _ in range(200):  # pub/sub is asynchronous on Redis
        if heard_on_a and (b is a or heard_on_b):
            break
        await asyncio.sleep(0.02)
    assert heard_on_a == expected
    assert b is a or heard_on_b == expected
    with pytest.raises(ValueError, match="at most"):
        await a.publish_user_event([f"u{i}" for i in range(MAX_USERS_PER_EVENT + 1)], b"{}")


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
    await a.set_attack_mode("on", ttl_s=SHORT_TTL_S)
    assert await b.attack_mode() == "on"
    await _eventually(b.attack_mode, None)


async def test_placement_and_the_node_registry(views: Views) -> None:
    a, b = views
    await a.place_stage("s1", "node-a")
    assert await b.stage_node("s1") == "node-a"
    await a.beat(NodeInfo("node-a", "http://127.0.0.1:8001", "all", 120.0), ttl_s=60)
    await b.beat(NodeInfo("node-b", "http://127.0.0.1:8002", "all", 3.0), ttl_s=SHORT_TTL_S)
    found = await a.node("node-b")
    assert found is not None and found.public_url == "http://127.0.0.1:8002"
    assert found.load == 3.0 and found.last_beat > 0
    assert {node.node_id for node in await b.nodes()} == {"node-a", "node-b"}
    await _eventually(lambda: a.node("node-b"), None)
    assert [node.node_id for node in await a.nodes()] == ["node-a"]


async def test_a_node_that_leaves_is_gone_from_the_registry_at_once(views: Views) -> None:
    a, b = views
    await a.beat(NodeInfo("node-a", "http://127.0.0.1:8001", "origin"), ttl_s=60)
    await b.beat(NodeInfo("node-b", "http://127.0.0.1:8002", "origin"), ttl_s=60)
    await a.leave("node-a")
    assert await b.node("node-a") is None
    assert [node.node_id for node in await b.nodes()] == ["node-b"]
    await a.leave("node-a")  # twice, or a node never registered: nothing to do
    await a.leave("node-z")
    assert [node.node_id for node in await a.nodes()] == ["node-b"]


async def test_an_edges_role_and_stream_url_travel_with_its_heartbeat(views: Views) -> None:
    a, b = views
    edge = NodeInfo("edge-1", "http://127.0.0.1:8003", "edge", 7.0, stream_url="http://x:9")
    await a.beat(edge, ttl_s=60)
    found = await b.node("edge-1")
    assert found is not None and (found.role, found.stream_url) == ("edge", "http://x:9")
    assert found.load == 7.0


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
