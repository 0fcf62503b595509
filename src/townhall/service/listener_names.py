"""Listener ids to people: the signed-in ones among a node's live connections.

A ticket carries the listener id it was issued for: a user id when signed in, an
opaque token otherwise. Both the room's faces (every second, per live space) and the
host's list of who is listening turn ids into names; each user is looked up in the
store once per node (the cache remembers misses too), so a crowd polling the room
never reaches the database.
"""

from __future__ import annotations

from collections.abc import Iterable

from cachetools import LRUCache

from townhall.domain.spaces import User
from townhall.store.base import Store

NAME_CACHE_SIZE = 10_000


class ListenerNames:
    def __init__(self, store: Store, cache_size: int = NAME_CACHE_SIZE) -> None:
        self._store = store
        self._users: LRUCache[str, User | None] = LRUCache(cache_size)

    async def people(self, user_ids: Iterable[str], limit: int) -> list[User]:
        """Up to `limit` users, in the order given; unknown ids are skipped."""
        found: list[User] = []
        for user_id in user_ids:
            if len(found) >= limit:
                break
            user = await self.user(user_id)
            if user is not None:
                found.append(user)
        return found

    async def user(self, user_id: str) -> User | None:
        if user_id not in self._users:
            self._users[user_id] = await self._store.get_user(user_id)
        return self._users[user_id]
