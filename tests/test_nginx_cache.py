"""nginx in front of townhall (deploy/nginx): the crowd's reads stop at the cache.

Debian's nginx, started by the test with the shipped template: snapshot and
HLS playlist requests from a crowd reach the origin about once per second,
segments once, and the live stream passes through unbuffered.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import string
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port

TEMPLATE = Path(__file__).parents[1] / "deploy" / "nginx" / "townhall.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs Debian's nginx")


@pytest.fixture
def edge(server, tmp_path):
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    config = string.Template(TEMPLATE.read_text()).safe_substitute(
        PREFIX=str(prefix),
        ORIGIN=f"127.0.0.1:{server.port}",
        LISTEN=f"127.0.0.1:{port}",
        USER_DIRECTIVE="user root;" if os.geteuid() == 0 else "",
    )
    (prefix / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/api/health", timeout=1)
            break
        except httpx.HTTPError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


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
        base_url=edge, timeout=10, limits=httpx.Limits(max_connections=50)
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
