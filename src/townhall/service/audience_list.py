"""Who is listening, for the host: signed-in listeners by name, the others as a count.

Names come from the live-stream connections of the node that runs the space (each
holds the listener id its ticket was issued for: a user id when signed in); the total
is the deployment-wide count the snapshot shows, so listeners on stream workers or
other nodes are counted, if not named. Bounded: at most MAX_NAMED names, looked up
in the store (the host's page asks every few seconds, the crowd never does).
"""

from __future__ import annotations

from typing import Any

from townhall.domain.errors import Forbidden
from townhall.domain.spaces import User
from townhall.domain.stage import Role
from townhall.service.ids import signed_in_ids as ids_of_users
from townhall.service.listener_names import ListenerNames
from townhall.service.spaces import Spaces

MAX_NAMED = 200
"""Names listed at most (a host scrolls a few dozen; the rest is in the count)."""
MAX_SCANNED = 20_000
"""Listener ids looked at per request, signed-in or not (one node's listeners)."""
MODERATORS = (Role.HOST, Role.COHOST)


class AudienceList:
    def __init__(self, spaces: Spaces, names: ListenerNames, max_named: int = MAX_NAMED) -> None:
        self._spaces = spaces
        self._names = names
        self._max_named = max_named

    async def for_host(self, actor: User, space_id: str) -> dict[str, Any]:
        space = await self._spaces.record(space_id)
        space.require_live("see who is listening")
        status = await self._spaces.my_status(actor, space_id)
        if Role(status["role"]) not in MODERATORS:
            raise Forbidden("only the host or a co-host can see who is listening")
        room = self._spaces.rooms.get(space_id)
        ids = room.program.live.first_listener_ids(MAX_SCANNED) if room else []
        signed_in_ids = ids_of_users(ids, MAX_SCANNED)
        people = await self._names.people(signed_in_ids[: self._max_named], self._max_named)
        named = [person.to_json() for person in people]
        named.sort(key=lambda user: user["username"].casefold())
        total = (await self._spaces.snapshot(space_id)).data["listeners"]
        total = max(total, len(ids))
        return {
            "listeners": total,
            "signed_in": named,
            "signed_in_count": len(signed_in_ids),
            "anonymous": max(0, total - len(signed_in_ids)),
        }
