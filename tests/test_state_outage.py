"""Redis goes away under a live node, and comes back (empty: no persistence).

Listeners already streaming keep hearing the speaker (checked by FFT); new joins get
503 + Retry-After with a clear error, quickly; the node resumes by itself when Redis
returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from http_helpers import live_space, sign_up, speak_over_http
from redis_server import RedisServer
from tones import Recording, ToneTrack, read_live_stream, steady_tone_power

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]
TONE_HZ = 440.0
PRESENT_DBFS = -30.0

REFUSED_WITHIN_S = 3.0
"""A join while Redis is away is answered (503) well before a client would give up."""
RESUMES_WITHIN_S = 10.0


@pytest.fixture
def redis_and_node(tmp_path: Path) -> Iterator[tuple[RedisServer, RunningServer]]:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        node = start_server(tmp_path / "node", TOWNHALL_STATE=redis.url())
        try:
            yield redis, node
        finally:
            stop_server(node)
    finally:
        redis.stop()


async def test_listeners_keep_hearing_joins_are_refused_and_service_resumes(
    redis_and_node: tuple[RedisServer, RunningServer],
) -> None:
    redis, node = redis_and_node
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        host = await sign_up(http, "host")
        space_id = (await live_space(http, host))["id"]
        speaker = await speak_over_http(http, space_id, host.headers, ToneTrack(TONE_HZ, 0.0))
        joined = (await http.post(f"/api/spaces/{space_id}/join")).json()
        heard = Recording()
        listener = asyncio.create_task(
            read_live_stream(node.url + joined["live_url"], heard, time.time() + 120)
        )
        try:
            await asyncio.sleep(1.5)
            redis.stop()
            gone, gone_at = time.monotonic(), time.time()

            refused = None
            while time.monotonic() - gone < REFUSED_WITHIN_S + 3:
                asked = time.monotonic()
                answer = await http.post(f"/api/spaces/{space_id}/join")
                assert time.monotonic() - asked < REFUSED_WITHIN_S, "a join hung"
                if answer.status_code == 503:
                    refused = answer
                    break
                assert answer.status_code == 200, answer.text
                await asyncio.sleep(0.1)
            assert refused is not None, "joins were still admitted with Redis gone"
            assert int(refused.headers["retry-after"]) >= 1
            error = refused.json()["error"]
            assert error["code"] == "state_unavailable" and "unreachable" in error["message"]

            await asyncio.sleep(2.0)
            during = heard.samples(since=gone_at)
            assert len(during) > 0.7 * (time.time() - gone_at) * 48_000, "the listener lost audio"
            level = steady_tone_power(during, 48_000, TONE_HZ)
            assert level > PRESENT_DBFS, "the speaker went silent"
            assert (await http.get(f"/api/spaces/{space_id}")).status_code == 200
            created = await http.post("/api/spaces", json={"title": "x"}, headers=host.headers)
            assert created.status_code == 503, created.text  # refused before anything is written

            redis.start()  # empty: everything the node knows must be said again
            back, back_at = time.monotonic(), time.time()
            while True:
                answer = await http.post(f"/api/spaces/{space_id}/join")
                if answer.status_code == 200:
                    break
                assert answer.status_code == 503, answer.text
                assert time.monotonic() - back < RESUMES_WITHIN_S, "did not resume"
                await asyncio.sleep(0.1)
            print(f"\nresumed {time.monotonic() - back:.2f} s after Redis came back")
            assert "ticket" in answer.json()
            snapshot = (await http.get(f"/api/spaces/{space_id}")).json()
            assert snapshot["state"] == "live"
            listed = (await http.get("/api/spaces")).json()
            assert [space["id"] for space in listed["live"] + listed["upcoming"]] == [space_id]
            await asyncio.sleep(0.5)
            assert steady_tone_power(heard.samples(since=back_at), 48_000, TONE_HZ) > PRESENT_DBFS
        finally:
            await speaker.close()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    assert "Traceback" not in node.log()
