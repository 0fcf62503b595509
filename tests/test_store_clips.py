"""The ClipStore contract on every backend: SQLite and a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from test_store_contract import T0, _host, _space
from townhall.domain.clips import Clip, ClipSource
from townhall.domain.spaces import SpaceState
from townhall.store import SqlStore
from townhall.store.clips import SqlClipStore


def _clip(clip_id: str, space_id: str, *, minutes: int = 0, ttl_minutes: int = 60) -> Clip:
    created = T0 + timedelta(minutes=minutes)
    return Clip(
        id=clip_id,
        space_id=space_id,
        creator_id=None,
        source=ClipSource.LIVE,
        created_at=created,
        expires_at=created + timedelta(minutes=ttl_minutes),
        duration_s=30.0,
    )


async def test_a_clip_comes_back_as_it_was_saved(store: SqlStore) -> None:
    host = await _host(store)
    await store.save_space(_space("s1", host, SpaceState.ENDED))
    clips = SqlClipStore(store)
    recording = Clip("c1", "s1", host.id, ClipSource.RECORDING, T0, T0 + timedelta(days=30),
                     12.5, start_s=61.25)  # fmt: skip
    await clips.add_clip(recording)
    assert await clips.get_clip("c1") == recording
    assert await clips.get_clip("nope") is None
    assert await clips.delete_clip("c1") is True
    assert await clips.delete_clip("c1") is False
    assert await clips.get_clip("c1") is None


async def test_expired_clips_come_oldest_first_in_bounded_batches(
    store: SqlStore,
) -> None:
    host = await _host(store)
    await store.save_space(_space("s1", host, SpaceState.LIVE))
    await store.save_space(_space("s2", host, SpaceState.LIVE))
    clips = SqlClipStore(store)
    for n in range(5):
        await clips.add_clip(_clip(f"c{n}", "s1" if n % 2 else "s2", minutes=n, ttl_minutes=10))
    now = T0 + timedelta(minutes=12, seconds=30)  # c0, c1, c2 have expired
    assert [c.id for c in await clips.expired_clips(now, 2)] == ["c0", "c1"]
    assert [c.id for c in await clips.expired_clips(now, 100)] == ["c0", "c1", "c2"]
    assert [c.id for c in await clips.clips_of_space("s1", 10)] == ["c3", "c1"]
    assert [c.id for c in await clips.clips_of_space("s2", 1)] == ["c4"]


async def test_a_clip_of_no_space_is_refused(store: SqlStore) -> None:
    clips = SqlClipStore(store)
    with pytest.raises(IntegrityError):
        await clips.add_clip(_clip("c1", "no-such-space"))
    assert await clips.get_clip("c1") is None
