"""Issue 8, failover in a real browser on the loopback cluster (tests/cluster.py: one
origin, two edges, nginx in front): a Chromium listen page, served through nginx as a
deployment serves it, plays the live stream of an edge. SIGKILL that edge by PID: the
page's player re-joins with its ticket through nginx, is sent to the other edge, and
its audio advances again within 5 s, carrying the speaker's 440 Hz tone (FFT).

Headless Debian Chromium through Playwright; WebRTC (the aiortc speaker) needs the
loopback-only namespace of scripts/isolated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from browser import (
    attach_analyser,
    chromium_available,
    median_spectrum,
    open_and_play,
    page_factory,
)
from cluster import Cluster, hold_stream, running_cluster
from http_helpers import sign_up
from nginx_server import HAS_NGINX
from test_failover import BACK_WITHIN_S, offer_until_accepted
from test_failover_browser import (
    ADVANCE_S,
    MIN_TONE_DB,
    PEAK_TOLERANCE_HZ,
    PLAY_BEFORE_S,
    STALL_MAX_S,
    TONE_HZ,
    UI_TIMEOUT_MS,
    LoopThread,
    play_across_a_kill,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not HAS_NGINX, reason="needs Debian's nginx"),
    pytest.mark.usefixtures("loopback_ice"),
]

SECRET = "one-origin-two-edges-and-a-browser"
HELD = 2
"""Listeners held on the other edge: the registry names the page's edge as the least
loaded one, and keeps naming it for seconds after its death (its last heartbeat)."""
FLOWING_S = 30.0


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, redis_url, postgres_url, TOWNHALL_SECRET=SECRET) as cluster:
        yield cluster


@pytest.fixture
def new_page(chromium, cluster):
    """Pages closed before the servers stop (no stream holds their shutdown)."""
    with page_factory(chromium, UI_TIMEOUT_MS) as make:
        yield make


async def _hold_on(
    front: httpx.AsyncClient, space_id: str, base: str, count: int
) -> list[asyncio.Task[None]]:
    """`count` listeners streaming from `base` (tickets are good on any node)."""
    held, flowing = [], []
    for _ in range(count):
        ticket = (await front.post(f"/api/spaces/{space_id}/join")).json()["ticket"]
        flowing.append(asyncio.Event())
        url = f"{base}/live/{space_id}.aac?ticket={ticket}"
        held.append(asyncio.create_task(hold_stream(url, flowing[-1])))
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in flowing)), FLOWING_S)
    return held


async def _let_go(held: list[asyncio.Task[None]]) -> None:
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)


def test_a_listen_page_keeps_playing_across_the_kill_of_its_edge(
    new_page, cluster: Cluster
) -> None:
    loop = LoopThread()
    front = httpx.AsyncClient(base_url=cluster.nginx, timeout=15)
    speaker = None
    held: list[asyncio.Task[None]] = []
    try:
        host = loop.run(sign_up(front, "edge_host"))
        created = loop.run(
            front.post("/api/spaces", json={"title": "Across an edge"}, headers=host.headers)
        )
        space_id = created.json()["id"]
        started = loop.run(front.post(f"/api/spaces/{space_id}/start", headers=host.headers))
        assert started.status_code == 200, started.text
        speaker = loop.run(offer_until_accepted(front, space_id, host, TONE_HZ, BACK_WITHIN_S))

        page = new_page()
        streams: list[str] = []
        page.on("request", lambda r: streams.append(r.url) if "/live/" in r.url else None)
        open_and_play(page, cluster.nginx, space_id, "edge_host")
        assert attach_analyser(page) == "running"
        victim = cluster.edge_of(streams[0])
        other = cluster.edge_stream_urls[1 - victim]
        held = loop.run(_hold_on(front, space_id, other, HELD))
        page.wait_for_timeout(PLAY_BEFORE_S * 1000)  # the edges' heartbeats carry their loads
        before = median_spectrum(page, TONE_HZ, reads=3, interval_ms=200)
        assert before.tone_db > MIN_TONE_DB, before

        across = play_across_a_kill(page, cluster.edges[victim].kill_hard)
        heard = median_spectrum(page, TONE_HZ, reads=6, interval_ms=250)
        print(
            f"\nedge {victim + 1} killed -> the page played {ADVANCE_S:.0f} s more after "
            f"{across.advanced_s:.1f} s: silent for {across.stalled_s:.1f} s; tone "
            f"{heard.tone_db:.1f} dBFS at {heard.peak_hz:.0f} Hz; streams: {streams}"
        )
        assert across.stalled_s < STALL_MAX_S
        assert all(cluster.edge_of(url) != victim for url in streams[1:]), "sent to the dead edge"
        assert across.after["state"] == "playing", across.after
        assert heard.tone_db > MIN_TONE_DB
        assert abs(heard.peak_hz - TONE_HZ) < PEAK_TOLERANCE_HZ
    finally:
        if speaker is not None:
            loop.run(speaker.close())
        loop.run(_let_go(held))
        loop.run(front.aclose())
        loop.close()
