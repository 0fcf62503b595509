"""The mix-minus track that aiortc's sender pulls, and decoded frames to mono. No network."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.tracks import MixMinusTrack, frame_to_mono


def frame(n: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, n, dtype=np.int16)


async def test_frames_come_out_as_48k_stereo_with_running_pts() -> None:
    track = MixMinusTrack(capacity=3)
    track.push(frame(99))  # nobody pulls yet: not kept (it would become permanent delay)
    first = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.push(frame(1))
    track.push(frame(2))
    out = [await first, await track.recv()]
    assert [f.pts for f in out] == [0, FRAME_SAMPLES]
    for f, value in zip(out, (1, 2), strict=True):
        assert (f.sample_rate, f.format.name, f.layout.name, f.samples) == (
            SAMPLE_RATE,
            "s16",
            "stereo",
            FRAME_SAMPLES,
        )
        assert f.time_base.denominator == SAMPLE_RATE
        assert np.all(f.to_ndarray() == value)
    assert track.sent == 2
    track.stop()


async def test_a_stalled_sender_loses_the_oldest_frames() -> None:
    track = MixMinusTrack(capacity=3)
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    for n in range(1, 7):
        track.push(frame(n))
    assert np.all((await pending).to_ndarray() == 4)  # 1..3 were dropped before it ran
    assert track.dropped == 3
    track.stop()


async def test_stop_wakes_a_waiting_recv() -> None:
    track = MixMinusTrack()
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 1.0)


def test_decoded_stereo_becomes_mono() -> None:
    interleaved = np.stack([np.full(FRAME_SAMPLES, 100), np.full(FRAME_SAMPLES, 300)], axis=1)
    decoded = av.AudioFrame.from_ndarray(
        interleaved.astype(np.int16).reshape(1, -1), format="s16", layout="stereo"
    )
    decoded.sample_rate = SAMPLE_RATE
    mono = frame_to_mono(decoded)
    assert mono.dtype == np.int16 and mono.shape == (FRAME_SAMPLES,) and np.all(mono == 200)


def test_an_unexpected_format_is_refused() -> None:
    other = av.AudioFrame(format="s16", layout="mono", samples=160)
    other.sample_rate = 8000
    with pytest.raises(ValueError, match="8000"):
        frame_to_mono(other)
