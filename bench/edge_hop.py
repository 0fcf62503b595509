"""What the edge hop adds: the same program heard on the origin and through an edge.

    scripts/isolated .venv/bin/python -m bench.edge_hop [--seconds 20]

Starts a private redis-server, one origin (`--role origin`) and one edge (`--role
edge`) on one SQLite store, puts a space live with an aiortc speaker sending noise (so
that every AAC frame of the program is different), and holds two listeners: one on
the origin's live stream, one on the edge's (the same program relayed once). Every
ADTS frame is stamped with its arrival time on each; the edge hop is, frame by frame,
the edge's arrival minus the origin's. Printed: its p50, p99 and max over the run.
Loopback only; bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import NO_LAG_DOOR, free_port, start_server, stop_server  # noqa: E402
from http_helpers import live_space, sign_up, speak_over_http  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from tones import FRAME_SAMPLES, ToneTrack  # noqa: E402
from townhall.audience.adts import ADTS_HEADER_BYTES  # noqa: E402
from townhall.stage.ice import use_host_addresses  # noqa: E402

SECRET = "bench-edge-hop-secret"
SPEAKER_CONNECT_S = 3.0
"""The speaker's WebRTC connection settles before the measure starts."""
MAX_FRAMES = 100_000
"""Frames stamped per listener at most (a bound; 20 s is ~940)."""


class NoiseTrack(ToneTrack):
    """Low-level noise: no two AAC frames of the program alike."""

    def __init__(self) -> None:
        super().__init__(None)
        self._random = np.random.default_rng(7)

    def _next_samples(self) -> npt.NDArray[np.int16]:
        return self._random.integers(-3000, 3000, FRAME_SAMPLES, dtype=np.int16)


async def _stamp_frames(url: str, until: float, arrivals: dict[bytes, float]) -> None:
    """Each whole ADTS frame's digest -> when its last byte arrived (monotonic)."""
    pending = bytearray()
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_raw():
            now = time.monotonic()
            pending += chunk
            while len(pending) >= ADTS_HEADER_BYTES:
                length = ((pending[3] & 0x03) << 11) | (pending[4] << 3) | (pending[5] >> 5)
                if pending[0] != 0xFF or length < ADTS_HEADER_BYTES:
                    raise ValueError("lost ADTS framing")
                if len(pending) < length:
                    break
                digest = hashlib.blake2b(pending[:length], digest_size=16).digest()
                if len(arrivals) < MAX_FRAMES:
                    arrivals.setdefault(digest, now)
                del pending[:length]
            if now >= until:
                return


async def measure(seconds: float, work: Path, redis_url: str) -> list[float]:
    env = {
        "TOWNHALL_STATE": redis_url,
        "TOWNHALL_STORE": f"sqlite:///{work / 'townhall.sqlite3'}",
        "TOWNHALL_SECRET": SECRET,
        "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
        **NO_LAG_DOOR,
    }
    nodes = []
    try:
        for role in ("origin", "edge"):
            port = free_port()
            args = ("--role", role, "--public-url", f"http://127.0.0.1:{port}")
            nodes.append(start_server(work / role, port=port, args=args, **env))
        origin, edge = nodes
        async with httpx.AsyncClient(base_url=origin.url, timeout=20) as http:
            host = await sign_up(http, "host")
            space_id = (await live_space(http, host))["id"]
            speaker = await speak_over_http(http, space_id, host.headers, NoiseTrack())
            try:
                await asyncio.sleep(SPEAKER_CONNECT_S)
                tickets = [
                    (await http.post(f"/api/spaces/{space_id}/join")).json()["ticket"]
                    for _ in range(2)
                ]
                on_origin: dict[bytes, float] = {}
                on_edge: dict[bytes, float] = {}
                until = time.monotonic() + seconds
                await asyncio.wait_for(
                    asyncio.gather(
                        _stamp_frames(
                            f"{origin.url}/live/{space_id}.aac?ticket={tickets[0]}", until,
                            on_origin,
                        ),
                        _stamp_frames(
                            f"{edge.url}/live/{space_id}.aac?ticket={tickets[1]}", until, on_edge
                        ),
                    ),
                    seconds + 60,
                )  # fmt: skip
            finally:
                await speaker.close()
        print(f"frames: {len(on_origin)} on the origin, {len(on_edge)} on the edge", flush=True)
        return [(on_edge[d] - on_origin[d]) * 1000 for d in on_edge.keys() & on_origin.keys()]
    finally:
        for node in reversed(nodes):
            stop_server(node)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.edge_hop")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds between 1 and 600")
    use_host_addresses(["127.0.0.1"])  # this process's speaker, on loopback
    work = Path(tempfile.mkdtemp(prefix="bench-edge-hop-"))
    redis = RedisServer(work, free_port())
    redis.start()
    try:
        hops = sorted(asyncio.run(measure(args.seconds, work, redis.url())))
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    if not hops:
        print("no frame was heard on both nodes")
        return 1

    def at(share: float) -> float:
        return hops[min(len(hops) - 1, int(share * len(hops)))]

    print(f"edge hop over {len(hops)} AAC frames heard on both nodes ({args.seconds:.0f} s, "
          f"load {os.getloadavg()[0]:.1f}): p50 {at(0.5):.1f} ms, p99 {at(0.99):.1f} ms, "
          f"max {hops[-1]:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
