"""Per-speaker inbound buffer between the network's rhythm and the mixer's clock.

Decoded audio arrives when the network delivers it; the mixer takes exactly one
20 ms frame per tick. This queue absorbs the difference: a small pre-buffer so
ordinary jitter does not starve the mixer (it grows by a frame each time the
queue runs dry and shrinks back a frame per calm second, so a speaker on shaky
Wi-Fi gets the depth they need and one on a cable keeps the latency low), a
hard bound so a burst (after a stall, or a sender whose clock runs fast)
cannot grow latency without limit, and a trim that gives back latency a burst
left behind. Every frame it throws away is counted. Pure logic: no asyncio,
no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from townhall.media import FRAME_SAMPLES, PcmFrame

PREBUFFER_FRAMES = 2
"""Frames held before playing (40 ms): covers normal LAN jitter of one frame."""
MAX_PREBUFFER_FRAMES = 6
"""The most the pre-buffer adapts up to (120 ms) for a jittery connection."""
CAPACITY_FRAMES = 10
"""Hard bound (200 ms). Past it the oldest frame is dropped: late audio is worth less than
live audio on a stage where people talk over each other."""
TRIM_WINDOW_FRAMES = 50
"""Adaptation and trim are decided once per second of playback: a second without underrun
lowers the pre-buffer by a frame, and if the queue never fell to the pre-buffer depth in
that whole window, the excess is latency nobody needs and is dropped."""

__all__ = [
    "CAPACITY_FRAMES",
    "MAX_PREBUFFER_FRAMES",
    "PREBUFFER_FRAMES",
    "JitterQueue",
    "JitterStats",
    "Reframer",
]


@dataclass
class JitterStats:
    pushed: int = 0
    played: int = 0
    dropped_overflow: int = 0
    """Oldest frames dropped because the queue was full."""
    trimmed: int = 0
    """Frames dropped to give back latency after a burst."""
    underruns: int = 0
    """Times the queue ran dry while playing (the mixer used silence and re-buffered)."""
    prebuffer: int = PREBUFFER_FRAMES
    """Current adaptive pre-buffer depth in frames."""


class JitterQueue:
    """Bounded FIFO of 20 ms frames with a pre-buffer, an overflow bound and a trim."""

    def __init__(
        self,
        prebuffer: int = PREBUFFER_FRAMES,
        capacity: int = CAPACITY_FRAMES,
        trim_window: int = TRIM_WINDOW_FRAMES,
        max_prebuffer: int = MAX_PREBUFFER_FRAMES,
    ) -> None:
        if not 1 <= prebuffer <= capacity:
            raise ValueError("need 1 <= prebuffer <= capacity")
        self._min_prebuffer = prebuffer
        self._max_prebuffer = max(prebuffer, min(max_prebuffer, capacity))
        self._prebuffer = prebuffer
        self._capacity = capacity
        self._trim_window = trim_window
        self._frames: deque[PcmFrame] = deque()
        self._playing = False
        self._window_pops = 0
        self._window_min_depth = capacity
        self.stats = JitterStats(prebuffer=prebuffer)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def playing(self) -> bool:
        return self._playing

    def push(self, frame: PcmFrame) -> None:
        self.stats.pushed += 1
        if len(self._frames) >= self._capacity:
            self._frames.popleft()
            self.stats.dropped_overflow += 1
        self._frames.append(frame)

    def pop(self) -> PcmFrame | None:
        """The next frame for this tick, or None (the mixer uses silence) while buffering."""
        if not self._playing:
            if len(self._frames) < self._prebuffer:
                return None
            self._playing = True
            self._reset_window()
        if not self._frames:
            self._playing = False
            self.stats.underruns += 1
            self._set_prebuffer(self._prebuffer + 1)
            return None
        self._observe_depth(len(self._frames))
        self.stats.played += 1
        return self._frames.popleft()

    def _observe_depth(self, depth: int) -> None:
        self._window_min_depth = min(self._window_min_depth, depth)
        self._window_pops += 1
        if self._window_pops < self._trim_window:
            return
        # A window restarts whenever playback does, so reaching its end means a calm second.
        self._set_prebuffer(self._prebuffer - 1)
        excess = self._window_min_depth - self._prebuffer
        for _ in range(max(0, excess)):
            self._frames.popleft()
            self.stats.trimmed += 1
        self._reset_window()

    def _reset_window(self) -> None:
        self._window_pops = 0
        self._window_min_depth = self._capacity

    def _set_prebuffer(self, frames: int) -> None:
        self._prebuffer = max(self._min_prebuffer, min(frames, self._max_prebuffer))
        self.stats.prebuffer = self._prebuffer


class Reframer:
    """Cuts decoded audio of any length (Opus packets may hold 10 to 60 ms) into 20 ms frames."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)

    def feed(self, samples: PcmFrame) -> list[PcmFrame]:
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size - samples.size % FRAME_SAMPLES
        frames = [samples[i : i + FRAME_SAMPLES] for i in range(0, whole, FRAME_SAMPLES)]
        self._pending = samples[whole:]
        return frames
