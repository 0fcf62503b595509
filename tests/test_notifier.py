"""The notifier's fan-out on a real store: waves sized by the reported load, one
feed entry per person, everything told also reaches the connected pages, and a
page at a time in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from townhall.admission.signing import Signer
from townhall.config import load_settings
from townhall.domain.pacing import Load
from townhall.domain.spaces import User
from townhall.service.door import Door
from townhall.service.door_load import door_load
from townhall.service.event_hub import EventHub, HubLimits
from townhall.service.notifier import Announcement, Kind, Notifier, NotifierSettings
from townhall.service.webhooks import Webhooks, WebhookSettings
from townhall.state.base import NodeInfo
from townhall.state.memory import MemoryState
from townhall.store import SqlStore
from townhall.store.follows import SqlFollowStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FOLLOWERS = 23


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await SqlStore(f"sqlite:///{tmp_path / 'th.sqlite3'}").open()
    host = await opened.create_user("host", "famous", "x")
    follows = SqlFollowStore(opened)
    for i in range(FOLLOWERS):
        fan = await opened.create_user(f"fan{i:02d}", f"fan{i:02d}", "x")
        await follows.follow(fan.id, host.id, T0)
    try:
        yield opened
    finally:
        await opened.close()


def _constant(load: Load):
    async def read(_space: str) -> Load:
        return load

    return read


def _notifier(store: SqlStore, hub: EventHub, load: Load, slept: list[float], **settings):
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return Notifier(
        SqlFollowStore(store),
        hub,
        Webhooks(WebhookSettings()),
        _constant(load),
        NotifierSettings(**settings),
        sleep=sleep,
    )


LIVE = Announcement(Kind.LIVE, "space1", "Now", User("host", "famous"))


async def test_live_waves_are_as_large_as_the_door_can_admit(store: SqlStore) -> None:
    slept: list[float] = []
    load = Load(admissions_per_s=8, max_listeners=100, listeners=0, waiting=3)
    hub = EventHub()
    connected = hub.subscribe("fan07")
    progress = await _notifier(store, hub, load, slept, interval_s=2.0).run(LIVE)
    assert progress.paced and progress.done
    assert progress.notified == progress.reached == FOLLOWERS
    # 8/s x 2 s - 3 waiting = 13 per wave: 13 + 10, one pause between the two waves
    assert progress.waves == 2 and slept == [2.0]
    assert connected.queue.qsize() == 1 and b'"space_live"' in connected.queue.get_nowait()


async def test_without_pacing_pages_go_out_back_to_back(store: SqlStore) -> None:
    slept: list[float] = []
    full = Load(admissions_per_s=0, max_listeners=0, listeners=0, waiting=0)
    notifier = _notifier(store, EventHub(), full, slept, pacing=False, max_wave=10)
    progress = await notifier.run(LIVE)
    assert progress.waves == 3 and slept == [] and progress.notified == FOLLOWERS
    again = await notifier.run(LIVE)  # a retried announcement tells nobody twice
    assert again.reached == FOLLOWERS and again.notified == 0


async def test_announcing_returns_at_once_and_the_queue_is_bounded(store: SqlStore) -> None:
    slept: list[float] = []
    load = Load(admissions_per_s=1_000, max_listeners=1_000, listeners=0, waiting=0)
    notifier = _notifier(store, EventHub(HubLimits(queue_size=1)), load, slept, max_jobs=2)
    for kind in (Kind.SCHEDULED, Kind.LIVE, Kind.LIVE):
        notifier.announce(Announcement(kind, "space1", "Now", User("host", "famous")))
    assert notifier.dropped_jobs == 1
    await notifier.start()
    try:
        await asyncio.wait_for(notifier.idle.wait(), 10)
    finally:
        await notifier.stop()
    assert set(notifier.progress("space1")) == {"space_scheduled", "space_live"}
    assert all(p["done"] for p in notifier.progress("space1").values())


async def test_with_several_nodes_the_registry_multiplies_the_capacity() -> None:
    settings = load_settings({"TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": "30"})
    door = Door(settings, Signer(b"k" * 32), listeners=lambda: 5)
    state = MemoryState()
    alone = await door_load(door)("space1")
    assert (alone.admissions_per_s, alone.listeners, alone.waiting) == (30, 5, 0)
    for node, listeners in (("a", 40.0), ("b", 60.0)):
        await state.beat(NodeInfo(node, f"http://{node}", load=listeners), ttl_s=30)
    for _ in range(7):
        await state.next_arrival("space1")
    await state.advance_admitted("space1", 2)
    both = await door_load(door, state)("space1")
    assert both.admissions_per_s == 60 and both.max_listeners == 2 * alone.max_listeners
    assert both.listeners == 100 and both.waiting == 5
