"""One live space on one server, measured: latency and memory.

    .venv/bin/python -m bench.one_space [--listeners 200] [--seconds 60]

Starts `townhall serve`, puts two aiortc speakers (440/660 Hz tones) on the
stage, holds N live-stream listeners, and prints:
- tone onset -> arrival on the live stream (what a listener's socket sees;
  a browser's MSE player adds its own ~0.3 s buffer, see tests/test_browser.py),
- tone onset -> the HLS segment holding it being listed in the playlist (a
  player adds its live offset on top: hls.js defaults to 3 target durations),
- the server's peak resident memory (VmHWM) and CPU over the run.
Run it inside `scripts/isolated` so WebRTC stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


from conftest import start_server, stop_server  # noqa: E402
from http_helpers import speak_over_http  # noqa: E402
from tones import Recording, ToneTrack, tone_power  # noqa: E402
from townhall.stage.ice import use_host_addresses  # noqa: E402

TONE_AFTER_S = 3.0


def _proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])  # kB
    return fields


def _cpu_seconds(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def _listener(port: int, path: str, stop_at: float, recording: Recording | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    codec = av.CodecContext.create("aac", "r") if recording is not None else None
    received = 0
    while time.time() < stop_at:
        chunk = await reader.read(65536)
        if not chunk:
            break
        received += len(chunk)
        if codec is not None and recording is not None:
            arrived = time.time()
            for packet in codec.parse(chunk):
                for frame in codec.decode(packet):
                    recording.add(frame.to_ndarray().mean(axis=0) * 32767, at=arrived)
    writer.close()
    return received


async def _watch_hls(
    http: httpx.AsyncClient, url: str, stop_at: float
) -> list[tuple[float, bytes]]:
    """Polls the playlist like a player; fetches each new segment the moment it is listed."""
    folder = url.rsplit("/", 1)[0]
    seen: set[str] = set()
    segments: list[tuple[float, bytes]] = []
    init = b""
    while time.time() < stop_at:
        playlist = (await http.get(url)).text
        now = time.time()
        if not init:
            init = (await http.get(f"{folder}/init.mp4")).content
        for line in playlist.splitlines():
            if line.endswith(".m4s") and line not in seen:
                seen.add(line)
                segments.append((now, init + (await http.get(f"{folder}/{line}")).content))
        await asyncio.sleep(0.05)
    return segments


def _hls_onset(segments: list[tuple[float, bytes]], tone_at: float) -> float | None:
    """Listed-at time of the first segment that carries the tone, relative to its onset."""
    for listed_at, body in segments:
        with av.open(io.BytesIO(body)) as container:
            samples = [f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)]
        if samples and tone_power(np.concatenate(samples), 48_000, 440.0) > -40:
            return listed_at - tone_at
    return None


async def run(listeners: int, seconds: float) -> dict[str, float]:
    use_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as tmp:
        # measures the media path, not the door: no per-address limits for its one client
        server = start_server(Path(tmp), TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0")
        pid = server.process.pid
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                heads = {}
                for name in ("benchhost", "benchguest"):
                    created = await http.post("/api/users",
                                              json={"username": name, "password": "password123"})
                    token = await http.post("/api/tokens",
                                            json={"username": name, "password": "password123"})
                    heads[name] = (created.json()["id"],
                                   {"Authorization": f"Bearer {token.json()['token']}"})
                host = heads["benchhost"][1]
                space = (await http.post("/api/spaces", json={"title": "bench", "record": True},
                                         headers=host)).json()
                await http.post(f"/api/spaces/{space['id']}/start", headers=host)
                await http.post(f"/api/spaces/{space['id']}/stage",
                                json={"user_id": heads["benchguest"][0], "role": "speaker"},
                                headers=host)
                stop_at = time.time() + TONE_AFTER_S + seconds
                joins = [(await http.post(f"/api/spaces/{space['id']}/join")).json()
                         for _ in range(listeners)]
                probe = Recording()
                tasks = [asyncio.create_task(_listener(server.port, j["live_url"], stop_at,
                                                       probe if i == 0 else None))
                         for i, j in enumerate(joins)]
                hls_task = asyncio.create_task(_watch_hls(http, joins[0]["hls_url"], stop_at))
                cpu_before, wall_before = _cpu_seconds(pid), time.time()
                tone_a = ToneTrack(440.0, start_after_s=TONE_AFTER_S)
                speaker_a = await speak_over_http(http, space["id"], host, tone_a)
                speaker_b = await speak_over_http(
                    http, space["id"], heads["benchguest"][1], ToneTrack(660.0, TONE_AFTER_S)
                )
                peak_rss = 0
                while time.time() < stop_at:
                    await asyncio.sleep(1.0)
                    peak_rss = max(peak_rss, _proc_status(pid)["VmRSS"])
                received = await asyncio.gather(*tasks)
                segments = await hls_task
                cpu = (_cpu_seconds(pid) - cpu_before) / (time.time() - wall_before)
                status = _proc_status(pid)
                live_onset = probe.onset_time(440.0, -30.0, since=tone_a.tone_started_at - 0.5)
                hls_onset = _hls_onset(segments, tone_a.tone_started_at)
                await speaker_a.close()
                await speaker_b.close()
        finally:
            stop_server(server)
    return {
        "listeners": listeners,
        "seconds": seconds,
        "live_onset_to_arrival_ms": round((live_onset - tone_a.tone_started_at) * 1000, 1)
        if live_onset else -1,
        "hls_onset_to_playlist_ms": round(hls_onset * 1000, 1) if hls_onset else -1,
        "peak_rss_mib": round(status["VmHWM"] / 1024, 1),
        "sampled_peak_rss_mib": round(peak_rss / 1024, 1),
        "server_cpu_percent": round(cpu * 100, 1),
        "min_bytes_per_listener": min(received),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.listeners, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
