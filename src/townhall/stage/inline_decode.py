"""Decode each speaker's Opus in the event loop, the moment the packet arrives.

aiortc hands every received audio packet to a decoder thread of its own (one per
speaker), which sends each decoded frame back to the event loop with
`run_coroutine_threadsafe` (a coroutine, a task, a cross-thread future and a loop
wake-up per 20 ms), where an asyncio queue and a reader task finally pass it to
the stage. Measured by bench/spaces.py, that round trip was most of what a live
space cost the origin. Decoding 20 ms of Opus takes a few tens of microseconds,
less than the hand-over itself, so here the packet is decoded where it arrives,
straight to mono (libopus downmixes; no stereo frame, no numpy averaging), cut
into 20 ms frames and pushed into the speaker's jitter queue.

aiortc has no public hook for this either (see arrival.py), so `decode_inline`
replaces the receiver's private decoder queue with an `InlineDecoder`, before the
receiver starts. aiortc's decoder thread still starts, blocks in `get()` and ends
when the receiver stops (aiortc puts None, then joins it). If a future aiortc
renames the queue, the stage logs a warning and keeps aiortc's path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import av
import numpy as np

from townhall.media import SAMPLE_RATE, PcmFrame
from townhall.stage.jitter import Reframer

logger = logging.getLogger(__name__)

_PRIVATE_QUEUE = "_RTCRtpReceiver__decoder_queue"

__all__ = ["InlineDecoder", "decode_inline"]


class InlineDecoder:
    """Drop-in for the receiver's decoder queue: `put` decodes at once and delivers 20 ms
    mono frames; `get` (aiortc's decoder thread) waits until the receiver stops."""

    def __init__(self, deliver: Callable[[PcmFrame], None]) -> None:
        self._deliver = deliver
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = SAMPLE_RATE
        self._reframer = Reframer()
        self._stopped = threading.Event()
        self.decoded = 0
        self.bad_frames = 0
        """Packets libopus refused (dropped and counted; the next one decodes)."""

    def put(self, task: tuple[Any, Any] | None) -> None:
        """aiortc's `(codec, JitterFrame)` for each packet, or None when it stops."""
        if task is None:
            self._stopped.set()
            return
        _codec, encoded = task
        if not encoded.data:  # to ffmpeg an empty packet means "end of stream": none follow
            self.bad_frames += 1
            return
        try:
            frames = self._codec.decode(av.Packet(encoded.data))
        except av.FFmpegError as exc:
            self.bad_frames += 1
            if self.bad_frames == 1:
                logger.warning("dropping undecodable speaker audio: %s", exc)
            return
        for frame in frames:
            self.decoded += 1
            samples = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
            for chunk in self._reframer.feed(samples):
                self._deliver(chunk)

    def get(self) -> None:
        """Where aiortc's decoder thread waits: there is never work for it."""
        self._stopped.wait()


def decode_inline(receiver: object, deliver: Callable[[PcmFrame], None]) -> InlineDecoder | None:
    """Install an InlineDecoder in an audio receiver that has not started; None if aiortc's
    layout changed (the caller then reads the receiver's track as before)."""
    if not hasattr(receiver, _PRIVATE_QUEUE):
        logger.warning("aiortc has no %s: decoding on its thread", _PRIVATE_QUEUE)
        return None
    decoder = InlineDecoder(deliver)
    setattr(receiver, _PRIVATE_QUEUE, decoder)
    return decoder
