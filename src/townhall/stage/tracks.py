"""Glue between aiortc's media tracks and the stage's 20 ms mono int16 frames."""

from __future__ import annotations

import asyncio
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from townhall.media import SAMPLE_RATE, PcmFrame
from townhall.stage.mix_minus_encoder import MixMinusEncoder
from townhall.stage.mixer import to_mono

OUTBOUND_CAPACITY_FRAMES = 3
"""Mix-minus frames waiting for the RTP sender (60 ms). The sender normally takes each frame
the moment it is pushed; a backlog only forms when the event loop stalls, and every
queued frame is latency in a conversation, so the bound is small and the oldest go first."""

__all__ = ["OUTBOUND_CAPACITY_FRAMES", "MixMinusTrack", "frame_to_mono"]


class MixMinusTrack(MediaStreamTrack):
    """What one speaker hears: frames pushed by the mixer tick, pulled by aiortc's sender
    as Opus packets (encoded here, see mix_minus_encoder.py).

    Frames are only kept once the sender has started pulling: before the connection is up
    nobody listens, and a backlog built then would become permanent delay. A frame is
    encoded when the sender takes it, so frames dropped at the bound cost no encode.
    """

    kind = "audio"

    def __init__(
        self, capacity: int = OUTBOUND_CAPACITY_FRAMES, encoder: MixMinusEncoder | None = None
    ) -> None:
        super().__init__()
        self._encoder = encoder or MixMinusEncoder()
        self._frames: deque[PcmFrame] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self._pulling = False
        self.sent = 0
        self.dropped = 0
        """Oldest frames dropped because the sender fell behind by more than `capacity`."""

    def push(self, frame: PcmFrame) -> None:
        if not self._pulling or self.readyState != "live":
            return
        if len(self._frames) >= self._capacity:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    async def recv(self) -> av.Packet:
        self._pulling = True
        while True:
            while not self._frames:
                if self.readyState != "live":
                    raise MediaStreamError
                self._ready.clear()
                await self._ready.wait()
            packet = self._encoder.encode(self._frames.popleft())
            if packet is not None:
                self.sent += 1
                return packet

    def stop(self) -> None:
        super().stop()
        self._frames.clear()
        self._ready.set()  # wake a waiting recv() so it raises MediaStreamError


def frame_to_mono(frame: av.AudioFrame) -> PcmFrame:
    """Decoded audio (aiortc's Opus decoder gives packed s16 stereo at 48 kHz) as mono int16.

    Anything else (another sample format, rate or layout) is a contract break upstream, not
    something to resample silently, so it raises.
    """
    if frame.sample_rate != SAMPLE_RATE or frame.format.name != "s16":
        raise ValueError(
            f"expected s16 at {SAMPLE_RATE} Hz, got {frame.format.name} at {frame.sample_rate} Hz"
        )
    channels = len(frame.layout.channels)
    return to_mono(np.asarray(frame.to_ndarray(), dtype=np.int16), channels)
