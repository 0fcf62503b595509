"""Each speaker's mix-minus, encoded to Opus in the event loop, before aiortc's sender.

aiortc's sender encodes what a track gives it with its own Opus encoder: stereo at
96 kbps behind a resampler, each 20 ms frame sent to the default thread pool and its
result sent back to the event loop (a work item, a thread wake-up, a cross-thread
future and a loop wake-up per frame per speaker). A track may instead give it an
already encoded packet, which the sender only packs (`Encoder.pack`: payload and RTP
timestamp, no thread). The mix-minus is one voice mix, mono at 48 kHz in 20 ms
frames, so the stage encodes it here: mono at a speech bitrate with libopus's "voip"
mode, about half the work of aiortc's encoder, no resampler, no thread hop
(bench/spaces.py measures the difference). Any Opus decoder plays a mono packet on
both channels of the negotiated opus/48000/2.

A speaker mostly hears silence (nobody else talks, or they are alone on stage): once a
mix-minus has been digital silence for a few frames, the encoder's state is silence too
and the packet it made then is sent again instead of encoding every further silent
frame (libopus takes ~50 us for one). The stream stays continuous (a packet per 20 ms,
running timestamps); the first sound after it is encoded from the state of silence,
which is what the speaker's decoder holds then too.

Without a frame, aiortc's sender sets no RFC 6464 audio-level header extension on
the packet: nothing in townhall's pages reads it (browsers measure the level of what
they decode).
"""

from __future__ import annotations

from fractions import Fraction

import av

from townhall.audience.opus_encoder import OpusEncoder
from townhall.media import SAMPLE_RATE, PcmFrame

MIX_MINUS_BITRATE = 32_000
"""Mono speech in "voip" mode: transparent for a voice at this rate."""
MIX_MINUS_APPLICATION = "voip"
SILENT_FRAMES_ENCODED = 5
"""Silent frames encoded before the last one's packet is reused (100 ms: the encoder's
look-ahead and smoothing have run out)."""
TIME_BASE = Fraction(1, SAMPLE_RATE)
"""Packet timestamps count samples: aiortc's Opus `pack` keeps them as the RTP timestamp."""

__all__ = ["MIX_MINUS_BITRATE", "MixMinusEncoder"]


class MixMinusEncoder:
    """20 ms mono frames in, Opus packets ready for aiortc's sender out (one per frame)."""

    def __init__(self, bitrate: int = MIX_MINUS_BITRATE) -> None:
        self._opus = OpusEncoder(bitrate, application=MIX_MINUS_APPLICATION)
        self._silent_run = 0
        self._silent_packet = b""
        self._pts = 0
        self.reused = 0
        """Silent frames sent as the packet of an earlier one, not encoded."""

    def encode(self, pcm: PcmFrame) -> av.Packet | None:
        """The packet for this frame, its pts the samples since the first packet; None while
        libopus holds its look-ahead (it does not at 20 ms frames, but the API allows it)."""
        self._silent_run = 0 if pcm.any() else self._silent_run + 1
        if self._silent_run > SILENT_FRAMES_ENCODED and self._silent_packet:
            self.reused += 1
            data = self._silent_packet
        else:
            packets = self._opus.encode(pcm)
            if not packets:
                return None
            data = packets[0].data
            if self._silent_run == SILENT_FRAMES_ENCODED:
                self._silent_packet = data
        packet = av.Packet(data)
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        self._pts += len(pcm)
        return packet
