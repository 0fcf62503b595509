"""Who is listening, for the host: signed-in listeners by name, the others as a count.

Names come from the live-stream connections of the node that runs the space (each
holds the listener id its ticket was issued for: a user id when signed in); the total
is the deployment-wide count the snapshot shows, so listeners on stream workers or
other nodes are counted, if not named. Bounded: at most MAX_NAMED names, looked up
in the store (the host's page asks every few seconds, the crowd never does).
"""

from __future__ import annotations

from typing import Any

from cachetools import LRUCache

from townhall.domain.errors import Forbidden
from townhall.domain.spaces import User
from townhall.domain.stage import Role
from townhall.service.ids import looks_like_id
from townhall.service.spaces import Spaces
from townhall.store.base import Store

MAX_NAMED = 200
"""Names listed at most (a host scrolls a few dozen; the rest is in the count)."""
MAX_SCANNED = 20_000
"""Listener ids looked at per request, signed-in or not (one node's listeners)."""
NAME_CACHE_SIZE = 10_000
MODERATORS = (Role.HOST, Role.COHOST)


class AudienceList:
    def __init__(self, spaces: Spaces, store: Store, max_named: int = MAX_NAMED) -> None:
        self._spaces = spaces
        self._store = store
        self._max_named = max_named
        self._names: LRUCache[str, User | None] = LRUCache(NAME_CACHE_SIZE)

    async def for_host(self, actor: User, space_id: str) -> dict[str, Any]:
        space = await self._spaces.record(space_id)
        space.require_live("see who is listening")
        status = await self._spaces.my_status(actor, space_id)
        if Role(status["role"]) not in MODERATORS:
            raise Forbidden("only the host or a co-host can see who is listening")
        room = self._spaces.rooms.get(space_id)
        ids = room.program.live.first_listener_ids(MAX_SCANNED) if room else []
        signed_in_ids = [listener for listener in ids if looks_like_id(listener)]
        named = []
        for user_id in signed_in_ids[: self._max_named]:
            user = await self._user(user_id)
            if user is not None:
                named.append(user.to_json())
        named.sort(key=lambda user: user["username"].casefold())
        total = (await self._spaces.snapshot(space_id)).data["listeners"]
        total = max(total, len(ids))
        return {
            "listeners": total,
            "signed_in": named,
            "signed_in_count": len(signed_in_ids),
            "anonymous": max(0, total - len(signed_in_ids)),
        }

    async def _user(self, user_id: str) -> User | None:
        if user_id not in self._names:
            self._names[user_id] = await self._store.get_user(user_id)
        return self._names[user_id]
