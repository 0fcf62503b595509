"""How an edge should receive the programs it fans out: the origin's HTTP relay (like an
Icecast relay) or Redis pub/sub. Both measured in the same run, side by side.

    scripts/isolated .venv/bin/python -m bench.relay_transport [--spaces 100] [--edges 2]
        [--seconds 20]

One origin process publishes `--spaces` live programs (AAC-sized ADTS chunks, 48 kbps,
one per 200 ms per space, the default `live_chunk_ms`, each frame stamped with the
time it was published) to both transports at once, alternating which goes first:

- **http**: each space's chunks go into a `LiveFanout` (the origin's own fan-out class)
  behind GET /internal/program/{id}.aac, the path the edges' relays read; each http edge
  runs townhall's real relay (`townhall.edge.relay.Relays`: one connection per space,
  ADTS framing, its own fan-out);
- **redis**: each chunk is PUBLISHed on one channel per space of a private
  redis-server; each redis edge SUBSCRIBEs to every space and puts each message into
  a `LiveFanout` of its own.

Every edge is its own process and records, for every piece it republishes, the lag
from the origin's publish to its own fan-out, and its CPU time over the measured
window. The edges' fan-outs have no listeners: what listeners cost is the same
whichever way the program arrived. Printed: relay lag p50/p99 (ms) and CPU % of a
core per edge for each transport, and redis-server's own CPU. Loopback only; every
loop is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.procstat import cpu_seconds
from townhall.admission.signing import Signer
from townhall.audience.adts import adts_header
from townhall.audience.fanout import LiveFanout
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge.relay import Origin, Refusal, Relays

ROOT = Path(__file__).resolve().parents[1]
CHUNK_MS = 200
FRAMES_PER_CHUNK = 10
"""AAC at 48 kHz: 1024 samples (21.3 ms) per frame, ~9.4 frames per 200 ms."""
FRAME_PAYLOAD = 120
"""~48 kbps: 10 frames of 127 bytes every 200 ms."""
STAMP = struct.Struct("!d")
CHANNEL = "bench:program:{space}"
WARM_UP_S = 2.0
ORIGIN_SLACK_S = 60.0
"""The origin publishes until the edges are done (then it is stopped), at most this
much longer than --seconds (the edges start after it, one by one)."""
LIVE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: audio/aac\r\nConnection: close\r\n\r\n"
REQUEST = re.compile(rb"^GET /internal/program/([A-Za-z0-9_-]+)\.aac ")
MAX_SAMPLES = 200_000
"""Lags kept per edge (a bound; a default run records ~2,000 per edge)."""


def _chunk(published_at: float) -> bytes:
    payload = STAMP.pack(published_at).ljust(FRAME_PAYLOAD, b"\0")
    header = adts_header(len(payload), sample_rate_index=3, channels=1)
    return (header + payload) * FRAMES_PER_CHUNK


def _stamp(piece: bytes) -> float:
    """The publish time carried by the first frame of a piece (7-byte ADTS header)."""
    return float(STAMP.unpack_from(piece, 7)[0])


# -- the origin ----------------------------------------------------------------------


class _ProgramRequest(asyncio.Protocol):
    def __init__(self, fanouts: dict[str, LiveFanout]) -> None:
        self._fanouts = fanouts
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            return
        self._head += data
        if b"\r\n\r\n" not in self._head:
            return
        match = REQUEST.match(self._head)
        fanout = self._fanouts.get(match.group(1).decode()) if match else None
        if fanout is None:
            self._transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self._transport.close()
            return
        self._head = None  # type: ignore[assignment]
        self._transport.write(LIVE_HEAD)
        fanout.attach(self._transport, "relay")


async def run_origin(args: argparse.Namespace) -> None:
    audio = AudioSettings(live_chunk_ms=CHUNK_MS)
    spaces = [f"space{i}" for i in range(args.spaces)]
    fanouts = {space: LiveFanout(audio) for space in spaces}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ProgramRequest(fanouts), "127.0.0.1", args.port)
    publisher = aioredis.Redis.from_url(args.redis)
    started = time.monotonic()
    tick = 0
    print("ready", flush=True)
    while time.monotonic() - started < args.seconds + ORIGIN_SLACK_S:  # stopped when done
        due = started + tick * CHUNK_MS / 1000
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        for index, space in enumerate(spaces):
            chunk = _chunk(time.time())
            if (tick + index) % 2:  # neither transport always goes first
                fanouts[space].publish(chunk, CHUNK_MS)
                await publisher.publish(CHANNEL.format(space=space), chunk)
            else:
                await publisher.publish(CHANNEL.format(space=space), chunk)
                fanouts[space].publish(chunk, CHUNK_MS)
        tick += 1
    for fanout in fanouts.values():
        fanout.close()
    server.close()
    await publisher.aclose()


# -- the edges -----------------------------------------------------------------------


class _Lags:
    def __init__(self, measure_from: float, measure_to: float) -> None:
        self.samples: list[float] = []
        self._from, self._to = measure_from, measure_to

    def saw(self, piece: bytes) -> None:
        now = time.time()
        if self._from <= now <= self._to and len(self.samples) < MAX_SAMPLES:
            self.samples.append(now - _stamp(piece))


class _Idle:
    """A waiter that opens a relay and then just lets it run (no listeners)."""

    def __init__(self, space: str) -> None:
        self.listener_id = space

    def start_stream(self, fanout: LiveFanout) -> None:
        pass

    def refuse(self, refusal: Refusal) -> None:
        raise RuntimeError(f"relay refused: {refusal}")


async def run_edge(args: argparse.Namespace) -> None:
    spaces = [f"space{i}" for i in range(args.spaces)]
    audio = AudioSettings(live_chunk_ms=CHUNK_MS)
    now = time.time()
    lags = _Lags(now + WARM_UP_S, now + args.seconds - WARM_UP_S)
    if args.transport == "http":
        origin = Origin("127.0.0.1", args.port, "bench-edge", Signer(b"bench" * 8))
        relays = Relays(origin, audio, EdgeSettings(relay_grace_s=3600), removals_wait_s=0)
        for space in spaces:
            relay = relays.join(space, _Idle(space))
            assert relay is not None
            publish = relay.fanout.publish

            def stamped(piece: bytes, ms: float | None = None, publish=publish) -> None:  # type: ignore[no-untyped-def]
                lags.saw(piece)
                publish(piece, ms)

            relay.fanout.publish = stamped  # type: ignore[method-assign]
    else:
        client = aioredis.Redis.from_url(args.redis)
        pubsub = client.pubsub()
        await pubsub.subscribe(*(CHANNEL.format(space=space) for space in spaces))
        fanouts = {CHANNEL.format(space=space).encode(): LiveFanout(audio) for space in spaces}

        async def listen() -> None:
            async for message in pubsub.listen():
                if message["type"] == b"message" or message["type"] == "message":
                    piece = message["data"]
                    lags.saw(piece)
                    fanouts[message["channel"]].publish(piece, CHUNK_MS)

        listener = asyncio.create_task(listen())
    print("ready", flush=True)
    await asyncio.sleep(WARM_UP_S)
    cpu_from = time.process_time()
    wall_from = time.monotonic()
    await asyncio.sleep(max(0.0, args.seconds - 2 * WARM_UP_S))
    cpu = (time.process_time() - cpu_from) / (time.monotonic() - wall_from)
    if args.transport == "http":
        await relays.close()
    else:
        listener.cancel()
        await pubsub.aclose()
        await client.aclose()
    print(json.dumps({"cpu": cpu, "lags": lags.samples}), flush=True)


# -- the run -------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.relay_transport", *args],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"bench process {args} did not start")
    return process


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.relay_transport")
    parser.add_argument("--spaces", type=int, default=100)
    parser.add_argument("--edges", type=int, default=2, help="edges per transport")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--role", choices=["run", "origin", "edge"], default="run")
    parser.add_argument("--transport", choices=["http", "redis"], default="http")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", default="")
    args = parser.parse_args(argv)
    if args.role == "origin":
        asyncio.run(run_origin(args))
        return 0
    if args.role == "edge":
        asyncio.run(run_edge(args))
        return 0
    if args.seconds > 600 or args.spaces > 2_000 or args.edges > 16:
        parser.error("keep it bounded: --seconds <= 600, --spaces <= 2000, --edges <= 16")
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import free_port
    from redis_server import RedisServer

    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    server = RedisServer(work, free_port())
    server.start()
    processes: list[subprocess.Popen[str]] = []
    try:
        port = free_port()
        common = ["--spaces", str(args.spaces), "--seconds", str(args.seconds),
                  "--port", str(port), "--redis", server.url()]  # fmt: skip
        origin = _spawn("--role", "origin", *common)
        processes.append(origin)
        edges = {
            transport: [
                _spawn("--role", "edge", "--transport", transport, *common)
                for _ in range(args.edges)
            ]
            for transport in ("http", "redis")
        }
        processes += [p for group in edges.values() for p in group]
        redis_cpu_from = cpu_seconds(server.process.pid)
        results = {
            transport: [json.loads(p.communicate(timeout=args.seconds + 60)[0]) for p in group]
            for transport, group in edges.items()
        }
        redis_cpu = (cpu_seconds(server.process.pid) - redis_cpu_from) / args.seconds
        origin.terminate()
        origin.wait(timeout=30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.spaces} live programs (48 kbps, one chunk per {CHUNK_MS} ms), {args.edges} "
          f"edges per transport, {args.seconds:.0f} s, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'transport':<10} {'lag p50 ms':>11} {'lag p99 ms':>11} {'CPU/edge %':>11} "
          f"{'pieces':>8}")  # fmt: skip
    for transport, edge_results in results.items():
        lags = [lag * 1000 for result in edge_results for lag in result["lags"]]
        cpu = statistics.mean(result["cpu"] for result in edge_results) * 100
        print(f"{transport:<10} {_percentile(lags, 0.5):>11.2f} {_percentile(lags, 0.99):>11.2f}"
              f" {cpu:>11.2f} {len(lags):>8}")  # fmt: skip
    print(f"redis-server CPU (pub/sub and nothing else): {redis_cpu * 100:.2f} % of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
