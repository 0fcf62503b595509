"""Stream workers end to end: a real server with two workers and an aiortc speaker.

Listeners on the stream port hear the speaker's tone (ADTS decoded with PyAV,
checked by FFT); forged and expired tickets are refused by the worker without a
relay to the origin; the workers' counts reach the snapshot; ending the space
ends every stream; a worker killed with SIGKILL is replaced.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from conftest import RunningServer, start_server, stop_server
from tones import ToneTrack, tone_power
from townhall.admission.signing import Signer
from townhall.admission.tickets import issue_ticket
from townhall.stage.ice import use_host_addresses

SECRET = "edge-test-secret-0123456789abcdef"
TONE_HZ = 440.0
PRESENT_DBFS = -30.0
LISTENERS = 6
LISTEN_S = 3.0
WAIT_S = 15.0
POLL_S = 0.1
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("edge"),
        TOWNHALL_SECRET=SECRET,
        TOWNHALL_EDGE_STREAM_WORKERS="2",
        TOWNHALL_EDGE_RELAY_GRACE_S="1",
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses([])


def _stream_url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.port + 1}"


async def _workers(server: RunningServer, want: int = 2) -> dict[str, dict]:
    """Each worker's /healthz, polled until ``want`` distinct workers answered (the
    kernel spreads connections over them by address hash)."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + WAIT_S
    async with httpx.AsyncClient(timeout=5) as http:
        while len(seen) < want and time.monotonic() < deadline:
            try:
                health = (await http.get(_stream_url(server) + "/healthz")).json()
                seen[health["worker"]] = health
            except httpx.TransportError:
                await asyncio.sleep(POLL_S)
    assert len(seen) == want, f"only {sorted(seen)} answered:\n{server.log()[-3000:]}"
    return seen


async def _host(http: httpx.AsyncClient, name: str) -> dict[str, str]:
    await http.post("/api/users", json={"username": name, "password": "password123"})
    token = await http.post("/api/tokens", json={"username": name, "password": "password123"})
    return {"Authorization": f"Bearer {token.json()['token']}"}


async def _live_space(http: httpx.AsyncClient, host: dict[str, str]) -> str:
    space = (await http.post("/api/spaces", json={"title": "edge"}, headers=host)).json()
    assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).status_code == 200
    return space["id"]


async def _speaker(http: httpx.AsyncClient, space_id: str, host: dict[str, str]):  # type: ignore[no-untyped-def]
    pc = RTCPeerConnection()
    tone = ToneTrack(TONE_HZ, start_after_s=0.3)
    pc.addTrack(tone)
    await pc.setLocalDescription(await pc.createOffer())
    answer = await http.post(
        f"/api/spaces/{space_id}/stage/offer",
        json={"type": "offer", "sdp": pc.localDescription.sdp},
        headers=host,
    )
    assert answer.status_code == 200, answer.text
    await pc.setRemoteDescription(RTCSessionDescription(**answer.json()))
    return pc, tone


async def _listen(
    url: str, until_eof_or_s: float, stop: asyncio.Event | None = None
) -> tuple[np.ndarray, bool]:
    """Decoded mono audio of the live stream until the server ends it (True), the time is
    up or ``stop`` is set (False)."""
    codec = av.CodecContext.create("aac", "r")
    samples: list[np.ndarray] = []
    deadline = time.monotonic() + until_eof_or_s
    ended = False
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "audio/aac"
        assert response.headers["access-control-allow-origin"] == "*"
        stream = response.aiter_raw()
        while not (stop is not None and stop.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(anext(stream), remaining)
            except StopAsyncIteration:
                ended = True
                break
            except TimeoutError:
                break
            for packet in codec.parse(chunk):
                samples.extend(frame.to_ndarray().mean(axis=0) for frame in codec.decode(packet))
    return (np.concatenate(samples) if samples else np.zeros(0)), ended


async def test_forged_and_expired_tickets_never_reach_the_origin(edge_server) -> None:
    before = await _workers(edge_server)
    forged = issue_ticket(Signer(b"not-our-key-0123456789"), "abcdefghijkl", "x", time.time(), 60)
    expired = issue_ticket(Signer(SECRET.encode()), "abcdefghijkl", "x", time.time() - 100, 60)
    async with httpx.AsyncClient(timeout=5) as http:
        for ticket, code in ((forged.token, "forged"), (expired.token, "expired")):
            for _ in range(10):
                answer = await http.get(
                    f"{_stream_url(edge_server)}/live/abcdefghijkl.aac?ticket={ticket}"
                )
                assert answer.status_code == 403
                assert answer.json()["error"]["code"] == code
        no_ticket = await http.get(f"{_stream_url(edge_server)}/live/abcdefghijkl.aac")
        assert no_ticket.status_code == 401
    after = await _workers(edge_server)
    refused = sum(
        w["forged_or_expired"] - before[w["worker"]]["forged_or_expired"] for w in after.values()
    )
    assert refused == 20
    assert sum(w["relays_opened"] for w in after.values()) == sum(
        w["relays_opened"] for w in before.values()
    ), "a refused ticket opened a relay to the origin"


async def test_listeners_on_the_stream_port_hear_the_speaker_and_are_counted(edge_server) -> None:
    async with httpx.AsyncClient(base_url=edge_server.url, timeout=15) as http:
        host = await _host(http, "edgehost")
        space_id = await _live_space(http, host)
        pc, tone = await _speaker(http, space_id, host)
        try:
            joins = [
                (await http.post(f"/api/spaces/{space_id}/join")).json() for _ in range(LISTENERS)
            ]
            for join in joins:
                assert join["live_url"].startswith(_stream_url(edge_server) + "/live/")
            stop = asyncio.Event()
            listeners = [
                asyncio.create_task(_listen(j["live_url"], WAIT_S, stop)) for j in joins
            ]
            counted = 0
            started = time.monotonic()
            while time.monotonic() - started < WAIT_S - 2:
                await asyncio.sleep(0.25)
                counted = (await http.get(f"/api/spaces/{space_id}")).json()["listeners"]
                if counted == LISTENERS and time.monotonic() - started >= LISTEN_S:
                    break
            stop.set()
            results = await asyncio.gather(*listeners)
            workers = await _workers(edge_server)
        finally:
            await pc.close()
    print(f"\nsnapshot counted {counted} of {LISTENERS}; workers: "
          + ", ".join(f"{w['worker']}={w['streams_started']}" for w in workers.values()))
    assert counted == LISTENERS
    assert tone.tone_started_at is not None
    for audio, ended in results:
        assert not ended
        assert audio.size > 48_000, "less than a second of audio"
        level = tone_power(audio[-48_000:], 48_000, TONE_HZ)
        assert level > PRESENT_DBFS, f"440 Hz at {level:.1f} dBFS"
        assert tone_power(audio[-48_000:], 48_000, 660.0) < level - 20


async def test_ending_the_space_ends_every_stream(edge_server) -> None:
    async with httpx.AsyncClient(base_url=edge_server.url, timeout=15) as http:
        host = await _host(http, "edgeender")
        space_id = await _live_space(http, host)
        joins = [(await http.post(f"/api/spaces/{space_id}/join")).json() for _ in range(4)]
        listeners = [asyncio.create_task(_listen(j["live_url"], WAIT_S)) for j in joins]
        await asyncio.sleep(1.0)
        ended_at = time.monotonic()
        assert (await http.post(f"/api/spaces/{space_id}/end", headers=host)).status_code == 200
        results = await asyncio.gather(*listeners)
        took = time.monotonic() - ended_at
        async with httpx.AsyncClient(timeout=5) as fresh:
            late = await fresh.get(joins[0]["live_url"])
    print(f"\nstreams ended {took:.2f} s after the space ended")
    assert all(ended for _, ended in results)
    assert took < WAIT_S - 1
    assert late.status_code in (404, 409)


async def test_a_killed_worker_is_restarted(edge_server) -> None:
    pids = {w["pid"] for w in (await _workers(edge_server)).values()}
    victim = min(pids)
    assert f"(pid {victim})" in edge_server.log()  # one the server started, not a stranger
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    now_pids: set[int] = set()
    while time.monotonic() < deadline:
        now_pids = {w["pid"] for w in (await _workers(edge_server)).values()}
        if victim not in now_pids and len(now_pids) == 2:
            break
        await asyncio.sleep(0.25)
    assert victim not in now_pids and len(now_pids) == 2, edge_server.log()[-3000:]
    assert re.search(rf"pid {victim}\) exited with -9; restarting", edge_server.log())


def test_stream_workers_stop_with_the_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s", TOWNHALL_EDGE_STREAM_WORKERS="1")
    try:
        health = asyncio.run(_workers(server, want=1))
        pid = next(iter(health.values()))["pid"]
    finally:
        stop_server(server)
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn exits by the signal
    assert "stream worker 0 stopped" in server.log(), server.log()[-3000:]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(POLL_S)
    assert not Path(f"/proc/{pid}").exists(), "the worker outlived the server"
