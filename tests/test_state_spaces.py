"""What the spaces service keeps per id is bounded, and an id of the wrong shape
creates nothing (no lock, no cache entry), on either state backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from townhall.config import Settings
from townhall.domain.errors import NotFound
from townhall.domain.spaces import User
from townhall.service.spaces import Spaces
from townhall.state import MemoryState, RedisState, State
from townhall.store import SqlStore

CACHE_SIZE = 5


@pytest.fixture(params=["memory", "redis"])
async def spaces(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Spaces]:
    state: State = MemoryState()
    if request.param == "redis":
        state = RedisState(request.getfixturevalue("redis_url"))
    store = await SqlStore(f"sqlite:///{tmp_path / 'store.sqlite3'}").open()
    settings = Settings(data_dir=tmp_path)
    service = Spaces(store, state, settings, "node-test", cache_size=CACHE_SIZE)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await state.close()
        await store.close()


async def _host(spaces: Spaces) -> User:
    return await spaces._store.create_user("host1", "ann", "not-a-real-hash")


@pytest.mark.parametrize(
    "space_id", ["x" * 60_000, "ABCDEFGHIJKL", "abcdefghijk", "abcdefghijkm/", "../../etc"]
)
async def test_a_malformed_id_creates_nothing(spaces: Spaces, space_id: str) -> None:
    host = await _host(spaces)
    for attempt in (
        spaces.go_live(host, space_id),
        spaces.end(host, space_id),
        spaces.snapshot(space_id),
        spaces.react(space_id, "🔥"),
        spaces.request_to_speak(host, space_id),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert set(spaces.cache_sizes().values()) == {0}


async def test_per_id_caches_are_bounded_and_stay_correct(spaces: Spaces) -> None:
    host = await _host(spaces)
    created = [await spaces.create(host, f"space {i}") for i in range(3 * CACHE_SIZE)]
    ids = [snapshot.data["id"] for snapshot in created]
    for space_id in ids:
        await spaces.go_live(host, space_id)
        await spaces.react(space_id, "🔥")
        assert await spaces.is_removed(space_id, "nobody") is False
    for space_id in ids:  # evicted entries are read again, not lost
        snapshot = await spaces.snapshot(space_id)
        assert snapshot.data["state"] == "live" and snapshot.data["reactions"] == {"🔥": 1}
    sizes = spaces.cache_sizes()
    assert max(sizes.values()) <= CACHE_SIZE, sizes
    assert sizes["locks"] == 0
