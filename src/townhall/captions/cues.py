"""Caption cues and their WebVTT form: pure data, no I/O.

A cue's times are seconds of the program (0 is the first sample the mixer pushed),
the same clock as the recording and the HLS timeline, so the cues of a live space
line up with its replay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

WEBVTT_HEADER = "WEBVTT\n\n"
MAX_CUE_CHARS = 500
"""A recognizer that runs away cannot make a cue longer than this."""


@dataclass(frozen=True, slots=True)
class Cue:
    start_s: float
    end_s: float
    text: str

    def to_json(self) -> dict[str, float | str]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "text": self.text}


class CaptionTrack:
    """The newest cues of one space, bounded: the oldest go when it is full (a replay
    reads the file written at the end, which has them all; see `webvtt`)."""

    def __init__(self, max_cues: int) -> None:
        if max_cues < 1:
            raise ValueError("max_cues must be at least 1")
        self._cues: deque[Cue] = deque(maxlen=max_cues)
        self.total = 0
        """Cues ever added, including those that fell out of the window."""

    def add(self, cue: Cue) -> None:
        text = " ".join(cue.text.split())[:MAX_CUE_CHARS]
        if not text:
            return
        # Kept to the millisecond the API shows, so a client's `since` (an `end_s` it
        # was given) compares equal to the cue it came from.
        start, end = round(cue.start_s, 3), round(max(cue.end_s, cue.start_s), 3)
        self._cues.append(Cue(start, end, text))
        self.total += 1

    def since(self, since_s: float | None) -> list[Cue]:
        """Cues that end after `since_s` (all without it): a client passes the end of
        the last cue it has and gets only newer ones."""
        if since_s is None:
            return list(self._cues)
        return [cue for cue in self._cues if cue.end_s > since_s]

    def __len__(self) -> int:
        return len(self._cues)


def timestamp(seconds: float) -> str:
    """WebVTT's HH:MM:SS.mmm."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def escape(text: str) -> str:
    """Cue text may not hold '&', '<' or the '-->' of a timing line (WebVTT §4.1)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webvtt(cues: Iterable[Cue], header: str = WEBVTT_HEADER) -> str:
    """A WebVTT document of the cues, in order."""
    blocks = [
        f"{timestamp(cue.start_s)} --> {timestamp(cue.end_s)}\n{escape(cue.text)}\n" for cue in cues
    ]
    return header + "\n".join(blocks)


def parse_webvtt(document: str) -> list[Cue]:
    """The cues of a document `webvtt` wrote (the replay's file)."""
    cues = []
    for block in document.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) < 2 or " --> " not in lines[0]:
            continue
        start, end = (_seconds(part) for part in lines[0].split(" --> ", 1))
        text = " ".join(lines[1:]).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        cues.append(Cue(start, end, text))
    return cues


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.strip().split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
