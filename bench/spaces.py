"""What one live space costs its origin, and how many fit on one core.

    .venv/bin/python -m bench.spaces [--spaces 10] [--speakers 1,2,5] [--seconds 20]

Starts `townhall serve` pinned to one core (`--server-cpu`), measures its idle CPU,
then puts `--spaces` spaces live at once, each recorded, with K aiortc speakers
(K from `--speakers`, one server per K) sending tones in real time over WebRTC, and
one live-stream listener per space. The speakers and listeners run in client
processes on the other core(s) (`--client-cpus`). It prints, per K:

- the server's CPU per live space (process CPU over the window, minus the idle node,
  divided by the spaces) and the live spaces one core holds at that cost;
- where that CPU goes, from the server's own counters on /metrics
  (`townhall_media_cpu_seconds_total{part}`: mixer, aac, opus, recorder, taken on the
  event loop's thread); "aiortc" is the rest: peers, RTP/SRTP, Opus decode and encode
  of every speaker, their threads and timers;
- late chunks on the live streams (a chunk counts late when it arrives more than 1.5
  chunk intervals after the previous one, as bench/client.py counts them);
- speaker-to-speaker latency: speaker 2 of every space starts a 660 Hz tone during
  the window; the onset's arrival in speaker 1's mix-minus (FFT, tests/tones.py),
  p50 and max over the spaces.

With `--save` the figure `townhall plan` uses (`space_cpu_share_of_core`, at 2
speakers) and the per-K table go into bench/figures.json (other benches' figures
kept). Runs inside `scripts/isolated` (re-executes itself) so WebRTC stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench.figures import FIGURES  # noqa: E402
from bench.procstat import cpu_seconds  # noqa: E402
from conftest import NO_LAG_DOOR, start_server, stop_server  # noqa: E402
from http_helpers import speak_over_http  # noqa: E402
from tones import ToneTrack  # noqa: E402

ISOLATED_MARK = "TOWNHALL_BENCH_ISOLATED"
ADMIN_TOKEN = "bench-spaces-operator-token-0123456789"
PASSWORD = "password123"
FREQS = (440.0, 660.0, 880.0, 1100.0, 1320.0, 1540.0, 1760.0, 1980.0, 2200.0, 2420.0)
"""Speaker k of a space sends FREQS[k] (sent at -10.5 dBFS: a speaker who talks)."""
ONSET_DBFS = -30.0
ONSET_AFTER_S = 3.0
"""Speaker 2 is silent until this long into the measuring window, then sends its tone."""
WARM_UP_S = 4.0
"""From every speaker connected to the window's start: peers settle, jitter queues fill."""
CONNECT_TIMEOUT_S = 60.0
LATE_FACTOR = 1.5
SPACES_PER_CLIENT = 5
"""Spaces driven by one client process (2-5 aiortc peers each cost the client CPU too)."""
GO_TIMEOUT_S = 600.0
"""A client that hears nothing from the bench for this long gives up (and exits)."""
MEDIA_PARTS = ("mixer", "aac", "opus", "recorder")


@dataclass(frozen=True)
class SpacePlan:
    """One space as a client process drives it: where to connect, with whose tokens."""

    space_id: str
    speaker_headers: list[dict[str, str]]
    join_path: str


# -- client processes ------------------------------------------------------------------------


async def _listen(
    base: str, space_id: str, window: asyncio.Future[tuple[float, float]], chunk_s: float
) -> dict[str, int]:
    """One live-stream listener: counts chunks, and the late ones (gap > 1.5 intervals),
    that arrive inside the measuring window."""
    async with httpx.AsyncClient(base_url=base, timeout=15) as http:
        join = (await http.post(f"/api/spaces/{space_id}/join")).json()
        chunks = late = 0
        previous: float | None = None
        async with http.stream("GET", join["live_url"]) as response:
            async for _data in response.aiter_raw():
                now = time.time()
                if window.done() and now >= window.result()[0]:
                    if previous is not None and now - previous > LATE_FACTOR * chunk_s:
                        late += 1
                    chunks += 1
                    if now >= window.result()[1]:
                        break
                previous = now
    return {"chunks": chunks, "late": late}


async def _drive(
    base: str, plans: list[SpacePlan], chunk_s: float, ready: Any, go: Any
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    speakers = []
    window: asyncio.Future[tuple[float, float]] = loop.create_future()
    async with httpx.AsyncClient(base_url=base, timeout=CONNECT_TIMEOUT_S) as http:
        for plan in plans:
            for k, headers in enumerate(plan.speaker_headers):
                # speaker 2 stays silent until its onset, inside the window
                tone = ToneTrack(FREQS[k % len(FREQS)] if k != 1 else None, start_after_s=0.5)
                speakers.append(
                    (plan, k, await speak_over_http(http, plan.space_id, headers, tone))
                )
        listeners = [asyncio.create_task(_listen(base, p.space_id, window, chunk_s)) for p in plans]
        ready.put(len(plans))
        # bounded: a bench interrupted before the window never sends it
        start_at, stop_at = await asyncio.to_thread(go.get, True, GO_TIMEOUT_S)
        window.set_result((start_at, stop_at))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        client_cpu = time.process_time()
        await asyncio.sleep(max(0.0, start_at + ONSET_AFTER_S - time.time()))
        for _plan, k, client in speakers:
            if k == 1:
                client.tone.freq = FREQS[1]
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        client_cpu = (time.process_time() - client_cpu) / (stop_at - start_at)
        streams = await asyncio.gather(*listeners)
    latencies = []
    by_space: dict[str, dict[int, Any]] = {}
    for plan, k, client in speakers:
        by_space.setdefault(plan.space_id, {})[k] = client
    for clients in by_space.values():
        if 1 in clients:
            sent_at = clients[1].tone.tone_started_at
            heard = (
                clients[0].heard.onset_time(FREQS[1], ONSET_DBFS, since=sent_at - 0.5)
                if sent_at is not None
                else None
            )
            latencies.append(None if heard is None or sent_at is None else heard - sent_at)
    for _plan, _k, client in speakers:
        await client.close()
    return {
        "chunks": sum(s["chunks"] for s in streams),
        "late": sum(s["late"] for s in streams),
        "latencies": latencies,
        "cpu": client_cpu,
    }


def _client_main(
    base: str, plans: list[SpacePlan], chunk_s: float, cpus: str, nice: int, ready: Any, go: Any
) -> dict[str, Any]:
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    from townhall.stage.ice import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    return asyncio.run(_drive(base, plans, chunk_s, ready, go))


# -- the server side -------------------------------------------------------------------------


def _account(http: httpx.Client, name: str) -> tuple[str, dict[str, str]]:
    user = http.post("/api/users", json={"username": name, "password": PASSWORD}).json()
    token = http.post("/api/tokens", json={"username": name, "password": PASSWORD}).json()
    return user["id"], {"Authorization": f"Bearer {token['token']}"}


def _open_spaces(http: httpx.Client, spaces: int, speakers: int, record: bool) -> list[SpacePlan]:
    plans = []
    for s in range(spaces):
        _host_id, host = _account(http, f"host{s}")
        space = http.post(
            "/api/spaces", json={"title": f"bench {s}", "record": record}, headers=host
        ).json()
        http.post(f"/api/spaces/{space['id']}/start", headers=host).raise_for_status()
        headers = [host] if speakers else []  # 0: a live space nobody speaks in
        for k in range(1, speakers):
            user_id, guest = _account(http, f"s{s}k{k}")
            http.post(
                f"/api/spaces/{space['id']}/stage",
                json={"user_id": user_id, "role": "speaker"},
                headers=host,
            ).raise_for_status()
            headers.append(guest)
        plans.append(SpacePlan(space["id"], headers, f"/api/spaces/{space['id']}/join"))
    return plans


def _media_cpu(http: httpx.Client) -> dict[str, float]:
    """The server's media counters (seconds per part), {} if it has none."""
    text = http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    parts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("townhall_media_cpu_seconds_total{"):
            label = line.split('part="', 1)[1].split('"', 1)[0]
            parts[label] = float(line.rsplit(" ", 1)[1])
    return parts


def _pin(pid: int, cpus: str, nice: int) -> None:
    """Every thread of the server (threads started later inherit it from the main one)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {int(c) for c in cpus.split(",")})
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    spaces: int,
    speakers: int,
    seconds: float,
    server_cpu: str,
    client_cpus: str,
    env: dict[str, str],
    nice: int = 0,
    spaces_per_client: int = SPACES_PER_CLIENT,
    record: bool = True,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="townhall-spaces-") as tmp:
        server = start_server(
            Path(tmp),
            TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN,
            TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0",
            # every speaker signs up and in from 127.0.0.1: 5 spaces x 5 speakers are 25
            TOWNHALL_LIMITS_SIGN_UPS_PER_ADDRESS_PER_HOUR="0",
            TOWNHALL_LIMITS_SIGN_INS_PER_ADDRESS_PER_MINUTE="0",
            **NO_LAG_DOOR,
            **env,
        )
        pid = server.process.pid
        _pin(pid, server_cpu, nice)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                time.sleep(2.0)
                idle_cpu, idle_wall = cpu_seconds(pid), time.time()
                time.sleep(min(10.0, seconds / 2))
                idle = (cpu_seconds(pid) - idle_cpu) / (time.time() - idle_wall)
                plans = _open_spaces(http, spaces, speakers, record)
                chunk_s = int(env.get("TOWNHALL_AUDIO_LIVE_CHUNK_MS", "200")) / 1000
                groups = [
                    plans[i : i + spaces_per_client] for i in range(0, spaces, spaces_per_client)
                ]
                context = get_context("spawn")
                with (
                    context.Manager() as manager,
                    ProcessPoolExecutor(len(groups), mp_context=context) as pool,
                ):
                    ready, gos = manager.Queue(), [manager.Queue() for _ in groups]
                    futures = [
                        pool.submit(
                            _client_main, server.url, g, chunk_s, client_cpus, nice, ready, go
                        )
                        for g, go in zip(groups, gos, strict=True)
                    ]
                    for _ in groups:
                        ready.get(timeout=CONNECT_TIMEOUT_S + 2 * spaces * speakers)
                    start_at = time.time() + WARM_UP_S
                    for go in gos:
                        go.put((start_at, start_at + seconds))
                    time.sleep(max(0.0, start_at - time.time()))
                    cpu_before, media_before, wall_before = (
                        cpu_seconds(pid),
                        _media_cpu(http),
                        time.time(),
                    )
                    time.sleep(seconds)
                    cpu_after, media_after, wall_after = (
                        cpu_seconds(pid),
                        _media_cpu(http),
                        time.time(),
                    )
                    results = [f.result(timeout=CONNECT_TIMEOUT_S) for f in futures]
        finally:
            stop_server(server)
            if os.environ.get("BENCH_SPACES_LOG"):
                print(server.log()[-6000:])
    wall = wall_after - wall_before
    total = (cpu_after - cpu_before) / wall
    per_space = (total - idle) / spaces
    parts = {
        part: (media_after.get(part, 0.0) - media_before.get(part, 0.0)) / wall / spaces
        for part in MEDIA_PARTS
        if part in media_after
    }
    if parts:
        parts["aiortc and the rest"] = per_space - sum(parts.values())
    latencies = [x for r in results for x in r["latencies"]]
    measured = [x for x in latencies if x is not None]
    return {
        "spaces": spaces,
        "speakers": speakers,
        "recorded": record,
        "server_env": env,
        "seconds": round(wall, 1),
        "idle_node_pct": round(idle * 100, 2),
        "server_pct": round(total * 100, 1),
        "per_space_pct": round(per_space * 100, 2),
        "spaces_per_core": round(1 / per_space, 1) if per_space > 0 else None,
        "parts_pct": {name: round(value * 100, 2) for name, value in parts.items()},
        "chunks": sum(r["chunks"] for r in results),
        "late_chunks": sum(r["late"] for r in results),
        "speaker_to_speaker_ms": {
            "p50": round(statistics.median(measured) * 1000) if measured else None,
            "max": round(max(measured) * 1000) if measured else None,
            "missing": len(latencies) - len(measured),
        },
        "client_pct": [round(r["cpu"] * 100, 1) for r in results],
        "load_avg": os.getloadavg(),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    parts = sorted(
        {p for r in rows for p in r["parts_pct"]}, key=lambda p: (p not in MEDIA_PARTS, p)
    )
    header = ["speakers", "spaces", "% core/space", "spaces/core", *parts, "late", "s2s p50/max ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        s2s = r["speaker_to_speaker_ms"]
        cells = [
            r["speakers"], r["spaces"], r["per_space_pct"], r["spaces_per_core"],
            *(r["parts_pct"].get(p, "") for p in parts),
            f"{r['late_chunks']}/{r['chunks']}",
            f"{s2s['p50']}/{s2s['max']}" + (f" ({s2s['missing']} lost)" if s2s["missing"] else ""),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _save(rows: list[dict[str, Any]], command: str) -> None:
    """Into bench/figures.json beside the other benches' figures: the per-space CPU at
    2 speakers (or the nearest K measured) becomes `space_cpu_share_of_core`."""
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {"figures": {}}
    chosen = min(rows, key=lambda r: (abs(r["speakers"] - 2), -r["spaces"]))
    data.setdefault("figures", {})["space_cpu_share_of_core"] = chosen["per_space_pct"] / 100
    data["spaces"] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "space_cpu_share_of_core_from": f"{chosen['speakers']} speakers",
        "rows": rows,
    }
    FIGURES.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if set(os.listdir("/sys/class/net")) - {"lo"} and not os.environ.get(ISOLATED_MARK):
        script = ROOT / "scripts" / "isolated"
        env = {**os.environ, ISOLATED_MARK: "1"}
        os.execve(str(script), [str(script), sys.executable, "-m", "bench.spaces", *argv], env)
    parser = argparse.ArgumentParser(prog="python -m bench.spaces", description=__doc__)
    parser.add_argument("--spaces", type=int, default=10)
    parser.add_argument("--speakers", default="1,2,5", help="comma-separated speakers per space")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measuring window")
    parser.add_argument("--server-cpu", default="1")
    parser.add_argument("--client-cpus", default="0")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority of the server and clients (as root, e.g. -5 on a machine "
        "others load: the figures are then the server's, not its neighbours')",
    )
    parser.add_argument("--no-record", action="store_true", help="spaces not recorded")
    parser.add_argument("--spaces-per-client", type=int, default=SPACES_PER_CLIENT)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--save", action="store_true", help="write bench/figures.json")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    rows = []
    for speakers in [int(k) for k in args.speakers.split(",")]:
        row = measure(
            args.spaces, speakers, args.seconds, args.server_cpu, args.client_cpus, env, args.nice,
            args.spaces_per_client, not args.no_record,
        )  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    print()
    print(_table(rows))
    if args.save:
        _save(rows, "python -m bench.spaces " + " ".join(argv))
        print(f"\nsaved: {FIGURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
