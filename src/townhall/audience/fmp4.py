"""CMAF (fragmented MP4) for one AAC track, written box by box.

Why by hand rather than through a muxer: the program needs fragments cut at exact
sample boundaries the moment they are complete, the same bytes for HLS, the live
clients and the recording, and an init segment known before the first packet. A
muxer decides fragment boundaries itself and buffers; these ~20 boxes are fixed.
Pure: bytes in, bytes out, no I/O.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

Readable = bytes | bytearray | memoryview | mmap.mmap
"""Anything the box scanner can read: a file's bytes, or the file itself mapped."""

TRACK_ID = 1
MOVIE_TIMESCALE = 1000
_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4
"""ISO-639-2 "und", packed as three 5-bit letters."""
_SAMPLE_FLAGS_SYNC = 0x02000000
"""sample_depends_on = 2: every AAC access unit decodes on its own."""
_OBJECT_TYPE_AAC = 0x40
_STREAM_TYPE_AUDIO = 0x05
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TFHD_DEFAULT_SAMPLE_DURATION = 0x000008
_TFHD_DEFAULT_SAMPLE_FLAGS = 0x000020
_TRUN_DATA_OFFSET = 0x000001
_TRUN_SAMPLE_SIZE = 0x000200
BOX_HEADER_BYTES = 8


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", BOX_HEADER_BYTES + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    if len(body) >= 0x80:
        raise ValueError("descriptor longer than a one-byte length")
    return bytes((tag, len(body))) + body


def _esds(audio_specific_config: bytes, bitrate: int) -> bytes:
    decoder_config = _descriptor(
        0x04,
        struct.pack(
            ">BB3sII",
            _OBJECT_TYPE_AAC,
            (_STREAM_TYPE_AUDIO << 2) | 1,
            b"\0\0\0",  # bufferSizeDB: unknown
            bitrate,  # maxBitrate
            bitrate,  # avgBitrate
        ),
        _descriptor(0x05, audio_specific_config),
    )
    sl_config = _descriptor(0x06, b"\x02")
    es = _descriptor(0x03, struct.pack(">HB", 0, 0), decoder_config, sl_config)
    return full_box(b"esds", 0, 0, es)


def _mp4a(sample_rate: int, channels: int, audio_specific_config: bytes, bitrate: int) -> bytes:
    return box(
        b"mp4a",
        b"\0" * 6,
        struct.pack(">H", 1),  # data_reference_index
        b"\0" * 8,
        struct.pack(">HHHHI", channels, 16, 0, 0, sample_rate << 16),
        _esds(audio_specific_config, bitrate),
    )


def init_segment(
    *,
    sample_rate: int,
    channels: int,
    audio_specific_config: bytes,
    bitrate: int,
    sample_entry: bytes | None = None,
) -> bytes:
    """ftyp + moov with an empty sample table and mvex: what every fragment needs first.
    The sample entry is AAC's mp4a unless another codec's is given (Opus: opus_rendition)."""
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcmp41")
    mvhd = full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),
        struct.pack(">IH", 0x10000, 0x0100), b"\0" * 10,
        _UNITY_MATRIX, b"\0" * 24,
        struct.pack(">I", TRACK_ID + 1),
    )
    tkhd = full_box(
        b"tkhd", 0, 0x000003,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, TRACK_ID, 0, 0),
        b"\0" * 8,
        struct.pack(">HHHH", 0, 0, 0x0100, 0),  # layer, alternate group, volume
        _UNITY_MATRIX,
        struct.pack(">II", 0, 0),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, sample_rate, 0, _LANGUAGE_UND, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, b"soun"), b"\0" * 12, b"SoundHandler\0")
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1),
                 sample_entry or _mp4a(sample_rate, channels, audio_specific_config, bitrate)),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(b"minf", full_box(b"smhd", 0, 0, struct.pack(">HH", 0, 0)), dinf, stbl)
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 0, 0, _SAMPLE_FLAGS_SYNC))
    return ftyp + box(b"moov", mvhd, trak, box(b"mvex", trex))


def media_fragment(
    *, sequence: int, base_decode_time: int, samples: Sequence[bytes], sample_duration: int
) -> bytes:
    """moof + mdat holding ``samples`` (AAC access units of equal duration)."""
    if not samples:
        raise ValueError("a fragment holds at least one sample")
    tfhd = full_box(
        b"tfhd", 0,
        _TFHD_DEFAULT_BASE_IS_MOOF | _TFHD_DEFAULT_SAMPLE_DURATION | _TFHD_DEFAULT_SAMPLE_FLAGS,
        struct.pack(">III", TRACK_ID, sample_duration, _SAMPLE_FLAGS_SYNC),
    )
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
    sizes = struct.pack(f">{len(samples)}I", *(len(s) for s in samples))
    trun_size = BOX_HEADER_BYTES + 4 + 8 + len(sizes)
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    moof_size = BOX_HEADER_BYTES + len(mfhd) + BOX_HEADER_BYTES + len(tfhd) + len(tfdt) + trun_size
    data_offset = moof_size + BOX_HEADER_BYTES  # from moof start to the first mdat byte
    trun = full_box(
        b"trun", 0, _TRUN_DATA_OFFSET | _TRUN_SAMPLE_SIZE,
        struct.pack(">Ii", len(samples), data_offset), sizes,
    )
    moof = box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))
    assert len(moof) == moof_size
    return moof + box(b"mdat", *samples)


@dataclass(frozen=True, slots=True)
class Fragment:
    """One complete moof+mdat and its place on the program clock."""

    sequence: int
    """1-based, as mfhd counts."""
    start: int
    """First sample (baseMediaDecodeTime)."""
    samples: int
    """Duration in samples."""
    sample_rate: int
    data: bytes

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate

    @property
    def end(self) -> int:
        return self.start + self.samples


class Fragmenter:
    """Groups access units into fragments that end on the first packet past each
    nominal ``fragment_ms`` boundary, so fragments average exactly ``fragment_ms``
    (23 or 24 AAC frames at 500 ms) and are emitted the moment they are complete."""

    def __init__(self, *, sample_rate: int, fragment_ms: int, sample_duration: int) -> None:
        if fragment_ms <= 0:
            raise ValueError("fragment_ms must be positive")
        self._sample_rate = sample_rate
        self._sample_duration = sample_duration
        self._fragment_samples = sample_rate * fragment_ms // 1000
        self._samples: list[bytes] = []
        self._start = 0
        self._next_boundary = self._fragment_samples
        self._sequence = 0

    @property
    def pending_samples(self) -> int:
        return len(self._samples) * self._sample_duration

    def add(self, data: bytes, pts: int) -> Fragment | None:
        if not self._samples:
            self._start = pts
        self._samples.append(data)
        if pts + self._sample_duration >= self._next_boundary:
            return self._emit()
        return None

    def flush(self) -> Fragment | None:
        return self._emit() if self._samples else None

    def _emit(self) -> Fragment:
        self._sequence += 1
        duration = len(self._samples) * self._sample_duration
        fragment = Fragment(
            sequence=self._sequence,
            start=self._start,
            samples=duration,
            sample_rate=self._sample_rate,
            data=media_fragment(
                sequence=self._sequence,
                base_decode_time=self._start,
                samples=self._samples,
                sample_duration=self._sample_duration,
            ),
        )
        end = self._start + duration
        while self._next_boundary <= end:
            self._next_boundary += self._fragment_samples
        self._samples = []
        return fragment


@dataclass(frozen=True, slots=True)
class BoxHeader:
    kind: bytes
    offset: int
    size: int
    """Whole box, header included; may run past the data when the box is torn."""


def iter_boxes(data: Readable, offset: int = 0) -> Iterator[BoxHeader]:
    """Top-level box headers from ``offset``; stops at a header that is itself torn."""
    end = len(data)
    while offset + BOX_HEADER_BYTES <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            if offset + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = end - offset  # "to end of file": a writer that died mid-box
        if size < BOX_HEADER_BYTES:
            return
        yield BoxHeader(bytes(kind), offset, size)
        offset += size


def playable_prefix(data: Readable) -> int:
    """Length of the longest prefix that is ftyp, moov and whole moof+mdat pairs.

    A recording cut by a crash ends in a torn fragment; this is where to stop reading.
    Returns 0 when even the init segment is incomplete.
    """
    good = 0
    have_moov = False
    pending_moof = False
    for header in iter_boxes(data):
        if header.offset + header.size > len(data):
            break
        if header.kind == b"moov":
            have_moov = True
            good = header.offset + header.size
        elif header.kind == b"moof":
            pending_moof = True
        elif header.kind == b"mdat" and pending_moof:
            pending_moof = False
            good = header.offset + header.size
    return good if have_moov else 0
