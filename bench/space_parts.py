"""The program side of one live space, part by part, in this process (no server, no network).

    .venv/bin/python -m bench.space_parts [--seconds 30]

Pushes `--seconds` of a 440 Hz tone, 20 ms at a time as the mixer clock does, through
townhall's own ProgramOutput with parts turned on one by one (AAC encoder with the live
chunks and the HLS/LL-HLS packager; + the Opus rendition, listened to, and once more
as nobody asked for it (on demand: a backlog only); + the recorder writing to a temp
dir) and through the mixer for 1, 2 and 5 speakers, and prints each part's CPU as a
share of one core per live space (process time, so other load on the machine moves it
little). bench/spaces.py measures the whole space in a real server; what it measures
beyond these parts is aiortc's (peers, RTP, SRTP, Opus in and out) and the event loop's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from townhall.audience.program import ProgramOutput
from townhall.config import AudioSettings
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.mixer import mix


def _tone(frames: int) -> list[np.ndarray]:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    wave = np.round(0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return list(wave.reshape(frames, FRAME_SAMPLES))


def _program_share(
    frames: list[np.ndarray], settings: AudioSettings, record: bool, opus_listened: bool = True
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        program = ProgramOutput(settings, Path(tmp) / "r.part.mp4" if record else None)
        if opus_listened and program.opus is not None:
            program.opus.demand()  # encoded from the first request for it on
        began = time.process_time()
        for frame in frames:
            program.push(frame)
        spent = time.process_time() - began
        program.close()
    return spent / (len(frames) * FRAME_SAMPLES / SAMPLE_RATE)


def _mix_share(frames: list[np.ndarray], speakers: int) -> float:
    began = time.process_time()
    for frame in frames:
        mix([frame] * speakers, [True] * speakers)
    return (time.process_time() - began) / (len(frames) * FRAME_SAMPLES / SAMPLE_RATE)


def measure(seconds: float) -> dict[str, float]:
    frames = _tone(round(seconds * SAMPLE_RATE / FRAME_SAMPLES))
    aac = _program_share(frames, AudioSettings(opus_bitrate=0), record=False)
    with_opus = _program_share(frames, AudioSettings(), record=False)
    opus_unheard = _program_share(frames, AudioSettings(), record=False, opus_listened=False)
    with_recorder = _program_share(frames, AudioSettings(), record=True)
    parts = {
        "aac_encoder_live_and_hls_pct": aac,
        "opus_rendition_pct": with_opus - aac,
        "opus_rendition_nobody_asked_pct": opus_unheard - aac,
        "recorder_pct": with_recorder - with_opus,
        "program_total_pct": with_recorder,
        **{f"mixer_{k}_speakers_pct": _mix_share(frames, k) for k in (1, 2, 5)},
    }
    return {name: round(share * 100, 3) for name, share in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.space_parts", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio pushed per part")
    print(json.dumps(measure(parser.parse_args().seconds), indent=2))


if __name__ == "__main__":
    main()
