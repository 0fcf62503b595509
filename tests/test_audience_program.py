"""The whole program path: PCM frames in, the live ADTS stream out to a real socket."""

from __future__ import annotations

import asyncio
import io
import time

import av
import numpy as np

from tones import dominant_frequencies, tone_power
from townhall.audience.adts import parse_adts_frames
from townhall.audience.encoder import AAC_FRAME_SAMPLES
from townhall.audience.fanout import LiveListener
from townhall.audience.program import ProgramOutput
from townhall.config import AudioSettings
from townhall.media import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

SETTINGS = AudioSettings()
TONE_S = 3.0


def frames_of(freq: float, seconds: float) -> list[np.ndarray]:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [pcm[i : i + FRAME_SAMPLES] for i in range(0, len(pcm), FRAME_SAMPLES)]


class Listener(asyncio.Protocol):
    """A live client: keeps every byte with the time it arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.ended = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.arrivals.append((time.monotonic(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended.set_result(None)

    @property
    def data(self) -> bytes:
        return b"".join(d for _, d in self.arrivals)


async def test_live_stream_carries_the_tone_with_little_delay() -> None:
    loop = asyncio.get_running_loop()
    program = ProgramOutput(SETTINGS)
    attached: list[LiveListener] = []

    class Origin(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.WriteTransport)
            attached.append(program.live.attach(transport, "listener-1"))

    server = await loop.create_server(Origin, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        _, client = await loop.create_connection(Listener, "127.0.0.1", port)
        pushed_at: list[float] = []
        started = time.monotonic()
        for i, frame in enumerate(frames_of(440, TONE_S)):  # paced like the mixer clock
            await asyncio.sleep(max(0.0, started + i * FRAME_SECONDS - time.monotonic()))
            pushed_at.append(time.monotonic())
            program.push(frame)
        program.close()
        await asyncio.wait_for(client.ended, 5)
    finally:
        server.close()
        await server.wait_closed()

    stream = client.data
    frames = parse_adts_frames(stream)
    assert frames[-1][0] + frames[-1][1] == len(stream)  # whole ADTS frames, nothing else
    with av.open(io.BytesIO(stream), format="aac") as source:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in source.decode(audio=0)])
    assert abs(len(pcm) / SAMPLE_RATE - TONE_S) < 0.1
    steady = pcm[SAMPLE_RATE // 4 :]
    assert abs(dominant_frequencies(steady, SAMPLE_RATE, 1)[0] - 440) < 2
    assert tone_power(steady, SAMPLE_RATE, 440) > -14

    # For each arrival: how long ago was its newest sample pushed?
    delays = []
    received = 0
    for arrived, data in client.arrivals:
        received += len(data)
        whole = sum(1 for offset, length in frames if offset + length <= received)
        newest_input_sample = whole * AAC_FRAME_SAMPLES - program.priming_samples
        frame_index = min(len(pushed_at) - 1, max(0, newest_input_sample - 1) // FRAME_SAMPLES)
        delays.append(arrived - pushed_at[frame_index])
    delays_ms = np.array(delays[:-1]) * 1000  # the last one is the flush at close
    stats = program.stats
    audio_s = stats.frames_pushed * FRAME_SECONDS
    print(
        f"\npush → listener socket: median {np.median(delays_ms):.0f} ms, "
        f"max {delays_ms.max():.0f} ms (live chunk {SETTINGS.live_chunk_ms} ms); "
        f"holdback max {stats.live_holdback_ms_max:.0f} ms live, "
        f"{stats.fragment_holdback_ms_max:.0f} ms per CMAF fragment"
        f"\nencode+deliver cost {stats.encode_seconds / audio_s * 1e6:.0f} µs per second "
        f"of audio; live stream {program.live.stats.bytes_published / audio_s:.0f} B/s; "
        f"{stats.live_chunks} chunks, {stats.fragments} fragments, {stats.segments} segments"
    )
    assert delays_ms.max() < 500
    assert stats.live_holdback_ms_max < SETTINGS.live_chunk_ms + 100
    assert stats.fragment_holdback_ms_max < SETTINGS.fragment_ms + 100
    assert stats.encode_seconds / audio_s < 0.1  # well under 10 % of a core
    assert program.hls.ended and program.live.listener_count == 0
    assert program.live.stats.closed_at_end == 1 and attached


def test_close_ends_everything_once_and_later_pushes_are_dropped() -> None:
    program = ProgramOutput(SETTINGS)
    for frame in frames_of(440, 1.2):
        program.push(frame)
    segments_before = program.stats.segments
    program.close()
    program.close()
    assert program.hls.playlist().endswith(b"#EXT-X-ENDLIST\n")
    assert program.stats.segments == segments_before + 1  # the partial last one
    assert program.live.closed
    program.push(frames_of(440, 0.02)[0])
    assert program.stats.frames_after_close == 1


def test_encode_cost_and_bitrate_over_a_minute() -> None:
    program = ProgramOutput(SETTINGS)
    rng = np.random.default_rng(1)
    seconds = 60
    t = np.arange(seconds * SAMPLE_RATE) / SAMPLE_RATE
    # Speech-like: a tone whose pitch and loudness wander, with noise.
    pitch = 150 + 50 * np.sin(2 * np.pi * 0.5 * t)
    pcm = (8000 * np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)
           * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 300, len(t)))
    pcm16 = pcm.astype(np.int16)
    # CPU time, not wall time: the figure is CPU per second of audio, and on a shared,
    # loaded machine the wall clock also counts what other processes ran (seen: a failure).
    started = time.process_time()
    for i in range(0, len(pcm16), FRAME_SAMPLES):
        program.push(pcm16[i : i + FRAME_SAMPLES])
    elapsed = time.process_time() - started
    rate = program.live.stats.bytes_published / seconds
    segment_bytes = [len(program.hls.segment(s) or b"") for s in range(40, 48)]
    print(
        f"\n{seconds} s of audio: {elapsed / seconds * 1e6:.0f} µs CPU per second of audio "
        f"({elapsed / seconds * 100:.2f} % of a core); live ADTS {rate:.0f} B/s "
        f"({rate * 8 / 1000:.1f} kbps for {SETTINGS.bitrate // 1000} kbps AAC); "
        f"HLS segment ~{int(np.mean(segment_bytes))} B"
    )
    assert elapsed / seconds < 0.1
    assert SETTINGS.bitrate / 8 * 0.7 < rate < SETTINGS.bitrate / 8 * 1.3
