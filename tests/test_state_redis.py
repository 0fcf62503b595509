"""The Redis backend where it differs from memory: a Redis that goes away and comes
back, and the keys a space leaves behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from redis_server import RedisServer
from townhall.domain.spaces import Space, SpaceState, User
from townhall.domain.stage import Stage
from townhall.state import RedisState, StateUnavailable

UNAVAILABLE_WITHIN_S = 3.0
"""Socket timeouts are ~1 s: a refusal must come well before a client would give up."""


async def _until(condition, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and start again."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_an_unreachable_redis_is_refused_quickly_and_service_resumes(
    own_redis: RedisServer,
) -> None:
    state = RedisState(own_redis.url())
    resyncs: list[float] = []
    state.subscribe(lambda space_id, node_id: None, lambda: resyncs.append(time.monotonic()))
    await state.start()
    try:
        assert state.healthy and len(resyncs) == 1
        await state.put_stage("s1", Stage(host_id="host1"))

        own_redis.stop()
        await _until(lambda: not state.healthy, UNAVAILABLE_WITHIN_S)
        for call in (state.get_stage("s1"), state.listeners("s1"), state.next_arrival("s1")):
            started = time.monotonic()
            with pytest.raises(StateUnavailable) as refused:
                await call
            assert time.monotonic() - started < UNAVAILABLE_WITHIN_S
            assert refused.value.retry_after_s > 0 and "unreachable" in refused.value.message

        own_redis.start()  # empty again: no persistence
        await _until(lambda: state.healthy, 5.0)
        assert len(resyncs) == 2, "a node that may have missed changes is told to resync"
        assert await state.get_stage("s1") is None
        assert await state.next_arrival("s1") == 1
    finally:
        await state.close()


async def test_an_ended_space_leaves_only_its_expiring_record_and_totals(redis_url: str) -> None:
    state = RedisState(redis_url)
    await state.start()
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        now = datetime.now(UTC)
        space_id = "abcdefghijkm"
        live = Space(space_id, "t", User("h", "ann"), SpaceState.LIVE, now, started_at=now)
        await state.put_space(live)
        await state.put_stage(space_id, Stage(host_id="h"))
        await state.add_reaction(space_id, "🔥")
        await state.report_listeners(space_id, "node-a", 3, ttl_s=60)
        await state.next_arrival(space_id)
        await state.advance_admitted(space_id, 1)
        await state.place_stage(space_id, "node-a")
        assert len(await raw.keys(f"*{space_id}*")) == 9
        assert await raw.ttl(f"townhall:space:{{{space_id}}}:record") == -1  # live: no expiry

        await state.put_space(live.end(now))
        await state.forget(space_id)
        left = sorted(await raw.keys(f"*{space_id}*"))
        names = ("peak-listeners", "reactions", "record")
        assert left == [f"townhall:space:{{{space_id}}}:{name}" for name in names]
        for key in left:
            assert 0 < await raw.ttl(key) <= 3600
    finally:
        await raw.aclose()
        await state.close()
