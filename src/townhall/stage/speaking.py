"""Who is speaking right now, for the indicator on everyone's screen.

A level measured on one 20 ms frame flickers with every syllable, and every
flicker would rebuild the space's snapshot. So the level is an RMS over the
last ~300 ms, a speaker lights up as soon as that crosses the threshold, and
goes dark only after it has stayed below for a hold time. Pure logic: one
`update` per mixer tick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from townhall.media import FRAME_MS

WINDOW_MS = 300
"""RMS window: long enough to bridge the gaps between syllables."""
HOLD_MS = 300
"""A speaker stays lit this long after the window level drops below the threshold."""

__all__ = ["SpeakingDetector"]


class _Level:
    """Running mean of per-frame mean squares over a fixed number of frames."""

    def __init__(self, frames: int) -> None:
        self._values: deque[float] = deque(maxlen=frames)
        self._sum = 0.0

    def add(self, mean_square: float) -> float:
        if len(self._values) == self._values.maxlen:
            self._sum -= self._values[0]
        self._values.append(mean_square)
        self._sum = max(0.0, self._sum + mean_square)
        return self._sum / self._values.maxlen  # a fresh speaker ramps up from silence


class SpeakingDetector:
    def __init__(
        self, threshold_dbfs: float, window_ms: int = WINDOW_MS, hold_ms: int = HOLD_MS
    ) -> None:
        self._threshold = 10.0 ** (threshold_dbfs / 10.0)  # as a mean square
        self._window_frames = max(1, window_ms // FRAME_MS)
        self._hold_frames = max(0, hold_ms // FRAME_MS)
        self._levels: dict[str, _Level] = {}
        self._quiet_for: dict[str, int] = {}
        self._speaking: frozenset[str] = frozenset()

    @property
    def speaking(self) -> frozenset[str]:
        return self._speaking

    def update(self, levels_dbfs: Mapping[str, float]) -> bool:
        """Feed this tick's frame level of every speaker who counts (present and unmuted).

        Anyone left out is not speaking and forgotten. Returns True when the
        speaking set changed.
        """
        for gone in self._levels.keys() - levels_dbfs.keys():
            del self._levels[gone]
            self._quiet_for.pop(gone, None)
        speaking = set()
        for user, dbfs in levels_dbfs.items():
            level = self._levels.get(user)
            if level is None:
                level = self._levels[user] = _Level(self._window_frames)
            loud = level.add(10.0 ** (dbfs / 10.0)) >= self._threshold
            if loud:
                self._quiet_for[user] = 0
                speaking.add(user)
            elif user in self._speaking:
                quiet = self._quiet_for.get(user, 0) + 1
                self._quiet_for[user] = quiet
                if quiet <= self._hold_frames:
                    speaking.add(user)
        changed = speaking != self._speaking
        if changed:
            self._speaking = frozenset(speaking)
        return changed
