"""Fan-out of "X scheduled a space" and "X is live" to followers, in paced waves.

Announcing is O(1) on the request path: the host's action queues one job (a bounded
queue) and returns. A background task works the jobs: it reads the recipients a page
at a time in key order (reminders of the space first, then the host's followers),
writes each page to the feed in one INSERT, pushes it to the connected pages
(EventHub) and hands it to the webhook as one batch. Memory is one page, whatever
the follower count.

A "live" job is paced: before each wave it asks how much the admitting nodes can
take now (domain/pacing.py on the door's report) and sleeps one interval between
waves, so the crowd the notification causes arrives as fast as it can be let in.
"Scheduled" jobs cause no crowd and go out at full speed. The host reads the
progress (`progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from townhall.domain.pacing import Load, PacingPolicy, unpaced_wave, wave_size
from townhall.domain.spaces import User
from townhall.service.event_hub import EventHub
from townhall.service.webhooks import Webhooks
from townhall.store.follows import FollowStore

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
"""How long stopping waits for a wave that is being written."""

Page = Callable[[str, int], Awaitable[list[str]]]
"""(after, limit) -> up to `limit` recipient ids after `after`."""


class Kind(StrEnum):
    SCHEDULED = "space_scheduled"
    LIVE = "space_live"


@dataclass(frozen=True)
class Announcement:
    kind: Kind
    space_id: str
    title: str
    host: User


@dataclass
class Progress:
    """What the host sees: how many were told so far."""

    kind: str
    notified: int = 0
    """New feed entries written (each recipient once)."""
    reached: int = 0
    """Recipients handled, duplicates included."""
    waves: int = 0
    paced: bool = True
    done: bool = False
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None


@dataclass(frozen=True)
class NotifierSettings:
    pacing: bool = True
    """Pace "live" waves by the admission capacity; off sends every page at once."""
    interval_s: float = 1.0
    arrival_share: float = 1.0
    min_wave: int = 1
    max_wave: int = 1_000
    max_jobs: int = 256
    """Announcements waiting for the fan-out task; past it new ones are dropped (logged)."""
    max_progress: int = 1_000
    """Spaces whose progress is remembered (oldest forgotten first)."""
    feed_retention_days: int = 30
    """Feed entries older than this are deleted after each job; 0 keeps them."""

    @property
    def policy(self) -> PacingPolicy:
        return PacingPolicy(self.interval_s, self.arrival_share, self.min_wave, self.max_wave)


def event_body(announcement: Announcement, at: datetime) -> dict[str, object]:
    return {
        "kind": announcement.kind.value,
        "space_id": announcement.space_id,
        "title": announcement.title,
        "host": {"id": announcement.host.id, "username": announcement.host.username},
        "url": f"/s/{announcement.space_id}",
        "at": at.isoformat(),
    }


class Notifier:
    def __init__(
        self,
        follows: FollowStore,
        hub: EventHub,
        webhooks: Webhooks,
        load: Callable[[str], Awaitable[Load]],
        settings: NotifierSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings or NotifierSettings()
        self._follows = follows
        self._hub = hub
        self._webhooks = webhooks
        self._load = load
        self._sleep = sleep
        self._jobs: asyncio.Queue[Announcement] = asyncio.Queue(self.settings.max_jobs)
        self._progress: OrderedDict[tuple[str, str], Progress] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.dropped_jobs = 0
        self._stopping = asyncio.Event()
        self._writing = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._work_forever(), name="notifier")

    async def stop(self) -> None:
        """Lets a wave that is writing finish (a store call cancelled half-way can leave
        a pooled PostgreSQL connection that the store's close then waits on), then ends
        the task: at once when idle or pausing between waves, else within STOP_GRACE_S."""
        if self._task is None:
            return
        self._stopping.set()
        if not self._writing:
            self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_GRACE_S)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def announce(self, announcement: Announcement) -> None:
        """Queues the fan-out; never waits and never touches the store."""
        try:
            self._jobs.put_nowait(announcement)
        except asyncio.QueueFull:
            self.dropped_jobs += 1
            log.warning(
                "notifier queue full: %s for %s dropped", announcement.kind, announcement.space_id
            )
            return
        self.idle.clear()
        key = (announcement.space_id, announcement.kind.value)
        self._progress[key] = Progress(announcement.kind.value, paced=self._paced(announcement))
        self._progress.move_to_end(key)
        while len(self._progress) > self.settings.max_progress:
            self._progress.popitem(last=False)

    def progress(self, space_id: str) -> dict[str, dict[str, object]]:
        return {
            kind: asdict(progress)
            for (space, kind), progress in self._progress.items()
            if space == space_id
        }

    def _paced(self, announcement: Announcement) -> bool:
        return self.settings.pacing and announcement.kind is Kind.LIVE

    async def _work_forever(self) -> None:
        while not self._stopping.is_set():
            announcement = await self._jobs.get()
            try:
                await self.run(announcement)
            except Exception:  # one failed job (store down) must not stop the others
                log.exception(
                    "fan-out of %s for %s failed", announcement.kind, announcement.space_id
                )
            if self._jobs.empty():
                self.idle.set()

    async def run(self, announcement: Announcement) -> Progress:
        """The whole fan-out of one announcement, wave by wave."""
        key = (announcement.space_id, announcement.kind.value)
        progress = self._progress.get(key) or Progress(
            announcement.kind.value, paced=self._paced(announcement)
        )
        now = datetime.now(UTC)
        event = json.dumps(event_body(announcement, now)).encode()
        sources: list[Page] = []
        if announcement.kind is Kind.LIVE:
            sources.append(
                lambda after, n: self._follows.reminded_after(announcement.space_id, after, n)
            )
        sources.append(
            lambda after, n: self._follows.followers_after(announcement.host.id, after, n)
        )
        for page in sources:
            after = ""
            while True:
                size = await self._wave_size(announcement, progress)
                self._writing = True  # a store call is not cancelled half-way (stop)
                try:
                    recipients = await page(after, size)
                    new = await self._follows.add_notifications(
                        recipients,
                        announcement.kind.value,
                        announcement.space_id,
                        announcement.host.id,
                        now,
                    )
                finally:
                    self._writing = False
                if not recipients:
                    break
                after = recipients[-1]
                progress.notified += len(new)
                progress.reached += len(recipients)
                progress.waves += 1
                if new:  # someone reminded who also follows the host is told once
                    await self._hub.announce(new, event)
                    self._webhooks.send(
                        announcement.kind.value,
                        {"notification": event_body(announcement, now), "recipients": new},
                    )
                if self._stopping.is_set():
                    return progress  # not done: the node is stopping
                if len(recipients) < size:
                    break
                if progress.paced:
                    await self._sleep(self.settings.interval_s)
        progress.done = True
        progress.finished_at = time.time()
        if self.settings.feed_retention_days:
            cutoff = now - timedelta(days=self.settings.feed_retention_days)
            await self._follows.forget_notifications_before(cutoff)
        return progress

    async def _wave_size(self, announcement: Announcement, progress: Progress) -> int:
        if not progress.paced:
            return unpaced_wave(self.settings.policy)
        return wave_size(await self._load(announcement.space_id), self.settings.policy)
