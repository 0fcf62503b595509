"""The recording: the program's CMAF fragments appended to disk as they are made.

A fragmented MP4 is playable after every whole fragment, so a crash (even ``kill -9``)
loses at most the fragment in flight plus whatever the kernel had not written back
(only on power loss). Each fragment is written and flushed to the kernel at once;
``fsync`` runs in a helper thread at most every ``fsync_interval_s`` so a slow disk
never stalls the event loop that feeds the live listeners. After the end, the partial
file is remuxed (stream copy, no re-encode) into an ordinary seekable ``.m4a`` with
the index in front, for the replay page and the download.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import mmap
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av

from townhall.audience.fmp4 import playable_prefix
from townhall.private_files import create_private_file, ensure_private_file, make_private_dir

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part.mp4"
"""A recording still being written (or left behind by a crash)."""
FINAL_SUFFIX = ".m4a"
_TMP_SUFFIX = ".tmp"
DEFAULT_FSYNC_INTERVAL_S = 1.0
"""Bounds what a power cut can lose; a process crash loses only the fragment in flight."""


def partial_path(directory: Path, name: str) -> Path:
    return directory / f"{name}{PARTIAL_SUFFIX}"


def final_path_for(partial: Path) -> Path:
    """``42.part.mp4`` → ``42.m4a`` (any other name: its last suffix becomes .m4a)."""
    name = partial.name
    stem = name[: -len(PARTIAL_SUFFIX)] if name.endswith(PARTIAL_SUFFIX) else partial.stem
    return partial.with_name(stem + FINAL_SUFFIX)


class EmptyRecording(ValueError):
    """The partial file holds no whole fragment: there is no audio to keep."""


@dataclass(slots=True)
class RecorderStats:
    fragments: int = 0
    bytes_written: int = 0
    fsyncs: int = 0
    fsync_max_s: float = 0.0
    write_errors: int = 0
    """Failed writes (disk full, say). The first one stops the recording; the live
    stream and HLS go on."""


class Recorder:
    """Appends the init segment and each fragment to ``path`` (created, never clobbered)."""

    def __init__(self, path: Path, *, fsync_interval_s: float = DEFAULT_FSYNC_INTERVAL_S) -> None:
        make_private_dir(path.parent)
        self.path = path
        self._file: io.BufferedWriter | None = open(create_private_file(path), "wb")  # noqa: SIM115 (lives long)
        self._fsync_interval_s = fsync_interval_s
        self._last_fsync = time.monotonic()
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._fsync_running: Future[float] | None = None
        self.stats = RecorderStats()

    @property
    def failed(self) -> bool:
        return self.stats.write_errors > 0

    def write_init(self, data: bytes) -> None:
        self._write(data)

    def append(self, fragment: bytes) -> None:
        if self._write(fragment):
            self.stats.fragments += 1
            self._maybe_fsync()

    def close(self) -> None:
        """Flush and fsync what was written, synchronously, and close the file."""
        if self._file is None:
            return
        if self._fsync_running is not None:
            self._fsync_running.result()
        if self._fsync_pool is not None:
            self._fsync_pool.shutdown(wait=True)
        with contextlib.suppress(OSError):
            self._file.flush()
            self._note_fsync(_timed_fsync(self._file.fileno()))
        self._file.close()
        self._file = None

    def _write(self, data: bytes) -> bool:
        if self._file is None or self.failed:
            return False
        try:
            self._file.write(data)
            self._file.flush()  # into the kernel now: survives the process dying
        except OSError:
            self.stats.write_errors += 1
            log.exception("recording %s stopped: write failed", self.path)
            return False
        self.stats.bytes_written += len(data)
        return True

    def _maybe_fsync(self) -> None:
        assert self._file is not None
        now = time.monotonic()
        if now - self._last_fsync < self._fsync_interval_s:
            return
        if self._fsync_running is not None:
            if not self._fsync_running.done():
                return  # the disk is slower than our interval; the next one will catch up
            self._note_fsync(self._fsync_running.result())
        if self._fsync_pool is None:
            self._fsync_pool = ThreadPoolExecutor(1, thread_name_prefix="recorder-fsync")
        self._last_fsync = now
        self._fsync_running = self._fsync_pool.submit(_timed_fsync, self._file.fileno())

    def _note_fsync(self, seconds: float) -> None:
        self.stats.fsyncs += 1
        self.stats.fsync_max_s = max(self.stats.fsync_max_s, seconds)


def _timed_fsync(fd: int) -> float:
    started = time.perf_counter()
    os.fsync(fd)
    return time.perf_counter() - started


class _PrefixReader(io.RawIOBase):
    """A read-only view of the first ``length`` bytes of a file: hides a torn tail."""

    def __init__(self, raw: io.BufferedReader, length: int) -> None:
        self._raw = raw
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + offset))
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        self._raw.seek(self._pos)
        got = self._raw.readinto(memoryview(buffer)[:want])
        self._pos += got
        return got


def _playable_length(path: Path) -> int:
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        return playable_prefix(view)


def finalize_recording(partial: Path, final: Path) -> float:
    """Remux a (possibly torn) fragmented recording into a seekable faststart ``.m4a``.

    Stream copy only. Whole fragments are kept, a torn last one is dropped. The final
    file appears atomically (written beside it, then renamed; an existing one is
    replaced) and the partial file is removed. Returns the duration in seconds.
    Blocking (about a second per hour of audio): call it off the event loop.
    """
    return join_recordings([partial], final)


def join_recordings(parts: list[Path], final: Path) -> float:
    """Several partial recordings of one space, in order, as one ``.m4a``: each part
    starts where the previous one ended (an origin that took a space over after a crash
    recorded the rest in a part of its own; the seconds between the two are not in
    either). As finalize_recording otherwise: torn tails dropped, a part without audio
    skipped, the parts removed once the final file is in place."""
    if any(final.resolve() == part.resolve() for part in parts):
        raise ValueError(f"the final recording would overwrite one of its sources {parts}")
    tmp = final.with_name(final.name + _TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    ensure_private_file(tmp)  # FFmpeg opens it with the umask's mode otherwise
    seconds = 0.0
    try:
        with av.open(str(tmp), "w", format="ipod", options={"movflags": "+faststart"}) as dst:
            target: av.audio.stream.AudioStream | None = None
            for part in parts:
                target, seconds = _append_part(part, dst, target, seconds)
        if target is None:
            raise EmptyRecording(f"{parts} hold no whole fragment")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(tmp)
    os.replace(tmp, final)
    _fsync_path(final.parent)
    for part in parts:
        part.unlink()
    return seconds


def _append_part(
    part: Path,
    dst: av.container.OutputContainer,
    target: av.audio.stream.AudioStream | None,
    start_s: float,
) -> tuple[av.audio.stream.AudioStream | None, float]:
    """Muxes the part's whole fragments into `dst` from `start_s` on; returns the output
    stream (made from the first part with audio) and where the next part starts."""
    length = _playable_length(part)
    if length == 0:
        return target, start_s
    with open(part, "rb") as raw, av.open(_PrefixReader(raw, length), "r", format="mp4") as src:
        if not src.streams.audio:
            return target, start_s
        source = src.streams.audio[0]
        packets = (p for p in src.demux(source) if p.dts is not None)
        first = next(packets, None)
        if first is None or first.dts is None:
            return target, start_s
        if target is None:
            target = dst.add_stream_from_template(source)
        time_base = first.time_base
        assert time_base is not None
        shift = round(start_s / time_base) - first.dts
        end = first.dts
        for packet in itertools.chain((first,), packets):
            assert packet.dts is not None
            end = max(end, packet.dts + (packet.duration or 0))
            packet.dts += shift
            if packet.pts is not None:
                packet.pts += shift
            packet.stream = target
            dst.mux(packet)
    return target, float((end + shift) * time_base)


def recover_recordings(directory: Path) -> list[Path]:
    """Finalize every partial recording a crash left in ``directory`` (start-up).

    Returns the final files made. A partial without any whole fragment is deleted (it
    holds no audio); one that cannot be read is logged and left for a person.
    """
    if not directory.is_dir():
        return []
    for stale in directory.glob(f"*{FINAL_SUFFIX}{_TMP_SUFFIX}"):
        stale.unlink()  # a finalization the crash interrupted; its partial is still here
    recovered: list[Path] = []
    for partial in sorted(directory.glob(f"*{PARTIAL_SUFFIX}")):
        final = final_path_for(partial)
        try:
            duration = finalize_recording(partial, final)
        except EmptyRecording:
            log.warning("removing %s: no audio in it", partial)
            partial.unlink()
        except (OSError, av.FFmpegError):
            log.exception("could not recover %s; left in place", partial)
        else:
            log.info("recovered %s (%.1f s of audio)", final, duration)
            recovered.append(final)
    return recovered


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
