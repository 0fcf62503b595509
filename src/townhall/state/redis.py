"""Shared state in Redis: what every node of one deployment agrees on.

redis-py's asyncio client (hiredis parser). Every per-space key carries the space
id in a hash tag (`{id}`) so a Lua script touching two of them stays valid on a
cluster. A short socket timeout and a single retry turn an unreachable
Redis into `StateUnavailable` within about a second, never a hang. Changes are
announced on one pub/sub channel; while that subscription is down `healthy` is
false (nodes stop trusting their caches), and when it is back every listener is
told to resync, since messages may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from townhall.domain.errors import Conflict
from townhall.domain.moderation import AuditHead
from townhall.domain.spaces import Space, SpaceState, User
from townhall.domain.stage import Stage
from townhall.state.base import (
    AUDIENCE_REPORT_MAX,
    ENDED_RECORD_TTL_S,
    LISTENER_REPORT_TTL_S,
    ChangeListener,
    NodeInfo,
    ResyncListener,
    StageChange,
    StateUnavailable,
    UserEventListener,
    refuse_oversized_event,
    refuse_oversized_report,
    unique_people,
)
from townhall.state.codec import space_from_json, space_to_json

log = logging.getLogger(__name__)

# -- key names and their shapes ----------------------------------------------------------
SPACE_KEY = "townhall:space:{%s}:record"
"""string: the space record as JSON (state/codec.py); expires ENDED_RECORD_TTL_S after end."""
STAGE_KEY = "townhall:space:{%s}:stage"
"""string: the Stage as JSON (Stage.to_json), incl. requests, invitations, removals."""
REACTIONS_KEY = "townhall:space:{%s}:reactions"
"""hash: emoji -> total."""
LISTENERS_KEY = "townhall:space:{%s}:listeners"
"""hash: node id -> that node's listener count."""
LISTENER_EXPIRY_KEY = "townhall:space:{%s}:listeners-expiry"
"""sorted set: node id -> unix time its count stops counting."""
AUDIENCE_KEY = "townhall:space:{%s}:audience"
"""hash: node id -> JSON list of that node's signed-in listeners [{id, username}]."""
AUDIENCE_EXPIRY_KEY = "townhall:space:{%s}:audience-expiry"
"""sorted set: node id -> unix time its audience report stops counting."""
PEAK_LISTENERS_KEY = "townhall:space:{%s}:peak-listeners"
"""integer: the highest listener sum reported; expires ENDED_RECORD_TTL_S after end."""
ARRIVALS_KEY = "townhall:space:{%s}:arrivals"
"""integer: the waiting room's arrival sequence (INCR)."""
ADMITTED_KEY = "townhall:space:{%s}:admitted"
"""integer: the waiting room's admitted-up-to (never past the arrival sequence)."""
STAGE_NODE_KEY = "townhall:space:{%s}:stage-node"
"""string: id of the node that holds the space's stage."""
ATTACK_MODE_KEY = "townhall:attack-mode"
"""string: the deployment's attack mode ("on"/"off"/...), with an expiry."""
AUDIT_HEAD_KEY = "townhall:audit-head"
"""hash: seq -> the audit chain's furthest sequence number, hash -> that entry's hash."""
NODE_KEY = "townhall:node:%s"
"""string: a NodeInfo as JSON; expires when the node stops beating."""
NODES_KEY = "townhall:nodes"
"""sorted set: node id -> unix time its registration expires."""
CHANGES_CHANNEL = "townhall:space-changes"
"""pub/sub: "<space id> <node id>" whenever something about a space changed."""
USER_EVENTS_CHANNEL = "townhall:user-events"
"""pub/sub: {"users": [user id, ...], "event": text} for signed-in pages' event streams."""

PER_SPACE_KEYS = (
    STAGE_KEY,
    LISTENERS_KEY,
    LISTENER_EXPIRY_KEY,
    AUDIENCE_KEY,
    AUDIENCE_EXPIRY_KEY,
    ARRIVALS_KEY,
    ADMITTED_KEY,
    STAGE_NODE_KEY,
)
"""Deleted when a space ends (its record, its reaction totals and its peak listeners
expire instead: the host's end-of-space summary and late snapshots still show them)."""

SOCKET_TIMEOUT_S = 1.0
"""A command that gets no answer by then fails: a slow Redis is an unavailable one."""
RESUBSCRIBE_S = 0.5
"""Pause between attempts to get the change subscription back."""
PUBSUB_POLL_S = 1.0
HEALTH_CHECK_S = 1
"""An idle connection is pinged before use after this long, so a dead Redis is noticed."""
STALE_CONNECTION_RETRIES = 1
"""A pooled connection from before a Redis restart fails once; the retry uses a new one."""
STAGE_UPDATE_ATTEMPTS = 20
"""Optimistic stage updates retried this often when another node wrote in between."""
STAGE_RETRY_PAUSE_S = 0.005
"""Upper bound of the random pause before retry n is n times this."""

_DROP_STALE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t)
for _, node in ipairs(stale) do
  redis.call('HDEL', KEYS[1], node)
  redis.call('ZREM', KEYS[2], node)
end
"""
"""KEYS: a hash of per-node reports, its expiry zset: drops the expired reports."""
# KEYS: listeners hash, expiry zset. Drops expired reports, leaves the sum of the rest.
_SUM_FRESH = _DROP_STALE + """
local total = 0
for _, count in ipairs(redis.call('HVALS', KEYS[1])) do
  total = total + tonumber(count)
end
"""
SUM_LISTENERS = _SUM_FRESH + "return total\n"
# KEYS: listeners hash, expiry zset, peak. ARGV: node id, count, ttl (s). Raises the peak.
REPORT_LISTENERS = (
    """
local now0 = redis.call('TIME')
local t0 = tonumber(now0[1]) + tonumber(now0[2]) / 1e6
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], t0 + tonumber(ARGV[3]), ARGV[1])
"""
    + _SUM_FRESH
    + """
if total > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[3], total)
end
return total
"""
)
# KEYS: audience hash, expiry zset. ARGV: node id, JSON list, ttl (s).
REPORT_AUDIENCE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], t + tonumber(ARGV[3]), ARGV[1])
"""
# KEYS: audience hash, expiry zset. Drops expired reports, returns [node, JSON, ...] of the rest.
READ_AUDIENCE = _DROP_STALE + "return redis.call('HGETALL', KEYS[1])\n"
# KEYS: audit head. ARGV: seq, hash. Moves the head forward only.
ADVANCE_AUDIT_HEAD = """
local kept = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[1]) > kept then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'hash', ARGV[2])
end
return 1
"""
# KEYS: arrivals, admitted. ARGV: at most. Returns the new admitted-up-to.
ADVANCE_ADMITTED = """
local arrivals = tonumber(redis.call('GET', KEYS[1]) or '0')
local admitted = tonumber(redis.call('GET', KEYS[2]) or '0')
local target = math.min(arrivals, admitted + tonumber(ARGV[1]))
if target > admitted then
  redis.call('SET', KEYS[2], target)
  return target
end
return admitted
"""
# KEYS: node key, nodes zset. ARGV: node id, ttl (s), NodeInfo JSON without last_beat.
BEAT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local info = cjson.decode(ARGV[3])
info['last_beat'] = t
redis.call('SET', KEYS[1], cjson.encode(info), 'PX', math.floor(tonumber(ARGV[2]) * 1000))
redis.call('ZADD', KEYS[2], t + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', t)
return 1
"""

# KEYS: stage-node key. ARGV: the node expected there ("" for none), the claiming node.
CLAIM_STAGE = """
local holder = redis.call('GET', KEYS[1])
if (holder or '') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Redis failing to answer is a refusal the caller can explain, not a 500."""
    try:
        yield
    except (RedisError, OSError) as error:
        if isinstance(error, WatchError):
            raise
        raise StateUnavailable() from None


def _node_from_json(raw: str | bytes) -> NodeInfo:
    data: dict[str, Any] = json.loads(raw)
    return NodeInfo(
        node_id=str(data["node_id"]),
        public_url=str(data["public_url"]),
        role=str(data["role"]),
        load=float(data["load"]),
        last_beat=float(data["last_beat"]),
        holds_stages=bool(data.get("holds_stages", True)),
        stages=int(data.get("stages", 0)),
        cpu=float(data.get("cpu", 0.0)),
        stream_url=str(data.get("stream_url", "")),
    )


CLOSE_TIMEOUT_S: Final = 2.0
"""How long closing the pub/sub or the pool may take before it is left to the loop."""


class RedisState:
    def __init__(self, url: str) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_S,
            retry=Retry(NoBackoff(), STALE_CONNECTION_RETRIES),
            decode_responses=True,
        )
        self._on_change: list[ChangeListener] = []
        self._on_resync: list[ResyncListener] = []
        self._on_user_event: list[UserEventListener] = []
        self._healthy = False
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._stage_writer = asyncio.Lock()
        self._report = self._redis.register_script(REPORT_LISTENERS)
        self._sum = self._redis.register_script(SUM_LISTENERS)
        self._advance = self._redis.register_script(ADVANCE_ADMITTED)
        self._report_audience = self._redis.register_script(REPORT_AUDIENCE)
        self._read_audience = self._redis.register_script(READ_AUDIENCE)
        self._beat = self._redis.register_script(BEAT)
        self._advance_audit_head = self._redis.register_script(ADVANCE_AUDIT_HEAD)
        self._claim_stage = self._redis.register_script(CLAIM_STAGE)

    # -- change notification ---------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._healthy

    def subscribe(self, on_change: ChangeListener, on_resync: ResyncListener) -> None:
        self._on_change.append(on_change)
        self._on_resync.append(on_resync)

    async def start(self) -> None:
        """Starts listening for changes; waits (briefly) for the first subscription so a
        node that starts with Redis up serves from its cache at once."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen_forever(), name="state-changes")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=SOCKET_TIMEOUT_S * 3)

    async def _listen_forever(self) -> None:
        lost = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                if lost:  # connections from before the outage are dead: drop them
                    await self._redis.connection_pool.disconnect()
                await pubsub.subscribe(CHANGES_CHANNEL, USER_EVENTS_CHANNEL)
                self._healthy = True
                self._subscribed.set()
                if lost:
                    log.warning("shared state reachable again; caches resynchronised")
                for resync in self._on_resync:
                    resync()
                lost = False
                while True:
                    message = await pubsub.get_message(timeout=PUBSUB_POLL_S)
                    if message is None:
                        continue
                    if message.get("channel") == USER_EVENTS_CHANNEL:
                        self._dispatch_user_event(message.get("data"))
                    else:
                        self._dispatch(message.get("data"))
            except (RedisError, OSError) as error:
                if not lost:
                    log.warning("shared state unreachable (%s); retrying", error)
                lost = True
            finally:
                self._healthy = False
                closing = asyncio.ensure_future(pubsub.aclose())  # type: ignore[no-untyped-call]
                await asyncio.wait({closing}, timeout=CLOSE_TIMEOUT_S)
                if closing.done() and not closing.cancelled():
                    closing.exception()  # a failed close of a dead connection is no news
            await asyncio.sleep(RESUBSCRIBE_S)

    def _dispatch(self, data: object) -> None:
        if not isinstance(data, str) or " " not in data:
            return
        space_id, node_id = data.split(" ", 1)
        for listener in self._on_change:
            try:
                listener(space_id, node_id)
            except Exception:
                log.exception("a change listener failed for %s", space_id)

    async def publish(self, space_id: str, node_id: str) -> None:
        with _reachable():
            await self._redis.publish(CHANGES_CHANNEL, f"{space_id} {node_id}")

    def listen_user_events(self, listener: UserEventListener) -> None:
        self._on_user_event.append(listener)

    async def publish_user_event(self, user_ids: Sequence[str], event: bytes) -> None:
        refuse_oversized_event(user_ids)
        message = json.dumps({"users": list(user_ids), "event": event.decode()})
        with _reachable():
            await self._redis.publish(USER_EVENTS_CHANNEL, message)

    def _dispatch_user_event(self, data: object) -> None:
        try:
            message = json.loads(data) if isinstance(data, str) else {}
            users, event = message["users"], message["event"].encode()
            if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
                raise TypeError("users")
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("a user event that is not one was ignored")
            return
        for listener in self._on_user_event:
            try:
                listener(users, event)
            except Exception:
                log.exception("a user event listener failed")

    # -- records ----------------------------------------------------------------------

    async def get_space(self, space_id: str) -> Space | None:
        with _reachable():
            raw = await self._redis.get(SPACE_KEY % space_id)
        return space_from_json(raw) if raw is not None else None

    async def put_space(self, space: Space) -> None:
        ttl = ENDED_RECORD_TTL_S if space.state is SpaceState.ENDED else None
        with _reachable():
            await self._redis.set(
                SPACE_KEY % space.id, space_to_json(space), px=int(ttl * 1000) if ttl else None
            )

    # -- the stage --------------------------------------------------------------------

    async def get_stage(self, space_id: str) -> Stage | None:
        with _reachable():
            raw = await self._redis.get(STAGE_KEY % space_id)
        return Stage.from_json(json.loads(raw)) if raw is not None else None

    async def put_stage(self, space_id: str, stage: Stage) -> None:
        with _reachable():
            await self._redis.set(STAGE_KEY % space_id, json.dumps(stage.to_json()))

    async def update_stage(self, space_id: str, change: StageChange) -> Stage:
        """WATCH, read, change, MULTI/EXEC; another writer in between means read again.

        This node's own writers take turns (stage changes come at human pace), so the
        optimistic retries only race other nodes; a short random pause spreads them."""
        key = STAGE_KEY % space_id
        async with self._stage_writer:
            return await self._update_stage(space_id, key, change)

    async def _update_stage(self, space_id: str, key: str, change: StageChange) -> Stage:
        with _reachable():
            async with self._redis.pipeline(transaction=True) as pipe:
                for attempt in range(STAGE_UPDATE_ATTEMPTS):
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        if raw is None:
                            raise KeyError(space_id)
                        stage = Stage.from_json(json.loads(raw))
                        change(stage)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, json.dumps(stage.to_json()))
                        await pipe.execute()
                        return stage
                    except WatchError:
                        await asyncio.sleep(random.uniform(0, STAGE_RETRY_PAUSE_S * attempt))
        raise Conflict("the stage is changing too fast; try again", code="stage_busy")

    # -- counters -----------------------------------------------------------------------

    async def add_reaction(self, space_id: str, emoji: str) -> None:
        with _reachable():
            await self._redis.hincrby(REACTIONS_KEY % space_id, emoji, 1)

    async def reactions(self, space_id: str) -> dict[str, int]:
        with _reachable():
            totals = await self._redis.hgetall(REACTIONS_KEY % space_id)
        return {str(emoji): int(count) for emoji, count in totals.items()}

    async def report_listeners(
        self, space_id: str, node_id: str, count: int, ttl_s: float = LISTENER_REPORT_TTL_S
    ) -> None:
        keys = [
            LISTENERS_KEY % space_id,
            LISTENER_EXPIRY_KEY % space_id,
            PEAK_LISTENERS_KEY % space_id,
        ]
        with _reachable():
            await self._report(keys=keys, args=[node_id, count, ttl_s])

    async def report_node_listeners(
        self, node_id: str, counts: Mapping[str, int], ttl_s: float = LISTENER_REPORT_TTL_S
    ) -> None:
        """One pipeline of REPORT_LISTENERS calls (not a transaction: each space's keys
        share a hash tag, the spaces do not)."""
        refuse_oversized_report(counts)
        if not counts:
            return
        with _reachable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for space_id, count in counts.items():
                    keys = [
                        LISTENERS_KEY % space_id,
                        LISTENER_EXPIRY_KEY % space_id,
                        PEAK_LISTENERS_KEY % space_id,
                    ]
                    await self._report(keys=keys, args=[node_id, count, ttl_s], client=pipe)
                await pipe.execute()

    async def listeners(self, space_id: str) -> int:
        keys = [LISTENERS_KEY % space_id, LISTENER_EXPIRY_KEY % space_id]
        with _reachable():
            return int(await self._sum(keys=keys))

    async def peak_listeners(self, space_id: str) -> int:
        with _reachable():
            return int(await self._redis.get(PEAK_LISTENERS_KEY % space_id) or 0)

    async def report_audience(
        self,
        space_id: str,
        node_id: str,
        people: list[User],
        ttl_s: float = LISTENER_REPORT_TTL_S,
    ) -> None:
        report = json.dumps([person.to_json() for person in people[:AUDIENCE_REPORT_MAX]])
        keys = [AUDIENCE_KEY % space_id, AUDIENCE_EXPIRY_KEY % space_id]
        with _reachable():
            await self._report_audience(keys=keys, args=[node_id, report, ttl_s])

    async def audience(self, space_id: str) -> list[User]:
        keys = [AUDIENCE_KEY % space_id, AUDIENCE_EXPIRY_KEY % space_id]
        with _reachable():
            flat = await self._read_audience(keys=keys)
        by_node = sorted(zip(flat[::2], flat[1::2], strict=True))  # a stable order of faces
        return unique_people(
            [User(str(p["id"]), str(p["username"])) for p in json.loads(report)]
            for _, report in by_node
        )

    # -- the waiting room ---------------------------------------------------------------

    async def next_arrival(self, space_id: str) -> int:
        with _reachable():
            return int(await self._redis.incr(ARRIVALS_KEY % space_id))

    async def advance_admitted(self, space_id: str, at_most: int) -> int:
        keys = [ARRIVALS_KEY % space_id, ADMITTED_KEY % space_id]
        with _reachable():
            return int(await self._advance(keys=keys, args=[max(0, at_most)]))

    async def waiting_counters(self, space_id: str) -> tuple[int, int]:
        with _reachable():
            arrivals, admitted = await self._redis.mget(
                ARRIVALS_KEY % space_id, ADMITTED_KEY % space_id
            )
        return int(arrivals or 0), int(admitted or 0)

    # -- attack mode --------------------------------------------------------------------

    async def set_attack_mode(self, mode: str, ttl_s: float) -> None:
        with _reachable():
            await self._redis.set(ATTACK_MODE_KEY, mode, px=max(1, int(ttl_s * 1000)))

    async def attack_mode(self) -> str | None:
        with _reachable():
            mode = await self._redis.get(ATTACK_MODE_KEY)
        return str(mode) if mode is not None else None

    # -- the audit log's head -------------------------------------------------------------

    async def advance_audit_head(self, head: AuditHead) -> None:
        with _reachable():
            await self._advance_audit_head(keys=[AUDIT_HEAD_KEY], args=[head.seq, head.hash])

    async def audit_head(self) -> AuditHead | None:
        with _reachable():
            kept = await self._redis.hgetall(AUDIT_HEAD_KEY)
        if not kept:
            return None
        return AuditHead(int(kept["seq"]), str(kept["hash"]))

    # -- placement and nodes ------------------------------------------------------------

    async def place_stage(self, space_id: str, node_id: str) -> None:
        with _reachable():
            await self._redis.set(STAGE_NODE_KEY % space_id, node_id)

    async def stage_node(self, space_id: str) -> str | None:
        with _reachable():
            node = await self._redis.get(STAGE_NODE_KEY % space_id)
        return str(node) if node is not None else None

    async def claim_stage(self, space_id: str, expected: str | None, node_id: str) -> bool:
        with _reachable():
            claimed = await self._claim_stage(
                keys=[STAGE_NODE_KEY % space_id], args=[expected or "", node_id]
            )
        return bool(claimed)

    async def beat(self, node: NodeInfo, ttl_s: float) -> None:
        info = json.dumps(asdict(node))
        keys = [NODE_KEY % node.node_id, NODES_KEY]
        with _reachable():
            await self._beat(keys=keys, args=[node.node_id, ttl_s, info])

    async def node(self, node_id: str) -> NodeInfo | None:
        with _reachable():
            raw = await self._redis.get(NODE_KEY % node_id)
        return _node_from_json(raw) if raw is not None else None

    async def nodes(self) -> list[NodeInfo]:
        with _reachable():
            ids = await self._redis.zrange(NODES_KEY, 0, -1)
            if not ids:
                return []
            found = await self._redis.mget([NODE_KEY % node_id for node_id in ids])
        return [_node_from_json(raw) for raw in found if raw is not None]

    async def leave(self, node_id: str) -> None:
        with _reachable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(NODE_KEY % node_id)
                pipe.zrem(NODES_KEY, node_id)
                await pipe.execute()

    # -- the end ----------------------------------------------------------------------

    async def forget(self, space_id: str) -> None:
        with _reachable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(key % space_id for key in PER_SPACE_KEYS))
                pipe.expire(REACTIONS_KEY % space_id, int(ENDED_RECORD_TTL_S))
                pipe.expire(PEAK_LISTENERS_KEY % space_id, int(ENDED_RECORD_TTL_S))
                await pipe.execute()

    async def close(self) -> None:
        """Bounded: a pub/sub connection stuck mid-read must not hold a node's stop (a
        test's teardown once sat idle for 19 minutes here, under load)."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait({self._listener}, timeout=CLOSE_TIMEOUT_S)
        await asyncio.wait({asyncio.ensure_future(self._redis.aclose())}, timeout=CLOSE_TIMEOUT_S)
