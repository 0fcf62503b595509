"""Live features across two role-`all` nodes on one redis-server and one store (as in
test_state_two_nodes.py): a follower whose event stream is open on node B hears "live
now" for a space started on node A; a live clip asked of node B, whose program runs on
node A, is cut by A and its audio (decoded, FFT) served by either node."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, running_servers
from http_helpers import live_space, sign_up, speak_over_http, sse_events
from test_clips import FRAGMENT_S, RATE, _decode
from test_state_two_nodes import ADMIN_TOKEN, SHARED_SECRET, _two_nodes
from tones import ToneTrack, steady_tone_power

pytestmark = [pytest.mark.slow]
TONE_HZ = 660.0
PRESENT_DBFS = -30.0
SPEAK_S = 3.0
WAIT_S = 20.0
"""Generous: a loaded 2-core machine; what is measured is that it arrives at all."""


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    yield from _two_nodes(tmp_path, redis_url)


def _account(http: httpx.Client, name: str) -> tuple[str, dict[str, str]]:
    credentials = {"username": name, "password": "correct horse"}
    created = http.post("/api/users", json=credentials)
    assert created.status_code == 201, created.text
    token = http.post("/api/tokens", json=credentials).json()["token"]
    return created.json()["id"], {"authorization": f"Bearer {token}"}


def test_a_follower_connected_to_node_b_hears_live_now_from_node_a(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    with (
        httpx.Client(base_url=a.url, timeout=WAIT_S) as on_a,
        httpx.Client(base_url=b.url, timeout=WAIT_S) as on_b,
    ):
        host_id, host = _account(on_a, "famous")
        _, fan = _account(on_b, "fan")
        assert on_b.post("/api/users/famous/follow", headers=fan).status_code == 200
        space_id = on_a.post("/api/spaces", json={"title": "Now"}, headers=host).json()["id"]
        with on_b.stream("GET", "/api/me/events", headers=fan) as stream:
            assert stream.status_code == 200
            events = sse_events(stream.iter_lines(), within_s=WAIT_S)
            assert next(events)[0] == "ready"
            started = on_a.post(f"/api/spaces/{space_id}/start", headers=host)
            assert started.status_code == 200, started.text
            kind, data = next(events)
        assert kind == "notification"
        told = json.loads(data)
        assert told["kind"] == "space_live" and told["space_id"] == space_id
        assert told["host"] == {"id": host_id, "username": "famous"}
    for node in nodes:
        assert "Traceback" not in node.log()


@pytest.fixture
def apart(tmp_path: Path, redis_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two nodes as on two machines: each its own data dir (clips, recordings), one
    store file and one Redis between them."""
    env = {
        "TOWNHALL_STATE": redis_url,
        "TOWNHALL_STORE": f"sqlite:///{tmp_path / 'shared' / 'townhall.sqlite3'}",
        "TOWNHALL_SECRET": SHARED_SECRET,
        "TOWNHALL_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    (tmp_path / "shared").mkdir()
    with running_servers([tmp_path / "a", tmp_path / "b"], **env) as (a, b):
        yield a, b


@pytest.mark.usefixtures("loopback_ice")
async def test_a_live_clip_asked_of_node_b_is_cut_by_node_a_and_served_by_both(
    apart: tuple[RunningServer, RunningServer],
) -> None:
    node_a, node_b = apart
    async with (
        httpx.AsyncClient(base_url=node_a.url, timeout=WAIT_S) as a,
        httpx.AsyncClient(base_url=node_b.url, timeout=WAIT_S) as b,
    ):
        host = await sign_up(a, "host")
        space_id = (await live_space(a, host))["id"]
        speaker = await speak_over_http(a, space_id, host.headers, ToneTrack(TONE_HZ))
        try:
            await asyncio.sleep(SPEAK_S)
            asked = time.perf_counter()
            made = await b.post(f"/api/spaces/{space_id}/clips", json={"seconds": 2})
            took_s = time.perf_counter() - asked
        finally:
            await speaker.close()
        assert made.status_code == 201, made.text
        clip = made.json()
        assert clip["page_url"] == f"/c/{clip['id']}"
        assert (node_a.data_dir / "clips" / f"{clip['id']}.m4a").exists(), "cut by A"
        assert not (node_b.data_dir / "clips" / f"{clip['id']}.m4a").exists()

        from_a = await a.get(clip["url"])
        fetched = time.perf_counter()
        from_b = await b.get(clip["url"])
        fetch_s = time.perf_counter() - fetched
        print(f"\nclip asked of B, cut by A: {took_s * 1000:.0f} ms; "
              f"first read on B (fetched from A): {fetch_s * 1000:.0f} ms")  # fmt: skip
        for served in (from_a, from_b):
            assert served.status_code == 200, served.text
            assert served.headers["content-type"] == "audio/mp4"
            assert "immutable" in served.headers["cache-control"]
        assert from_b.content == from_a.content
        samples, seconds, codec = _decode(from_b.content)
        assert codec == "aac" and 2.0 <= seconds <= 2.0 + 2 * FRAGMENT_S
        power = steady_tone_power(samples, RATE, TONE_HZ)
        print(f"clip cut on A, served by B: {seconds:.2f} s, {TONE_HZ:g} Hz {power:.1f} dBFS")
        assert power > PRESENT_DBFS

        stranger = await b.get(f"{node_a.url}/internal/clips/{clip['id']}")
        assert stranger.status_code == 403, "only a node of the deployment is handed the file"
        forged = await b.post(f"{node_a.url}/internal/spaces/{space_id}/clips",
                              json={"seconds": 2})  # fmt: skip
        assert forged.status_code == 403

        assert (await b.delete(clip["url"], headers=host.headers)).status_code == 204
        assert (await a.get(clip["url"])).status_code == 404
        assert not (node_a.data_dir / "clips" / f"{clip['id']}.m4a").exists(), "A was told"
    for node in apart:
        assert "Traceback" not in node.log()
