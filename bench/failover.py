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

Prints each round and the median and worst. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import NO_LAG_DOOR, RunningServer, start_server, stop_server  # noqa: E402
from http_helpers import sign_up  # noqa: E402
from pg_server import PostgresServer, start_postgres  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from test_failover import (  # noqa: E402
    ANALYSIS_S,
    BACK_WITHIN_S,
    BEFORE_HZ,
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
    args = parser.parse_args()
    use_host_addresses(["127.0.0.1"])
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root)
        redis.start()
        postgres = start_postgres()
        try:
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
                print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
                results.append(figures)
        finally:
            postgres.stop()
            shutil.rmtree(postgres.root, ignore_errors=True)
            redis.stop()
    print(f"\n{'figure':<20} {'median':>8} {'worst':>8}   ({args.rounds} rounds)")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"{key:<20} {statistics.median(values):>8.2f} {max(values):>8.2f}")


if __name__ == "__main__":
    main()
