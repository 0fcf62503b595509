"""The mono Opus encoder of each speaker's mix-minus (stage/mix_minus_encoder.py).

The whole path (aiortc's sender packing it, a peer decoding it) runs in
test_stage_room.py, which checks what each speaker hears; here the encoder alone."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from tones import steady_tone_power
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.mix_minus_encoder import SILENT_FRAMES_ENCODED, MixMinusEncoder

TONE_DBFS = -10.5
"""A sine at amplitude 0.3."""


def mono_frames(seconds: float, freq: float = 440.0) -> list[np.ndarray]:
    count = round(seconds * SAMPLE_RATE / FRAME_SAMPLES)
    t = np.arange(count * FRAME_SAMPLES) / SAMPLE_RATE
    wave = np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return list(wave.reshape(count, FRAME_SAMPLES))


def test_one_packet_per_frame_with_running_timestamps_heard_at_the_level_sent() -> None:
    encoder = MixMinusEncoder()
    packets = [encoder.encode(f) for f in mono_frames(1.0)]
    assert all(p is not None for p in packets)
    encoded = [p for p in packets if p is not None]
    assert [p.pts for p in encoded] == [n * FRAME_SAMPLES for n in range(len(encoded))]
    assert {p.time_base for p in encoded} == {Fraction(1, SAMPLE_RATE)}
    # What a browser does with it: a stereo Opus decoder (opus/48000/2 as negotiated).
    decoder = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", SAMPLE_RATE
    decoded = np.concatenate(
        [
            f.to_ndarray().reshape(-1, 2)
            for p in encoded
            for f in decoder.decode(av.Packet(bytes(p)))
        ]
    )
    for channel in (decoded[:, 0], decoded[:, 1]):  # the voice on both sides
        level = steady_tone_power(channel[FRAME_SAMPLES:], SAMPLE_RATE, 440.0)
        assert abs(level - TONE_DBFS) < 1.0, level
    bitrate = sum(p.size for p in encoded) * 8 / 1.0
    assert bitrate < 48_000  # a speech bitrate, not aiortc's 96 kbps


def test_silence_reuses_a_packet_and_the_voice_after_it_is_clean() -> None:
    """Tone, 2 s of digital silence, tone: most silent frames are not encoded, the stream
    keeps one packet per frame, and the decoded audio is silent then the tone again
    at its level, without a click where it comes back."""
    tone = mono_frames(1.0)
    silence = [np.zeros(FRAME_SAMPLES, dtype=np.int16)] * 100
    encoder = MixMinusEncoder()
    encoded = [encoder.encode(f) for f in [*tone, *silence, *tone]]
    packets = [p for p in encoded if p is not None]
    assert len(packets) == len(encoded)
    assert [p.pts for p in packets] == [n * FRAME_SAMPLES for n in range(len(packets))]
    assert encoder.reused == len(silence) - SILENT_FRAMES_ENCODED
    decoder = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "mono", SAMPLE_RATE
    decoded = np.concatenate(
        [f.to_ndarray().reshape(-1) for p in packets for f in decoder.decode(av.Packet(bytes(p)))]
    )
    second = SAMPLE_RATE
    quiet = decoded[second + FRAME_SAMPLES * 10 : 3 * second]
    assert np.abs(quiet.astype(np.int32)).max() < 50, "silence decodes to silence"
    back = decoded[3 * second :]
    assert abs(steady_tone_power(back, SAMPLE_RATE, 440.0) - TONE_DBFS) < 1.0
    peak = 0.3 * 32767
    assert np.abs(back.astype(np.int32)).max() < 1.3 * peak, "no click where the voice resumes"
