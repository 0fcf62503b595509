"""ADTS framing, checked against ffmpeg's own ADTS muxer and decoder."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from tones import dominant_frequencies, tone_power
from townhall.audience.adts import (
    ADTS_HEADER_BYTES,
    adts_header,
    audio_specific_config,
    parse_adts_frames,
    sampling_frequency_index,
)
from townhall.audience.encoder import AAC_FRAME_SAMPLES, AacEncoder, AacPacket
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE

BITRATE = 48_000


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def encode(pcm: np.ndarray) -> tuple[AacEncoder, list[AacPacket]]:
    encoder = AacEncoder(BITRATE)
    packets: list[AacPacket] = []
    for start in range(0, len(pcm), FRAME_SAMPLES):
        packets += encoder.encode(pcm[start : start + FRAME_SAMPLES])
    packets += encoder.flush()
    return encoder, packets


def our_adts(packets: list[AacPacket]) -> bytes:
    index = sampling_frequency_index(SAMPLE_RATE)
    return b"".join(
        adts_header(len(p.data), sample_rate_index=index, channels=1) + p.data for p in packets
    )


def decode(data: bytes, container: str) -> np.ndarray:
    with av.open(io.BytesIO(data), format=container) as source:
        frames = [f.to_ndarray().reshape(-1) for f in source.decode(audio=0)]
    return np.concatenate(frames)


def test_header_fields_for_aac_lc_48k_mono() -> None:
    header = adts_header(100, sample_rate_index=3, channels=1)
    assert len(header) == ADTS_HEADER_BYTES
    assert header[0] == 0xFF and header[1] == 0xF1  # syncword, MPEG-4, no CRC
    assert header[2] >> 6 == 1  # profile = object type 2 (LC) minus one
    assert (header[2] >> 2) & 0x0F == 3  # 48 kHz
    assert ((header[2] & 1) << 2) | (header[3] >> 6) == 1  # mono
    assert parse_adts_frames(header + bytes(100)) == [(0, 107)]


def test_header_matches_ffmpegs_adts_muxer_byte_for_byte() -> None:
    _, packets = encode(tone(440, 1.0))
    reference = io.BytesIO()
    with av.open(reference, "w", format="adts") as muxer:
        stream = muxer.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        stream.codec_context.extradata = audio_specific_config(sample_rate_index=3, channels=1)
        for p in packets:
            packet = av.Packet(p.data)
            packet.stream = stream
            packet.pts = packet.dts = p.pts
            muxer.mux(packet)
    assert our_adts(packets) == reference.getvalue()


def test_adts_stream_decodes_to_the_tone() -> None:
    _, packets = encode(tone(440, 3.0))
    stream = our_adts(packets)
    frames = parse_adts_frames(stream)
    assert len(frames) == len(packets)
    assert frames[-1][0] + frames[-1][1] == len(stream)
    pcm = decode(stream, "aac")
    assert abs(len(pcm) - (3.0 * SAMPLE_RATE + AAC_FRAME_SAMPLES)) <= 2 * AAC_FRAME_SAMPLES
    steady = pcm[SAMPLE_RATE // 2 :]
    assert abs(dominant_frequencies(steady, SAMPLE_RATE, 1)[0] - 440) < 2
    assert tone_power(steady, SAMPLE_RATE, 440) > -14  # sent at -10.5 dBFS
    assert tone_power(steady, SAMPLE_RATE, 660) < -50


def test_joining_mid_stream_at_a_frame_boundary_still_decodes() -> None:
    _, packets = encode(tone(660, 2.0))
    stream = our_adts(packets)
    offset, _ = parse_adts_frames(stream)[40]
    pcm = decode(stream[offset:], "aac")
    assert abs(dominant_frequencies(pcm[4096:], SAMPLE_RATE, 1)[0] - 660) < 2


def test_audio_specific_config_matches_the_encoder() -> None:
    encoder = AacEncoder(BITRATE)
    assert encoder.audio_specific_config[:2] == audio_specific_config(
        sample_rate_index=3, channels=1
    )


def test_parse_stops_at_a_torn_frame_and_at_garbage() -> None:
    frame = adts_header(10, sample_rate_index=3, channels=1) + bytes(10)
    assert parse_adts_frames(frame * 2 + frame[:9]) == [(0, 17), (17, 17)]
    assert parse_adts_frames(b"garbage" + frame) == []


def test_rejects_what_adts_cannot_carry() -> None:
    with pytest.raises(ValueError):
        adts_header(8192, sample_rate_index=3, channels=1)
    with pytest.raises(ValueError):
        adts_header(-1, sample_rate_index=3, channels=1)
    with pytest.raises(ValueError):
        sampling_frequency_index(47_999)
