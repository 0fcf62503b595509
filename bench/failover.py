"""How long a space is gone when its origin dies: SIGKILL the origin, measure the way
back on the other one (issue 8, "Failover").

    scripts/isolated .venv/bin/python -m bench.failover [--rounds 5]

Each round starts two `townhall serve` nodes (role all) on a private redis-server and
PostgreSQL (a fresh database and Redis db per round) with a shared recordings
directory, puts a recorded space live on A with a 440 Hz aiortc speaker and a listener
(joined through B, streaming from A), then SIGKILLs A by PID and measures:

- kill -> the speaker's re-offer (sent through B every 0.25-2 s) is answered;
- kill -> the listener (re-joining through B with its ticket) receives audio again;
- the recording's loss: seconds A held the space minus the seconds of A's tone in the
  joined recording (the issue's bound: at most 2 s);
- with nobody prodding B (a second pass, no speaker, no listener): kill -> B's join
  answer points at B (the heartbeat path: A leaves the registry after 5 ticks).

With `--mode edge`, each round starts the loopback cluster of the tests instead
(tests/cluster.py: one origin, two edges, the second with a stream worker, nginx in
front), puts four listeners on it through nginx, two on each edge, and SIGKILLs one
edge: kill -> each of its listeners (re-joining through nginx with its ticket) receives
audio again, the worst of the two per round; beside it, the longest silence of the
other edge's listeners over the same seconds (the peer: what a listener the kill did
not touch heard).

With `--mode origin`, each round starts the cluster with two origins twice and stops
the origin that holds the stage, once by SIGKILL and once by SIGTERM (the graceful
stop hands the space over at once): kill -> the speaker's re-offer through nginx is
answered, and kill -> the listeners (on the edges) hear the re-offered speaker's tone
(660 Hz, FFT), side by side.

Prints each round and the median and worst. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cluster import Cluster, metric_samples, running_cluster, within  # noqa: E402
from conftest import NO_LAG_DOOR, RunningServer, start_server, stop_server  # noqa: E402
from http_helpers import sign_up  # noqa: E402
from pg_server import PostgresServer, start_postgres  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from test_failover import (  # noqa: E402
    AFTER_HZ,
    ANALYSIS_S,
    BACK_WITHIN_S,
    BEFORE_HZ,
    PRESENT_DBFS,
    RejoiningListener,
    _decode,
    _last_second_with,
    offer_until_accepted,
)
from townhall.stage.ice import use_host_addresses  # noqa: E402

SECRET = "bench-failover-one-deployment"
HELD_S = 5.0
AFTER_S = 3.0
HEARTBEAT_WAIT_S = 20.0
CLUSTER_LISTENERS = 4
"""Listeners per cluster round: half on each edge."""
HEARD_AGAIN_WAIT_S = 15.0
"""How long a round waits for a listener to hear audio again (inf past it)."""
ADMIN_TOKEN = "bench-failover-operator-token-of-the-cluster"


def _env(redis: RedisServer, postgres: PostgresServer, recordings: Path) -> dict[str, str]:
    return {
        **NO_LAG_DOOR,
        "TOWNHALL_STATE": redis.fresh_url(),
        "TOWNHALL_STORE": postgres.url(postgres.create_database()),
        "TOWNHALL_SECRET": SECRET,
        "TOWNHALL_SHARED_RECORDINGS": str(recordings),
        "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
    }


async def _prodded_round(a_node: RunningServer, b_node: RunningServer) -> dict[str, float]:
    async with (
        httpx.AsyncClient(base_url=a_node.url, timeout=15) as a,
        httpx.AsyncClient(base_url=b_node.url, timeout=15) as b,
    ):
        host = await sign_up(b, "host")
        created = await b.post(
            "/api/spaces", json={"title": "bench", "record": True}, headers=host.headers
        )
        space_id = created.json()["id"]
        started = await a.post(f"/api/spaces/{space_id}/start", headers=host.headers)
        joined = (await b.post(f"/api/spaces/{space_id}/join")).json()
        speaker = await offer_until_accepted(b, space_id, host, BEFORE_HZ, BACK_WITHIN_S)
        listener = RejoiningListener(b, space_id, joined)
        listening = asyncio.create_task(listener.run(time.time() + 60))
        try:
            await asyncio.sleep(HELD_S)
            a_node.kill_hard()
            killed = time.time()
            await speaker.close()
            speaker = await offer_until_accepted(b, space_id, host, 660.0, BACK_WITHIN_S)
            offer_s = time.time() - killed
            await asyncio.sleep(AFTER_S)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await speaker.close()
        again = listener.first_audio_after(killed + 0.5)
        await b.post(f"/api/spaces/{space_id}/end", headers=host.headers)
        recording = await b.get(f"/api/spaces/{space_id}/recording")
    held = killed - datetime.fromisoformat(started.json()["started_at"]).timestamp()
    kept = _last_second_with(_decode(recording.content), BEFORE_HZ) + ANALYSIS_S
    return {
        "offer_answered_s": offer_s,
        "listener_audio_s": (again - killed) if again is not None else float("inf"),
        "recording_loss_s": held - kept,
    }


async def _heartbeat_round(a_node: RunningServer, b_node: RunningServer) -> float:
    async with (
        httpx.AsyncClient(base_url=a_node.url, timeout=15) as a,
        httpx.AsyncClient(base_url=b_node.url, timeout=15) as b,
    ):
        host = await sign_up(b, "host2")
        created = await b.post("/api/spaces", json={"title": "hb"}, headers=host.headers)
        space_id = created.json()["id"]
        await a.post(f"/api/spaces/{space_id}/start", headers=host.headers)
        a_node.kill_hard()
        killed = time.monotonic()
        while time.monotonic() - killed < HEARTBEAT_WAIT_S:
            answer = (await b.post(f"/api/spaces/{space_id}/join")).json()
            if answer.get("live_url", "").startswith("/"):
                return time.monotonic() - killed
            await asyncio.sleep(0.05)
    return float("inf")


async def _heard_again(
    listeners: list[RejoiningListener], killed: float, hz: float | None = None
) -> float:
    """Seconds from the kill until every listener received audio again (the worst);
    with `hz`, until each heard that tone (the speaker's re-offer, on the new origin)."""
    deadline = time.time() + HEARD_AGAIN_WAIT_S
    while time.time() < deadline:
        again = [
            one.first_audio_after(killed + 0.5)
            if hz is None
            else one.heard.onset_time(hz, PRESENT_DBFS, since=killed)
            for one in listeners
        ]
        if None not in again:
            return max(at for at in again if at is not None) - killed
        await asyncio.sleep(0.05)
    return float("inf")


async def _live_with_listeners(
    front: httpx.AsyncClient, cluster: Cluster, victim: int | None = None
) -> tuple[str, Any, Any, list[RejoiningListener]]:
    """A live space with a 440 Hz speaker and CLUSTER_LISTENERS listeners joined through
    nginx; with `victim`, the even ones stream from that edge and the odd ones from the
    other (tickets are good on any node). Returns the space, the host, the speaker and
    the listeners (not yet running)."""
    host = await sign_up(front, "host")
    created = await front.post("/api/spaces", json={"title": "bench"}, headers=host.headers)
    space_id = created.json()["id"]
    started = await front.post(f"/api/spaces/{space_id}/start", headers=host.headers)
    assert started.status_code == 200, started.text
    speaker = await offer_until_accepted(front, space_id, host, BEFORE_HZ, BACK_WITHIN_S)
    answers = []
    for n in range(CLUSTER_LISTENERS):
        answer = (await front.post(f"/api/spaces/{space_id}/join")).json()
        if victim is not None:
            base = cluster.edge_stream_urls[cluster.edge_of(answer["live_url"])]
            wanted = cluster.edge_stream_urls[victim if n % 2 == 0 else 1 - victim]
            answer["live_url"] = answer["live_url"].replace(base, wanted, 1)
        answers.append(answer)
    return space_id, host, speaker, [RejoiningListener(front, space_id, a) for a in answers]


async def _edge_round(cluster: Cluster) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=cluster.nginx, timeout=15) as front:
        _, _, speaker, listeners = await _live_with_listeners(front, cluster, victim=0)
        running = [asyncio.create_task(one.run(time.time() + 60)) for one in listeners]
        try:
            await asyncio.sleep(HELD_S)  # and the edges' heartbeats carry their loads
            cluster.edges[0].kill_hard()
            killed = time.time()
            moved_s = await _heard_again(listeners[0::2], killed)
            await asyncio.sleep(max(0.0, killed + AFTER_S - time.time()))
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await speaker.close()
    untouched = [one.heard.longest_gap(killed, killed + AFTER_S) for one in listeners[1::2]]
    return {"killed_edge_audio_s": moved_s, "other_edge_gap_s": max(untouched)}


async def _holder(cluster: Cluster) -> RunningServer:
    async def live_spaces() -> list[float]:
        counts = []
        for origin in cluster.origins:
            async with httpx.AsyncClient(base_url=origin.url, timeout=10) as http:
                samples = await metric_samples(http, ADMIN_TOKEN, "townhall_live_spaces")
            counts.append(samples[0].value)
        return counts

    counts = await within(30.0, live_spaces, lambda counts: sum(counts) == max(counts) == 1)
    return cluster.origins[counts.index(1)]


async def _origin_round(
    cluster: Cluster, stop: Callable[[RunningServer], None]
) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=cluster.nginx, timeout=15) as front:
        space_id, host, speaker, listeners = await _live_with_listeners(front, cluster)
        holder = await _holder(cluster)
        running = [asyncio.create_task(one.run(time.time() + 60)) for one in listeners]
        try:
            await asyncio.sleep(HELD_S)
            stop(holder)
            stopped = time.time()
            await speaker.close()
            speaker = await offer_until_accepted(front, space_id, host, AFTER_HZ, BACK_WITHIN_S)
            offer_s = time.time() - stopped
            audio_s = await _heard_again(listeners, stopped, AFTER_HZ)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await speaker.close()
    return {"offer_answered_s": offer_s, "listeners_hear_660_s": audio_s}


def _sigterm(node: RunningServer) -> None:
    node.process.send_signal(signal.SIGTERM)


def _cluster_rounds(mode: str, rounds: int) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    with _backends() as (root, redis, postgres):
        for n in range(rounds):
            figures: dict[str, float] = {}
            stops = {"kill": RunningServer.kill_hard, "term": _sigterm}
            for name, stop in stops.items() if mode == "origin" else [("edge", None)]:
                workdir = root / f"round-{n}-{name}"
                env = {
                    "TOWNHALL_SECRET": SECRET,
                    "TOWNHALL_ADMIN_TOKEN": ADMIN_TOKEN,
                    "TOWNHALL_SHARED_RECORDINGS": str(workdir / "recordings"),
                }
                origins = 2 if mode == "origin" else 1
                database = postgres.url(postgres.create_database())
                with running_cluster(
                    workdir, redis.fresh_url(), database, origins=origins, **env
                ) as cluster:
                    if stop is None:
                        figures.update(asyncio.run(_edge_round(cluster)))
                    else:
                        each = asyncio.run(_origin_round(cluster, stop))
                        figures.update({f"{name}: {k}": v for k, v in each.items()})
            _print_round(n, figures)
            results.append(figures)
    return results


@contextlib.contextmanager
def _backends() -> Iterator[tuple[Path, RedisServer, PostgresServer]]:
    """A temporary directory, a private redis-server and PostgreSQL, for every round."""
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root)
        redis.start()
        postgres = start_postgres()
        try:
            yield root, redis, postgres
        finally:
            postgres.stop()
            shutil.rmtree(postgres.root, ignore_errors=True)
            redis.stop()


def _print_round(n: int, figures: dict[str, float]) -> None:
    print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))


def _pair(workdir: Path, env: dict[str, str]) -> tuple[RunningServer, RunningServer]:
    a = start_server(workdir / "a", **env)
    try:
        return a, start_server(workdir / "b", **env)
    except BaseException:
        stop_server(a)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", choices=["pair", "edge", "origin"], default="pair")
    args = parser.parse_args()
    use_host_addresses(["127.0.0.1"])
    if args.mode != "pair":
        _report(_cluster_rounds(args.mode, args.rounds), args.rounds)
        return
    results: list[dict[str, float]] = []
    with _backends() as (root, redis, postgres):
        for n in range(args.rounds):
            workdir = root / f"round-{n}"
            env = _env(redis, postgres, workdir / "recordings")
            a, b = _pair(workdir, env)
            try:
                figures = asyncio.run(_prodded_round(a, b))
            finally:
                stop_server(b)
                stop_server(a)
            a, b = _pair(workdir / "hb", _env(redis, postgres, workdir / "hb-rec"))
            try:
                figures["heartbeat_path_s"] = asyncio.run(_heartbeat_round(a, b))
            finally:
                stop_server(b)
                stop_server(a)
            _print_round(n, figures)
            results.append(figures)
    _report(results, args.rounds)


def _report(results: list[dict[str, float]], rounds: int) -> None:
    width = max(20, *(len(key) for key in results[0]))
    print(f"\n{'figure':<{width}} {'median':>8} {'worst':>8}   ({rounds} rounds)")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"{key:<{width}} {statistics.median(values):>8.2f} {max(values):>8.2f}")


if __name__ == "__main__":
    main()
