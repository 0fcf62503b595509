"""Live captions: the CPU a captioned space costs, and the word accuracy.

`.venv/bin/python -m bench.captions [--seconds 60] [--spaces 1] [--model DIR]` starts
`--spaces` recognizer processes (townhall.captions.Captioner, exactly as a live space
does) and feeds each, in real time (20 ms frames on the event loop, as the mixer clock
does), espeak-ng speech of `SENTENCES` with 1 s pauses, repeated to fill `--seconds`.
It prints per space: the recognizer's CPU as a share of one core (from /proc), the cost
of `feed` on the event loop, dropped audio, and the word error rate (WER) of the cues
against the script. Speech is on ~75 % of the time, a busy stage. The recognizer's CPU
is counted from when its model has loaded until it has recognized all it was given.
`--batch` feeds without pacing into a queue that holds it all: nothing is dropped, so
the CPU per second of program and the WER are the engine's own even on a loaded machine
(real time there shows what a starved recognizer drops instead). `--model` is what
`--captions-model` takes (pocketsphinx, Vosk or faster-whisper, told by its files);
without it, pocketsphinx's bundled English model.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bench.procstat import cpu_seconds
from townhall.captions.captioner import Captioner
from townhall.captions.models import check_model
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


async def _feed(captioner: Captioner, audio: np.ndarray, started: float, paced: bool) -> float:
    """Real-time pacing (or none: `--batch`); returns the seconds spent inside `feed`."""
    spent = 0.0
    for index in range(len(audio) // FRAME_SAMPLES):
        if paced:
            await asyncio.sleep(max(0.0, started + index * FRAME_SECONDS - time.monotonic()))
        frame = audio[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
        before = time.perf_counter()
        captioner.feed(frame)
        spent += time.perf_counter() - before
    return spent


def _children_cpu_s() -> float:
    """CPU of the recognizer processes this one has reaped (Captioner.stop joins them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run(seconds: float, spaces: int, model: str, batch: bool) -> None:
    script = with_pauses(SENTENCES, pause_s=1.0)
    repeats = max(1, round(seconds * SAMPLE_RATE / len(script)))
    audio = np.tile(script, repeats)
    audio_s = len(audio) / SAMPLE_RATE
    queue_s = audio_s + 60 if batch else 10
    captioners = [
        Captioner(
            f"bench-{n}", RecognizerConfig(model_dir=model), queue_seconds=queue_s, max_cues=10_000
        )
        for n in range(spaces)
    ]
    before = _children_cpu_s()
    for captioner in captioners:
        captioner.start()
    await asyncio.sleep(3)  # the model loads (not counted below: it is once per space)
    loaded = [cpu_seconds(c.pid or 0) for c in captioners]
    started = time.monotonic()
    try:
        spent = await asyncio.gather(*(_feed(c, audio, started, not batch) for c in captioners))
    finally:
        for captioner in captioners:  # what is queued is recognized, then the process ends
            await captioner.stop(timeout_s=audio_s * 3 + 60 if batch else 10)
    wall_s = time.monotonic() - started
    recognizing = (_children_cpu_s() - before - sum(loaded)) / spaces
    expected = " ".join([" ".join(SENTENCES)] * repeats)
    engine = f"{check_model(model).value} {model or '(bundled en-us)'}"
    mode = "batch (as fast as it goes)" if batch else "real time"
    print(
        f"{engine}, {mode}: {spaces} space(s), {audio_s:.0f} s of program each, "
        f"{repeats}x the script, {wall_s:.0f} s wall"
    )
    print(
        f"  recognizer CPU per second of program: {recognizing / audio_s * 100:.1f} % of a core "
        f"(mean of the spaces); model load {sum(loaded) / spaces:.2f} s CPU per space"
    )
    for captioner, feed_s in zip(captioners, spent, strict=True):
        heard = " ".join(cue.text for cue in captioner.track.since(None))
        print(
            f"  {captioner.space_id}: feed on the loop {feed_s / audio_s * 1e6:.0f} us/s; "
            f"dropped {captioner.stats.seconds_dropped:.1f} s; "
            f"cues {captioner.stats.cues}; "
            f"WER {1 - word_accuracy(expected, heard):.2f}"
        )
    print(f"  heard (first space): {' '.join(c.text for c in captioners[0].track.since(None))}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.captions", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--spaces", type=int, default=1)
    parser.add_argument("--model", default="", help="a --captions-model directory")
    parser.add_argument(
        "--batch",
        action="store_true",
        help="feed without pacing and drop nothing: the CPU cost and WER on a loaded machine",
    )
    args = parser.parse_args()
    try:
        check_model(args.model)
    except (OSError, ValueError) as bad:
        parser.error(str(bad))
    seconds, spaces = min(args.seconds, MAX_SECONDS), max(1, min(args.spaces, 8))
    asyncio.run(run(seconds, spaces, args.model, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
