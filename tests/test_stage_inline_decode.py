"""Speaker audio decoded in the event loop as it arrives (townhall.stage.inline_decode).

The real path (aiortc peers, RTP, the receiver calling the decoder) runs in
test_stage_room.py; here the decoder alone, fed packets as aiortc's receiver does."""

from __future__ import annotations

import threading

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame

from tones import steady_tone_power
from townhall.audience.opus_encoder import OpusEncoder
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.inline_decode import InlineDecoder, decode_inline

TONE_DBFS = -10.5
"""A sine at amplitude 0.3."""


def opus_packets(seconds: float, freq: float = 440.0) -> list[bytes]:
    encoder = OpusEncoder(48_000)
    count = round(seconds * SAMPLE_RATE / FRAME_SAMPLES)
    t = np.arange(count * FRAME_SAMPLES) / SAMPLE_RATE
    wave = np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [p.data for f in wave.reshape(count, FRAME_SAMPLES) for p in encoder.encode(f)]


def feed(decoder: InlineDecoder, packets: list[bytes]) -> None:
    for n, data in enumerate(packets):
        decoder.put((None, JitterFrame(data=data, timestamp=n * FRAME_SAMPLES)))


def test_each_packet_becomes_a_mono_20ms_frame_at_the_level_sent() -> None:
    frames: list[np.ndarray] = []
    decoder = InlineDecoder(frames.append)
    packets = opus_packets(1.0)
    feed(decoder, packets)
    assert decoder.decoded == len(packets) and len(frames) == len(packets)
    assert all(f.dtype == np.int16 and f.shape == (FRAME_SAMPLES,) for f in frames)
    level = steady_tone_power(np.concatenate(frames[5:]), SAMPLE_RATE, 440.0)
    assert abs(level - TONE_DBFS) < 1.0, level


def test_a_corrupt_packet_is_dropped_and_counted_and_the_next_ones_decode() -> None:
    frames: list[np.ndarray] = []
    decoder = InlineDecoder(frames.append)
    packets = opus_packets(0.2)
    feed(decoder, [b"", b"\xff\xff\xff", *packets])  # empty would be ffmpeg's end of stream
    assert decoder.bad_frames == 2
    assert len(frames) == len(packets)


def test_the_receivers_thread_waits_until_it_is_stopped() -> None:
    decoder = InlineDecoder(lambda _frame: None)
    returned = threading.Event()
    thread = threading.Thread(target=lambda: (decoder.get(), returned.set()))
    thread.start()
    assert not returned.wait(0.2)  # idle: no work ever goes to the thread
    decoder.put(None)  # what aiortc does when the receiver stops
    thread.join(timeout=5)
    assert returned.is_set()


async def test_it_takes_the_place_of_aiortcs_decoder_queue() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        decoder = decode_inline(receiver, lambda _frame: None)
        assert decoder is not None
        assert receiver._RTCRtpReceiver__decoder_queue is decoder  # type: ignore[attr-defined]
    finally:
        await pc.close()
