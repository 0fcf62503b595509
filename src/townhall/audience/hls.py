"""HLS (CMAF) packaging: segments are groups of the program's fragments, kept in memory.

Everything served here is pre-built bytes: a segment or a part never changes once
listed (cache it forever), the playlist is re-serialised when a part or segment is
added or the stream ends. Each fragment is published at once as a low-latency part
(see llhls.py). Memory is bounded by the window plus a grace period in which segments
that just left the playlist can still be fetched by clients and caches that read the
previous playlist (RFC 8216 §6.2.2); parts are kept only for the newest segments.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from townhall.audience.encoder import AAC_FRAME_SAMPLES
from townhall.audience.fmp4 import Fragment
from townhall.audience.hls_audience import HlsAudience
from townhall.audience.llhls import (
    MAX_MSN_AHEAD,
    PART_LISTED_SEGMENTS,
    HlsPart,
    PlaylistUpdates,
    ReloadRequest,
    part_tags,
    preload_hint,
    server_control_tags,
)
from townhall.config import AudioSettings

HLS_VERSION = 7
"""EXT-X-MAP with fragmented MP4 segments needs version 6+; 7 is what CMAF uses."""
INIT_URI = "init.mp4"
SEGMENT_URI = "{sequence}.m4s"
AAC_LC_CODECS = "mp4a.40.2"


@dataclass(frozen=True, slots=True)
class HlsSegment:
    sequence: int
    start_s: float
    duration_s: float
    data: bytes


class HlsPackager:
    """A sliding-window live playlist over segments built from CMAF fragments."""

    def __init__(
        self,
        settings: AudioSettings,
        *,
        grace_segments: int | None = None,
        clock: Callable[[], float] = time.time,
        sample_rate: int = 48_000,
    ) -> None:
        """``grace_segments`` (default: one window) are kept fetchable after leaving the
        playlist. ``clock`` (wall time) dates the segments (EXT-X-PROGRAM-DATE-TIME), so a
        player can tell how far behind live it is."""
        if settings.hls_window_segments < 1:
            raise ValueError("hls_window_segments must be at least 1")
        self._window = settings.hls_window_segments
        self._grace = self._window if grace_segments is None else grace_segments
        self._segment_ms = settings.segment_ms
        self._target_duration = max(1, math.ceil(settings.segment_ms / 1000))
        self._bitrate = settings.bitrate
        self._init: bytes | None = None
        self._segments: OrderedDict[int, HlsSegment] = OrderedDict()
        self._pending: list[Fragment] = []
        self._next_sequence = 0
        self._next_boundary: int | None = None
        self._ended = False
        self.audience = HlsAudience()
        """Bytes served and recent clients, noted by the HLS routes (for GET /metrics)."""
        self._playlist = b""
        self._clock = clock
        self._epoch: float | None = None  # wall time of program sample 0
        # Fragments end on the first AAC frame past each nominal boundary (fmp4.Fragmenter).
        self._part_target_s = settings.fragment_ms / 1000 + AAC_FRAME_SAMPLES / sample_rate
        self._parts: OrderedDict[tuple[int, int], HlsPart] = OrderedDict()
        self.longest_part_s = 0.0
        self.updates = PlaylistUpdates()
        self._render()

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def target_duration(self) -> int:
        return self._target_duration

    @property
    def media_sequence(self) -> int:
        """Sequence number of the first segment in the playlist."""
        return max(0, self._next_sequence - self._window)

    @property
    def latest_sequence(self) -> int | None:
        return self._next_sequence - 1 if self._next_sequence else None

    def set_init_segment(self, data: bytes) -> None:
        self._init = data

    def init_segment(self) -> bytes | None:
        return self._init

    def segment(self, sequence: int) -> bytes | None:
        """Segment bytes, or None when never made or already expired."""
        found = self._segments.get(sequence)
        return found.data if found is not None else None

    def segment_info(self, sequence: int) -> HlsSegment | None:
        return self._segments.get(sequence)

    @property
    def part_target_s(self) -> float:
        return self._part_target_s

    def part(self, sequence: int, index: int) -> bytes | None:
        """A partial segment's bytes, or None when not made yet or no longer kept."""
        found = self._parts.get((sequence, index))
        return found.data if found is not None else None

    def is_ready(self, request: ReloadRequest) -> bool:
        """Whether the playlist already answers a blocking reload: it lists segment
        ``msn`` whole or, with ``part``, that part (or anything later: a segment may end
        with fewer parts than the player guessed). An ended stream answers everything."""
        if self._ended:
            return True
        if request.part is None:
            return request.msn < self._next_sequence
        if request.msn < self._next_sequence - 1:
            return True
        if not self._next_sequence:
            return False  # no part is listed before the first whole segment (see _render)
        return (request.msn, request.part) in self._parts or request.msn < self._building()

    def is_too_far_ahead(self, request: ReloadRequest) -> bool:
        """A reload for a segment further ahead than the spec lets a server wait for."""
        return request.msn > self._next_sequence + MAX_MSN_AHEAD

    def _building(self) -> int:
        """Sequence number of the newest segment with parts (the one being built, if any)."""
        return self._next_sequence if self._pending else self._next_sequence - 1

    def playlist(self) -> bytes:
        return self._playlist

    def multivariant_playlist(self, media_uri: str = "index.m3u8") -> bytes:
        """A one-variant master playlist: lets players learn the codec before loading."""
        return (
            "#EXTM3U\n"
            f"#EXT-X-VERSION:{HLS_VERSION}\n"
            "#EXT-X-INDEPENDENT-SEGMENTS\n"
            f"#EXT-X-STREAM-INF:BANDWIDTH={self._bitrate * 11 // 10},"
            f'CODECS="{AAC_LC_CODECS}"\n'
            f"{media_uri}\n"
        ).encode()

    def add_fragment(self, fragment: Fragment) -> HlsSegment | None:
        """Take the next fragment; returns the segment it completed, if any."""
        if self._ended:
            raise RuntimeError("HLS stream already ended")
        segment_samples = fragment.sample_rate * self._segment_ms // 1000
        if self._next_boundary is None:
            self._next_boundary = fragment.start + segment_samples
        if self._epoch is None:
            self._epoch = self._clock() - fragment.end / fragment.sample_rate
        part = HlsPart(self._next_sequence, len(self._pending), fragment.duration_s, fragment.data)
        self._parts[(part.sequence, part.index)] = part
        self.longest_part_s = max(self.longest_part_s, part.duration_s)
        self._pending.append(fragment)
        if fragment.end < self._next_boundary:
            self._render()
            return None
        while self._next_boundary <= fragment.end:
            self._next_boundary += segment_samples
        return self._complete_segment()

    def close(self) -> None:
        """End of program: the partial last segment is published, then EXT-X-ENDLIST."""
        if self._ended:
            return
        if self._pending:
            self._complete_segment()
        self._ended = True
        self._render()

    def _complete_segment(self) -> HlsSegment:
        first = self._pending[0]
        samples = sum(f.samples for f in self._pending)
        segment = HlsSegment(
            sequence=self._next_sequence,
            start_s=first.start_s,
            duration_s=samples / first.sample_rate,
            data=b"".join(f.data for f in self._pending),
        )
        self._pending = []
        self._segments[segment.sequence] = segment
        self._next_sequence += 1
        while len(self._segments) > self._window + self._grace:
            self._segments.popitem(last=False)
        # Parts stay fetchable a little longer than they are listed, like segments.
        oldest_part = self._next_sequence - 2 * PART_LISTED_SEGMENTS
        while self._parts and next(iter(self._parts))[0] < oldest_part:
            self._parts.popitem(last=False)
        # A target duration must never be exceeded by a rounded EXTINF (RFC 8216 §4.3.3.1).
        self._target_duration = max(self._target_duration, round(segment.duration_s))
        self._render()
        return segment

    def _render(self) -> None:
        listed = [s for s in self._segments.values() if s.sequence >= self.media_sequence]
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{HLS_VERSION}",
            f"#EXT-X-TARGETDURATION:{self._target_duration}",
            *server_control_tags(self._part_target_s),
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f'#EXT-X-MAP:URI="{INIT_URI}"',
        ]
        first_with_parts = self._next_sequence - PART_LISTED_SEGMENTS
        for segment in listed:
            if segment is listed[0] and self._epoch is not None:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{self._date(segment.start_s)}")
            if segment.sequence >= first_with_parts:
                lines += part_tags(self._parts_of(segment.sequence))
            lines.append(f"#EXTINF:{segment.duration_s:.5f},")
            lines.append(SEGMENT_URI.format(sequence=segment.sequence))
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        elif listed:
            # Parts of the segment being built follow the last whole one. Before the first
            # segment is whole nothing is listed: hls.js, handed a playlist of parts only,
            # re-fetched the hinted part in a loop instead of reloading the playlist.
            building = self._parts_of(self._next_sequence)
            lines += part_tags(building)
            lines.append(preload_hint(self._next_sequence, len(building)))
        self._playlist = ("\n".join(lines) + "\n").encode()
        self.updates.notify()

    def _parts_of(self, sequence: int) -> list[HlsPart]:
        parts = []
        for index in range(len(self._parts)):
            part = self._parts.get((sequence, index))
            if part is None:
                break
            parts.append(part)
        return parts

    def _date(self, start_s: float) -> str:
        assert self._epoch is not None
        moment = datetime.fromtimestamp(self._epoch + start_s, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
