"""Live captions: the CPU a captioned space costs, and the word accuracy.

`.venv/bin/python -m bench.captions [--seconds 60] [--spaces 1]` starts `--spaces`
recognizer processes (townhall.captions.Captioner, exactly as a live space does) and
feeds each, in real time (20 ms frames on the event loop, as the mixer clock does),
espeak-ng speech of `SENTENCES` with 1 s pauses, repeated to fill `--seconds`. It
prints per space: the recognizer's CPU as a share of one core (from /proc), the cost
of `feed` on the event loop, dropped audio, and the word accuracy of the cues against
the script. Speech is on ~75 % of the time, a busy stage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from bench.procstat import cpu_seconds
from townhall.captions.captioner import Captioner
from townhall.captions.recognizer import RecognizerConfig
from townhall.media import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from speech import with_pauses, word_accuracy  # the tests' espeak helper

SENTENCES = [
    "good evening and welcome to the weekly town hall",
    "the city council will vote on the new budget next week",
    "we have three questions from the audience tonight",
    "please raise your hand if you want to speak",
    "the park on main street will open again in june",
    "thank you for joining us and have a good night",
]
MAX_SECONDS = 3_600.0


async def _feed(captioner: Captioner, audio: np.ndarray, started: float) -> float:
    """Real-time pacing; returns the seconds spent inside `feed`."""
    spent = 0.0
    for index in range(len(audio) // FRAME_SAMPLES):
        await asyncio.sleep(max(0.0, started + index * FRAME_SECONDS - time.monotonic()))
        frame = audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        before = time.perf_counter()
        captioner.feed(frame)
        spent += time.perf_counter() - before
    return spent


async def run(seconds: float, spaces: int) -> None:
    script = with_pauses(SENTENCES, pause_s=1.0)
    repeats = max(1, round(seconds * SAMPLE_RATE / len(script)))
    audio = np.tile(script, repeats)
    audio_s = len(audio) / SAMPLE_RATE
    captioners = [
        Captioner(f"bench-{n}", RecognizerConfig(), queue_seconds=10, max_cues=10_000)
        for n in range(spaces)
    ]
    for captioner in captioners:
        captioner.start()
    await asyncio.sleep(3)  # the model loads (not counted below: it is once per space)
    pids = [c.pid or 0 for c in captioners]
    loaded = [cpu_seconds(pid) for pid in pids]
    started = time.monotonic()
    try:
        spent = await asyncio.gather(*(_feed(c, audio, started) for c in captioners))
        await asyncio.sleep(2)  # the last utterance is decoded
        used = [cpu_seconds(pid) - before for pid, before in zip(pids, loaded, strict=True)]
    finally:
        for captioner in captioners:
            await captioner.stop()
    expected = " ".join([" ".join(SENTENCES)] * repeats)
    print(f"{spaces} space(s), {audio_s:.0f} s of program each, {repeats}x the script")
    for captioner, cpu, feed_s in zip(captioners, used, spent, strict=True):
        heard = " ".join(cue.text for cue in captioner.track.since(None))
        print(
            f"  {captioner.space_id}: recognizer {cpu / audio_s * 100:.1f} % of a core; "
            f"model load {loaded[captioners.index(captioner)]:.2f} s CPU; "
            f"feed on the loop {feed_s / audio_s * 1e6:.0f} us/s; "
            f"dropped {captioner.stats.seconds_dropped:.1f} s; "
            f"cues {captioner.stats.cues}; "
            f"word accuracy {word_accuracy(expected, heard):.2f}"
        )
    print(f"  heard (first space): {' '.join(c.text for c in captioners[0].track.since(None))}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.captions", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--spaces", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(min(args.seconds, MAX_SECONDS), max(1, min(args.spaces, 8))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
