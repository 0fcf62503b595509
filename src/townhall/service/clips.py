"""Clips: cut from audio already encoded, kept as files, gone when they expire.

A live clip is the last seconds of the program window (audience/clip_window.py) on
the node that runs the space (asked of another node, it forwards the request there,
nodes/peers.py, as speakers' offers are); a recording clip is a range of the finished
.m4a. Each clip's record names the node whose disk holds its audio: another node
serves it by fetching it from there once, then from a bounded memory cache.
Both are stream copies (audience/clip_cut.py) run in a thread, a few at a time: a
crowd that clips at once gets 503 + Retry-After past `max_waiting`, and every
address and account has an allowance. Reading a clip is the hot path when one goes
viral: its record is cached (and unknown ids remembered briefly), the audio is an
immutable file any HTTP cache can keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from cachetools import LRUCache, TTLCache

from townhall.admission.token_bucket import KeyedBuckets
from townhall.audience.clip_cut import NothingToClip, cut_clip, fragmented_source
from townhall.config import ClipSettings
from townhall.domain.clips import (
    Clip,
    ClipSource,
    expiry,
    live_clip_seconds,
    recording_range,
)
from townhall.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from townhall.domain.spaces import SpaceState, User
from townhall.nodes.peers import PeerNodes
from townhall.private_files import make_private_dir
from townhall.service.ids import looks_like_id, new_id
from townhall.service.keyed_locks import KeyedLocks
from townhall.service.spaces import Spaces
from townhall.state.base import NodeInfo
from townhall.store.clips import ClipStore

log = logging.getLogger(__name__)
T = TypeVar("T")

CLIP_SUFFIX = ".m4a"
MAX_CACHED_CLIPS = 10_000
CLIP_CACHE_TTL_S = 30.0
"""A deletion on another node is seen here within this (the file is gone at once)."""
MISSING_TTL_S = 5.0
MAX_SHARED_LIVE_CLIPS = 1_000
"""Recent live clips remembered by (space, newest fragment, length) to hand out again."""
MAX_KEYS = 50_000
MINUTE_S = 60.0
SWEEP_BATCH = 500
BUSY_RETRY_S = 2.0
PEER_AUDIO_CACHE_BYTES = 64 * 1024 * 1024
"""Audio of clips held by other nodes, kept here (LRU, by size) so a viral clip is
fetched once per node, not once per listener."""


class NodeDirectory(Protocol):
    """Where a node is (the shared state's registry)."""

    async def node(self, node_id: str) -> NodeInfo | None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def clip_path(directory: Path, clip_id: str) -> Path:
    return directory / f"{clip_id}{CLIP_SUFFIX}"


class CutSlots:
    """At most `in_flight` cuts at once and `waiting` more queued; past that, Unavailable."""

    def __init__(self, in_flight: int, waiting: int) -> None:
        self._slots = asyncio.Semaphore(max(1, in_flight))
        self._limit = max(1, in_flight) + max(0, waiting)
        self._queued = 0

    async def run(self, work: Callable[[], T]) -> T:
        if self._queued >= self._limit:
            raise Unavailable("too many clips are being made right now", BUSY_RETRY_S,
                              code="clips_busy")  # fmt: skip
        self._queued += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(work)
        finally:
            self._queued -= 1


class Clips:
    def __init__(
        self,
        store: ClipStore,
        spaces: Spaces,
        settings: ClipSettings,
        *,
        directory: Path,
        live_window_s: float,
        clock: Callable[[], datetime] = _now,
        node_id: str | None = None,
        peers: PeerNodes | None = None,
        nodes: NodeDirectory | None = None,
    ) -> None:
        """`node_id`, `peers` and `nodes`: this node, how to ask another one, and where
        the others are; without them (one process) every clip is cut and kept here."""
        self._node_id = node_id
        self._peers = peers
        self._nodes = nodes
        self._peer_audio: LRUCache[str, bytes] = LRUCache(PEER_AUDIO_CACHE_BYTES, getsizeof=len)
        self._fetching = KeyedLocks()
        self._store = store
        self._spaces = spaces
        self._settings = settings
        self._directory = directory
        self._live_window_s = live_window_s
        self._clock = clock
        self._slots = CutSlots(settings.max_in_flight, settings.max_waiting)
        self._by_address = _buckets(settings.per_address_per_minute)
        self._by_account = _buckets(settings.per_account_per_minute)
        self._cache: TTLCache[str, Clip] = TTLCache(MAX_CACHED_CLIPS, CLIP_CACHE_TTL_S)
        self._missing: TTLCache[str, bool] = TTLCache(MAX_CACHED_CLIPS, MISSING_TTL_S)
        self._sweeper: asyncio.Task[None] | None = None
        self._shared: LRUCache[str, Clip] = LRUCache(MAX_SHARED_LIVE_CLIPS)
        """The same moment clipped by many listeners at once is cut once: a crowd that
        presses Clip within one fragment (200 ms) shares one clip, one file."""
        self._cutting = KeyedLocks()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        make_private_dir(self._directory)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="clip-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("clip sweep failed")
            await asyncio.sleep(self._settings.sweep_interval_s)

    async def sweep(self) -> int:
        """Deletes the clips whose time is up (file, then row); returns how many."""
        removed = 0
        while True:
            expired = await self._store.expired_clips(self._clock(), SWEEP_BATCH)
            for clip in expired:
                await self._remove(clip)
            removed += len(expired)
            if len(expired) < SWEEP_BATCH:
                return removed

    # -- making clips ------------------------------------------------------------------

    async def clip_live(
        self, actor: User | None, address: str, space_id: str, seconds: float | None
    ) -> Clip:
        """The last `seconds` of a live space, by any listener: cut here, or by the node
        that runs the space (this node's allowances are taken first)."""
        wanted = live_clip_seconds(seconds, self._live_window_s)
        space = await self._spaces.record(space_id)
        space.require_live("clip")
        if self._spaces.rooms.get(space_id) is not None:
            actor_id = actor.id if actor else None
            return await self._clip_here(
                actor_id, space_id, wanted, partial(self._allow, address, actor)
            )
        node_url = await self._spaces.stage_url(space_id)
        if node_url is None or self._peers is None:
            raise Conflict("this space's audio runs on another node", code="wrong_node")
        self._allow(address, actor)
        actor_id = actor.id if actor else None
        return await self.get(await self._peers.clip_live(node_url, space_id, actor_id, wanted))

    async def clip_forwarded(self, user_id: str | None, space_id: str, seconds: float) -> Clip:
        """A live clip another node asked for (it took its caller's allowances): cut here,
        where the program runs, never forwarded again."""
        wanted = live_clip_seconds(seconds, self._live_window_s)
        space = await self._spaces.record(space_id)
        space.require_live("clip")
        if self._spaces.rooms.get(space_id) is None:
            raise Conflict("this space's audio runs on another node", code="wrong_node")
        return await self._clip_here(user_id, space_id, wanted, lambda: None)

    async def _clip_here(
        self,
        creator_id: str | None,
        space_id: str,
        wanted: float,
        allow: Callable[[], None],
    ) -> Clip:
        room = self._spaces.rooms.get(space_id)
        if room is None:
            raise Conflict("this space's audio runs on another node", code="wrong_node")
        fragments = room.program.clip_window.last(wanted)
        if not fragments:
            raise Conflict("the space has no audio to clip yet", code="nothing_to_clip")
        moment = f"{space_id}/{fragments[-1].sequence}/{len(fragments)}"
        async with self._cutting.hold(moment):
            shared = self._shared.get(moment)
            if shared is not None and clip_path(self._directory, shared.id).exists():
                return shared
            allow()
            source = fragmented_source(room.program.init_segment, fragments)
            clip = await self._cut(space_id, creator_id, ClipSource.LIVE, source, 0.0, None)
            self._shared[moment] = clip
            return clip

    async def clip_recording(
        self, actor: User, address: str, space_id: str, start_s: float, end_s: float
    ) -> Clip:
        """A range of the finished recording, by the host."""
        space = await self._spaces.record(space_id)
        if space.host.id != actor.id:
            raise Forbidden("only the host can clip the recording")
        if space.state is not SpaceState.ENDED or space.recording_seconds is None:
            raise Conflict("the space has no finished recording to clip", code="no_recording")
        start, end = recording_range(
            start_s, end_s, space.recording_seconds, self._settings.max_recording_s
        )
        path = await self._spaces.recording_path(space_id)
        self._allow(address, actor)
        return await self._cut(space_id, actor.id, ClipSource.RECORDING, path, start, end)

    def _allow(self, address: str, actor: User | None) -> None:
        now = time.monotonic()
        checks = [(self._by_address, address, "from your address")]
        if actor is not None:
            checks.append((self._by_account, actor.id, "from your account"))
        taken: list[tuple[KeyedBuckets, str]] = []
        for buckets, key, whose in checks:
            if buckets is None:
                continue
            if not buckets.take(key, now):
                for earlier, earlier_key in taken:
                    earlier.refund(earlier_key)
                retry = max(1.0, round(buckets.wait_s(key, now)))
                raise TooManyRequests(f"too many clips {whose}; slow down", retry)
            taken.append((buckets, key))

    async def _cut(
        self,
        space_id: str,
        creator_id: str | None,
        source_kind: ClipSource,
        source: object,
        start_s: float,
        end_s: float | None,
    ) -> Clip:
        clip_id = new_id()
        dest = clip_path(self._directory, clip_id)
        try:
            duration = await self._slots.run(
                lambda: cut_clip(source, dest, start_s, end_s)  # type: ignore[arg-type]
            )
        except NothingToClip:
            raise Conflict("there is no audio in that range", code="nothing_to_clip") from None
        now = self._clock()
        clip = Clip(
            id=clip_id,
            space_id=space_id,
            creator_id=creator_id,
            source=source_kind,
            created_at=now,
            expires_at=expiry(now, self._settings.ttl_days),
            duration_s=round(duration, 3),
            start_s=start_s if source_kind is ClipSource.RECORDING else None,
            node_id=self._node_id,
        )
        try:
            await self._store.add_clip(clip)
        except BaseException:
            dest.unlink(missing_ok=True)  # no row, no file: nothing is left half made
            raise
        self._cache[clip_id] = clip
        return clip

    # -- reading and deleting -------------------------------------------------------

    async def get(self, clip_id: str) -> Clip:
        not_found = NotFound(f"there is no clip with id {clip_id!r}", code="clip_not_found")
        if not looks_like_id(clip_id) or clip_id in self._missing:
            raise not_found
        clip = self._cache.get(clip_id)
        if clip is None:
            clip = await self._store.get_clip(clip_id)
            if clip is None:
                self._missing[clip_id] = True
                raise not_found
            self._cache[clip_id] = clip
        if clip.is_expired(self._clock()):
            raise NotFound("this clip has expired", code="clip_expired")
        return clip

    async def audio(self, clip_id: str) -> tuple[Clip, Path | bytes]:
        """The clip and its audio: the file here, or the bytes of another node's file."""
        clip = await self.get(clip_id)
        path = clip_path(self._directory, clip_id)
        if path.exists():
            return clip, path
        holder = await self._holder_url(clip)
        if holder is None:  # deleted meanwhile on another node, or its node is gone
            self._cache.pop(clip_id, None)
            raise NotFound(f"there is no clip with id {clip_id!r}", code="clip_not_found")
        async with self._fetching.hold(clip_id):  # a crowd on one clip: one fetch
            audio = self._peer_audio.get(clip_id)
            if audio is None:
                assert self._peers is not None
                audio = await self._peers.clip_audio(holder, clip_id)
                if len(audio) <= PEER_AUDIO_CACHE_BYTES:
                    self._peer_audio[clip_id] = audio
        return clip, audio

    async def local_audio(self, clip_id: str) -> Path:
        """The file of a clip held here, for the node that asks (never fetched onward)."""
        await self.get(clip_id)
        path = clip_path(self._directory, clip_id)
        if not path.exists():
            raise NotFound(f"there is no clip with id {clip_id!r} here", code="clip_not_found")
        return path

    async def _holder_url(self, clip: Clip) -> str | None:
        if clip.node_id in (None, self._node_id) or self._peers is None or self._nodes is None:
            return None
        node = await self._nodes.node(clip.node_id)
        return node.public_url if node is not None else None

    async def delete(self, actor: User, clip_id: str) -> None:
        clip = await self.get(clip_id)
        space = await self._spaces.record(clip.space_id)
        clip.require_deletable_by(actor.id, space.host.id)
        await self._remove(clip)

    async def remove_for_moderation(self, clip_id: str) -> str:
        """Deletes the clip for good (service/moderation.py); returns whom the statement
        of reasons goes to: the clip's maker, or the space's host for an anonymous one."""
        clip = await self.get(clip_id)
        await self._remove(clip)
        if clip.creator_id is not None:
            return clip.creator_id
        return (await self._spaces.record(clip.space_id)).host.id

    async def _remove(self, clip: Clip) -> None:
        """The row, then the file where it is: here, or on the node that holds it (told at
        once, so it stops serving it; if it cannot be reached, the row is gone anyway and
        no node serves the clip again, but the file stays on its disk)."""
        self.forget_local(clip.id)
        await self._store.delete_clip(clip.id)
        holder = await self._holder_url(clip)
        if holder is not None:
            assert self._peers is not None
            try:
                await self._peers.forget_clip(holder, clip.id)
            except DomainError as failed:
                log.warning("clip %s: its node kept the file (%s)", clip.id, failed)

    def forget_local(self, clip_id: str) -> None:
        """This node's file and caches of a clip (its row is being deleted)."""
        if not looks_like_id(clip_id):
            return
        clip_path(self._directory, clip_id).unlink(missing_ok=True)
        self._peer_audio.pop(clip_id, None)
        self._cache.pop(clip_id, None)
        self._missing[clip_id] = True

    async def of_space(self, space_id: str, limit: int) -> list[Clip]:
        await self._spaces.record(space_id)
        now = self._clock()
        found = await self._store.clips_of_space(space_id, limit)
        return [clip for clip in found if not clip.is_expired(now)]


def _buckets(per_minute: int) -> KeyedBuckets | None:
    return KeyedBuckets(per_minute / MINUTE_S, per_minute, MAX_KEYS) if per_minute else None
