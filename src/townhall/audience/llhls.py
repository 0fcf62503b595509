"""Low-latency HLS: partial segments, their playlist tags and blocking reload.

Each CMAF fragment the program emits (~200 ms) is published at once as a
partial segment (EXT-X-PART) of the segment being built; the segment is the
same bytes joined once it is whole. A player that knows the server can block
(EXT-X-SERVER-CONTROL: CAN-BLOCK-RELOAD=YES) asks for the playlist that will
hold the next part (`_HLS_msn`, `_HLS_part`) and gets it the moment that part
exists, instead of polling and sleeping: that is where the seconds go. Such a
request names a playlist state, so caches may keep its answer (keyed on the
query): a crowd behind one nginx costs the origin one blocked request per part.

This module is the pure part (what a playlist says, whether a request is
answerable) plus `PlaylistUpdates`, the one awaitable the HTTP route uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BLOCKING_TIMEOUT_TARGETS",
    "HlsPart",
    "PlaylistUpdates",
    "ReloadRequest",
    "part_tags",
    "server_control_tags",
]

PART_URI = "{sequence}.{part}.m4s"
PART_HOLD_BACK_PARTS = 3
"""PART-HOLD-BACK must be at least three part targets (RFC 8216bis §4.4.3.8)."""
PART_LISTED_SEGMENTS = 3
"""Parts are listed for this many of the newest whole segments (the spec's "three
target durations"), then only the whole segment."""
BLOCKING_TIMEOUT_TARGETS = 3
"""A blocked reload waits at most this many target durations (spec: then 503)."""
MAX_MSN_AHEAD = 2
"""An _HLS_msn more than this past the newest segment is refused at once (spec: 400)."""


@dataclass(frozen=True, slots=True)
class HlsPart:
    sequence: int
    """Media sequence number of the segment it belongs to."""
    index: int
    """Position in that segment, from 0."""
    duration_s: float
    data: bytes

    @property
    def uri(self) -> str:
        return PART_URI.format(sequence=self.sequence, part=self.index)


@dataclass(frozen=True, slots=True)
class ReloadRequest:
    """A blocking playlist reload: answer once segment `msn` (or its part `part`) exists."""

    msn: int
    part: int | None = None

    @classmethod
    def from_query(cls, msn: str | None, part: str | None) -> ReloadRequest | None:
        """None for a plain reload; ValueError for malformed or out-of-range values."""
        if msn is None:
            if part is not None:
                raise ValueError("_HLS_part needs _HLS_msn")
            return None
        if not (msn.isdigit() and len(msn) <= 12):
            raise ValueError("_HLS_msn must be a non-negative integer")
        if part is not None and not (part.isdigit() and len(part) <= 6):
            raise ValueError("_HLS_part must be a non-negative integer")
        return cls(int(msn), None if part is None else int(part))


def server_control_tags(part_target_s: float) -> list[str]:
    hold_back = PART_HOLD_BACK_PARTS * part_target_s
    return [
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back:.3f}",
        f"#EXT-X-PART-INF:PART-TARGET={part_target_s:.5f}",
    ]


def part_tags(parts: list[HlsPart]) -> list[str]:
    """EXT-X-PART lines; every AAC frame decodes alone, so every part is independent."""
    return [f'#EXT-X-PART:DURATION={p.duration_s:.5f},URI="{p.uri}",INDEPENDENT=YES' for p in parts]


def preload_hint(sequence: int, index: int) -> str:
    return f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{PART_URI.format(sequence=sequence, part=index)}"'


class PlaylistUpdates:
    """Wakes everything waiting for the playlist to change. One event per change,
    replaced on notify(); waiting costs a coroutine per blocked request, and each
    waits at most its timeout (the connection limits of the server bound how many)."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, timeout_s: float) -> bool:
        """True if the playlist changed within `timeout_s`."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def until(self, ready: Callable[[], bool], timeout_s: float) -> bool:
        """Waits (change by change) until `ready()`; False if `timeout_s` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not ready():
            left = deadline - loop.time()
            if left <= 0 or not await self.wait(left):
                return ready()
        return True
