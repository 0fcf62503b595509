"""The recording survives kill -9, and becomes a seekable .m4a afterwards."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tones import dominant_frequencies, tone_power
from townhall.audience.fmp4 import iter_boxes
from townhall.audience.program import ProgramOutput
from townhall.audience.recorder import (
    EmptyRecording,
    Recorder,
    final_path_for,
    finalize_recording,
    recover_recordings,
)
from townhall.config import AudioSettings
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.service.recordings import Recordings

SETTINGS = AudioSettings()
CRASH_AFTER_S = 4.0

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from townhall.audience.program import ProgramOutput
    from townhall.config import AudioSettings

    program = ProgramOutput(AudioSettings(), recording_path=Path(sys.argv[1]))
    n = np.arange(960)
    started = time.monotonic()
    for i in range(1500):  # 30 s at most; the test kills us long before
        t = (n + i * 960) / 48000
        program.push(np.round(9830 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
        if i == 0:
            print("pushing", flush=True)
        time.sleep(max(0.0, started + (i + 1) * 0.02 - time.monotonic()))
    """
)


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.round(0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def record(path: Path, seconds: float, freq: float = 440) -> ProgramOutput:
    program = ProgramOutput(SETTINGS, recording_path=path)
    pcm = tone(freq, seconds)
    for start in range(0, len(pcm), FRAME_SAMPLES):
        program.push(pcm[start : start + FRAME_SAMPLES])
    return program


def decode_file(path: Path) -> np.ndarray:
    with av.open(str(path)) as source:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in source.decode(audio=0)])


def ffprobe(path: Path) -> dict:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert done.stderr == ""
    return json.loads(done.stdout)


def test_kill_9_leaves_a_playable_recording_of_all_but_the_last_moments(tmp_path: Path) -> None:
    partial = tmp_path / "crash.part.mp4"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(partial)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "pushing\n", writer.stderr and writer.stderr.read()
        first_push = time.monotonic()
        time.sleep(CRASH_AFTER_S)
        writer.send_signal(signal.SIGKILL)
        elapsed = time.monotonic() - first_push
        writer.wait(10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL

    played = decode_file(partial)  # PyAV straight off the crashed file
    seconds = len(played) / SAMPLE_RATE
    print(f"\nkilled after {elapsed:.2f} s of pushing; partial file holds {seconds:.2f} s "
          f"({partial.stat().st_size} bytes)")
    assert seconds >= elapsed - 1.5
    assert abs(dominant_frequencies(played[4096:], SAMPLE_RATE, 1)[0] - 440) < 2
    ffmpeg = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(partial), "-f", "null", "-"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert ffmpeg.returncode == 0 and ffmpeg.stderr == ""

    final = tmp_path / "crash.m4a"
    duration = finalize_recording(partial, final)
    assert abs(duration - seconds) < 0.05 and not partial.exists()
    assert_seekable_m4a(final, duration, 440)


def assert_seekable_m4a(path: Path, duration: float, freq: float) -> None:
    info = ffprobe(path)
    assert "mp4" in info["format"]["format_name"] or "m4a" in info["format"]["format_name"]
    assert abs(float(info["format"]["duration"]) - duration) < 0.05
    assert info["streams"][0]["codec_name"] == "aac"
    kinds = [b.kind for b in iter_boxes(path.read_bytes())]
    assert kinds.index(b"moov") < kinds.index(b"mdat")  # faststart: index first
    assert b"moof" not in kinds
    with av.open(str(path)) as source:
        stream = source.streams.audio[0]
        middle = duration / 2
        source.seek(int(middle / stream.time_base), stream=stream)
        frame = next(source.decode(stream))
        assert abs(float(frame.pts * stream.time_base) - middle) < 0.1
        pcm = np.concatenate([frame.to_ndarray().reshape(-1)]
                             + [next(source.decode(stream)).to_ndarray().reshape(-1)
                                for _ in range(20)])
    assert abs(dominant_frequencies(pcm[2048:], SAMPLE_RATE, 1)[0] - freq) < 3


async def test_program_close_then_finalize_off_the_loop(tmp_path: Path) -> None:
    recordings = Recordings(tmp_path / "recordings")
    partial = recordings.prepare("space-1")
    program = record(partial, 5.0, freq=660)
    assert partial.exists() and program.recorder is not None
    # Every whole fragment is on disk; the last one waits for the frame past its boundary.
    assert program.recorder.stats.fragments == round(5.0 * 1000 / SETTINGS.fragment_ms) - 1
    program.close()
    seconds = await recordings.finish("space-1")
    final = recordings.final_path("space-1")
    assert final.exists() and not partial.exists()
    assert seconds is not None and abs(seconds - 5.0) < 0.1
    assert_seekable_m4a(final, seconds, 660)
    played = decode_file(final)
    assert tone_power(played[SAMPLE_RATE:], SAMPLE_RATE, 660) > -14


async def test_a_take_overs_part_is_joined_after_the_crashed_origins_part(
    tmp_path: Path,
) -> None:
    """Failover (issue 8): the first origin's part is torn by its crash, the second
    origin records on in a part of its own in the same (shared) directory; the end
    joins them in order, one after the other, into one seekable file."""
    recordings = Recordings(tmp_path / "recordings")
    first = recordings.prepare("space-1")
    record(first, 3.0, freq=440).close()
    data = first.read_bytes()
    first.write_bytes(data[: len(data) - 700])  # SIGKILL mid-fragment
    second = recordings.prepare("space-1")
    assert second != first and second.name == "space-1.2.part.mp4"
    record(second, 2.0, freq=660).close()
    assert recordings.parts("space-1") == [first, second]

    seconds = await recordings.finish("space-1")

    final = recordings.final_path("space-1")
    assert seconds is not None and 4.4 < seconds < 5.0
    assert not first.exists() and not second.exists()
    assert_seekable_m4a(final, seconds, 440)  # the middle is still the first part
    played = decode_file(final)
    before = played[SAMPLE_RATE // 2 : 2 * SAMPLE_RATE]
    after = played[-int(1.5 * SAMPLE_RATE) : -SAMPLE_RATE // 4]
    assert abs(dominant_frequencies(before, SAMPLE_RATE, 1)[0] - 440) < 3
    assert abs(dominant_frequencies(after, SAMPLE_RATE, 1)[0] - 660) < 3
    assert abs(len(played) / SAMPLE_RATE - seconds) < 0.1


def test_close_without_finalize_leaves_a_whole_partial_file(tmp_path: Path) -> None:
    partial = tmp_path / "s.part.mp4"
    program = record(partial, 2.0)
    program.close()
    assert not final_path_for(partial).exists()
    assert abs(len(decode_file(partial)) / SAMPLE_RATE - 2.0) < 0.1
    assert program.recorder is not None and program.recorder.stats.fsyncs >= 1


def test_recover_finalizes_torn_partials_and_drops_empty_ones(tmp_path: Path) -> None:
    whole = tmp_path / "whole.part.mp4"
    record(whole, 2.0).close()
    torn = tmp_path / "torn.part.mp4"
    record(torn, 3.0).close()
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) - 700])  # a crash in the middle of the last fragment
    empty = tmp_path / "empty.part.mp4"
    empty.write_bytes(whole.read_bytes()[:40])  # died while writing the init segment
    (tmp_path / "whole.m4a.tmp").write_bytes(b"half a remux")
    (tmp_path / "other.txt").write_text("not a recording")

    recovered = recover_recordings(tmp_path)

    assert recovered == [tmp_path / "torn.m4a", tmp_path / "whole.m4a"]
    assert not empty.exists() and not (tmp_path / "whole.m4a.tmp").exists()
    assert (tmp_path / "other.txt").exists()
    torn_seconds = len(decode_file(tmp_path / "torn.m4a")) / SAMPLE_RATE
    assert 2.4 < torn_seconds < 3.0  # the torn fragment is gone, the rest is kept
    assert abs(len(decode_file(tmp_path / "whole.m4a")) / SAMPLE_RATE - 2.0) < 0.1
    assert recover_recordings(tmp_path) == []  # nothing left to do
    assert recover_recordings(tmp_path / "missing") == []


def test_finalize_refuses_nothing_and_never_clobbers_a_partial(tmp_path: Path) -> None:
    path = tmp_path / "x.part.mp4"
    Recorder(path).close()
    with pytest.raises(EmptyRecording):
        finalize_recording(path, tmp_path / "x.m4a")
    with pytest.raises(FileExistsError):
        Recorder(path)
    with pytest.raises(ValueError):
        finalize_recording(path, path)
    assert final_path_for(Path("a/42.part.mp4")) == Path("a/42.m4a")


def test_partial_file_is_valid_mp4_from_pyav_in_memory(tmp_path: Path) -> None:
    """Reading it while it is still being written, as a replay-while-live would."""
    partial = tmp_path / "live.part.mp4"
    program = record(partial, 2.0)
    with av.open(io.BytesIO(partial.read_bytes()), format="mp4") as source:
        frames = list(source.decode(audio=0))
    assert sum(f.samples for f in frames) >= SAMPLE_RATE * 1.4
    program.close()
