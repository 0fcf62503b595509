"""The last seconds of a program, kept for live clips.

HLS keeps segments for players, and drops them on its own schedule; a clip needs a
known span of audio, so the program also hands each CMAF fragment to this window,
which keeps just enough of them to cover `seconds` (a few hundred KB per space at
speech bitrates) and forgets the oldest as new ones arrive. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque

from townhall.audience.fmp4 import Fragment


class ClipWindow:
    """The newest fragments covering at least `seconds` of audio (bounded by it)."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a clip window holds a positive number of seconds")
        self.seconds = seconds
        self._fragments: deque[Fragment] = deque()
        self._held_s = 0.0

    def add(self, fragment: Fragment) -> None:
        self._fragments.append(fragment)
        self._held_s += fragment.duration_s
        while self._fragments and self._held_s - self._fragments[0].duration_s >= self.seconds:
            self._held_s -= self._fragments.popleft().duration_s

    @property
    def held_s(self) -> float:
        return self._held_s

    def __len__(self) -> int:
        return len(self._fragments)

    def last(self, seconds: float) -> list[Fragment]:
        """The fewest newest fragments that hold `seconds` (all of them if they hold
        less): whole fragments, so the cut needs no re-encode."""
        picked: list[Fragment] = []
        held = 0.0
        for fragment in reversed(self._fragments):
            if held >= seconds:
                break
            picked.append(fragment)
            held += fragment.duration_s
        picked.reverse()
        return picked
