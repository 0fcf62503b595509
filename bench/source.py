"""The program both servers carry: a 440 Hz tone, AAC-LC in ADTS at 48 kbps, encoded
once by townhall's own encoder so Icecast gets the very bitstream townhall sends."""

from __future__ import annotations

import numpy as np

from townhall.audience.adts import adts_header, sampling_frequency_index
from townhall.audience.encoder import AacEncoder
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE

TONE_HZ = 440.0
TONE_AMPLITUDE = 0.3
LOOP_S = 10


def adts_frames(bitrate: int, seconds: int = LOOP_S) -> list[tuple[bytes, int]]:
    """(ADTS frame, samples) for ``seconds`` of tone."""
    encoder = AacEncoder(bitrate, sample_rate=SAMPLE_RATE)
    index = sampling_frequency_index(SAMPLE_RATE)
    frames: list[tuple[bytes, int]] = []
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    for n in range(seconds * SAMPLE_RATE // FRAME_SAMPLES):
        wave = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * (t + n * FRAME_SAMPLES / SAMPLE_RATE))
        pcm = np.round(wave * 32767).astype(np.int16)
        for packet in encoder.encode(pcm):
            header = adts_header(len(packet.data), sample_rate_index=index, channels=1)
            frames.append((header + packet.data, packet.duration))
    return frames
