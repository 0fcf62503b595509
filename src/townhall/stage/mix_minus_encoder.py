"""The Opus encoder behind each speaker's mix-minus: mono, no resampler.

aiortc's sender encodes what a track gives it with its own Opus encoder: stereo at
96 kbps behind a resampler (one swr pass per 20 ms frame even when the format
already matches), on a thread-pool hop per frame. The mix-minus is one voice mix,
mono at 48 kHz in 20 ms frames, so here it is encoded mono (the channels of the
stereo frame the track hands over are equal) at a speech bitrate with libopus's
"voip" mode: about half the encoder's work and no resampling. Any Opus decoder
plays a mono packet on both channels of the negotiated opus/48000/2.

aiortc creates its encoder lazily and only when it has none, so `encode_mix_minus_here`
puts this one in the sender's private slot before the first frame; if a future
aiortc renames the slot, the stage logs a warning and keeps aiortc's encoder.
"""

from __future__ import annotations

import logging

import av
import numpy as np

from townhall.audience.opus_encoder import OpusEncoder

logger = logging.getLogger(__name__)

MIX_MINUS_BITRATE = 32_000
"""Mono speech in "voip" mode: transparent for a voice at this rate."""
MIX_MINUS_APPLICATION = "voip"
_PRIVATE_ENCODER = "_RTCRtpSender__encoder"

__all__ = ["MIX_MINUS_BITRATE", "MixMinusEncoder", "encode_mix_minus_here"]


class MixMinusEncoder:
    """aiortc's Encoder interface (`encode(frame, force_keyframe)`), mono Opus inside."""

    def __init__(self, bitrate: int = MIX_MINUS_BITRATE) -> None:
        self._opus = OpusEncoder(bitrate, application=MIX_MINUS_APPLICATION)

    def encode(self, frame: av.AudioFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """One 20 ms frame (packed s16, mono or equal stereo channels) -> one Opus packet and
        its RTP timestamp offset (samples since the first packet)."""
        samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16)
        channels = len(frame.layout.channels)
        mono = samples[: frame.samples * channels : channels]
        packets = self._opus.encode(mono)
        if not packets:
            return [], 0
        return [p.data for p in packets], packets[0].pts


def encode_mix_minus_here(sender: object) -> MixMinusEncoder | None:
    """Give an audio sender that has not sent yet a MixMinusEncoder; None if aiortc's
    layout changed (its own encoder then runs, correct but dearer)."""
    if not hasattr(sender, _PRIVATE_ENCODER):
        logger.warning("aiortc has no %s: keeping its Opus encoder", _PRIVATE_ENCODER)
        return None
    encoder = MixMinusEncoder()
    setattr(sender, _PRIVATE_ENCODER, encoder)
    return encoder
