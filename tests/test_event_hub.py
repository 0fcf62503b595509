"""The live event hub is bounded everywhere: streams per user, streams per node, events
queued for a slow page (dropped and counted, never buffered)."""

from __future__ import annotations

import pytest

from townhall.domain.errors import TooManyRequests, Unavailable
from townhall.service.event_hub import EventHub, HubLimits
from townhall.state import MemoryState
from townhall.state.base import MAX_USERS_PER_EVENT


async def test_streams_per_user_and_per_node_are_capped() -> None:
    hub = EventHub(HubLimits(max_streams=3, max_streams_per_user=2, queue_size=4))
    first = hub.subscribe("ann")
    hub.subscribe("ann")
    with pytest.raises(TooManyRequests):
        hub.subscribe("ann")
    hub.subscribe("bob")
    with pytest.raises(Unavailable):
        hub.subscribe("cid")
    hub.unsubscribe(first)
    hub.unsubscribe(first)  # twice is harmless
    assert hub.streams == 2
    hub.subscribe("cid")


async def test_a_slow_stream_loses_events_instead_of_holding_them() -> None:
    hub = EventHub(HubLimits(queue_size=2))
    slow = hub.subscribe("ann")
    other = hub.subscribe("bob")
    for n in range(5):
        hub.publish(["ann", "bob", "nobody"], f"{n}".encode())
    assert slow.queue.qsize() == other.queue.qsize() == 2
    assert hub.dropped == 6 and hub.delivered == 4
    assert slow.queue.get_nowait() == b"0"


async def test_announced_events_reach_every_hub_on_the_shared_state_in_chunks() -> None:
    """Two hubs on one state (two nodes, here one process): a stream open on either one
    hears an event announced from the other; a big wave goes out in bounded messages."""
    state = MemoryState()
    here, there = EventHub(bus=state), EventHub(bus=state)
    ann, bob = here.subscribe("ann"), there.subscribe("bob")
    sizes: list[int] = []
    state.listen_user_events(lambda users, _: sizes.append(len(users)))
    wave = ["ann", *(f"follower-{i}" for i in range(MAX_USERS_PER_EVENT)), "bob"]
    await here.announce(wave, b"live")
    assert ann.queue.get_nowait() == b"live" and bob.queue.get_nowait() == b"live"
    assert sizes == [MAX_USERS_PER_EVENT, 2]
    assert here.delivered == there.delivered == 1
