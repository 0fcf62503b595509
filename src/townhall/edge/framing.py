"""Whole ADTS frames out of a byte stream read in arbitrary pieces.

A worker republishes what it reads from the origin into its own fan-out, whose
burst ring hands new listeners the last second of chunks. TCP splits the
origin's chunks anywhere, so the relay publishes only whole frames: every chunk
(and so every burst) starts on a frame boundary, and its duration is known
exactly from the frame headers. Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from townhall.audience.adts import ADTS_HEADER_BYTES, SAMPLING_FREQUENCIES

AAC_SAMPLES_PER_BLOCK = 1024


@dataclass(slots=True)
class FramerStats:
    frames: int = 0
    skipped_bytes: int = 0
    """Bytes dropped to find the next syncword (never expected from our own origin)."""


class AdtsFramer:
    """Buffers at most one partial frame (an ADTS frame is under 8 KiB)."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.stats = FramerStats()

    def feed(self, data: bytes) -> tuple[bytes, float]:
        """Append ``data``; returns the whole frames now complete and their duration in ms
        (``b""`` and 0.0 when no frame is complete yet)."""
        buf = self._pending
        buf += data
        end = 0
        duration_ms = 0.0
        while len(buf) - end >= ADTS_HEADER_BYTES:
            length = 0
            if buf[end] == 0xFF and buf[end + 1] & 0xF6 == 0xF0:
                length = ((buf[end + 3] & 0x03) << 11) | (buf[end + 4] << 3) | (buf[end + 5] >> 5)
            if length < ADTS_HEADER_BYTES:  # not a frame here: drop bytes up to the next sync
                resync = _next_sync(buf, end + 1)
                skip_to = len(buf) if resync < 0 else resync
                self.stats.skipped_bytes += skip_to - end
                del buf[end:skip_to]
                continue
            if len(buf) - end < length:
                break
            rate_index = (buf[end + 2] >> 2) & 0x0F
            blocks = (buf[end + 6] & 0x03) + 1
            if rate_index < len(SAMPLING_FREQUENCIES):
                rate = SAMPLING_FREQUENCIES[rate_index]
                duration_ms += blocks * AAC_SAMPLES_PER_BLOCK * 1000 / rate
            self.stats.frames += 1
            end += length
        out = bytes(buf[:end])
        del buf[:end]
        return out, duration_ms


def _next_sync(buf: bytearray, at: int) -> int:
    while True:
        at = buf.find(b"\xff", at)
        if at < 0 or at + 1 >= len(buf):
            return at
        if buf[at + 1] & 0xF6 == 0xF0:
            return at
        at += 1
