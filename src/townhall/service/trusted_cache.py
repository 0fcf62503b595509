"""Values read from the shared state, kept on this node only while they can be trusted.

A node may cache what every node agrees on only if it hears of every change: that is
`State.healthy`. While it is false nothing is served from here, and nothing read is
kept. A change from another node drops the entry (`drop`); changes that may have been
missed drop everything (`clear`). A read that was in flight while its key was dropped
is returned but not kept, so a value fetched before a change never outlives it.
Bounded: the least recently used entries go first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

from townhall.state.base import State

V = TypeVar("V")
Version = tuple[int, int, int]
"""(clears, forgotten drop counts, drops of the key): equal versions mean no change."""


class _DropCounts(LRUCache[str, int]):
    """Drops per key, bounded; a count pushed out is itself counted, so a key whose
    count was forgotten never looks unchanged."""

    evicted = 0

    def popitem(self) -> tuple[str, int]:
        self.evicted += 1
        return super().popitem()


class TrustedCache(Generic[V]):
    def __init__(self, state: State, size: int) -> None:
        self._state = state
        self._values: LRUCache[str, V] = LRUCache(size)
        self._drops = _DropCounts(size)
        self._clears = 0

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: str) -> bool:
        return self._state.healthy and key in self._values

    def version(self, key: str) -> Version:
        """Changes when the key is dropped (or everything is): see `keep`."""
        return (self._clears, self._drops.evicted, self._drops.get(key, 0))

    def get(self, key: str) -> V | None:
        return self._values.get(key) if self._state.healthy else None

    async def read(self, key: str, fetch: Callable[[], Awaitable[V]]) -> V:
        if self._state.healthy and key in self._values:
            return self._values[key]
        version = self.version(key)
        value = await fetch()
        self.keep(key, value, version)
        return value

    def keep(self, key: str, value: V, read_at: Version | None = None) -> None:
        """Remembers a value this node read (at version `read_at`) or wrote itself."""
        if not self._state.healthy:
            return
        if read_at is not None and read_at != self.version(key):
            return
        self._values[key] = value

    def drop(self, key: str) -> None:
        self._values.pop(key, None)
        self._drops[key] = self._drops.get(key, 0) + 1

    def clear(self) -> None:
        self._values.clear()
        self._drops.clear()
        self._clears += 1
