"""Clip creation time: the cut alone, and a clip made over HTTP from a live space.

    scripts/isolated .venv/bin/python -m bench.clips [--cuts 50] [--clips 20] [--burst 40]

1. The cut (in process): a program encodes 60 s of a 440 Hz tone (faster than real
   time); then `--cuts` times, the last 30 s of its clip window are stream-copied
   into an .m4a (what a live clip costs), and 30 s of the finished recording too.
2. Over HTTP (a real `townhall serve`, a WebRTC speaker sending the tone): after the
   space has 30 s of audio, `--clips` clips one after another (POST -> 201: creation
   time as a listener sees it; 0.3 s apart, so each is a new moment and a new cut),
   then `--burst` at once over 30 connections: a crowd clipping one moment shares one
   clip; how many are answered, told 503 + Retry-After, and how long it takes.
The per-address allowance is switched off for the run (one address makes them all).
Every loop is bounded in count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import start_server, stop_server  # noqa: E402
from http_helpers import live_space, sign_up, speak_over_http  # noqa: E402
from tones import ToneTrack  # noqa: E402
from townhall.audience.clip_cut import cut_clip, fragmented_source  # noqa: E402
from townhall.audience.program import ProgramOutput  # noqa: E402
from townhall.config import AudioSettings  # noqa: E402
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402

CLIP_S = 30.0
PROGRAM_S = 60.0
FREQ = 440.0
SERVER_AUDIO_WAIT_S = CLIP_S + 2.0
FRESH_MOMENT_S = 0.3
"""Longer than a fragment (200 ms), so each clip of the one-by-one series is cut anew."""
MAX_CONNECTIONS = 30
"""Under the server's per-address connection cap (32): the burst queues in the client
beyond it, as many listeners behind one NAT would be cut off by the cap, not the clips."""


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def bench_cut(cuts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        program = ProgramOutput(AudioSettings(), recording_path=directory / "rec.part.mp4")
        t = np.arange(FRAME_SAMPLES)
        for n in range(int(PROGRAM_S * SAMPLE_RATE / FRAME_SAMPLES)):
            phase = 2 * np.pi * FREQ * (t + n * FRAME_SAMPLES) / SAMPLE_RATE
            program.push((0.3 * 32767 * np.sin(phase)).astype(np.int16))
        fragments = program.clip_window.last(CLIP_S)
        program.close(finalize=True)
        recording = program.recording_final_path
        assert recording is not None
        live, ranged = [], []
        size = 0
        for n in range(cuts):
            started = time.perf_counter()
            cut_clip(fragmented_source(program.init_segment, fragments), directory / f"l{n}.m4a")
            live.append(time.perf_counter() - started)
            started = time.perf_counter()
            cut_clip(recording, directory / f"r{n}.m4a", 10.0, 10.0 + CLIP_S)
            ranged.append(time.perf_counter() - started)
            size = (directory / f"l{n}.m4a").stat().st_size
        print(f"cut, last {CLIP_S:g} s of the live window ({len(fragments)} fragments, "
              f"{size / 1024:.0f} KiB): {_ms(live)} over {cuts}")  # fmt: skip
        print(f"cut, {CLIP_S:g} s of a {PROGRAM_S:g} s recording: {_ms(ranged)} over {cuts}")


async def bench_http(clips: int, burst: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "server", TOWNHALL_CLIPS_PER_ADDRESS_PER_MINUTE="0",
                              TOWNHALL_CLIPS_PER_ACCOUNT_PER_MINUTE="0")  # fmt: skip
        try:
            limits = httpx.Limits(max_connections=MAX_CONNECTIONS)
            async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as http:
                host = await sign_up(http, "bench_host")
                space = await live_space(http, host, title="Clip bench")
                speaker = await speak_over_http(http, space["id"], host.headers, ToneTrack(FREQ))
                await asyncio.sleep(SERVER_AUDIO_WAIT_S)
                url = f"/api/spaces/{space['id']}/clips"
                one_by_one, ids = [], set()
                for _ in range(clips):
                    await asyncio.sleep(FRESH_MOMENT_S)  # a new fragment: a new cut, not shared
                    started = time.perf_counter()
                    made = await http.post(url, json={})
                    one_by_one.append(time.perf_counter() - started)
                    assert made.status_code == 201, made.text
                    ids.add(made.json()["id"])
                print(f"HTTP, POST clip (30 s) -> 201, one at a time: {_ms(one_by_one)} "
                      f"over {clips} ({len(ids)} distinct clips)")  # fmt: skip
                started = time.perf_counter()
                answers = await asyncio.gather(*(http.post(url, json={}) for _ in range(burst)))
                took = time.perf_counter() - started
                statuses = [a.status_code for a in answers]
                shared = len({a.json()["id"] for a in answers if a.status_code == 201})
                print(f"HTTP, {burst} at once: {statuses.count(201)} answered 201 with "
                      f"{shared} distinct clip(s) (one moment is cut once), "
                      f"{statuses.count(503)} told 503 + Retry-After, others "
                      f"{sorted(set(statuses) - {201, 503})}, in {took:.2f} s")  # fmt: skip
                await speaker.close()
        finally:
            stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--burst", type=int, default=40)
    args = parser.parse_args()
    bench_cut(max(1, min(args.cuts, 1_000)))
    asyncio.run(bench_http(max(1, min(args.clips, 500)), max(1, min(args.burst, 500))))


if __name__ == "__main__":
    main()
