"""Clips: a short piece of a space's audio with its own link, kept for a while.

A listener clips the last seconds of a live space (X: 30 s); the host clips a range
of the finished recording. The rules (how long, which range, who may delete, when a
clip is gone) live here without a clock or a disk: callers pass `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from townhall.domain.errors import Forbidden, Invalid

MIN_CLIP_SECONDS = 1.0
"""Shorter than this is a click, not a clip."""


class ClipSource(StrEnum):
    LIVE = "live"
    """The last seconds of the live program, cut from the fragments kept in memory."""
    RECORDING = "recording"
    """A range of the finished recording, cut by the host."""


@dataclass(frozen=True)
class Clip:
    id: str
    space_id: str
    creator_id: str | None
    """None for a listener who was not signed in."""
    source: ClipSource
    created_at: datetime
    expires_at: datetime
    duration_s: float
    start_s: float | None = None
    """Where a recording clip starts in the recording; None for a live clip."""
    node_id: str | None = None
    """The node whose disk holds the audio (other nodes fetch it from there); None for a
    clip made before nodes were recorded, held wherever the clip directory is."""

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def require_deletable_by(self, actor_id: str, host_id: str) -> None:
        """The space's host may delete any of its clips; whoever made one, their own."""
        if actor_id not in (host_id, self.creator_id):
            raise Forbidden("only the space's host or the clip's author can delete it")


def expiry(now: datetime, ttl_days: float) -> datetime:
    return now + timedelta(days=ttl_days)


def live_clip_seconds(requested: float | None, max_seconds: float) -> float:
    """The last `requested` seconds (default and most: `max_seconds`)."""
    if requested is None:
        return max_seconds
    if not math.isfinite(requested) or not MIN_CLIP_SECONDS <= requested <= max_seconds:
        raise Invalid(
            f"seconds must be between {MIN_CLIP_SECONDS:g} and {max_seconds:g}",
            code="invalid_seconds",
        )
    return requested


def recording_range(
    start_s: float, end_s: float, recording_seconds: float, max_seconds: float
) -> tuple[float, float]:
    """A range inside the recording, at least MIN_CLIP_SECONDS and at most `max_seconds`."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0:
        raise Invalid("start_s must be a number of seconds from 0", code="invalid_start_s")
    if end_s > recording_seconds + MIN_CLIP_SECONDS / 2:
        message = f"end_s is past the end of the recording ({recording_seconds:.1f} s)"
        raise Invalid(message, code="invalid_end_s")
    length = end_s - start_s
    if not MIN_CLIP_SECONDS <= length <= max_seconds:
        message = f"a clip lasts between {MIN_CLIP_SECONDS:g} and {max_seconds:g} seconds"
        raise Invalid(message, code="invalid_end_s")
    return start_s, min(end_s, recording_seconds)
