"""Issue 8, failover on a real origin/edge cluster: Redis, PostgreSQL, two origins
sharing a recordings directory, two edges (the second with a stream worker) and nginx
in front of the edges, all on loopback (tests/cluster.py).

A recorded space goes live on one origin; a 440 Hz speaker and two listeners (their
joins and re-joins through nginx, as a listener page's are) hear it through an edge.
The door admits one listener per node and then makes newcomers wait, so a re-join that
were not honoured would wait in line.

- SIGKILL the edge of the first listener, by PID: its listeners re-join with their
  tickets (no wait), are sent to the other edge, and hear audio again within 5 s.
- SIGKILL the origin that holds the stage: the space comes back on the second origin
  within 10 s (the speaker's re-offer through an edge is answered there), the listeners
  hear the speaker's new 660 Hz tone through the edges' relays (FFT), and the recording
  holds the audio up to 2 s before the kill and what came after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import Cluster, metric_samples, running_cluster, within
from conftest import RunningServer
from http_helpers import sign_up
from nginx_server import HAS_NGINX
from test_failover import (
    ANALYSIS_S,
    RejoiningListener,
    _decode,
    _iso_seconds,
    _last_second_with,
    offer_until_accepted,
)
from tones import steady_tone_power
from townhall.media import SAMPLE_RATE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("loopback_ice"),
    pytest.mark.skipif(not HAS_NGINX, reason="needs Debian's nginx"),
]

SECRET = "two-origins-two-edges"
ADMIN_TOKEN = "operator-token-of-two-origins-two-edges"
BEFORE_HZ = 440.0
AFTER_HZ = 660.0
PRESENT_DBFS = -30.0
SPOKEN_S = 4.0
"""How long the speaker speaks before each kill and after the origin's."""
AUDIO_AGAIN_S = 5.0
"""The issue's bound: a listener whose edge died hears audio again within this."""
BACK_WITHIN_S = 10.0
"""The issue's bound for the space to be back on another origin."""
RECORDING_LOSS_S = 2.0
"""The recording may lose at most this much before the kill."""
SETTLE_S = 30.0
"""Bound for what the cluster agrees on within a few ticks (generous: a loaded machine)."""
SLOW_DOOR_PER_S = "0.05"
"""Admissions per second per node: after its burst (one), a newcomer waits in line."""


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[Cluster]:
    env = {
        "TOWNHALL_SECRET": SECRET,
        "TOWNHALL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TOWNHALL_SHARED_RECORDINGS": str(tmp_path / "shared-recordings"),
        "TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": SLOW_DOOR_PER_S,
    }
    with running_cluster(tmp_path, redis_url, postgres_url, origins=2, **env) as cluster:
        yield cluster


async def _holder(origins: list[RunningServer]) -> RunningServer:
    """The origin whose stage runs the one live space."""

    async def live_spaces() -> list[float]:
        counts = []
        for origin in origins:
            async with httpx.AsyncClient(base_url=origin.url, timeout=10) as http:
                samples = await metric_samples(http, ADMIN_TOKEN, "townhall_live_spaces")
            counts.append(samples[0].value)
        return counts

    counts = await within(SETTLE_S, live_spaces, lambda counts: sum(counts) == max(counts) == 1)
    return origins[counts.index(1)]


async def _one_ticket_per_node(
    front: httpx.AsyncClient, cluster: Cluster, space_id: str
) -> list[dict[str, Any]]:
    """Join answers from each edge's door (through nginx) and each origin's: one ticket
    each before the slow door makes newcomers wait."""
    answers = [(await front.post(f"/api/spaces/{space_id}/join")).json() for _ in cluster.edges]
    for origin in cluster.origins:
        async with httpx.AsyncClient(base_url=origin.url, timeout=20) as http:
            answers.append((await http.post(f"/api/spaces/{space_id}/join")).json())
    assert all("ticket" in answer for answer in answers), answers
    return answers


def _tone_lately(listener: RejoiningListener, hz: float, seconds: float = 2.0) -> float:
    return steady_tone_power(listener.heard.samples(since=time.time() - seconds), SAMPLE_RATE, hz)


async def _heard_again(listener: RejoiningListener, killed: float, within_s: float) -> float:
    """Seconds from the kill to the first audio the listener got after it."""
    deadline = time.monotonic() + within_s
    while (again := listener.first_audio_after(killed + 0.5)) is None:
        assert time.monotonic() < deadline, f"no audio within {within_s} s of the kill"
        await asyncio.sleep(0.1)
    return again - killed


async def test_an_edge_kill_and_an_origin_kill_on_a_two_origin_two_edge_cluster(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(base_url=cluster.nginx, timeout=20) as front:
        host = await sign_up(front, "host")
        created = await front.post(
            "/api/spaces", json={"title": "Failover", "record": True}, headers=host.headers
        )
        assert created.status_code == 201, created.text
        space_id = created.json()["id"]
        started = await front.post(f"/api/spaces/{space_id}/start", headers=host.headers)
        assert started.status_code == 200, started.text
        holder = await _holder(cluster.origins)

        speaker = await offer_until_accepted(front, space_id, host, BEFORE_HZ, BACK_WITHIN_S)
        answers = await _one_ticket_per_node(front, cluster, space_id)
        # The victim edge holds one listener, the other the rest: the registry names the
        # victim as the least loaded edge, and keeps doing so for seconds after its death.
        victim = cluster.edge_of(answers[0]["live_url"])
        other = cluster.edge_stream_urls[1 - victim]
        for answer in answers[1:]:
            base = cluster.edge_stream_urls[cluster.edge_of(answer["live_url"])]
            answer["live_url"] = answer["live_url"].replace(base, other, 1)  # good anywhere
        listeners = [RejoiningListener(front, space_id, answer) for answer in answers]
        listening = [asyncio.create_task(one.run(time.time() + 120)) for one in listeners]
        try:
            await asyncio.sleep(SPOKEN_S)  # the edges' heartbeats carry their loads
            for listener in listeners:
                assert _tone_lately(listener, BEFORE_HZ) > PRESENT_DBFS, listener.answer
            newcomer = (await front.post(f"/api/spaces/{space_id}/join")).json()
            assert "wait" in newcomer, f"the lines are long: a newcomer waits ({newcomer})"

            # SIGKILL the first listener's edge: it hears again via the other at once.
            cluster.edges[victim].kill_hard()
            edge_killed = time.time()
            moved = listeners[0]
            again_s = await _heard_again(moved, edge_killed, SETTLE_S)
            print(f"\nedge {victim + 1} killed -> its listener hears again: {again_s:.1f} s")
            assert again_s < AUDIO_AGAIN_S
            assert moved.rejoins, "the listener never re-joined"
            sent_to = [cluster.edge_of(answer["live_url"]) for answer in moved.rejoins]
            assert victim not in sent_to, "a re-join was sent back to the dead edge"
            await asyncio.sleep(1.0)
            for listener in listeners:
                assert _tone_lately(listener, BEFORE_HZ, 1.0) > PRESENT_DBFS

            # SIGKILL the origin that holds the stage: the space comes back on the other.
            holder.kill_hard()
            origin_killed = time.time()
            await speaker.close()
            speaker = await offer_until_accepted(front, space_id, host, AFTER_HZ, BACK_WITHIN_S)
            back_s = time.time() - origin_killed
            print(f"origin killed -> the speaker's re-offer answered on the other: {back_s:.1f} s")
            assert back_s < BACK_WITHIN_S
            for listener in listeners:
                again_s = await _heard_again(listener, origin_killed, SETTLE_S)
                print(f"origin killed -> a listener hears again: {again_s:.1f} s")
                assert again_s < BACK_WITHIN_S
            await asyncio.sleep(SPOKEN_S)
            for listener in listeners:
                assert _tone_lately(listener, AFTER_HZ) > PRESENT_DBFS, listener.answer
        finally:
            for task in listening:
                task.cancel()
            await asyncio.gather(*listening, return_exceptions=True)
            await speaker.close()

        survivor = next(origin for origin in cluster.origins if origin is not holder)
        assert await _holder([survivor]) is survivor
        ended = await front.post(f"/api/spaces/{space_id}/end", headers=host.headers)
        assert ended.status_code == 200, ended.text
        recording = await within(  # the holder joins the parts once it hears of the end
            SETTLE_S,
            lambda: front.get(f"/api/spaces/{space_id}/recording"),
            lambda answer: answer.status_code == 200,
        )

    whole = _decode(recording.content)
    held_before_kill = origin_killed - _iso_seconds(started.json()["started_at"])
    last_before = _last_second_with(whole, BEFORE_HZ) + ANALYSIS_S
    print(
        f"recording: {len(whole) / SAMPLE_RATE:.1f} s; the first origin held the space "
        f"{held_before_kill:.1f} s, its tone reaches {last_before:.1f} s into the file"
    )
    assert last_before >= held_before_kill - RECORDING_LOSS_S
    assert _last_second_with(whole, AFTER_HZ) > last_before, "the recording continued"
