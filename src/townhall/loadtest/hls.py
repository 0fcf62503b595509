"""Just enough of an HLS media playlist to behave like a player at the live edge. Pure.

Why a player's choices matter for load: where a player starts (a few
segments back from the live edge) and how often it reloads the playlist (once
per target duration) decide the request rate an HLS audience puts on the
origin or cache; we copy hls.js's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LIVE_EDGE_SEGMENTS = 3
"""hls.js liveSyncDurationCount: start this many segments behind the newest one."""
DEFAULT_TARGET_DURATION_S = 2.0


@dataclass(frozen=True)
class Segment:
    sequence: int
    uri: str
    duration_s: float


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration_s: float
    media_sequence: int
    init_uri: str | None
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False

    def start_segments(self) -> list[Segment]:
        """What a player fetches first: from LIVE_EDGE_SEGMENTS back to the edge."""
        if self.ended:
            return self.segments[:1]
        return self.segments[-LIVE_EDGE_SEGMENTS:]

    def after(self, sequence: int) -> list[Segment]:
        return [s for s in self.segments if s.sequence > sequence]


def _attribute(line: str, name: str) -> str | None:
    marker = f'{name}="'
    start = line.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = line.find('"', start)
    return line[start:end] if end > start else None


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse #EXTM3U media playlist text; raises ValueError if it is not one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an HLS playlist")
    target = DEFAULT_TARGET_DURATION_S
    sequence = 0
    init_uri: str | None = None
    segments: list[Segment] = []
    ended = False
    duration = 0.0
    for line in lines[1:]:
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MAP:"):
            init_uri = _attribute(line, "URI")
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif not line.startswith("#"):
            segments.append(Segment(sequence + len(segments), line, duration))
            duration = 0.0
    return MediaPlaylist(target, sequence, init_uri, segments, ended)
