"""The FollowStore contract, run against SQLite and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from townhall.api.follow_models import MAX_FEED_CURSOR
from townhall.domain.spaces import Space, SpaceState, User
from townhall.store import SqlStore
from townhall.store.follows import SqlFollowStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def stores(store: SqlStore) -> tuple[SqlStore, SqlFollowStore]:
    return store, SqlFollowStore(store)


async def _users(store: SqlStore, count: int) -> list[User]:
    return [await store.create_user(f"u{i:03d}", f"user{i:03d}", "hash") for i in range(count)]


async def test_follow_is_idempotent_and_counted(stores) -> None:
    store, follows = stores
    host, fan, other = await _users(store, 3)
    assert await follows.follow(fan.id, host.id, T0) is True
    assert await follows.follow(fan.id, host.id, T0) is False
    await follows.follow(other.id, host.id, T0)
    assert await follows.count_followers(host.id) == 2
    assert await follows.count_following(fan.id) == 1
    assert await follows.is_following(fan.id, host.id)
    assert not await follows.is_following(host.id, fan.id)
    assert await follows.unfollow(fan.id, host.id) is True
    assert await follows.unfollow(fan.id, host.id) is False
    assert await follows.count_followers(host.id) == 1


async def test_followers_come_in_key_ordered_pages_that_cover_everyone_once(stores) -> None:
    store, follows = stores
    host, *fans = await _users(store, 26)
    for fan in reversed(fans):
        await follows.follow(fan.id, host.id, T0)
    seen: list[str] = []
    after = ""
    while page := await follows.followers_after(host.id, after, 7):
        assert len(page) <= 7
        seen += page
        after = page[-1]
    assert seen == sorted(fan.id for fan in fans)


async def test_a_page_of_notifications_is_written_once_per_person(stores) -> None:
    store, follows = stores
    host, *fans = await _users(store, 5)
    ids = [fan.id for fan in fans]
    first = await follows.add_notifications(ids[:3], "space_live", "s1", host.id, T0)
    assert sorted(first) == ids[:3]
    assert sorted(await follows.add_notifications(ids, "space_live", "s1", host.id, T0)) == ids[3:]
    assert await follows.add_notifications(ids[:1], "space_scheduled", "s1", host.id, T0) == ids[:1]
    assert await follows.add_notifications([], "space_live", "s1", host.id, T0) == []
    feed = await follows.notifications_for(ids[0], 10)
    assert [(n.kind, n.space_id, n.actor_id) for n in feed] == [
        ("space_scheduled", "s1", host.id),
        ("space_live", "s1", host.id),
    ]
    assert feed[0].created_at == T0
    older = await follows.notifications_for(ids[0], 10, before_id=feed[0].id)
    assert [n.id for n in older] == [feed[1].id]
    # any cursor the API accepts, on both backends (PostgreSQL's int4 refused 2**62 - 1)
    newest = await follows.notifications_for(ids[0], 10, before_id=MAX_FEED_CURSOR)
    assert [n.id for n in newest] == [n.id for n in feed]


async def test_reminders_and_old_notifications(stores) -> None:
    store, follows = stores
    host, *fans = await _users(store, 4)
    space = Space(id="s1", title="t", host=host, state=SpaceState.SCHEDULED, created_at=T0)
    await store.save_space(space)
    for fan in fans:
        assert await follows.remind("s1", fan.id, T0)
    assert not await follows.remind("s1", fans[0].id, T0)
    assert await follows.count_reminders("s1") == 3
    assert await follows.is_reminded("s1", fans[0].id)
    assert not await follows.is_reminded("s1", host.id)
    assert await follows.reminded_after("s1", fans[0].id, 10) == [fans[1].id, fans[2].id]
    assert await follows.unremind("s1", fans[2].id)
    assert await follows.count_reminders("s1") == 2
    await follows.add_notifications([fans[0].id], "space_live", "s1", host.id, T0)
    later = T0 + timedelta(days=1)
    await follows.add_notifications([fans[0].id], "space_live", "s2", host.id, later)
    assert await follows.forget_notifications_before(later) == 1
    assert [n.space_id for n in await follows.notifications_for(fans[0].id, 10)] == ["s2"]
