"""A node's cache of shared state: kept only while changes are delivered, and a value
read before a change never outlives it."""

from __future__ import annotations

import asyncio
from typing import cast

from townhall.service.trusted_cache import TrustedCache
from townhall.state import MemoryState, State


class Switchable(MemoryState):
    """Memory state whose change delivery can be switched off, as Redis's can break."""

    def __init__(self) -> None:
        super().__init__()
        self.delivering = True

    @property
    def healthy(self) -> bool:
        return self.delivering


async def test_values_are_kept_until_dropped() -> None:
    cache: TrustedCache[str] = TrustedCache(MemoryState(), size=2)
    reads: list[str] = []

    async def fetch() -> str:
        reads.append("x")
        return f"value {len(reads)}"

    assert await cache.read("a", fetch) == "value 1"
    assert await cache.read("a", fetch) == "value 1"
    cache.drop("a")
    assert await cache.read("a", fetch) == "value 2"
    await cache.read("b", fetch)
    await cache.read("c", fetch)
    assert len(cache) == 2  # bounded: the least recently used went


async def test_a_read_in_flight_during_a_change_is_not_kept() -> None:
    cache: TrustedCache[str] = TrustedCache(MemoryState(), size=10)
    release = asyncio.Event()

    async def slow_stale_fetch() -> str:
        await release.wait()
        return "before the change"

    reading = asyncio.create_task(cache.read("a", slow_stale_fetch))
    await asyncio.sleep(0)
    cache.drop("a")  # another node changed it while the read was on the wire
    release.set()
    assert await reading == "before the change"

    async def fresh() -> str:
        return "after the change"

    assert await cache.read("a", fresh) == "after the change"
    cache.drop("other")  # a change elsewhere does not stop a read of "a" being kept
    assert "a" in cache
    release.clear()
    reading = asyncio.create_task(cache.read("b", slow_stale_fetch))
    await asyncio.sleep(0)
    cache.drop("other")
    release.set()
    await reading
    assert "b" in cache


async def test_nothing_is_served_or_kept_while_changes_may_be_missed() -> None:
    state = Switchable()
    cache: TrustedCache[str] = TrustedCache(cast(State, state), size=10)
    cache.keep("a", "old")
    state.delivering = False
    assert cache.get("a") is None and "a" not in cache

    async def fetch() -> str:
        return "read while blind"

    assert await cache.read("b", fetch) == "read while blind"
    state.delivering = True
    assert "b" not in cache
