"""ADTS framing: the 7-byte header that makes raw AAC frames a self-describing stream.

Why ADTS for the live stream: a listener can join at any byte boundary of a frame,
``<audio src>`` plays it, and Media Source Extensions take it as ``audio/aac`` without
an init segment. Pure functions, no I/O.
"""

from __future__ import annotations

ADTS_HEADER_BYTES = 7
"""Header without CRC (protection_absent = 1)."""
ADTS_MAX_FRAME_BYTES = (1 << 13) - 1
"""frame_length is a 13-bit field that counts the header too."""
AAC_LC_OBJECT_TYPE = 2
"""MPEG-4 Audio Object Type of AAC Low Complexity; ADTS stores it minus one."""
_BUFFER_FULLNESS_VBR = 0x7FF
_SYNCWORD = 0xFFF

SAMPLING_FREQUENCIES = (
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050,
    16_000, 12_000, 11_025, 8_000, 7_350,
)
"""Index → rate, as in ISO/IEC 14496-3 Table 1.16."""


def sampling_frequency_index(sample_rate: int) -> int:
    """The 4-bit index ADTS and AudioSpecificConfig use instead of the rate itself."""
    try:
        return SAMPLING_FREQUENCIES.index(sample_rate)
    except ValueError:
        raise ValueError(f"no ADTS sampling frequency index for {sample_rate} Hz") from None


def adts_header(
    payload_length: int,
    *,
    object_type: int = AAC_LC_OBJECT_TYPE,
    sample_rate_index: int,
    channels: int,
) -> bytes:
    """Header for one raw AAC frame of ``payload_length`` bytes (one raw data block)."""
    frame_length = payload_length + ADTS_HEADER_BYTES
    if payload_length < 0 or frame_length > ADTS_MAX_FRAME_BYTES:
        raise ValueError(f"AAC frame of {payload_length} bytes does not fit ADTS")
    if not 1 <= object_type <= 4:
        raise ValueError("ADTS carries only object types 1-4 (profile is 2 bits)")
    if not 0 <= sample_rate_index <= 12:
        raise ValueError(f"bad sampling frequency index {sample_rate_index}")
    if not 1 <= channels <= 7:
        raise ValueError(f"bad channel configuration {channels}")
    bits = _SYNCWORD                                   # 12 syncword
    bits = (bits << 1) | 0                             # 1 ID: MPEG-4
    bits = (bits << 2) | 0                             # 2 layer
    bits = (bits << 1) | 1                             # 1 protection_absent: no CRC
    bits = (bits << 2) | (object_type - 1)             # 2 profile
    bits = (bits << 4) | sample_rate_index             # 4 sampling_frequency_index
    bits = (bits << 1) | 0                             # 1 private_bit
    bits = (bits << 3) | channels                      # 3 channel_configuration
    bits = (bits << 4) | 0                             # 4 original, home, copyright id/start
    bits = (bits << 13) | frame_length                 # 13 aac_frame_length
    bits = (bits << 11) | _BUFFER_FULLNESS_VBR         # 11 adts_buffer_fullness
    bits = (bits << 2) | 0                             # 2 raw data blocks - 1
    return bits.to_bytes(ADTS_HEADER_BYTES, "big")


def audio_specific_config(
    *, object_type: int = AAC_LC_OBJECT_TYPE, sample_rate_index: int, channels: int
) -> bytes:
    """The 2-byte AudioSpecificConfig (the decoder setup MP4 carries in ``esds``)."""
    value = (object_type << 11) | (sample_rate_index << 7) | (channels << 3)
    return value.to_bytes(2, "big")


def parse_adts_frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, frame_length) of every whole ADTS frame at the start of ``data``.

    Stops at the first byte that is not a syncword or at a torn last frame: used to
    check that a live chunk holds whole frames only.
    """
    frames: list[tuple[int, int]] = []
    offset = 0
    while offset + ADTS_HEADER_BYTES <= len(data):
        if data[offset] != 0xFF or data[offset + 1] & 0xF0 != 0xF0:
            break
        length = ((data[offset + 3] & 0x03) << 11) | (data[offset + 4] << 3) | (
            data[offset + 5] >> 5
        )
        if length < ADTS_HEADER_BYTES or offset + length > len(data):
            break
        frames.append((offset, length))
        offset += length
    return frames
