"""HLS (CMAF) packaging: segments are groups of the program's fragments, kept in memory.

Everything served here is pre-built bytes: a segment never changes once listed (cache
it forever), the playlist is re-serialised only when a segment is added or the
stream ends (cache it for about a segment). Memory is bounded by the window plus a
grace period in which segments that just left the playlist can still be fetched by
clients and caches that read the previous playlist (RFC 8216 §6.2.2).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from townhall.audience.fmp4 import Fragment
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

    def __init__(self, settings: AudioSettings, *, grace_segments: int | None = None) -> None:
        """``grace_segments`` (default: one window) are kept fetchable after leaving the
        playlist."""
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
        self._playlist = b""
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

    def playlist(self) -> bytes:
        return self._playlist

    def multivariant_playlist(self, media_uri: str = "index.m3u8") -> bytes:
        """A one-variant master playlist: lets players learn the codec before loading."""
        return (
            "#EXTM3U\n"
            f"#EXT-X-VERSION:{HLS_VERSION}\n"
            "#EXT-X-INDEPENDENT-SEGMENTS\n"
            f'#EXT-X-STREAM-INF:BANDWIDTH={self._bitrate * 11 // 10},'
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
        self._pending.append(fragment)
        if fragment.end < self._next_boundary:
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
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f'#EXT-X-MAP:URI="{INIT_URI}"',
        ]
        for segment in listed:
            lines.append(f"#EXTINF:{segment.duration_s:.5f},")
            lines.append(SEGMENT_URI.format(sequence=segment.sequence))
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        self._playlist = ("\n".join(lines) + "\n").encode()
