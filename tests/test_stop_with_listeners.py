"""A node told to stop while people listen: their streams end at once (so their pages
re-join another node), the node exits well within uvicorn's grace period, and nothing
is cancelled mid-stream (no traceback in the log). Before, each open stream held the
stop for the whole grace period and was then cancelled with a traceback."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from conftest import RunningServer
from http_helpers import live_space, sign_up

LISTENERS = 3
GRACE_S = 5.0
"""uvicorn's timeout_graceful_shutdown (townhall.server.uvicorn_config)."""


async def _hold(url: str, streaming: asyncio.Event) -> bool:
    """Reads the stream until it ends; True when the server ended it."""
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        async for _ in response.aiter_raw():
            streaming.set()
    return True


async def test_stopping_ends_live_streams_at_once(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        host = await sign_up(http, "stopper")
        space = await live_space(http, host)
        join_url = f"/api/spaces/{space['id']}/join"
        joins = [(await http.post(join_url)).json() for _ in range(LISTENERS)]
    streaming = [asyncio.Event() for _ in joins]
    holders = [
        asyncio.create_task(_hold(str(httpx.URL(server.url).join(join["live_url"])), flowing))
        for join, flowing in zip(joins, streaming, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in streaming)), 30)

    asked_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    ended = await asyncio.wait_for(asyncio.gather(*holders), 30)
    streams_ended_s = time.monotonic() - asked_at
    await asyncio.to_thread(server.process.wait, 30)
    exited_s = time.monotonic() - asked_at
    print(f"\nstop: streams ended after {streams_ended_s:.2f} s, exit after {exited_s:.2f} s")

    assert all(ended)
    assert streams_ended_s < GRACE_S, "the streams held the stop for the grace period"
    assert "Traceback" not in server.log(), server.log()[-3000:]
    assert "timeout graceful shutdown exceeded" not in server.log()

