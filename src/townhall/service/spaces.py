"""Spaces as the control plane sees them: create, go live, moderate, end.

Each action loads what it needs, applies a pure domain rule, persists the
result (store, and shared state for what is live) and tells every node about
it through the state's change notification. The listener-facing reads
(`snapshot`, `record`, `is_removed`, `stage_url`) are served from bounded
caches, which are trusted only while the state promises to deliver every
change (`State.healthy`); a change from another node drops the entries it
concerns. Unknown ids are remembered briefly so floods of made-up ids cost
nothing, and an id of the wrong shape never creates anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cachetools import LRUCache

from townhall.audience.snapshot import Snapshot, audience_json, render, snapshot_data
from townhall.config import Settings
from townhall.domain.captions import choose_captions
from townhall.domain.errors import Conflict, Forbidden, Invalid, NotFound
from townhall.domain.reactions import check_reaction
from townhall.domain.space_details import edit_details
from townhall.domain.spaces import (
    Space,
    SpaceState,
    User,
    check_schedule,
    check_speak_policy,
    check_title,
)
from townhall.domain.stage import Role, Stage
from townhall.nodes.cpu import ProcessCpu
from townhall.nodes.peers import PeerNodes
from townhall.nodes.placement import choose_origin, origins
from townhall.nodes.roles import holds_stages
from townhall.service.captions import Captions
from townhall.service.events import Events
from townhall.service.ids import looks_like_id, new_id, signed_in_ids
from townhall.service.keyed_locks import KeyedLocks
from townhall.service.listener_names import ListenerNames
from townhall.service.live import LiveRooms
from townhall.service.relayed_programs import RelayedPrograms
from townhall.service.trusted_cache import TrustedCache
from townhall.stage import InvalidOffer, StageUnavailable
from townhall.state.base import AUDIENCE_REPORT_MAX, NodeInfo, State, StateUnavailable
from townhall.store.base import Store

log = logging.getLogger(__name__)

MISSING_CACHE_SIZE = 50_000
MISSING_TTL_S = 5.0
LISTING_TTL_S = 1.0
LISTING_LIMIT = 50
MAX_LISTING_PAGES = 256
"""Listing pages cached (one per limit and offsets asked for); emptied when full."""
MAX_CACHED_SPACES = 10_000
"""Records, snapshots, stages and placements kept per node; the least recently used go."""
REACTION_PUBLISH_S = 0.25
"""Reactions tell other nodes at most this often per space (the tick catches the rest)."""
LISTENER_TTL_TICKS = 3
"""A node's listener count stops counting after this many ticks without a report."""
NODE_TTL_TICKS = 5
"""A node leaves the registry after this many ticks without a heartbeat."""
ORPHAN_SWEEP_TICKS = 5
"""Every this many ticks (and at once when a node leaves the registry), live spaces
whose stage's node left the registry are re-placed on a living origin (failover)."""


DROP_PROBE_S = 1.0
"""Re-joins after a dropped stream probe the stage's node at most this often per space."""


AUDIENCE_SCAN = 2_000
"""Live-stream connections looked at per space and tick for signed-in listeners' faces."""
LIVE_SWEEP_LIMIT = 10_000
"""Live spaces a sweep over them reads (leave_every_stage)."""


class SpaceStanding(Protocol):
    """Who may act, and where hosts' actions are recorded (townhall.service.standing)."""

    async def blocked_by(self, host_id: str) -> set[str]:
        """The users a host blocked: a new stage starts with them removed, so the
        removal path (join, fast path, stream workers) keeps them out."""

    async def refuse_if_suspended(self, user_id: str) -> None:
        """Raises for a suspended user: asked, from the store, before anyone creates or
        starts a space or takes the stage, so a suspension binds on every node at once."""

    async def host_action(
        self, host: User, action: str, space_id: str, details: dict[str, Any]
    ) -> None:
        """Told of each host action (end, remove), for the audit log."""


def node_id_for(node_url: str) -> str:
    """Stable across restarts, so a node that comes back recognises the spaces it held."""
    return "node-" + hashlib.sha256(node_url.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class UserRef:
    """Who an action is about, as the request body names them (unchecked)."""

    user_id: object = None
    username: object = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> UserRef:
        return cls(body.get("user_id"), body.get("username"))


def _now() -> datetime:
    return datetime.now(UTC)


class Spaces:
    def __init__(
        self,
        store: Store,
        state: State,
        settings: Settings,
        node_id: str,
        cache_size: int = MAX_CACHED_SPACES,
        peers: PeerNodes | None = None,
        captions: Captions | None = None,
        events: Events | None = None,
        standing: SpaceStanding | None = None,
        names: ListenerNames | None = None,
        relayed: RelayedPrograms | None = None,
        stream_url: str = "",
    ) -> None:
        """`events` is told when a space is scheduled, goes live (followers are notified)
        or ends (per-space admission state can go); `standing` (moderation) keeps blocked
        and suspended users out and hears of hosts' actions; `names` turns the signed-in
        listeners here into the faces of the room. On an edge, `relayed` holds the
        programs it relays (their listeners are counted and reported here); `stream_url`
        is where this node's live streams are served when not on its public URL (its
        heartbeat says so)."""
        self._relayed = relayed
        self._stream_url = stream_url
        self._store = store
        self._names = names or ListenerNames(store)
        self._standing = standing
        self._captions = captions
        self._events = events or Events()
        self._peers = peers
        self._state = state
        self._settings = settings
        self._node_id = node_id
        self.rooms = LiveRooms(settings, self._mark_dirty, captions=captions)
        self.recordings = self.rooms.recordings
        """The one owner of recording files (townhall.service.recordings)."""
        self._records: TrustedCache[Space] = TrustedCache(state, cache_size)
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._snapshots: LRUCache[str, Snapshot] = LRUCache(cache_size)
        """Served even while the state is away (a few seconds stale beats nothing)."""
        self._stages: TrustedCache[Stage | None] = TrustedCache(state, cache_size)
        self._stage_urls: TrustedCache[str | None] = TrustedCache(state, cache_size)
        self._reactions_told: LRUCache[str, float] = LRUCache(cache_size)
        self._probed: LRUCache[str, float] = LRUCache(cache_size)
        """When a dropped stream last made this node probe the space's stage node."""
        self._dirty: set[str] = set()
        self._listings: dict[tuple[int, int, int], tuple[float, bytes]] = {}
        self._reactions_untold: set[str] = set()
        """Live spaces with reactions other nodes have not been told of (the tick tells)."""
        self._ticker: asyncio.Task[None] | None = None
        self._locks = KeyedLocks()
        self._remote: set[str] = set()
        """Spaces another node changed whose media here must follow (at most one task each)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._reported_listeners = 0
        self._state_lost = False
        self._ticks = 0
        self._cpu = ProcessCpu()
        self._registered: set[str] = set()
        """The node ids in the registry at the last tick: one leaving triggers a sweep."""
        self._node_urls: tuple[str, ...] = ()
        self._stopping = False
        """A stop was signalled: no speaker joins a stage here, no stage is taken over."""
        state.subscribe(self._on_remote_change, self._forget_cached)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self._state.start()
        await self._beat()
        # the pages' CSP lists every node from the first request, not from the first tick
        # (a page served in between could not play a stream on another node)
        self._node_urls = _node_urls(await self._state.nodes())
        await self._recover_orphans(probe=True)
        self._ticker = asyncio.create_task(self._tick_forever(), name="snapshot-ticker")

    async def stop(self) -> None:
        await self._stop_ticking()
        for task in list(self._tasks):
            task.cancel()
        for room in self.rooms:
            # the recording stays in parts: the origin that takes the space over (or this
            # one, ending it at its next start) joins them
            await self.rooms.close(room.space_id, finish_recording=False)

    def stopping(self) -> None:
        """A stop was signalled: from now on speakers' offers are refused here (their
        pages offer again, and reach the origin the stages are handed to) and no stage
        is taken over here."""
        self._stopping = True

    async def _stop_ticking(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def hand_over(self) -> None:
        """A graceful stop: this node leaves the registry and hands each stage it holds to
        the living origin with the most headroom now, rather than when its heartbeats
        expire (NODE_TTL_TICKS) and a survivor's sweep finds the space orphaned. The
        chosen origin hears of it and starts the stage at once; speakers re-offer and
        listeners re-join by themselves. With no other origin, the spaces stay placed
        here (this node ends them at its next start, as after a crash)."""
        self._stopping = True
        await self._stop_ticking()  # a heartbeat would register this node again
        try:
            await self._state.leave(self._node_id)
            living = [node for node in await self._state.nodes() if node.node_id != self._node_id]
            for room in list(self.rooms):
                await self._hand_over(room.space_id, living)
        except StateUnavailable:
            log.warning("shared state unreachable: this node's spaces move when it expires")

    async def _hand_over(self, space_id: str, living: list[NodeInfo]) -> None:
        chosen = choose_origin(living, excluded=[self._node_id])
        if chosen is None:
            return
        async with self._locks.hold(space_id):
            # the stage stops first: its recording part is whole before the next begins
            await self.rooms.close(space_id, finish_recording=False)
        if await self._state.claim_stage(space_id, self._node_id, chosen.node_id):
            log.warning("space %s handed over to %s: this node stops", space_id, chosen.node_id)
            await self._changed(space_id)

    async def _recover_orphans(self, probe: bool) -> None:
        """A live space whose stage no node runs any more has lost its audio pipeline.
        One placed on a node that left the registry is re-placed on the living origin
        with the most headroom (failover); with no origin left it is ended as of now,
        keeping what its recording caught. At start-up (`probe`: a registered holder
        that does not answer is dead, killed a moment ago) it is ended only when no
        other origin runs: those that do re-place it at their next sweep.
        One placed on this node is this node's: at start-up (it restarted, its speakers
        and listeners are gone) it is ended; later (another node re-placed it here and
        the news was missed) it is taken over. One placed nowhere (the shared state was
        lost, as an in-memory one is with its node) is ended."""
        living = {node.node_id: node for node in await self._state.nodes()}
        up: dict[str, bool] = {}  # one probe per holder
        for space in await self._store.list_spaces([SpaceState.LIVE], limit=LIVE_SWEEP_LIMIT):
            if self.rooms.get(space.id) is not None:
                continue
            holder_id = await self._state.stage_node(space.id)
            if holder_id == self._node_id:
                if probe:
                    await self._end_orphan(space)
                else:
                    await self._take_over(space.id)
                continue
            if holder_id is None:  # the shared state was lost with it: nobody to follow
                await self._end_orphan(space)
                continue
            holder = living.get(holder_id)
            if holder is not None:
                if holder.node_id not in up:
                    up[holder.node_id] = await self._still_up(holder, probe)
                if up[holder.node_id]:
                    continue
            if probe:
                # Just started, this node holds nobody of the space: the origins that ran
                # beside the dead one re-place it at their next sweep; with none, it ends.
                others = [n for n in living.values() if n.node_id != self._node_id]
                if not origins(others, excluded=[holder_id]):
                    await self._end_orphan(space)
                continue
            await self._replace(space, holder_id, list(living.values()))

    async def _replace(self, space: Space, dead: str | None, living: list[NodeInfo]) -> bool:
        """Moves a space off its dead holder to the chosen origin, if no other node moved
        it first (State.claim_stage); the chosen origin starts its stage. True when this
        call moved it."""
        chosen = choose_origin(living, excluded=[dead] if dead else [])
        if chosen is None:
            await self._end_orphan(space)
            return False
        if not await self._state.claim_stage(space.id, dead, chosen.node_id):
            return False
        moved = (space.id, dead, chosen.node_id)
        log.warning("space %s was live on %s, which stopped; re-placed on %s", *moved)
        await self._changed(space.id)
        if chosen.node_id == self._node_id:
            await self._take_over(space.id)
        return True

    async def _take_over(self, space_id: str) -> None:
        """Starts the stage (mixer, encoder, packager, recorder: a new part) of a live
        space placed on this node whose stage does not run here yet. The speakers
        re-offer and the listeners re-join by themselves (studio.js, player.js)."""
        async with self._locks.hold(space_id):
            if self.rooms.get(space_id) is not None or self._stopping:
                return
            if await self._state.stage_node(space_id) != self._node_id:
                return
            self._records.drop(space_id)
            space = await self.record(space_id)
            if not space.is_live:
                return
            await self.rooms.open(space_id, record=space.record)
            _, stage = await self._live_stage(space_id, "take over")
            await self.rooms.apply_stage(space_id, stage)
        log.warning("took over the stage of space %s", space_id)
        await self._changed(space_id)
        self._mark_dirty(space_id)

    async def _yield(self, space_id: str, holder: str) -> None:
        """Another node holds the space now (it took it over while this one looked dead):
        the stage here stops, without ending the space; the recording's part stays for
        the holder to join at the end."""
        async with self._locks.hold(space_id):
            await self.rooms.close(space_id, finish_recording=False)
        self._stage_urls.drop(space_id)
        log.warning("space %s is held by %s now; stopped its stage here", space_id, holder)

    async def stream_dropped(self, space_id: str) -> None:
        """A listener came back with its ticket: its stream dropped. If the node holding
        the space's stage does not answer, the space is re-placed now (a SIGKILLed node
        refuses connections at once) rather than when its heartbeats expire. At most one
        probe per space per DROP_PROBE_S, whatever the crowd that re-joins at once."""
        if self.rooms.get(space_id) is not None:
            return
        now = time.monotonic()
        if self._probed.get(space_id, -DROP_PROBE_S) + DROP_PROBE_S > now:
            return
        self._probed[space_id] = now
        await self.take_over_if_down(space_id)

    async def take_over_if_down(self, space_id: str) -> bool:
        """The holder of the space's stage did not answer a forwarded call: if it does not
        answer its health check either, re-place the space now rather than after its
        heartbeats expire. True when the space moved."""
        holder_id = await self._state.stage_node(space_id)
        if holder_id is None or holder_id == self._node_id or self._peers is None:
            return False
        holder = await self._state.node(holder_id)
        if holder is not None and await self._peers.answers(holder.public_url):
            return False
        space = await self.record(space_id)
        if not space.is_live:
            return False
        living = [node for node in await self._state.nodes() if node.node_id != holder_id]
        return await self._replace(space, holder_id, living)

    async def _still_up(self, holder: NodeInfo, probe: bool) -> bool:
        if not probe or self._peers is None:
            return True
        return await self._peers.answers(holder.public_url)

    async def _end_orphan(self, space: Space) -> None:
        recovered = await self.recordings.finish(space.id)
        seconds = space.recording_seconds if recovered is None else recovered
        ended = replace(space.end(_now()), recording_seconds=seconds)
        await self._store.save_space(ended)
        await self._state.put_space(ended)
        await self._state.forget(space.id)
        self._records.keep(space.id, ended)
        self._snapshots.pop(space.id, None)
        await self._changed(space.id)
        log.warning("space %s was live on a node that stopped; ended it", space.id)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.snapshot_tick_s)
            try:
                await self.tick()
            except StateUnavailable:
                if not self._state_lost:
                    log.warning("shared state unreachable: counts and snapshots wait for it")
                self._state_lost = True
            except Exception:
                log.exception("snapshot tick failed")
            else:
                self._state_lost = False

    async def tick(self) -> None:
        """Publish this node's listener counts and heartbeat; rebuild what changed here,
        and every cached live snapshot whose count other nodes changed."""
        tick_s = self._settings.snapshot_tick_s
        reported = 0
        for room in self.rooms:
            hls_listeners = room.program.hls_pollers.count()
            await self._state.report_listeners(
                room.space_id,
                self._node_id,
                room.program.live.listener_count + hls_listeners,
                ttl_s=LISTENER_TTL_TICKS * tick_s,
            )
            await self.report_audience(
                room.space_id, self._node_id, room.program.live.listener_ids, tick_s
            )
            # the node's load is its live-stream listeners: HLS is cacheable, not held
            reported += await self._state.listeners(room.space_id) - hls_listeners
        if self._relayed is not None:
            for space_id, count in self._relayed.counts().items():
                await self._state.report_listeners(
                    space_id, self._node_id, count, ttl_s=LISTENER_TTL_TICKS * tick_s
                )
        self._reported_listeners = reported
        await self._beat()
        await self._yield_moved_rooms()
        self._ticks += 1
        registry = await self._state.nodes()
        self._node_urls = _node_urls(registry)
        registered = {node.node_id for node in registry}
        someone_left = bool(self._registered - registered)
        self._registered = registered
        if someone_left or self._ticks % ORPHAN_SWEEP_TICKS == 0:
            await self._recover_orphans(probe=False)
        untold, self._reactions_untold = self._reactions_untold, set()
        for space_id in untold:
            await self._state.publish(space_id, self._node_id)
        dirty, self._dirty = self._dirty, set()
        for space_id, snapshot in list(self._snapshots.items()):
            if space_id in dirty or snapshot.data.get("state") != SpaceState.LIVE.value:
                continue
            if await self._counts_moved(snapshot.data):
                dirty.add(space_id)
        for space_id in dirty:
            if space_id in self._records:
                await self._rebuild(space_id)

    async def report_audience(
        self, space_id: str, node_id: str, listener_ids: Iterable[str], tick_s: float
    ) -> None:
        """The signed-in listeners of a live stream here (this node's, or a stream
        worker's as `node_id`), named for every node's snapshot."""
        signed_in = signed_in_ids(listener_ids, AUDIENCE_SCAN)
        people = await self._names.people(signed_in, AUDIENCE_REPORT_MAX)
        await self._state.report_audience(
            space_id, node_id, people, ttl_s=LISTENER_TTL_TICKS * tick_s
        )

    async def _counts_moved(self, data: dict[str, Any]) -> bool:
        """Whether other nodes changed what a live snapshot shows of its audience: the
        listener count or the faces."""
        if await self._state.listeners(data["id"]) != data.get("listeners"):
            return True
        stage_ids = (seat["user"]["id"] for seat in data.get("stage", ()))
        people = await self._state.audience(data["id"])
        return audience_json(people, stage_ids, int(data["listeners"])) != data.get("audience")

    async def _beat(self) -> None:
        node = NodeInfo(
            self._node_id,
            self._settings.node_url,
            self._settings.role,
            self.node_listeners(),
            holds_stages=holds_stages(self._settings.role),
            stages=len(list(self.rooms)),
            cpu=self._cpu.cores(),
            stream_url=self._stream_url,
        )
        await self._state.beat(node, ttl_s=NODE_TTL_TICKS * self._settings.snapshot_tick_s)

    async def _yield_moved_rooms(self) -> None:
        for room in self.rooms:
            holder = await self._state.stage_node(room.space_id)
            if holder is not None and holder != self._node_id:
                await self._yield(room.space_id, holder)

    def node_urls(self) -> tuple[str, ...]:
        """The public URLs of the deployment's nodes at the last tick (the pages let the
        audio come from any of them)."""
        return self._node_urls

    def node_listeners(self) -> int:
        """Live-stream listeners of the spaces this node runs, for its capacity: its own
        fan-outs now, or what its stream workers reported at the last tick if more; on an
        edge, the listeners of the programs it relays."""
        local = sum(room.program.live.listener_count for room in self.rooms)
        relayed = self._relayed.load if self._relayed is not None else 0
        return max(local, self._reported_listeners) + relayed

    def cache_sizes(self) -> dict[str, int]:
        """Entries per id-keyed structure: every one of them is bounded."""
        return {
            "records": len(self._records),
            "snapshots": len(self._snapshots),
            "stages": len(self._stages),
            "stage_urls": len(self._stage_urls),
            "reactions_told": len(self._reactions_told),
            "probed": len(self._probed),
            "missing": len(self._missing),
            "locks": len(self._locks),
        }

    def listeners_changed(self, space_id: str) -> None:
        """A stream worker reported a new count: the snapshot shows it at the next tick."""
        self._mark_dirty(space_id)

    def _mark_dirty(self, space_id: str) -> None:
        self._dirty.add(space_id)

    # -- what other nodes change ---------------------------------------------------------

    async def _changed(self, space_id: str) -> None:
        """This node changed the space: its own caches follow now, the others when told."""
        self._stages.drop(space_id)
        self._stage_urls.drop(space_id)
        self._listing = None
        await self._state.publish(space_id, self._node_id)

    def _on_remote_change(self, space_id: str, node_id: str) -> None:
        if node_id == self._node_id:
            return
        for cache in (self._records, self._stages, self._stage_urls):
            cache.drop(space_id)
        self._snapshots.pop(space_id, None)
        self._missing.pop(space_id, None)
        self._listing = None
        if space_id in self._remote:
            return
        if self._relayed is not None and self._relayed.relays(space_id):
            follow = self._follow_relayed
        elif holds_stages(self._settings.role):
            follow = self._follow_remote  # any space: this node may be the new holder
        else:
            return
        self._remote.add(space_id)
        task = asyncio.create_task(follow(space_id), name="follow-remote")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow_relayed(self, space_id: str) -> None:
        """An edge's listeners follow the removals decided anywhere: cut, then refused."""
        assert self._relayed is not None
        try:
            self._relayed.set_removed(space_id, await self.removed_from(space_id))
        except StateUnavailable:
            log.warning("could not follow a change of %s: shared state unreachable", space_id)
        except Exception:
            log.exception("could not follow a change of %s", space_id)
        finally:
            self._remote.discard(space_id)

    async def _follow_remote(self, space_id: str) -> None:
        """The media here follows what another node decided: the stage, the end, or a
        new holder (a take-over: this node starts the stage, or stops its own)."""
        try:
            holder = await self._state.stage_node(space_id)
            if self.rooms.get(space_id) is None:
                if holder == self._node_id:
                    await self._take_over(space_id)
                return
            if holder is not None and holder != self._node_id:
                await self._yield(space_id, holder)
                return
            space = await self._state.get_space(space_id)
            if space is not None and space.state is SpaceState.ENDED:
                async with self._locks.hold(space_id):
                    await self._close_room(space)
                return
            stage = await self._state.get_stage(space_id)
            if stage is not None:
                await self.rooms.apply_stage(space_id, stage)
        except StateUnavailable:
            log.warning("could not follow a change of %s: shared state unreachable", space_id)
        except Exception:
            log.exception("could not follow a change of %s", space_id)
        finally:
            self._remote.discard(space_id)

    def _forget_cached(self) -> None:
        """Changes may have been missed: nothing cached can be trusted. And the state may
        have been lost with them (a Redis without persistence): what runs here is said
        again."""
        for cache in (self._records, self._stages, self._stage_urls):
            cache.clear()
        self._snapshots.clear()
        self._missing.clear()
        self._listing = None
        if next(iter(self.rooms), None) is not None:
            task = asyncio.create_task(self._reassert_rooms(), name="reassert-rooms")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _reassert_rooms(self) -> None:
        try:
            for room in self.rooms:
                space = await self._store.get_space(room.space_id)
                if space is None or not space.is_live:
                    continue
                if await self._state.get_space(space.id) is None:
                    await self._state.put_space(space)
                await self._state.place_stage(space.id, self._node_id)
                await self._live_stage(space.id, "resume")
                await self._state.publish(space.id, self._node_id)
        except StateUnavailable:
            log.warning("shared state lost again while resuming the live spaces")

    # -- reads -------------------------------------------------------------------

    async def record(self, space_id: str) -> Space:
        not_found = NotFound(f"there is no space with id {space_id!r}", code="space_not_found")
        if not looks_like_id(space_id):
            raise not_found
        space = self._records.get(space_id)
        if space is not None:
            return space
        now = time.monotonic()
        expiry = self._missing.get(space_id)
        if self._state.healthy and expiry is not None and expiry > now:
            raise not_found
        version = self._records.version(space_id)
        found = await self._state.get_space(space_id) or await self._store.get_space(space_id)
        if found is None:
            self._missing[space_id] = now + MISSING_TTL_S
            self._missing.move_to_end(space_id)
            if len(self._missing) > MISSING_CACHE_SIZE:
                self._missing.popitem(last=False)
            raise not_found
        self._missing.pop(space_id, None)
        self._records.keep(space_id, found, version)
        return found

    async def _stage(self, space_id: str) -> Stage | None:
        """The shared stage, cached while changes are delivered."""
        return await self._stages.read(space_id, lambda: self._state.get_stage(space_id))

    async def stage_url(self, space_id: str) -> str | None:
        """Base URL of the node that holds the space's stage when it is not this one
        (its live stream is served there), else None."""
        if self.rooms.get(space_id) is not None:
            return None
        return await self._stage_urls.read(space_id, lambda: self._holder_url(space_id))

    async def _holder_url(self, space_id: str) -> str | None:
        node_id = await self._state.stage_node(space_id)
        node = await self._state.node(node_id) if node_id and node_id != self._node_id else None
        return node.public_url if node is not None else None

    async def snapshot(self, space_id: str) -> Snapshot:
        """Cached while changes are delivered; without them, the last one is still
        served (it is at most a few seconds old) rather than nothing."""
        cached = self._snapshots.get(space_id)
        if cached is not None:
            return cached
        await self.record(space_id)
        return await self._rebuild(space_id)

    async def _rebuild(self, space_id: str) -> Snapshot:
        """A fresh snapshot; kept unless another node's change came in meanwhile."""
        versions = (self._records.version(space_id), self._stages.version(space_id))
        space = await self.record(space_id)
        stage = await self._stage(space_id) if space.is_live else None
        room = self.rooms.get(space_id)
        recording_url = None
        if space.state is SpaceState.ENDED and space.recording_seconds is not None:
            recording_url = f"/api/spaces/{space_id}/recording"
        data = snapshot_data(
            space,
            stage,
            listeners=await self._state.listeners(space_id) if space.is_live else 0,
            reactions=await self._state.reactions(space_id),
            peak_listeners=await self._state.peak_listeners(space_id),
            speaking=room.stage.speaking() if room else (),
            connected=room.stage.connected if room else (),
            recording_url=recording_url,
            captions=self._captions_on(space),
            audience=await self._state.audience(space_id) if space.is_live else (),
        )
        snapshot = render(data)
        if versions == (self._records.version(space_id), self._stages.version(space_id)):
            self._snapshots[space_id] = snapshot
        return snapshot

    def _captions_on(self, space: Space) -> bool:
        """Being made (told by the record, so every node knows) or kept with the replay
        (its file beside the recording)."""
        if space.is_live:
            return space.captions and space.captions_withheld is None
        return self._captions is not None and self._captions.is_on(space.id)

    async def listing(
        self, limit: int = LISTING_LIMIT, live_offset: int = 0, upcoming_offset: int = 0
    ) -> bytes:
        """Live and upcoming spaces, each its own page (so no number of upcoming spaces
        can push a live one out), at most one store query per page per second."""
        key = (limit, live_offset, upcoming_offset)
        now = time.monotonic()
        cached = self._listings.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        result: dict[str, Any] = {}
        for name, state, offset in (
            ("live", SpaceState.LIVE, live_offset),
            ("upcoming", SpaceState.SCHEDULED, upcoming_offset),
        ):
            page = await self._store.list_spaces([state], limit + 1, offset)
            result[name] = []
            for space in page[:limit]:
                result[name].append((await self.snapshot(space.id)).data)
            result[f"next_{name}_offset"] = offset + limit if len(page) > limit else None
        body = render(result).body
        if len(self._listings) >= MAX_LISTING_PAGES:
            self._listings.clear()
        self._listings[key] = (now + LISTING_TTL_S, body)
        return body

    # -- lifecycle actions ---------------------------------------------------------

    async def create(
        self,
        host: User,
        title: object,
        scheduled_for: object = None,
        record: object = False,
        speak_policy: object = None,
        captions: object = None,
    ) -> Snapshot:
        await self._in_good_standing(host.id)
        now = _now()
        if not isinstance(record, bool):
            raise Invalid("record must be true or false", code="invalid_record")
        wants_captions = choose_captions(
            captions, self._captions is not None and self._captions.available
        )
        if not self._state.healthy:  # other nodes could not be told: refuse before writing
            raise StateUnavailable()
        cap = self._settings.limits.open_spaces_per_host
        open_states = [SpaceState.LIVE, SpaceState.SCHEDULED]
        if cap and await self._store.count_spaces_by_host(host.id, open_states) >= cap:
            message = f"you already have {cap} live or upcoming spaces; end one first"
            raise Conflict(message, code="too_many_spaces")
        space = Space(
            id=new_id(),
            title=check_title(title),
            host=host,
            state=SpaceState.SCHEDULED,
            created_at=now,
            scheduled_for=check_schedule(scheduled_for, now, self._settings.max_schedule_days),
            record=record,
            speak_policy=check_speak_policy(speak_policy),
            captions=wants_captions,
        )
        await self._store.save_space(space)
        self._records.keep(space.id, space)
        await self._changed(space.id)
        self._listings.clear()
        if space.scheduled_for is not None:
            self._events.space_scheduled(space)
        return await self._rebuild(space.id)

    async def _save(self, space: Space) -> None:
        """Shared state (only live and ended records: a scheduled one is read from the
        store), then the store, then every node's caches. State first: with Redis away
        the action is refused before anything durable changed."""
        if space.state is not SpaceState.SCHEDULED:
            await self._state.put_space(space)
        await self._store.save_space(space)
        self._records.keep(space.id, space)
        self._snapshots.pop(space.id, None)
        await self._changed(space.id)
        self._listings.clear()

    async def _host_action(self, actor: User, action: str, space_id: str, **details: str) -> None:
        if self._standing is not None:
            await self._standing.host_action(actor, action, space_id, details)

    async def _in_good_standing(self, user_id: str) -> None:
        if self._standing is not None:
            await self._standing.refuse_if_suspended(user_id)

    def _require_host(self, space: Space, actor: User, action: str) -> None:
        if space.host.id != actor.id:
            raise Forbidden(f"only the host can {action}")

    async def go_live(self, actor: User, space_id: str) -> Snapshot:
        """The stage goes to the origin with the most headroom (nodes/placement.py; this
        node when it is about as free as the best, so the host's offer needs no hop);
        every node learns where through the state, and a chosen other origin starts the
        stage when it hears of it (or when the host's offer reaches it, if sooner). An
        edge holds no stage: it forwards the go-live to the origin placement chooses."""
        await self.record(space_id)  # refuses a malformed id before a lock exists for it
        await self._in_good_standing(actor.id)
        if not holds_stages(self._settings.role):
            return await self._go_live_on_an_origin(actor, space_id)
        async with self._locks.hold(space_id):
            space = await self.record(space_id)
            self._require_host(space, actor, "start the space")
            live = space.start(_now())
            holder = await self._placement()
            await self._state.put_stage(space_id, await self._fresh_stage(space))
            await self._state.place_stage(space_id, holder)
            if holder == self._node_id:
                room = await self.rooms.open(
                    space_id, record=space.record, captions=space.captions
                )
                live = replace(live, captions_withheld=room.captions_withheld)
            await self._save(live)
        await self._host_action(actor, "start_space", space_id)
        self._events.space_live(live)
        return await self._rebuild(space_id)

    async def _go_live_on_an_origin(self, actor: User, space_id: str) -> Snapshot:
        """An edge holds no stage: the host's go-live is forwarded to an origin (as a
        speaker's offer is), which answers it; this node then reads what it decided."""
        space = await self.record(space_id)
        self._require_host(space, actor, "start the space")
        origin = choose_origin(await self._state.nodes())
        if origin is None or self._peers is None:
            raise Conflict("no origin is up to hold this space's stage", code="no_origin")
        await self._peers.go_live(origin.public_url, space_id, actor.id)
        self._records.drop(space_id)
        self._snapshots.pop(space_id, None)
        self._stages.drop(space_id)
        self._stage_urls.drop(space_id)
        return await self._rebuild(space_id)

    async def _placement(self) -> str:
        chosen = choose_origin(await self._state.nodes(), prefer=self._node_id)
        return chosen.node_id if chosen is not None else self._node_id

    async def end(self, actor: User, space_id: str) -> Snapshot:
        snapshot = await self._end(space_id, actor)
        await self._host_action(actor, "end_space", space_id)
        return snapshot

    async def end_for_moderation(self, space_id: str) -> Snapshot:
        """A moderator's decision: no host check (the caller is checked and audited)."""
        return await self._end(space_id, None)

    async def _end(self, space_id: str, host: User | None) -> Snapshot:
        await self.record(space_id)
        async with self._locks.hold(space_id):
            space = await self.record(space_id)
            if host is not None:
                self._require_host(space, host, "end the space")
            ended = space.end(_now())
            await self._save(ended)
            await self._close_room(ended)
        return await self._rebuild(space_id)

    async def edit_details(self, actor: User, space_id: str, **changes: object) -> Snapshot:
        """Title, description, pinned link, topics (domain/space_details.py), by the host."""
        await self.record(space_id)
        async with self._locks.hold(space_id):
            space = await self.record(space_id)
            await self._save(edit_details(space, actor.id, **changes))
        return await self._rebuild(space_id)

    async def _close_room(self, ended: Space) -> None:
        """Stops the media here (if the stage is here) and drops the live state."""
        seconds = await self.rooms.close(ended.id)
        await self._state.forget(ended.id)
        self._events.space_ended(ended.id)
        if seconds is not None:
            await self._save(replace(ended, recording_seconds=seconds))

    # -- the stage ---------------------------------------------------------------

    async def _live_stage(self, space_id: str, action: str) -> tuple[Space, Stage]:
        space = await self.record(space_id)
        space.require_live(action)
        stage = await self._stage(space_id)
        if stage is None:  # the shared state was lost (restart): rebuild the essentials
            stage = await self._fresh_stage(space)
            await self._state.put_stage(space_id, stage)
            self._stages.drop(space_id)
        return space, stage

    async def _fresh_stage(self, space: Space) -> Stage:
        """Host alone on stage; removals are durable and carried over."""
        stage = Stage(host_id=space.host.id, speak_policy=space.speak_policy)
        stage.names[space.host.id] = space.host.username
        stage.removed = await self._store.removals(space.id)
        if self._standing is not None:
            stage.removed |= await self._standing.blocked_by(space.host.id)
        return stage

    async def _change_stage(
        self, space_id: str, action: str, change: Callable[[Stage], None]
    ) -> Stage:
        await self._live_stage(space_id, action)
        stage = await self._state.update_stage(space_id, change)
        await self._changed(space_id)
        await self.rooms.apply_stage(space_id, stage)
        self._mark_dirty(space_id)
        await self._rebuild(space_id)
        return stage

    async def _user(self, target: UserRef) -> User:
        """The user a request names, by `user_id` or, for people typing, by `username`."""
        if target.username is not None and target.user_id is None:
            if not isinstance(target.username, str) or not target.username:
                raise Invalid("username must be a non-empty string", code="invalid_username")
            found = await self._store.credentials(target.username)
            if found is None:
                message = f"there is no user named {target.username!r}"
                raise NotFound(message, code="user_not_found")
            return found[0]
        if not isinstance(target.user_id, str) or not target.user_id:
            raise Invalid("user_id must be a user's id (a string)", code="invalid_user_id")
        user = await self._store.get_user(target.user_id)
        if user is None:
            raise NotFound(f"there is no user with id {target.user_id!r}", code="user_not_found")
        return user

    async def request_to_speak(self, actor: User, space_id: str) -> None:
        await self._in_good_standing(actor.id)

        def change(stage: Stage) -> None:
            stage.request_to_speak(actor.id)
            stage.names[actor.id] = actor.username

        await self._change_stage(space_id, "request to speak", change)

    async def drop_request(self, actor: User, space_id: str, target_id: str) -> None:
        await self._change_stage(
            space_id, "decline a request", lambda stage: stage.drop_request(actor.id, target_id)
        )

    async def invite(self, actor: User, space_id: str, target_ref: UserRef) -> User:
        target = await self._user(target_ref)
        await self._in_good_standing(target.id)

        def change(stage: Stage) -> None:
            stage.invite(actor.id, target.id)
            stage.names[target.id] = target.username

        await self._change_stage(space_id, "invite", change)
        await self._host_action(actor, "invite", space_id, user_id=target.id)
        return target

    async def put_on_stage(
        self, actor: User, space_id: str, target_ref: UserRef, role: object
    ) -> Snapshot:
        if role not in (Role.COHOST.value, Role.SPEAKER.value):
            raise Invalid('role must be "cohost" or "speaker"', code="invalid_role")
        target = await self._user(target_ref)
        await self._in_good_standing(target.id)

        def change(stage: Stage) -> None:
            stage.put_on_stage(actor.id, target.id, Role(role))
            stage.names[target.id] = target.username

        await self._change_stage(space_id, "change the stage", change)
        await self._host_action(actor, "put_on_stage", space_id, user_id=target.id, role=str(role))
        return await self.snapshot(space_id)

    async def take_off_stage(self, actor: User, space_id: str, target_id: str) -> Snapshot:
        await self._change_stage(
            space_id, "change the stage", lambda stage: stage.take_off_stage(actor.id, target_id)
        )
        if target_id != actor.id:  # stepping down oneself is not a host action
            await self._host_action(actor, "take_off_stage", space_id, user_id=target_id)
        return await self.snapshot(space_id)

    async def set_muted(self, actor: User, space_id: str, target_id: str, muted: bool) -> Snapshot:
        def change(stage: Stage) -> None:
            if muted:
                stage.mute(actor.id, target_id)
            else:
                stage.unmute(actor.id, target_id)

        await self._change_stage(space_id, "mute", change)
        if target_id != actor.id:
            await self._host_action(actor, "mute", space_id, user_id=target_id)
        return await self.snapshot(space_id)

    async def mute_all(self, actor: User, space_id: str) -> Snapshot:
        """Every speaker (and for the host, every co-host) muted at once."""

        def change(stage: Stage) -> None:
            stage.mute_all(actor.id)

        await self._change_stage(space_id, "mute", change)
        return await self.snapshot(space_id)

    async def remove_from_space(self, actor: User, space_id: str, target_ref: UserRef) -> Snapshot:
        target = await self._user(target_ref)
        await self._change_stage(
            space_id, "remove people", lambda stage: stage.remove_from_space(actor.id, target.id)
        )
        await self._store.add_removal(space_id, target.id)
        await self._host_action(actor, "remove_from_space", space_id, user_id=target.id)
        return await self.snapshot(space_id)

    async def leave_every_stage(self, user_id: str) -> None:
        """A suspended user is taken off every stage they sit on (their microphone is cut
        where the stage runs). Reads the live spaces, at most LIVE_SWEEP_LIMIT of them."""
        for space in await self._store.list_spaces([SpaceState.LIVE], limit=LIVE_SWEEP_LIMIT):
            stage = await self._stage(space.id)
            if stage is None or not stage.is_on_stage(user_id) or stage.host_id == user_id:
                continue
            await self._change_stage(
                space.id, "change the stage", lambda seats: seats.take_off_stage(user_id, user_id)
            )

    async def bar(self, host: User, space_id: str, user_id: str) -> None:
        """Removes a user the host blocked from one of the host's live spaces."""
        await self._change_stage(
            space_id, "block people", lambda stage: stage.remove_from_space(host.id, user_id)
        )

    async def requests(self, actor: User, space_id: str) -> list[dict[str, str]]:
        _, stage = await self._live_stage(space_id, "see requests")
        if stage.role_of(actor.id) not in (Role.HOST, Role.COHOST):
            raise Forbidden("only the host or a co-host can see requests to speak")
        return [{"id": uid, "username": stage.names.get(uid, "")} for uid in stage.requests]

    async def my_status(self, actor: User, space_id: str) -> dict[str, Any]:
        space = await self.record(space_id)
        stage = await self._stage(space_id) if space.is_live else None
        if stage is None:
            role = Role.HOST if space.host.id == actor.id else Role.LISTENER
            return {
                "role": role.value,
                "muted": False,
                "requested": False,
                "invited": False,
                "removed": actor.id in await self._store.removals(space_id),
            }
        return {
            "role": stage.role_of(actor.id).value,
            "muted": stage.is_muted(actor.id) if stage.is_on_stage(actor.id) else False,
            "requested": actor.id in stage.requests,
            "invited": actor.id in stage.invited,
            "removed": actor.id in stage.removed,
        }

    async def react(self, space_id: str, emoji: object) -> None:
        space = await self.record(space_id)
        space.require_live("react")
        await self._state.add_reaction(space_id, check_reaction(emoji))
        self._mark_dirty(space_id)
        now = time.monotonic()
        if self._reactions_told.get(space_id, 0.0) + REACTION_PUBLISH_S <= now:
            self._reactions_told[space_id] = now
            self._reactions_untold.discard(space_id)
            await self._state.publish(space_id, self._node_id)
        else:  # the next tick tells the others
            self._reactions_untold.add(space_id)

    async def connect_speaker(
        self, actor: User, space_id: str, offer_sdp: str, after_take_over: bool = False
    ) -> str:
        """`after_take_over`: the space was just moved off a holder that did not answer;
        the offer is tried once more, never again."""
        _, stage = await self._live_stage(space_id, "join the stage")
        await self._in_good_standing(actor.id)
        if not stage.is_on_stage(actor.id):
            raise Forbidden("only the host, co-hosts and speakers can send audio")
        room = self.rooms.get(space_id)
        if room is None and await self._state.stage_node(space_id) == self._node_id:
            await self._take_over(space_id)  # placed here, the news not in yet
            room = self.rooms.get(space_id)
        if room is None:
            node_url = await self.stage_url(space_id)
            if node_url is None or self._peers is None:
                raise Conflict("this space's audio runs on another node", code="wrong_node")
            try:
                return await self._peers.offer(node_url, space_id, actor.id, offer_sdp)
            except Conflict as refused:
                if refused.code != "stage_node_unreachable" or after_take_over:
                    raise
                if not await self.take_over_if_down(space_id):
                    raise
            return await self.connect_speaker(actor, space_id, offer_sdp, after_take_over=True)
        if self._stopping:  # its stages are being handed over: the offer must go there
            raise Conflict("this node is stopping; offer again", code="node_stopping")
        room.stage.set_muted(actor.id, stage.is_muted(actor.id))
        try:
            answer = await room.stage.connect(actor.id, offer_sdp)
        except InvalidOffer as bad:
            raise Invalid(str(bad), code="bad_sdp") from None
        except StageUnavailable as gone:
            raise Conflict(str(gone), code="stage_unavailable") from None
        self._mark_dirty(space_id)
        return answer

    async def connect_forwarded_speaker(self, user_id: str, space_id: str, offer_sdp: str) -> str:
        """An offer another node forwarded: answered only where the stage is (no second hop)."""
        user = await self._store.get_user(user_id)
        if user is None:
            raise NotFound(f"there is no user with id {user_id!r}", code="user_not_found")
        if self.rooms.get(space_id) is None:
            if await self._state.stage_node(space_id) == self._node_id:
                await self._take_over(space_id)  # placed here, the news not in yet
            if self.rooms.get(space_id) is None:
                raise Conflict("this space's audio does not run on this node", code="wrong_node")
        return await self.connect_speaker(user, space_id, offer_sdp)

    async def go_live_forwarded(self, user_id: str, space_id: str) -> Snapshot:
        """A go-live an edge forwarded: answered only where stages may run."""
        user = await self._store.get_user(user_id)
        if user is None:
            raise NotFound(f"there is no user with id {user_id!r}", code="user_not_found")
        if not holds_stages(self._settings.role):
            raise Conflict("this node holds no stages", code="wrong_node")
        return await self.go_live(user, space_id)

    async def removed_from(self, space_id: str) -> frozenset[str]:
        """Everyone removed from the space, as the shared stage says (an edge's streams)."""
        stage = await self._stage(space_id)
        return frozenset(stage.removed) if stage is not None else frozenset()

    async def is_removed(self, space_id: str, user_id: str) -> bool:
        """Removals are decided on any node: the shared stage has them all."""
        stage = await self._stage(space_id)
        return stage is not None and user_id in stage.removed

    async def recording_path(self, space_id: str) -> Path:
        space = await self.record(space_id)
        path = self.recordings.final_path(space_id)
        if space.state is not SpaceState.ENDED or not space.record or not path.exists():
            raise NotFound("this space has no recording (yet)", code="no_recording")
        return path


def _node_urls(registry: list[NodeInfo]) -> tuple[str, ...]:
    """The deployment's public URLs and its edges' stream URLs (stream workers on their
    own port), from the node registry: a join may send a listener to any of them."""
    urls = {url for node in registry for url in (node.public_url, node.stream_url) if url}
    return tuple(sorted(urls))
