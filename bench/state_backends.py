"""The cost of the scale-out backends: one node on memory state + SQLite store vs Redis
state + PostgreSQL store, same run.

    scripts/isolated .venv/bin/python -m bench.state_backends [--seconds 5] [--rounds 3]

For each pair of backends, starts `townhall serve` (Redis: a private redis-server, no
persistence; PostgreSQL: a private initdb + postgres, a fresh database per round),
puts a space live and measures over keep-alive connections:
- snapshot rate (GET /api/spaces/{id}),
- join rate (POST /api/spaces/{id}/join, anonymous and signed in),
- join -> first audio byte of the live stream, p50 and p99, for listeners who each
  join and then open the stream,
- Redis commands per 1,000 joins (the node's own ticks and heartbeats included).
Prints the two side by side with the Redis/memory ratio. The issue's target: Redis
costs the join path at most 30 % of its rate. Every loop is bounded in time and
count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench.townhall_server import ADMISSION_FOR_BENCH  # noqa: E402
from conftest import start_server, stop_server  # noqa: E402
from http_helpers import live_space, sign_up  # noqa: E402
from pg_server import start_postgres  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from townhall.loadtest.client import HttpClient  # noqa: E402

MAX_REQUESTS_PER_RUN = 500_000
"""A measured loop also stops after this many requests, whatever --seconds says."""
FIRST_AUDIO_TIMEOUT_S = 10.0


async def _rate(
    concurrency: int, seconds: float, call: Callable[[], Awaitable[bool]]
) -> tuple[float, int]:
    """Successful calls per second with `concurrency` callers for `seconds`; and failures."""
    done = failed = 0
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done, failed
        while time.monotonic() < stop_at and done + failed < MAX_REQUESTS_PER_RUN:
            if await call():
                done += 1
            else:
                failed += 1

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done / (time.monotonic() - started), failed


def _redis_commands(state_url: str) -> int:
    """Commands the redis-server has processed so far (0 for memory state)."""
    if not state_url.startswith("redis://"):
        return 0
    client = redis.Redis.from_url(state_url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


async def _measure(
    url: str, state_url: str, seconds: float, concurrency: int, listeners: int
) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        host = await sign_up(http, "benchhost")
        space_id = (await live_space(http, host))["id"]
    port = int(url.rsplit(":", 1)[1])
    client = HttpClient("127.0.0.1", port, max_idle=concurrency * 2)
    snapshot_path, join_path = f"/api/spaces/{space_id}", f"/api/spaces/{space_id}/join"
    auth = [("Authorization", f"Bearer {host.token}")]

    async def snapshot() -> bool:
        return (await client.request("GET", snapshot_path)).status == 200

    async def join(headers: list[tuple[str, str]]) -> bool:
        answer = await client.request("POST", join_path, headers=headers)
        return answer.status == 200 and b'"ticket"' in answer.body

    figures: dict[str, float] = {}
    try:
        await _rate(concurrency, 1.0, snapshot)  # warm up caches and connections
        figures["snapshot/s"], _ = await _rate(concurrency, seconds, snapshot)
        commands_before = _redis_commands(state_url)
        figures["anonymous join/s"], figures["join refusals"] = await _rate(
            concurrency, seconds, lambda: join([])
        )
        figures["signed-in join/s"], _ = await _rate(concurrency, seconds, lambda: join(auth))
        joins = (figures["anonymous join/s"] + figures["signed-in join/s"]) * seconds
        commands = _redis_commands(state_url) - commands_before
        figures["redis cmds/1k joins"] = 1000 * commands / joins if joins else 0.0

        latencies: list[float] = []

        async def listener() -> None:
            started = time.monotonic()
            answer = await client.request("POST", join_path)
            live_url = answer.json()["live_url"]
            stream = await client.stream(live_url, timeout=FIRST_AUDIO_TIMEOUT_S)
            try:
                async with asyncio.timeout(FIRST_AUDIO_TIMEOUT_S):
                    await stream.first_byte
                latencies.append(time.monotonic() - started)
            finally:
                stream.close()

        batch = max(1, concurrency // 2)
        for first in range(0, listeners, batch):
            await asyncio.gather(*(listener() for _ in range(min(batch, listeners - first))))
        latencies.sort()
        figures["join->audio p50 ms"] = 1000 * statistics.median(latencies)
        figures["join->audio p99 ms"] = (
            1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        )
    finally:
        await client.aclose()
    return figures


async def _run(seconds: float, concurrency: int, listeners: int, rounds: int) -> None:
    """Rounds alternate which backend goes first (the machine is shared and noisy); each
    figure is the median over the rounds."""
    results: dict[str, list[dict[str, float]]] = {"memory": [], "redis": []}
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        postgres = start_postgres()
        try:
            backends = [("memory", "memory"), ("redis", redis.url())]
            for round_no in range(rounds):
                for name, state in backends if round_no % 2 == 0 else backends[::-1]:
                    env = {**ADMISSION_FOR_BENCH, "TOWNHALL_STATE": state}
                    if name == "redis":
                        env["TOWNHALL_STORE"] = postgres.url(postgres.create_database())
                    server = start_server(Path(tmp) / f"{name}-{round_no}", **env)
                    try:
                        figures = await _measure(server.url, state, seconds, concurrency, listeners)
                        results[name].append(figures)
                    finally:
                        stop_server(server)
        finally:
            redis.stop()
            postgres.stop()
            shutil.rmtree(postgres.root, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return statistics.median(figures[key] for figures in results[name])

    print(f"\n{'':24}{'mem+sqlite':>12}{'redis+pg':>12}{'redis/memory':>14}")
    for key in results["memory"][0]:
        value, other = median("memory", key), median("redis", key)
        ratio = f"{other / value:.2f}" if value else "-"
        print(f"{key:24}{value:12.1f}{other:12.1f}{ratio:>14}")
    print(
        f"\nmedian of {rounds} alternating rounds; {seconds:g} s per rate, {concurrency} "
        f"concurrent keep-alive callers, {listeners} listeners for join->audio; "
        "stores: SQLite (memory), PostgreSQL (redis)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--listeners", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_run(args.seconds, args.concurrency, args.listeners, args.rounds))


if __name__ == "__main__":
    main()
