"""Live events for signed-in pages (Server-Sent Events): who is connected, bounded.

A page keeps one stream open; a notification for a connected user is put on that
stream's queue at once. Every part is bounded: streams per user, streams in total,
events queued per stream. A stream whose queue is full loses the event (counted):
the feed (`GET /api/me/notifications`) still has it, so a slow page catches up by
reading it, and a stalled one never holds memory.

A page's stream may be open on any node, so an event is announced through the shared
state (`State.publish_user_event`: Redis pub/sub across nodes, a direct call in one
process), and every node's hub delivers it to the streams it holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from townhall.domain.errors import TooManyRequests, Unavailable
from townhall.state.base import MAX_USERS_PER_EVENT, State, StateUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubLimits:
    max_streams: int = 10_000
    """Open event streams on this node; past it a new page is told to retry later."""
    max_streams_per_user: int = 4
    """Tabs of one person (each holds a connection and a queue)."""
    queue_size: int = 32
    """Events waiting for one slow stream before new ones are dropped for it."""


@dataclass(eq=False)
class Subscription:
    user_id: str
    queue: asyncio.Queue[bytes] = field(repr=False)


class EventHub:
    def __init__(self, limits: HubLimits | None = None, bus: State | None = None) -> None:
        """`bus`: the shared state that carries events between nodes; without one (a
        unit test) events reach this hub's streams only."""
        self.limits = limits or HubLimits()
        self._bus = bus
        if bus is not None:
            bus.listen_user_events(self.publish)
        self._streams: dict[str, list[Subscription]] = {}
        self._count = 0
        self.dropped = 0
        self.delivered = 0
        self.closing = asyncio.Event()
        """Set when the server stops: open streams end at once instead of holding the
        shutdown until its grace period runs out (browsers reconnect elsewhere)."""

    def close(self) -> None:
        self.closing.set()

    @property
    def streams(self) -> int:
        return self._count

    def subscribe(self, user_id: str) -> Subscription:
        if self.closing.is_set():
            raise Unavailable("this node is stopping; reconnect", retry_after_s=1)
        mine = self._streams.get(user_id, [])
        if len(mine) >= self.limits.max_streams_per_user:
            raise TooManyRequests(
                f"at most {self.limits.max_streams_per_user} event streams per user; close a tab",
                retry_after_s=5,
                code="too_many_streams",
            )
        if self._count >= self.limits.max_streams:
            raise Unavailable("too many event streams on this node", retry_after_s=10)
        subscription = Subscription(user_id, asyncio.Queue(self.limits.queue_size))
        self._streams.setdefault(user_id, []).append(subscription)
        self._count += 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        mine = self._streams.get(subscription.user_id)
        if not mine or subscription not in mine:
            return
        mine.remove(subscription)
        self._count -= 1
        if not mine:
            del self._streams[subscription.user_id]

    async def announce(self, user_ids: Sequence[str], event: bytes) -> None:
        """Delivers `event` to these users' streams on every node, MAX_USERS_PER_EVENT
        ids per message. A shared state that cannot be reached loses the event for the
        other nodes (logged): the feed has it."""
        if self._bus is None:
            self.publish(user_ids, event)
            return
        for start in range(0, len(user_ids), MAX_USERS_PER_EVENT):
            try:
                await self._bus.publish_user_event(
                    user_ids[start : start + MAX_USERS_PER_EVENT], event
                )
            except StateUnavailable:
                log.warning("a live event for %d users did not reach other nodes", len(user_ids))
                self.publish(user_ids[start : start + MAX_USERS_PER_EVENT], event)

    def publish(self, user_ids: Iterable[str], event: bytes) -> int:
        """Puts `event` on the streams of those of `user_ids` who are connected here;
        returns how many streams got it. Costs one dict lookup per id."""
        sent = 0
        for user_id in user_ids:
            for subscription in self._streams.get(user_id, ()):
                try:
                    subscription.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self.dropped += 1
                else:
                    sent += 1
        self.delivered += sent
        return sent
