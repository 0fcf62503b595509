"""The mono Opus encoder put behind each speaker's mix-minus (stage/mix_minus_encoder.py).

The whole path (aiortc's sender calling it, a peer decoding it) runs in
test_stage_room.py, which checks what each speaker hears; here the encoder alone."""

from __future__ import annotations

import av
import numpy as np
from aiortc import RTCPeerConnection

from tones import steady_tone_power
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.mix_minus_encoder import MixMinusEncoder, encode_mix_minus_here

TONE_DBFS = -10.5
"""A sine at amplitude 0.3."""


def stereo_frames(seconds: float, freq: float = 440.0) -> list[av.AudioFrame]:
    """Equal channels, as the mix-minus track hands them to aiortc's sender."""
    count = round(seconds * SAMPLE_RATE / FRAME_SAMPLES)
    t = np.arange(count * FRAME_SAMPLES) / SAMPLE_RATE
    wave = np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    frames = []
    for n, chunk in enumerate(wave.reshape(count, FRAME_SAMPLES)):
        frame = av.AudioFrame.from_ndarray(
            np.repeat(chunk, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts = SAMPLE_RATE, n * FRAME_SAMPLES
        frames.append(frame)
    return frames


def test_one_packet_per_frame_with_running_timestamps_heard_at_the_level_sent() -> None:
    encoder = MixMinusEncoder()
    encoded = [encoder.encode(f) for f in stereo_frames(1.0)]
    assert all(len(payloads) == 1 for payloads, _ in encoded)
    assert [ts for _, ts in encoded] == [n * FRAME_SAMPLES for n in range(len(encoded))]
    # What a browser does with it: a stereo Opus decoder (opus/48000/2 as negotiated).
    decoder = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", SAMPLE_RATE
    decoded = np.concatenate(
        [f.to_ndarray().reshape(-1, 2) for p, _ in encoded for f in decoder.decode(av.Packet(p[0]))]
    )
    for channel in (decoded[:, 0], decoded[:, 1]):  # the voice on both sides
        level = steady_tone_power(channel[FRAME_SAMPLES:], SAMPLE_RATE, 440.0)
        assert abs(level - TONE_DBFS) < 1.0, level
    bitrate = sum(len(p[0]) for p, _ in encoded) * 8 / 1.0
    assert bitrate < 48_000  # a speech bitrate, not aiortc's 96 kbps


async def test_it_takes_the_place_of_aiortcs_encoder() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("audio").sender
        encoder = encode_mix_minus_here(sender)
        assert encoder is not None
        assert sender._RTCRtpSender__encoder is encoder  # type: ignore[attr-defined]
    finally:
        await pc.close()
