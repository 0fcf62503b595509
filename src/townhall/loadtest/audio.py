"""Does a stream start with audio? Recognises the containers a live stream may carry. Pure.

Why check at all: a server under load can answer 200 and then send an error
page or nothing; time-to-first-audio must mean audio, so the first bytes of
every stream are matched against the formats townhall (and Icecast) serve.
"""

from __future__ import annotations

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
MP4_BOX_TYPES = (b"ftyp", b"styp", b"moof", b"moov")


def audio_format(prefix: bytes) -> str | None:
    """"adts", "mp4", "ogg", "mp3", "webm", or None when the bytes are none of those."""
    if len(prefix) >= 2 and prefix[0] == 0xFF and prefix[1] & 0xF6 == 0xF0:
        return "adts"  # 12-bit syncword, layer 00: AAC in ADTS
    if len(prefix) >= 8 and prefix[4:8] in MP4_BOX_TYPES:
        return "mp4"
    if prefix.startswith(b"OggS"):
        return "ogg"
    if prefix.startswith(b"ID3") or (len(prefix) >= 2 and prefix[0] == 0xFF
                                      and prefix[1] & 0xE0 == 0xE0):
        return "mp3"
    if prefix.startswith(EBML_MAGIC):
        return "webm"
    return None
