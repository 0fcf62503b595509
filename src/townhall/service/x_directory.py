"""The snapshots the X-compatible API reads: by id, and every live or scheduled space.

Lookups by id are the snapshots Spaces already keeps in memory. Search and "by
creator" scan the open spaces (live and scheduled), whose ids are read from the store
at most once per `refresh_s` by one caller while the others wait for that answer,
so a crowd of scripts polling the search costs one query a second, not one each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from townhall.domain.errors import NotFound
from townhall.domain.spaces import SpaceState
from townhall.service.spaces import Spaces
from townhall.store.base import Store

MAX_OPEN_SPACES = 1_000
"""Per state, the most a search sees (the newest live and soonest scheduled first)."""
REFRESH_S = 1.0


class SpaceDirectory:
    def __init__(
        self,
        spaces: Spaces,
        store: Store,
        *,
        refresh_s: float = REFRESH_S,
        max_open: int = MAX_OPEN_SPACES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spaces = spaces
        self._store = store
        self._refresh_s = refresh_s
        self._max_open = max_open
        self._clock = clock
        self._open_ids: list[str] = []
        self._fresh_until = float("-inf")
        self._refreshing = asyncio.Lock()

    async def snapshot(self, space_id: str) -> dict[str, Any] | None:
        try:
            return (await self._spaces.snapshot(space_id)).data
        except NotFound:
            return None

    async def open_spaces(self) -> list[dict[str, Any]]:
        """Snapshots of the live and scheduled spaces, at most a second old."""
        if self._clock() >= self._fresh_until:
            async with self._refreshing:
                if self._clock() >= self._fresh_until:
                    await self._refresh()
        found = []
        for space_id in self._open_ids:
            snapshot = await self.snapshot(space_id)
            if snapshot is not None and snapshot["state"] != SpaceState.ENDED.value:
                found.append(snapshot)
        return found

    async def _refresh(self) -> None:
        ids = []
        for state in (SpaceState.LIVE, SpaceState.SCHEDULED):
            ids += [space.id for space in await self._store.list_spaces([state], self._max_open)]
        self._open_ids = ids
        self._fresh_until = self._clock() + self._refresh_s
