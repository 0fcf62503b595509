"""Stream workers end to end: a real server with two workers and an aiortc speaker.

Listeners on the stream port hear the speaker's tone (ADTS decoded with PyAV,
checked by FFT); forged and expired tickets are refused by the worker without a
relay to the origin; the workers' counts reach the snapshot; a listener the
host removes is cut on every worker and refused after, while the others play
on; ending the space ends every stream; a worker killed with SIGKILL is
replaced.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
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

SECRET = "edge-test-secret-0123456789abcdef"
TONE_HZ = 440.0
PRESENT_DBFS = -30.0
LISTENERS = 6
LISTEN_S = 3.0
WAIT_S = 15.0
POLL_S = 0.1
REMOVED_CONNECTIONS = 1
"""One removed listener's streams: one ticket serves one stream at a time per process
(issue 6; a second connection would replace the first)."""
REMOVAL_CUT_MAX_S = 5.0
"""Bound on removal -> the removed listener's stream ends; expected within a report
interval (1 s) plus a round trip, measured and printed."""
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]


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
    url: str,
    until_eof_or_s: float,
    stop: asyncio.Event | None = None,
    opened: asyncio.Event | None = None,
) -> tuple[np.ndarray, bool]:
    """Decoded mono audio of the live stream until the server ends it (True), the time is
    up or ``stop`` is set (False); ``opened`` is set once the stream has answered 200."""
    codec = av.CodecContext.create("aac", "r")
    samples: list[np.ndarray] = []
    deadline = time.monotonic() + until_eof_or_s
    ended = False
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"] == "audio/aac"
        assert response.headers["access-control-allow-origin"] == "*"
        if opened is not None:
            opened.set()
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
            listeners = [asyncio.create_task(_listen(j["live_url"], WAIT_S, stop)) for j in joins]
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
    print(
        f"\nsnapshot counted {counted} of {LISTENERS}; workers: "
        + ", ".join(f"{w['worker']}={w['streams_started']}" for w in workers.values())
    )
    assert counted == LISTENERS
    assert tone.tone_started_at is not None
    for audio, ended in results:
        assert not ended
        assert audio.size > 48_000, "less than a second of audio"
        level = tone_power(audio[-48_000:], 48_000, TONE_HZ)
        assert level > PRESENT_DBFS, f"440 Hz at {level:.1f} dBFS"
        assert tone_power(audio[-48_000:], 48_000, 660.0) < level - 20


@dataclass
class Tap:
    """A live stream read in the background: bytes so far and when the server ended it."""

    url: str
    received: int = 0
    ended_at: float | None = None

    async def run(self, until_s: float, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + until_s
        async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", self.url) as response:
            assert response.status_code == 200, await response.aread()
            stream = response.aiter_raw()
            while not stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
                try:
                    self.received += len(await asyncio.wait_for(anext(stream), remaining))
                except StopAsyncIteration:
                    self.ended_at = time.monotonic()
                    return
                except TimeoutError:
                    return


async def _ticket(
    http: httpx.AsyncClient, space_id: str, headers: dict[str, str] | None = None
) -> dict[str, str]:
    answer = await http.post(f"/api/spaces/{space_id}/join", headers=headers)
    assert answer.status_code == 200 and "live_url" in answer.json(), answer.text
    return answer.json()


async def _until(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(POLL_S / 2)


async def test_a_removed_listener_is_cut_on_the_workers_and_refused_after(edge_server) -> None:
    before = await _workers(edge_server)
    async with httpx.AsyncClient(base_url=edge_server.url, timeout=15) as http:
        host = await _host(http, "edgeremover")
        space_id = await _live_space(http, host)
        guest = await _host(http, "edgeremoved")
        guest_id = (await http.get("/api/me", headers=guest)).json()["id"]
        guest_join = await _ticket(http, space_id, guest)
        others = [await _ticket(http, space_id) for _ in range(2)]
        removed = [Tap(guest_join["live_url"]) for _ in range(REMOVED_CONNECTIONS)]
        kept = [Tap(j["live_url"]) for j in others]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(t.run(WAIT_S, stop)) for t in removed + kept]
        try:
            await _until(lambda: all(t.received for t in removed + kept), "every stream")
            removed_at = time.monotonic()
            answer = await http.post(
                f"/api/spaces/{space_id}/removals", json={"user_id": guest_id}, headers=host
            )
            assert answer.status_code == 200, answer.text
            await _until(lambda: all(t.ended_at for t in removed), "the removed streams to end")
            cut_after = [t.ended_at - removed_at for t in removed if t.ended_at]
            heard = [t.received for t in kept]
            await asyncio.sleep(1.5)
            assert all(t.ended_at is None for t in kept), "a listener who was not removed was cut"
            assert all(t.received > h for t, h in zip(kept, heard, strict=True))
            async with httpx.AsyncClient(timeout=5) as fresh:
                again = [await fresh.get(guest_join["live_url"]) for _ in range(6)]
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        rejoin = await http.post(f"/api/spaces/{space_id}/join", headers=guest)
    after = await _workers(edge_server)
    cut_by_worker = {
        w["worker"]: w["removals"]["cut"] - before[w["worker"]]["removals"]["cut"]
        for w in after.values()
    }
    cut = sum(cut_by_worker.values())
    refused = sum(
        w["removals"]["refused"] - before[w["worker"]]["removals"]["refused"]
        for w in after.values()
    )
    print(
        "\nremoval -> streams ended after "
        + ", ".join(f"{s:.2f} s" for s in cut_after)
        + f"; workers cut {cut_by_worker}, refused {refused}"
    )
    assert max(cut_after) < REMOVAL_CUT_MAX_S
    assert cut == REMOVED_CONNECTIONS
    for refusal in again:
        assert refusal.status_code == 403
        assert refusal.json()["error"]["code"] == "removed"
        assert refusal.headers["access-control-allow-origin"] == "*"
    assert refused == len(again)
    assert rejoin.status_code == 403 and rejoin.json()["error"]["code"] == "removed"


async def test_a_blocked_listener_is_cut_on_the_workers_and_kept_out_of_the_next_space(
    edge_server,
) -> None:
    """Blocking (moderation) rides the removal path: cut now, refused in every space."""
    async with httpx.AsyncClient(base_url=edge_server.url, timeout=15) as http:
        host = await _host(http, "edgeblocker")
        space_id = await _live_space(http, host)
        guest = await _host(http, "edgeblocked")
        guest_id = (await http.get("/api/me", headers=guest)).json()["id"]
        stream = Tap((await _ticket(http, space_id, guest))["live_url"])
        kept = Tap((await _ticket(http, space_id))["live_url"])
        stop = asyncio.Event()
        tasks = [asyncio.create_task(t.run(WAIT_S, stop)) for t in (stream, kept)]
        try:
            await _until(lambda: stream.received and kept.received, "both streams")
            blocked = await http.post("/api/me/blocks", json={"user_id": guest_id}, headers=host)
            assert blocked.status_code == 201, blocked.text
            await _until(lambda: stream.ended_at, "the blocked listener's stream to end")
            assert kept.ended_at is None
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        refused = await http.get(stream.url)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "removed"
        assert (await http.post(f"/api/spaces/{space_id}/end", headers=host)).status_code == 200
        next_space = await _live_space(http, host)
        rejoin = await http.post(f"/api/spaces/{next_space}/join", headers=guest)
        assert rejoin.status_code == 403 and rejoin.json()["error"]["code"] == "removed"
        await http.post(f"/api/spaces/{next_space}/end", headers=host)


async def test_ending_the_space_ends_every_stream(edge_server) -> None:
    async with httpx.AsyncClient(base_url=edge_server.url, timeout=15) as http:
        host = await _host(http, "edgeender")
        space_id = await _live_space(http, host)
        joins = [(await http.post(f"/api/spaces/{space_id}/join")).json() for _ in range(4)]
        opened = [asyncio.Event() for _ in joins]
        listeners = [
            asyncio.create_task(_listen(j["live_url"], WAIT_S, opened=o))
            for j, o in zip(joins, opened, strict=True)
        ]
        # Every stream open before the end (a fixed 1 s sleep was not enough at load 15:
        # a listener that connected after the end was refused 409, as it should be).
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), WAIT_S)
        await asyncio.sleep(0.5)
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
