"""The mix-minus track that aiortc's sender pulls, and decoded frames to mono. No network."""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from townhall.media import FRAME_SAMPLES, SAMPLE_RATE, PcmFrame
from townhall.stage.mix_minus_encoder import MixMinusEncoder
from townhall.stage.tracks import MixMinusTrack, frame_to_mono


def frame(n: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, n, dtype=np.int16)


class RecordingEncoder(MixMinusEncoder):
    """The real encoder, noting which frames it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.firsts: list[int] = []

    def encode(self, pcm: PcmFrame) -> av.Packet | None:
        self.firsts.append(int(pcm[0]))
        return super().encode(pcm)


async def test_frames_go_out_as_opus_packets_that_aiortc_packs_with_running_timestamps() -> None:
    encoder = RecordingEncoder()
    track = MixMinusTrack(capacity=3, encoder=encoder)
    track.push(frame(99))  # nobody pulls yet: not kept (it would become permanent delay)
    first = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.push(frame(1))
    track.push(frame(2))
    out = [await first, await track.recv()]
    assert encoder.firsts == [1, 2]
    assert all(isinstance(p, av.Packet) and p.size > 0 for p in out)
    # What aiortc's sender does with a packet (no frame, so no encode and no thread hop).
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=SAMPLE_RATE, channels=2)
    packed = [get_encoder(opus).pack(p) for p in out]
    assert [ts for _, ts in packed] == [0, FRAME_SAMPLES]
    assert [payloads for payloads, _ in packed] == [[bytes(p)] for p in out]
    assert track.sent == 2
    track.stop()


async def test_a_stalled_sender_loses_the_oldest_frames() -> None:
    encoder = RecordingEncoder()
    track = MixMinusTrack(capacity=3, encoder=encoder)
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    for n in range(1, 7):
        track.push(frame(n))
    await pending
    assert encoder.firsts == [4]  # 1..3 were dropped before it ran, and never encoded
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
