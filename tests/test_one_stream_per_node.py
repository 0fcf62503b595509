"""One ticket, one live stream per NODE (issue 6), not one per process.

With ``--stream-workers 2`` the kernel picks the worker of each connection
(SO_REUSEPORT, by the client's address and port), and the origin serves
streams too. Before townhall.edge.one_stream each process replaced only its own
earlier connection, so one ticket held one stream per worker (and one more on
the origin) for as long as it liked. Here the newest connection of a ticket
keeps streaming and every older one, wherever it landed, ends within
``CUT_BOUND_S``.

The unit part checks the origin's map and the worker's bounded queue directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from test_audience_fanout import SETTINGS, FakeTransport
from test_stream_gate import SECRET, Stream, _live_space, _tickets, _wait_for_worker
from townhall.audience.fanout import LiveFanout
from townhall.edge.one_stream import (
    ORIGIN_NODE,
    Opening,
    Openings,
    OpeningsRefused,
    TicketHolders,
    cut_replaced,
    parse_wire,
    to_wire,
)

CONNECTIONS = 12
"""Connections of one ticket to the stream port: all on one of two workers has odds of
2 * 2**-12; the test checks that both workers served some."""
CUT_BOUND_S = 5.0
"""Older streams end within two report intervals (1 s each) plus round trips; 5 s leaves
room for a loaded test machine. The measured time is printed."""
STILL_STREAMING_S = 2.0
"""The newest stream must go on receiving audio for this long after the cuts."""

# -- the origin's map and the worker's queue ------------------------------------------------


def test_the_newest_stream_of_a_ticket_wins_and_the_older_holder_is_told() -> None:
    holders = TicketHolders()
    holders.record("w0", [Opening("sp", "anon-a", 10.0), Opening("sp", "anon-b", 10.5)])
    holders.record("w1", [Opening("sp", "anon-a", 11.0)])
    assert holders.cuts_for("w1") == []
    assert holders.cuts_for("w0") == [Opening("sp", "anon-a", 11.0)]
    assert holders.cuts_for("w0") == [], "a cut is handed out once"
    # A late report of an older stream: the reporter itself cuts it (before the holder's).
    holders.record("w0", [Opening("sp", "anon-a", 10.8)])
    assert holders.cuts_for("w0") == [Opening("sp", "anon-a", 11.0)]
    # The origin's own streams take part under one node id.
    holders.record(ORIGIN_NODE, [Opening("sp", "anon-a", 12.0)])
    assert holders.cuts_for("w1") == [Opening("sp", "anon-a", 12.0)]
    # A reconnect on the same node is that process's own business (it replaced it).
    holders.record(ORIGIN_NODE, [Opening("sp", "anon-a", 13.0)])
    assert holders.cuts_for(ORIGIN_NODE) == []
    # Another space's ticket of the same listener id is another ticket.
    holders.record("w1", [Opening("other", "anon-a", 14.0)])
    assert holders.cuts_for(ORIGIN_NODE) == []


def test_the_origins_map_and_the_workers_queue_are_bounded() -> None:
    holders = TicketHolders(max_holds=3)
    holders.record("w0", [Opening("sp", f"anon-{i}", float(i)) for i in range(10)])
    assert len(holders) == 3
    # The remembered tickets cut; a forgotten one (anon-0) cannot.
    holders.record("w1", [Opening("sp", f"anon-{i}", 100.0 + i) for i in (9, 8, 0)])
    assert [c.listener_id for c in holders.cuts_for("w0")] == ["anon-9", "anon-8"]
    holders.record("w2", [Opening("sp", f"anon-{i}", 200.0 + i) for i in (9, 8, 0)])
    assert len(holders.cuts_for("w1", limit=2)) == 2, "an answer carries at most its limit"
    assert len(holders.cuts_for("w1")) == 1, "the rest wait for the next answer"

    openings = Openings(limit=4)
    for i in range(6):
        openings.opened("sp", f"anon-{i}", float(i))
    assert len(openings) == 4 and openings.dropped == 2
    batch = openings.take(limit=3)
    assert [o.listener_id for o in batch] == ["anon-2", "anon-3", "anon-4"]
    openings.opened("sp", "anon-6", 6.0)
    openings.opened("sp", "anon-7", 7.0)
    openings.put_back(batch)  # a failed report: its openings go first, room permitting
    assert [o.listener_id for o in openings.take()] == ["anon-4", "anon-5", "anon-6", "anon-7"]
    assert openings.dropped == 4


def test_a_cut_closes_only_the_connections_older_than_the_newer_stream() -> None:
    """A worker that restarted keeps its node id, so the origin may still think it holds a
    ticket and send it a cut: the cut closes what opened before the newer stream, never a
    connection that opened after it (a reconnect that landed there since)."""
    fanout = LiveFanout(SETTINGS)
    older, other = FakeTransport(), FakeTransport()
    fanout.attach(older, "anon-a")
    fanout.attach(other, "anon-b")
    newer_elsewhere = time.monotonic() + 1.0
    assert cut_replaced([Opening("sp", "anon-a", newer_elsewhere)], {"sp": fanout}.get) == 1
    assert older.closed and not other.closed
    since = FakeTransport()
    reconnect = fanout.attach(since, "anon-a")
    stale = Opening("sp", "anon-a", reconnect.attached_at - 1e-6)  # from before it
    assert cut_replaced([stale, Opening("gone", "anon-a", 1e12)], {"sp": fanout}.get) == 0
    assert not since.closed and fanout.listener_count == 2
    assert fanout.stats.replaced == 1


def test_the_wire_form_round_trips_and_refuses_what_is_not_it() -> None:
    cuts = [Opening("sp", "anon-a", 1.25), Opening("sp", "anon-b", 2.5), Opening("x", "u", 3.0)]
    assert parse_wire(to_wire(cuts), 10) == cuts
    assert parse_wire(None, 10) == []
    bad_shapes: tuple[object, ...] = (
        [],
        {"sp": "a"},
        {"sp": [["a"]]},
        {"sp": [[1, 2.0]]},
        {"sp": [["a", True]]},
    )
    for bad in bad_shapes:
        with pytest.raises(OpeningsRefused):
            parse_wire(bad, 10)
    with pytest.raises(OpeningsRefused):
        parse_wire(to_wire(cuts), 2)


# -- on a real node -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("one-stream"),
        TOWNHALL_SECRET=SECRET,
        TOWNHALL_EDGE_STREAM_WORKERS="2",
    )
    try:
        _wait_for_worker(server.port + 1)
        yield server
    finally:
        stop_server(server)


async def _worker_streams_started(port: int) -> dict[str, int]:
    """``streams_started`` of both workers (polled until both answered)."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 15.0
    async with httpx.AsyncClient(timeout=5) as http:
        while len(seen) < 2 and time.monotonic() < deadline:
            health = (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
            seen[health["worker"]] = health["streams_started"]
    assert len(seen) == 2, seen
    return seen


async def _only_the_newest_streams(streams: list[Stream], newest_at: float) -> float:
    """Waits until every stream but the last has ended (at most CUT_BOUND_S); returns how
    long after ``newest_at`` (the newest one's opening) that was, at most, and checks that
    the last one still receives audio."""
    older = streams[:-1]
    wait_s = CUT_BOUND_S - (time.monotonic() - newest_at)
    ended = await asyncio.gather(*(s.ended_within(wait_s) for s in older))
    took = time.monotonic() - newest_at
    assert all(ended), f"{ended.count(False)} older stream(s) of the ticket still stream"
    newest = streams[-1]
    assert not await newest.ended_within(STILL_STREAMING_S), "the newest stream was cut"
    return took


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_ice")
async def test_one_ticket_holds_one_stream_across_the_stream_workers(node: RunningServer) -> None:
    space_id = await _live_space(node.url)
    ticket = _tickets(1, space_id)[0]
    port = node.port + 1
    before = await _worker_streams_started(port)
    streams: list[Stream] = []
    try:
        for _ in range(CONNECTIONS):
            streams.append(await Stream.open(port, space_id, ticket))
        newest_at = time.monotonic()
        assert [s.status for s in streams] == [200] * CONNECTIONS
        after = await _worker_streams_started(port)
        served = {w: after[w] - before[w] for w in after}
        assert all(served.values()), f"the kernel sent every connection to one worker: {served}"
        took = await _only_the_newest_streams(streams, newest_at)
        print(
            f"\n{CONNECTIONS} connections of one ticket over workers {served}: "
            f"the older ones all ended within {took:.2f} s"
        )
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_ice")
async def test_the_origins_own_streams_take_part(node: RunningServer) -> None:
    space_id = await _live_space(node.url)
    for ports in ((node.port, node.port + 1), (node.port + 1, node.port)):
        ticket = _tickets(1, space_id)[0]
        streams: list[Stream] = []
        try:
            for port in ports:
                streams.append(await Stream.open(port, space_id, ticket))
            newest_at = time.monotonic()
            assert [s.status for s in streams] == [200, 200]
            took = await _only_the_newest_streams(streams, newest_at)
            print(f"\nolder stream on port {ports[0]} ended {took:.2f} s after a newer one")
        finally:
            for stream in streams:
                stream.close()
