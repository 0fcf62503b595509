"""The Opus rendition: a tone in, the same tone out of its CMAF segments (PyAV and ffmpeg)."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import av
import numpy as np

from tones import dominant_frequencies, tone_power
from townhall.audience.hls import HlsPackager
from townhall.audience.opus_rendition import OpusRendition, variant_stream_inf
from townhall.audience.program import ProgramOutput
from townhall.audience.subtitles import master_playlist
from townhall.config import AudioSettings
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE

TONE_HZ = 660.0
TONE_S = 4.0
BITRATE = 32_000


def _tone_frames() -> list[np.ndarray]:
    t = np.arange(round(TONE_S * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = np.round(0.3 * 32767 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    return [pcm[i : i + FRAME_SAMPLES] for i in range(0, len(pcm), FRAME_SAMPLES)]


def _written(rendition: OpusRendition, folder: Path) -> Path:
    """The ended playlist with its init segment and segments, as files ffmpeg can read."""
    playlist = rendition.hls.playlist().decode()
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist)
    assert init is not None
    (folder / init.group(1)).write_bytes(rendition.init_segment)
    for name in re.findall(r"^(\d+)\.m4s$", playlist, flags=re.MULTILINE):
        segment = rendition.hls.segment(int(name))
        assert segment is not None, name
        (folder / f"{name}.m4s").write_bytes(segment)
    path = folder / "index.m3u8"
    path.write_text(playlist)
    return path


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        chunks = [frame.to_ndarray()[0] for frame in container.decode(stream)]
    return np.concatenate(chunks)


def test_a_tone_comes_out_of_the_opus_segments_at_its_frequency(tmp_path: Path) -> None:
    rendition = OpusRendition(AudioSettings(), BITRATE)
    for frame in _tone_frames():
        rendition.push(frame)
    rendition.close()
    playlist = _written(rendition, tmp_path)
    assert "#EXT-X-ENDLIST" in playlist.read_text()

    init_and_segments = tmp_path / "whole.mp4"
    init_and_segments.write_bytes(
        rendition.init_segment
        + b"".join(
            (tmp_path / name).read_bytes()
            for name in sorted(
                (p.name for p in tmp_path.glob("*.m4s")), key=lambda n: int(n.split(".")[0])
            )
        )
    )
    audio = _decoded(init_and_segments)
    assert abs(len(audio) / SAMPLE_RATE - TONE_S) < 0.2
    steady = audio[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2]
    assert abs(dominant_frequencies(steady, SAMPLE_RATE, 1)[0] - TONE_HZ) < 5
    assert tone_power(steady, SAMPLE_RATE, TONE_HZ) > -16  # 0.3 of full scale is -13.5 dBFS

    played = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(playlist), "-f", "s16le", "-"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert played.returncode == 0, played.stderr.decode()
    assert played.stderr.decode().strip() == "", played.stderr.decode()
    pcm = np.frombuffer(played.stdout, dtype=np.int16)
    assert abs(len(pcm) / SAMPLE_RATE - TONE_S) < 0.2
    assert abs(dominant_frequencies(pcm[SAMPLE_RATE:], SAMPLE_RATE, 1)[0] - TONE_HZ) < 5


def _segment_bytes(hls: HlsPackager) -> int:
    return sum(len(hls.segment(n) or b"") for n in range((hls.latest_sequence or 0) + 1))


def test_the_opus_segments_take_fewer_bytes_than_the_aac_ones() -> None:
    """Same audio, same CMAF framing (moof per 200 ms part): 32 kbps Opus vs 48 kbps AAC."""
    opus = OpusRendition(AudioSettings(), BITRATE)
    aac = ProgramOutput(AudioSettings())
    for frame in _tone_frames():
        opus.push(frame)
        aac.push(frame)
    opus.close()
    aac.close()
    ratio = _segment_bytes(opus.hls) / _segment_bytes(aac.hls)
    assert ratio < 0.8, f"Opus segments are {ratio:.0%} of the AAC ones"


def test_the_master_playlist_entry_names_the_codec_and_the_playlist() -> None:
    entry = variant_stream_inf(BITRATE)
    assert entry == '#EXT-X-STREAM-INF:BANDWIDTH=40000,CODECS="opus"\nopus/index.m3u8\n'


def test_the_master_playlist_offers_aac_first_then_opus_each_with_the_captions() -> None:
    text = master_playlist(48_000, captions=True, opus_bitrate=BITRATE).decode()
    variants = [line for line in text.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["index.m3u8", "opus/index.m3u8"]
    assert 'CODECS="mp4a.40.2"' in variants[0] and 'CODECS="opus"' in variants[1]
    assert all('SUBTITLES="captions"' in variant for variant in variants)
    assert "opus" not in master_playlist(48_000, captions=False, opus_bitrate=None).decode()


def _program_date(playlist: str) -> float:
    found = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", playlist)
    assert found is not None, playlist
    return datetime.fromisoformat(found.group(1).replace("Z", "+00:00")).timestamp()


def test_on_demand_the_first_request_gets_a_whole_segment_at_once(tmp_path: Path) -> None:
    """Nothing is encoded before the first demand; then the backlog (a segment and a part)
    is, so the first playlist already lists a segment, dated when its audio was pushed."""
    frames = _tone_frames()
    half = len(frames) // 2
    rendition = OpusRendition(AudioSettings(), BITRATE, on_demand=True)
    for frame in frames[:half]:
        rendition.push(frame)
    assert not rendition.encoding and rendition.fragments == 0
    assert rendition.hls.latest_sequence is None

    before = time.time()
    rendition.demand()
    after = time.time()
    assert rendition.encoding and rendition.hls.latest_sequence == 0
    playlist = rendition.hls.playlist().decode()
    assert "0.m4s" in playlist
    backlog_s = (AudioSettings().segment_ms + AudioSettings().fragment_ms) / 1000
    assert before - backlog_s - 0.3 <= _program_date(playlist) <= after - backlog_s + 0.3

    for frame in frames[half:]:
        rendition.push(frame)
    rendition.close()
    playlist_path = _written(rendition, tmp_path)
    played = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(playlist_path), "-f", "s16le", "-"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert played.returncode == 0 and played.stderr.decode().strip() == "", played.stderr
    pcm = np.frombuffer(played.stdout, dtype=np.int16)
    assert abs(len(pcm) / SAMPLE_RATE - (backlog_s + TONE_S / 2)) < 0.2
    assert abs(dominant_frequencies(pcm[SAMPLE_RATE // 2 :], SAMPLE_RATE, 1)[0] - TONE_HZ) < 5
    assert tone_power(pcm[SAMPLE_RATE // 2 :], SAMPLE_RATE, TONE_HZ) > -16


def test_a_program_encodes_its_opus_rendition_only_once_asked() -> None:
    program = ProgramOutput(AudioSettings())
    assert program.opus is not None
    for frame in _tone_frames()[:10]:
        program.push(frame)
    assert not program.opus.encoding and program.stats.opus_encode_seconds < 0.01
    program.opus.demand()
    program.push(_tone_frames()[10])
    assert program.opus.encoding and program.opus.fragments > 0
    program.close()
    assert program.opus.hls.ended


def test_a_rendition_never_asked_for_ends_empty() -> None:
    rendition = OpusRendition(AudioSettings(), BITRATE, on_demand=True)
    for frame in _tone_frames():
        rendition.push(frame)
    rendition.close()
    assert rendition.hls.ended and rendition.hls.latest_sequence is None
    assert "#EXT-X-ENDLIST" in rendition.hls.playlist().decode()
