"""Following people and asking to be reminded of a space: the use cases behind
the follow, reminder and feed routes.

Hooks from the spaces service (`space_created`, `space_live`) turn a host's actions
into announcements for the Notifier; they queue work and return at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from townhall.domain.accounts import USERNAME_PATTERN
from townhall.domain.errors import Conflict, Forbidden, Invalid, NotFound
from townhall.domain.spaces import Space, SpaceState, User
from townhall.service.events import Events
from townhall.service.notifier import Announcement, Kind, Notifier
from townhall.store.base import Store
from townhall.store.follows import FollowStore

MAX_FEED_PAGE = 100


@dataclass(frozen=True)
class FollowLimits:
    max_following: int = 5_000
    """People one account may follow: each follow is a row and a share of every fan-out."""


def _now() -> datetime:
    return datetime.now(UTC)


class Follows:
    def __init__(
        self,
        store: Store,
        follows: FollowStore,
        notifier: Notifier,
        space_record: Callable[[str], Awaitable[Space]],
        limits: FollowLimits | None = None,
        events: Events | None = None,
    ) -> None:
        """With `events`, followers are told of the spaces that are scheduled or go live."""
        self._store = store
        self._follows = follows
        self._notifier = notifier
        self._space = space_record
        self.limits = limits or FollowLimits()
        if events is not None:
            events.listen_space_scheduled(self.space_created)
            events.listen_space_live(self.space_live)

    async def _user_named(self, username: str) -> User:
        found = None
        if USERNAME_PATTERN.match(username):
            found = await self._store.credentials(username)
        if found is None:
            raise NotFound(f"there is no user named {username[:40]!r}", code="user_not_found")
        return found[0]

    async def follow(self, actor: User, username: str) -> dict[str, Any]:
        followee = await self._user_named(username)
        if followee.id == actor.id:
            raise Invalid("you cannot follow yourself", code="cannot_follow_self")
        cap = self.limits.max_following
        if not await self._follows.is_following(actor.id, followee.id):
            if await self._follows.count_following(actor.id) >= cap:
                raise Conflict(f"you already follow {cap} people", code="too_many_follows")
            await self._follows.follow(actor.id, followee.id, _now())
        return await self._relation(actor, followee, following=True)

    async def relation(self, actor: User, username: str) -> dict[str, Any]:
        followee = await self._user_named(username)
        following = await self._follows.is_following(actor.id, followee.id)
        return await self._relation(actor, followee, following=following)

    async def unfollow(self, actor: User, username: str) -> dict[str, Any]:
        followee = await self._user_named(username)
        await self._follows.unfollow(actor.id, followee.id)
        return await self._relation(actor, followee, following=False)

    async def _relation(self, actor: User, followee: User, following: bool) -> dict[str, Any]:
        return {
            "user": {"id": followee.id, "username": followee.username},
            "following": following,
            "followers": await self._follows.count_followers(followee.id),
        }

    async def remind(self, actor: User, space_id: str) -> dict[str, Any]:
        space = await self._space(space_id)
        if space.state is not SpaceState.SCHEDULED:
            raise Conflict("reminders are for spaces that have not started", code="not_scheduled")
        await self._follows.remind(space_id, actor.id, _now())
        return {"space_id": space_id, "reminded": True}

    async def reminder(self, actor: User, space_id: str) -> dict[str, Any]:
        await self._space(space_id)
        reminded = await self._follows.is_reminded(space_id, actor.id)
        return {"space_id": space_id, "reminded": reminded}

    async def unremind(self, actor: User, space_id: str) -> dict[str, Any]:
        await self._space(space_id)
        await self._follows.unremind(space_id, actor.id)
        return {"space_id": space_id, "reminded": False}

    async def feed(self, actor: User, limit: int, before: int | None) -> list[dict[str, Any]]:
        entries = await self._follows.notifications_for(
            actor.id, max(1, min(MAX_FEED_PAGE, limit)), before
        )
        return [
            {
                "id": entry.id,
                "kind": entry.kind,
                "space_id": entry.space_id,
                "actor_id": entry.actor_id,
                "url": f"/s/{entry.space_id}",
                "created_at": entry.created_at.isoformat(),
            }
            for entry in entries
        ]

    async def progress(self, actor: User, space_id: str) -> dict[str, Any]:
        """For the host: how many have been told so far, per announcement."""
        space = await self._space(space_id)
        if space.host.id != actor.id:
            raise Forbidden("only the host sees who was notified", code="forbidden")
        return {
            "space_id": space_id,
            "followers": await self._follows.count_followers(actor.id),
            "reminders": await self._follows.count_reminders(space_id),
            "announcements": self._notifier.progress(space_id),
        }

    # -- hooks from the spaces service -------------------------------------------------

    def space_created(self, space: Space) -> None:
        self._notifier.announce(Announcement(Kind.SCHEDULED, space.id, space.title, space.host))

    def space_live(self, space: Space) -> None:
        self._notifier.announce(Announcement(Kind.LIVE, space.id, space.title, space.host))
