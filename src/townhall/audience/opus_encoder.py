"""An Opus encoder for the program (PyAV, libopus): 20 ms PCM frames in, Opus packets out.

The mixer clock already speaks 20 ms frames (960 samples at 48 kHz), which is Opus's
own frame, so there is no regrouping: one frame in, one packet out (after libopus's
look-ahead). The timeline matches the AAC encoder's (townhall.audience.encoder):
packet ``pts`` counts samples from 0 at the first packet, encoder priming (libopus's
pre-skip, 312 samples at 48 kHz) included.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from townhall.media import SAMPLE_RATE, PcmFrame

OPUS_FRAME_SAMPLES = 960
"""20 ms at 48 kHz: the mixer's frame and the Opus frame used here."""
OPUS_APPLICATION = "audio"
"""libopus's general mode (speech and music both pass through a space's program);
"voip" favours intelligibility of speech over fidelity."""
OPUS_VBR = "constrained"
"""Variable within a frame's budget: the stream's bitrate stays at the nominal one (what a
listener's bandwidth and the bench's "equal bitrate" comparison assume); plain VBR
overshot by a third on music at 64 kbps."""
CHANNELS = 1


@dataclass(frozen=True, slots=True)
class OpusPacket:
    """One Opus packet (20 ms) and where it sits on the program clock."""

    data: bytes
    pts: int
    duration: int = OPUS_FRAME_SAMPLES


class OpusEncoder:
    """Encodes mono int16 PCM at 48 kHz to Opus; one instance per program, never shared."""

    def __init__(
        self, bitrate: int, *, sample_rate: int = SAMPLE_RATE, application: str = OPUS_APPLICATION
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = CHANNELS
        self._context = av.CodecContext.create("libopus", "w")
        self._context.sample_rate = sample_rate
        self._context.layout = "mono"
        self._context.format = "s16"
        self._context.bit_rate = bitrate
        self._context.time_base = Fraction(1, sample_rate)
        self._context.options = {
            "application": application,
            "frame_duration": str(OPUS_FRAME_SAMPLES * 1000 // sample_rate),
            "vbr": OPUS_VBR,
        }
        self._context.open()
        self.pre_skip: int = int(getattr(self._context, "initial_padding", 0) or 312)
        """Samples the decoder drops at the start (the Opus header's pre-skip)."""
        self._samples_in = 0
        self._packets_out = 0
        self._flushed = False

    @property
    def samples_in(self) -> int:
        return self._samples_in

    def encode(self, pcm: PcmFrame) -> list[OpusPacket]:
        """Packets completed by this 20 ms frame: zero or one."""
        if self._flushed:
            raise RuntimeError("encoder already flushed")
        if len(pcm) != OPUS_FRAME_SAMPLES:
            raise ValueError(f"an Opus frame is {OPUS_FRAME_SAMPLES} samples, not {len(pcm)}")
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.sample_rate
        frame.time_base = self._context.time_base
        frame.pts = self._samples_in
        self._samples_in += OPUS_FRAME_SAMPLES
        return self._wrap(self._context.encode(frame))

    def flush(self) -> list[OpusPacket]:
        """The encoder's look-ahead, as the last packets."""
        if self._flushed:
            return []
        self._flushed = True
        return self._wrap(self._context.encode(None))

    def _wrap(self, packets: list[av.Packet]) -> list[OpusPacket]:
        wrapped = []
        for packet in packets:
            wrapped.append(OpusPacket(bytes(packet), self._packets_out * OPUS_FRAME_SAMPLES))
            self._packets_out += 1
        return wrapped
