"""Speech for the captions tests: espeak-ng says a sentence, an aiortc track sends it.

`espeak(text)` is Debian's espeak-ng rendering of `text` as the stage's 48 kHz mono
int16 (resampled by FFmpeg); `SpeechTrack` plays such samples in real time (paced like
ToneTrack) after `start_after_s` of silence, then silence again, and notes the wall
time its speech ended. `word_accuracy` is 1 - WER (word error rate by edit distance).
"""

from __future__ import annotations

import subprocess
import time

import numpy as np
import numpy.typing as npt

from tones import FRAME_SAMPLES, SAMPLE_RATE, ToneTrack

ESPEAK_VOICE = ("-v", "en-us+f2", "-s", "140")
"""The voice pocketsphinx's US model recognized best of those tried on three sentences
(word accuracy: en-us+f2 0.86; f3, f4, m2, en-us 0.33; m1 0.29; m3 0.24; m4, m7 0.19;
f1 0.14), at a calm 140 words a minute."""


def espeak(text: str) -> npt.NDArray[np.int16]:
    wav = subprocess.run(
        ["espeak-ng", *ESPEAK_VOICE, "--stdout", text], capture_output=True, check=True
    ).stdout
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-ar", str(SAMPLE_RATE), "-ac", "1",
         "-f", "s16le", "-"],
        input=wav, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(pcm, dtype=np.int16)


def with_pauses(sentences: list[str], pause_s: float = 1.5) -> npt.NDArray[np.int16]:
    """The sentences one after another with `pause_s` of silence between them."""
    silence = np.zeros(round(pause_s * SAMPLE_RATE), dtype=np.int16)
    parts = [part for s in sentences for part in (silence, espeak(s))]
    return np.concatenate(parts[1:])


class SpeechTrack(ToneTrack):
    """Sends `samples` once, after `start_after_s` of silence, in real time."""

    def __init__(self, samples: npt.NDArray[np.int16], start_after_s: float = 0.5) -> None:
        super().__init__(None, start_after_s)
        self.samples = samples
        self.speech_ended_at: float | None = None
        """time.time() when the last frame holding speech left the track."""

    def _next_samples(self) -> npt.NDArray[np.int16]:
        at = self._sent - self._start_after_samples
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if at + FRAME_SAMPLES <= 0 or at >= len(self.samples):
            return out
        begin = max(0, at)
        chunk = self.samples[begin : at + FRAME_SAMPLES]
        out[begin - at : begin - at + len(chunk)] = chunk
        if self.tone_started_at is None:
            self.tone_started_at = time.time()
        if at + FRAME_SAMPLES >= len(self.samples):
            self.speech_ended_at = time.time()
        return out


def word_accuracy(expected: str, heard: str) -> float:
    """1 - (substitutions + deletions + insertions) / expected words (may go below 0)."""
    ref, hyp = expected.lower().split(), heard.lower().split()
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        current = [i]
        for j, other in enumerate(hyp, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return 1 - previous[-1] / max(1, len(ref))
