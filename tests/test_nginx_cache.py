"""nginx in front of townhall (deploy/nginx): the crowd's reads stop at the cache.

Debian's nginx, started by the test with the shipped template: snapshot and
HLS playlist requests from a crowd reach the origin about once per second,
segments once, and the live stream passes through unbuffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from nginx_server import HAS_NGINX, running_nginx
from test_worker_listener_api import _healths, _host_and_space, _node

pytestmark = pytest.mark.skipif(not HAS_NGINX, reason="needs Debian's nginx")
PER_ADDRESS_RATE = 1
"""Writes per second per client address at the origin (burst 5x)."""
MAX_CONNECTIONS_PER_CLIENT = 32
"""The template's limit_conn, the origin's own default cap."""


@pytest.fixture
def server(tmp_path) -> Iterator[RunningServer]:
    """The origin, told that nginx (on loopback here) is its trusted proxy."""
    running = start_server(
        tmp_path / "origin",
        TOWNHALL_HTTP_TRUSTED_PROXIES="127.0.0.1/32",
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE=str(PER_ADDRESS_RATE),
    )
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def edge(server, tmp_path):
    with running_nginx(tmp_path / "nginx", [f"127.0.0.1:{server.port}"]) as url:
        yield url


async def test_the_crowd_stops_at_the_edge(server, edge) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as origin:
        await origin.post("/api/users", json={"username": "host", "password": "password123"})
        token = await origin.post(
            "/api/tokens", json={"username": "host", "password": "password123"}
        )
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        space = (await origin.post("/api/spaces", json={"title": "edge"}, headers=headers)).json()
        await origin.post(f"/api/spaces/{space['id']}/start", headers=headers)
    await asyncio.sleep(2.5)  # the first HLS segments

    async with httpx.AsyncClient(
        base_url=edge,
        timeout=10,
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS_PER_CLIENT - 2),
    ) as crowd:
        snapshots = await asyncio.gather(
            *[crowd.get(f"/api/spaces/{space['id']}") for _ in range(300)]
        )
        playlist = await crowd.get(f"/hls/{space['id']}/index.m3u8")
        segments = [line for line in playlist.text.splitlines() if line.endswith(".m4s")]
        assert segments, (playlist.status_code, playlist.headers, playlist.text)
        segment = segments[0]
        segment_url = f"/hls/{space['id']}/{segment}"
        first, again = await crowd.get(segment_url), await crowd.get(segment_url)
        async with crowd.stream("GET", f"/live/{space['id']}.aac") as refused:
            live_status = refused.status_code

    statuses = {r.status_code for r in snapshots}
    cache = [r.headers.get("x-cache-status") for r in snapshots]
    hits = sum(1 for c in cache if c in ("HIT", "UPDATING", "STALE"))
    print(
        f"\n300 snapshot requests through nginx: {hits} served by the cache, "
        f"{cache.count('MISS') + cache.count('EXPIRED')} went to the origin"
    )
    assert statuses == {200}
    assert hits >= 280
    assert first.status_code == 200 and again.headers["x-cache-status"] == "HIT"
    assert again.content == first.content
    assert live_status == 401, "the live stream passes through to the origin's ticket check"


def _writes_until_limited(http: httpx.Client, headers: dict[str, str] | None = None) -> int:
    """Writes (a bad sign-up, refused after the origin's per-address check) until a 429."""
    burst = PER_ADDRESS_RATE * 5
    for n in range(burst * 3):
        answer = http.post("/api/users", json={}, headers=headers)
        if answer.status_code == 429:
            return n
        assert answer.status_code in (400, 422), answer.text
    return burst * 3


def test_behind_nginx_each_listener_has_its_own_bucket(server, edge) -> None:
    """The origin trusts nginx's X-Forwarded-For: per-address limits key on the listener,
    not on nginx, and what a listener writes in X-Forwarded-For itself is not believed."""
    burst = PER_ADDRESS_RATE * 5

    def listener(address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=edge, transport=transport, timeout=10)

    with listener("127.0.0.3") as first, listener("127.0.0.4") as second:
        assert _writes_until_limited(first) >= burst
        assert _writes_until_limited(second) >= burst, "one bucket for the whole audience"
        spoof = {"x-forwarded-for": "198.51.100.1"}
        assert _writes_until_limited(first, spoof) <= 1, "a listener chose its own address"
    assert "Traceback" not in server.log()


def test_nginx_caps_connections_per_listener(server, edge) -> None:
    """The origin exempts its trusted proxy from its per-address connection cap, so the
    proxy must cap each listener itself (nginx counts connections with a request in
    progress: here, requests whose body never comes)."""
    port = int(edge.rsplit(":", 1)[1])
    extra = 4
    held = [
        socket.create_connection(("127.0.0.1", port))
        for _ in range(MAX_CONNECTIONS_PER_CLIENT + extra)
    ]
    try:
        for sock in held:
            sock.sendall(b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        time.sleep(0.5)
        refused = 0
        for sock in held:
            sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                refused += sock.recv(64).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    assert refused == extra
    with httpx.Client(base_url=edge, timeout=10) as after:
        assert after.get("/api/health").status_code == 200


async def test_the_snapshot_and_the_join_reach_the_stream_workers(tmp_path) -> None:
    """Behind nginx, the two calls of every arriving listener go to the node's stream
    workers (STREAM), which answer them as the API does."""
    node = _node(
        tmp_path / "node",
        TOWNHALL_HTTP_TRUSTED_PROXIES="127.0.0.1/32",
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0",
    )
    try:
        _, space_id = await _host_and_space(node, "nginx_workers_host")
        before = await _healths(node)
        origin, workers = f"127.0.0.1:{node.port}", f"127.0.0.1:{node.port + 1}"
        with running_nginx(tmp_path / "nginx", [origin], [workers]) as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as crowd:
                snapshot = await crowd.get(f"/api/spaces/{space_id}")
                joins = [await crowd.post(f"/api/spaces/{space_id}/join") for _ in range(10)]
        after = await _healths(node)
    finally:
        stop_server(node)
    assert snapshot.status_code == 200 and snapshot.json()["id"] == space_id
    assert snapshot.headers["access-control-allow-origin"] == "*", "not a worker's answer"
    assert all(j.status_code == 200 and "ticket" in j.json() for j in joins), joins
    answered = sum(
        after[w]["joins"][kind] - before[w]["joins"][kind]
        for w in after
        for kind in ("local", "forwarded")
    )
    assert answered == 10, (before, after)
    fetches = [after[w]["snapshots"]["fetches"] - before[w]["snapshots"]["fetches"] for w in after]
    assert sum(fetches) >= 1
