"""Cutting a clip out of audio the program already encoded: stream copy, no re-encode.

The source is either the live window's fragments behind the init segment (a
fragmented MP4 in memory) or the finished recording (an .m4a on disk). Whole AAC
access units are copied, their timestamps moved to start at zero, into a faststart
.m4a that any player and any HTTP cache can take. Blocking (milliseconds for 30 s):
call it off the event loop.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import av

from townhall.audience.fmp4 import Fragment
from townhall.private_files import ensure_private_file

CLIP_FORMAT = "ipod"
"""FFmpeg's name for the .m4a flavour of MP4."""
_TMP_SUFFIX = ".tmp"


class NothingToClip(ValueError):
    """The source holds no audio in the asked range."""


def fragmented_source(init_segment: bytes, fragments: Sequence[Fragment]) -> io.BytesIO:
    """The live window as one fragmented MP4, as a player would fetch it."""
    return io.BytesIO(init_segment + b"".join(fragment.data for fragment in fragments))


def cut_clip(
    source: io.BytesIO | Path,
    dest: Path,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> float:
    """Copies the access units from `start_s` to `end_s` (seconds from the source's
    first one; None: to the end) into `dest`, atomically. Returns the clip's length."""
    tmp = dest.with_name(dest.name + _TMP_SUFFIX)
    opened = str(source) if isinstance(source, Path) else source
    with av.open(opened, "r", format="mp4") as src:
        if not src.streams.audio:
            raise NothingToClip("the source has no audio track")
        stream = src.streams.audio[0]
        tmp.unlink(missing_ok=True)
        ensure_private_file(tmp)  # FFmpeg would create it with the umask's mode
        try:
            duration = _copy(src, stream, tmp, start_s, end_s)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, dest)
    return duration


def _copy(
    src: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    tmp: Path,
    start_s: float,
    end_s: float | None,
) -> float:
    time_base = stream.time_base
    if time_base is None:
        raise NothingToClip("the source's audio has no time base")
    origin: int | None = None
    offset: int | None = None
    end = 0
    with av.open(str(tmp), "w", format=CLIP_FORMAT, options={"movflags": "+faststart"}) as dst:
        target = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.pts is None or packet.dts is None:
                continue  # the demuxer's end-of-stream marker
            if origin is None:
                origin = packet.pts
            at_s = float((packet.pts - origin) * time_base)
            if at_s < start_s:
                continue
            if end_s is not None and at_s >= end_s:
                break
            if offset is None:
                offset = packet.pts
            packet.pts -= offset
            packet.dts -= offset
            end = max(end, packet.pts + (packet.duration or 0))
            packet.stream = target
            dst.mux(packet)
        if offset is None:
            raise NothingToClip("no audio in the asked range")
    return float(end * time_base)
