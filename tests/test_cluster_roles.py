"""Origins and edges (issue 8, roles) on loopback: Redis, PostgreSQL, one origin, two
edges (the second with a stream worker) and nginx in front of the edges, all started
by the test.

A host starts a space through nginx (an edge forwards the go-live to the origin) and
speaks a 440 Hz tone from aiortc through an edge (the offer is forwarded too); join
answers send listeners to both edges with absolute URLs; listeners on each edge hear
the tone (FFT), each edge relaying the program from the origin once; the snapshot
counts the listeners of every node; HLS is served by an edge from the origin; a
request to speak sent through an edge reaches the host's studio on the origin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import Cluster, hold_stream, metric_samples, running_cluster, within
from http_helpers import Account, sign_up, speak_over_http
from nginx_server import HAS_NGINX
from tones import Recording, ToneTrack, read_live_stream, steady_tone_power

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("loopback_ice"),
    pytest.mark.skipif(not HAS_NGINX, reason="needs Debian's nginx"),
]

TONE_HZ = 440.0
PRESENT_DBFS = -30.0
LISTEN_S = 4.0
SETTLE_S = 30.0
"""Bound for what the cluster agrees on within a few ticks (generous: a loaded machine)."""
MAX_JOINS = 12
"""Joins made until both edges were handed out (each edge's choice spreads a burst)."""
SECRET = "one-origin-two-edges"
EXTRA = 3
"""Listeners added on edge 1 to make it the busier one."""
HLS_WINDOW_S = 10.0
"""An HLS listener counts this long after its last playlist poll (the default)."""
TICKS_S = 3.0
"""A few snapshot ticks: every node's count has been reported again."""
REGISTRY_S = 3.0
"""Two heartbeats (one a tick) and a registry read (every half second) at most."""
ADMIN_TOKEN = "operator-token-of-one-origin-two-edges"


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[Cluster]:
    env = {"TOWNHALL_SECRET": SECRET, "TOWNHALL_ADMIN_TOKEN": ADMIN_TOKEN}
    with running_cluster(tmp_path, redis_url, postgres_url, **env) as cluster:
        yield cluster


async def _live_connections(origin: httpx.AsyncClient, space_id: str) -> float:
    """The origin's own live-stream connections of the space (GET /metrics)."""
    samples = await metric_samples(origin, ADMIN_TOKEN, "townhall_listeners")
    for sample in samples:
        if sample.labels == {"space": space_id, "format": "live"}:
            return sample.value
    raise AssertionError(f"no live listeners metric for {space_id}")


async def _edge_metrics_show_the_relay(
    edge_url: str, space_id: str, cluster: Cluster, listeners: int
) -> None:
    """An edge's GET /metrics names the program it relays and its origin, the relay's
    lag (the newest chunk's age: the tone flows, so well under a second or two) and the
    space's listeners on the edge, its stream workers' included."""
    async with httpx.AsyncClient(base_url=edge_url, timeout=10) as edge:
        relayed = await metric_samples(edge, ADMIN_TOKEN, "townhall_relayed_programs")
        assert [(s.labels, s.value) for s in relayed] == [
            ({"space": space_id, "origin": cluster.origin.url}, 1.0)
        ]
        lag = await metric_samples(edge, ADMIN_TOKEN, "townhall_relayed_program_lag_seconds")
        assert [s.labels for s in lag] == [{"space": space_id}] and lag[0].value < SETTLE_S / 3
        main_lag = await metric_samples(edge, ADMIN_TOKEN, "townhall_relay_lag_seconds")
        assert any(s.labels == {"process": "main"} for s in main_lag), main_lag

        async def live_listeners() -> list[float]:
            samples = await metric_samples(edge, ADMIN_TOKEN, "townhall_listeners")
            live = {"space": space_id, "format": "live"}
            return [s.value for s in samples if s.labels == live]

        await within(SETTLE_S, live_listeners, lambda seen: seen == [listeners])


async def _joins_on_both_edges(
    http: httpx.AsyncClient,
    space_id: str,
    cluster: Cluster,
    headers: dict[str, str] | None = None,
    each: int = 2,
) -> dict[str, list[dict[str, Any]]]:
    """Joins until each edge was handed out `each` times (or MAX_JOINS), by edge."""
    by_edge: dict[str, list[dict[str, Any]]] = {url: [] for url in cluster.edge_stream_urls}
    for _ in range(MAX_JOINS):
        joined = await http.post(f"/api/spaces/{space_id}/join", headers=headers)
        assert joined.status_code == 200, joined.text
        answer = joined.json()
        live = answer["live_url"]
        base = next(
            (url for url in by_edge if live.startswith(f"{url}/live/{space_id}.aac?")), None
        )
        assert base is not None, f"not sent to an edge: {answer}"
        edge = cluster.edges[cluster.edge_stream_urls.index(base)]
        assert answer["hls_url"] == f"{edge.url}/hls/{space_id}/index.m3u8", answer
        by_edge[base].append(answer)
        if all(len(answers) >= each for answers in by_edge.values()):
            break
    assert all(by_edge.values()), f"a burst of joins left an edge out: {by_edge}"
    return by_edge


async def _busier_edge_gets_fewer(
    front: httpx.AsyncClient,
    space_id: str,
    cluster: Cluster,
    held: int,
    holders: list[asyncio.Task[None]],
) -> None:
    """Edges report their load in the heartbeat: with EXTRA more listeners on edge 1
    (tickets are good on any node), the next joins go to edge 2."""
    tickets = []
    for _ in range(EXTRA):
        joined = await front.post(f"/api/spaces/{space_id}/join")
        tickets.append(joined.json()["ticket"])
    streaming = [asyncio.Event() for _ in tickets]
    for ticket, flowing in zip(tickets, streaming, strict=True):
        url = f"{cluster.edges[0].url}/live/{space_id}.aac?ticket={ticket}"
        holders.append(asyncio.create_task(hold_stream(url, flowing)))
    await asyncio.wait_for(asyncio.gather(*(flowing.wait() for flowing in streaming)), SETTLE_S)
    await within(
        SETTLE_S, lambda: front.get(f"/api/spaces/{space_id}"),
        lambda answer: answer.json()["listeners"] == held + EXTRA,
    )  # fmt: skip
    await asyncio.sleep(REGISTRY_S)  # the edges' next heartbeats carry their loads
    for _ in range(EXTRA - 1):
        joined = (await front.post(f"/api/spaces/{space_id}/join")).json()
        assert joined["live_url"].startswith(cluster.edge_stream_urls[1]), joined


async def test_one_origin_two_edges_behind_nginx(cluster: Cluster) -> None:
    async with (
        httpx.AsyncClient(base_url=cluster.nginx, timeout=20) as front,
        httpx.AsyncClient(base_url=cluster.origin.url, timeout=20) as origin,
        httpx.AsyncClient(base_url=cluster.edges[0].url, timeout=20) as edge1,
        httpx.AsyncClient(base_url=cluster.edges[1].url, timeout=20) as edge2,
    ):
        host = await sign_up(front, "host")
        guest: Account = await sign_up(front, "guest")
        created = await front.post("/api/spaces", json={"title": "Roles"}, headers=host.headers)
        assert created.status_code == 201, created.text
        space_id = created.json()["id"]
        started = await edge1.post(f"/api/spaces/{space_id}/start", headers=host.headers)
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "live"
        playlist = await within(
            SETTLE_S,
            lambda: origin.get(f"/hls/{space_id}/index.m3u8"),
            lambda answer: answer.status_code == 200,
        )  # fmt: skip  (the stage runs on the origin: its packager answers)
        assert "#EXTM3U" in playlist.text

        # Any node's page lets the audio come from every edge, its stream workers' port
        # included: a join, or a re-join after a kill, may send the listener to any (a
        # node started before the others learns of them at its next tick).
        for node in (edge1, edge2, origin):
            await within(
                SETTLE_S, lambda node=node: node.get(f"/s/{space_id}"),
                lambda page: all(
                    url in page.headers["content-security-policy"]
                    for url in cluster.edge_stream_urls
                ),
            )  # fmt: skip

        speaker = await speak_over_http(edge2, space_id, host.headers, ToneTrack(TONE_HZ, 0.0))
        try:
            by_edge = await _joins_on_both_edges(front, space_id, cluster)

            # Listeners on both edges hear the tone.
            first = [answers[0]["live_url"] for answers in by_edge.values()]
            heard = [Recording() for _ in first]
            stop_at = time.time() + LISTEN_S
            readers = [
                read_live_stream(url, recording, stop_at)
                for url, recording in zip(first, heard, strict=True)
            ]
            await asyncio.wait_for(asyncio.gather(*readers), LISTEN_S + SETTLE_S)
            for url, recording in zip(first, heard, strict=True):
                power = steady_tone_power(recording.samples(), 48_000, TONE_HZ)
                print(f"\n{url.split('/live/')[0]}: 440 Hz at {power:.1f} dBFS")
                assert power > PRESENT_DBFS, (url, power)

            # Held listeners: the snapshot counts every node's, on every node.
            held = [answer["live_url"] for answers in by_edge.values() for answer in answers]
            streaming = [asyncio.Event() for _ in held]
            holders = [
                asyncio.create_task(hold_stream(url, flowing))
                for url, flowing in zip(held, streaming, strict=True)
            ]
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(flowing.wait() for flowing in streaming)), SETTLE_S
                )
                for node in (origin, edge1, edge2):
                    snapshot = await within(
                        SETTLE_S, lambda node=node: node.get(f"/api/spaces/{space_id}"),
                        lambda answer: answer.json()["listeners"] == len(held),
                    )  # fmt: skip
                    assert snapshot.status_code == 200
                print(f"{len(held)} listeners over two edges, counted on every node")
                assert await _live_connections(origin, space_id) == len(cluster.edges), (
                    "the origin sends the program once per edge"
                )
                for edge, answers in zip(cluster.edges, by_edge.values(), strict=True):
                    await _edge_metrics_show_the_relay(edge.url, space_id, cluster, len(answers))
                await _busier_edge_gets_fewer(front, space_id, cluster, len(held), holders)
            finally:
                for holder in holders:
                    holder.cancel()
                await asyncio.gather(*holders, return_exceptions=True)
        finally:
            await speaker.close()

        # A removal decided on the origin cuts the removed listener on both edges (the
        # edge itself, and the stream worker of the other) and keeps them out.
        troll = await sign_up(front, "troll")
        tickets = await _joins_on_both_edges(front, space_id, cluster, troll.headers, 1)
        urls = [answers[0]["live_url"] for answers in tickets.values()]
        streaming = [asyncio.Event() for _ in urls]
        trolling = [
            asyncio.create_task(hold_stream(url, flowing))
            for url, flowing in zip(urls, streaming, strict=True)
        ]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(flowing.wait() for flowing in streaming)), SETTLE_S
            )
            removed = await origin.post(
                f"/api/spaces/{space_id}/removals",
                json={"user_id": troll.id},
                headers=host.headers,
            )
            assert removed.status_code == 200, removed.text
            await asyncio.wait_for(asyncio.gather(*trolling), SETTLE_S)  # the streams end
        finally:
            for task in trolling:
                task.cancel()
            await asyncio.gather(*trolling, return_exceptions=True)
        for url in urls:
            async with httpx.AsyncClient(timeout=10) as http:
                again = await http.get(url)
            assert again.status_code == 403 and again.json()["error"]["code"] == "removed"

        # HLS on an edge is the origin's, through the edge's cache.
        via_edge = await edge1.get(f"/hls/{space_id}/index.m3u8")
        assert via_edge.status_code == 200, via_edge.text
        assert via_edge.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert via_edge.headers["access-control-allow-origin"] == "*"
        segment = next(line for line in via_edge.text.splitlines() if line.endswith(".m4s"))
        direct = await origin.get(f"/hls/{space_id}/{segment}")
        cached = [await edge1.get(f"/hls/{space_id}/{segment}") for _ in range(2)]
        assert all(answer.content == direct.content for answer in cached)
        assert (await edge1.get(f"/hls/{space_id}/nothing.m4s")).status_code == 404

        # An HLS listener of an edge is counted once: by the edge, not by the origin,
        # whose playlist polls came from the edge's cache.
        assert (await edge1.get(f"/hls/{space_id}/index.m3u8")).status_code == 200
        await within(
            HLS_WINDOW_S / 2, lambda: origin.get(f"/api/spaces/{space_id}"),
            lambda answer: answer.json()["listeners"] == 1,
        )  # fmt: skip
        await asyncio.sleep(TICKS_S)
        assert (await origin.get(f"/api/spaces/{space_id}")).json()["listeners"] == 1

        # A request to speak sent through an edge reaches the host's studio.
        asked = await edge2.post(f"/api/spaces/{space_id}/speak-requests", headers=guest.headers)
        assert asked.status_code == 202, asked.text

        async def studio_requests() -> list[str]:
            seen = await origin.get(f"/api/spaces/{space_id}/requests", headers=host.headers)
            assert seen.status_code == 200, seen.text
            return [person["id"] for person in seen.json()["requests"]]

        await within(SETTLE_S, studio_requests, lambda ids: guest.id in ids)

        ended = await front.post(f"/api/spaces/{space_id}/end", headers=host.headers)
        assert ended.status_code == 200, ended.text
