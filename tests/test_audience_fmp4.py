"""CMAF boxes written by hand, read back by ffmpeg (PyAV and the ffprobe binary)."""

from __future__ import annotations

import io
import itertools
import json
import struct
import subprocess
from pathlib import Path

import av
import numpy as np

from tones import dominant_frequencies
from townhall.audience.encoder import AAC_FRAME_SAMPLES, AacEncoder
from townhall.audience.fmp4 import (
    Fragment,
    Fragmenter,
    init_segment,
    iter_boxes,
    playable_prefix,
)
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE

BITRATE = 48_000
FRAGMENT_MS = 500


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def build(pcm: np.ndarray) -> tuple[bytes, list[Fragment]]:
    encoder = AacEncoder(BITRATE)
    fragmenter = Fragmenter(
        sample_rate=SAMPLE_RATE, fragment_ms=FRAGMENT_MS, sample_duration=AAC_FRAME_SAMPLES
    )
    fragments: list[Fragment] = []
    packets = []
    for start in range(0, len(pcm), FRAME_SAMPLES):
        packets += encoder.encode(pcm[start : start + FRAME_SAMPLES])
    packets += encoder.flush()
    for packet in packets:
        done = fragmenter.add(packet.data, packet.pts)
        if done:
            fragments.append(done)
    last = fragmenter.flush()
    if last:
        fragments.append(last)
    init = init_segment(
        sample_rate=SAMPLE_RATE,
        channels=1,
        audio_specific_config=encoder.audio_specific_config,
        bitrate=BITRATE,
    )
    return init, fragments


def decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format="mp4") as source:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in source.decode(audio=0)])


def test_init_plus_fragments_decode_to_the_tone() -> None:
    init, fragments = build(tone(440, 3.0))
    pcm = decode(init + b"".join(f.data for f in fragments))
    expected = sum(f.samples for f in fragments)
    assert len(pcm) == expected
    assert abs(dominant_frequencies(pcm[SAMPLE_RATE // 2 :], SAMPLE_RATE, 1)[0] - 440) < 2


def test_fragments_tile_the_timeline_and_average_the_target() -> None:
    _, fragments = build(tone(440, 5.0))
    for before, after in itertools.pairwise(fragments):
        assert after.start == before.end
        assert after.sequence == before.sequence + 1
    whole = fragments[:-1]  # the last one is whatever was left at the end
    for fragment in whole:
        assert FRAGMENT_MS / 1000 - 0.03 < fragment.duration_s < FRAGMENT_MS / 1000 + 0.03
    mean = sum(f.duration_s for f in whole) / len(whole)
    assert abs(mean - FRAGMENT_MS / 1000) < 0.012
    print(f"\nfragment durations (s): {[round(f.duration_s, 4) for f in fragments]}")


def test_a_fragment_alone_after_the_init_segment_decodes(tmp_path: Path) -> None:
    """What a player joining late does: init segment, then some later fragment."""
    init, fragments = build(tone(660, 3.0))
    path = tmp_path / "late.mp4"
    path.write_bytes(init + fragments[3].data + fragments[4].data)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-of", "json", str(path)],
        capture_output=True, check=True, text=True, timeout=30,
    )
    assert probe.stderr == ""
    packets = json.loads(probe.stdout)["packets"]
    assert len(packets) == (fragments[3].samples + fragments[4].samples) // AAC_FRAME_SAMPLES
    assert int(packets[0]["pts"]) == fragments[3].start  # tfdt carries the timeline
    assert abs(dominant_frequencies(decode(path.read_bytes())[2048:], SAMPLE_RATE, 1)[0]
               - 660) < 3


def test_box_layout_and_data_offset() -> None:
    init, fragments = build(tone(440, 1.0))
    assert [b.kind for b in iter_boxes(init)] == [b"ftyp", b"moov"]
    data = fragments[0].data
    boxes = list(iter_boxes(data))
    assert [b.kind for b in boxes] == [b"moof", b"mdat"]
    moof = data[: boxes[0].size]
    trun = moof.index(b"trun")
    (count, data_offset) = struct.unpack_from(">Ii", moof, trun + 8)
    assert data_offset == boxes[0].size + 8
    sizes = struct.unpack_from(f">{count}I", moof, trun + 16)
    assert sum(sizes) == boxes[1].size - 8


def test_playable_prefix_drops_a_torn_fragment() -> None:
    init, fragments = build(tone(440, 2.0))
    whole = init + fragments[0].data + fragments[1].data
    assert playable_prefix(whole) == len(whole)
    torn_mdat = whole + fragments[2].data[:-5]
    assert playable_prefix(torn_mdat) == len(whole)
    moof_only = whole + fragments[2].data[: list(iter_boxes(fragments[2].data))[1].offset]
    assert playable_prefix(moof_only) == len(whole)
    assert playable_prefix(init[:-1]) == 0
    assert playable_prefix(init) == len(init)
    assert playable_prefix(b"") == 0
