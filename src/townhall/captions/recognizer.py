"""The recognizer process: program PCM in, caption cues out (pocketsphinx).

It runs in a process of its own (spawned, see captioner.py) so that however slow
recognition gets it never takes a cycle from the event loop that mixes and fans out
the program. Input is `(first_sample, pcm)` chunks of the 48 kHz mono int16 program,
resampled here to the 16 kHz the acoustic model expects; `first_sample` lets the
timeline skip what the parent dropped. An endpointer cuts the speech into utterances;
each finished utterance becomes one cue. Speech that goes on without a pause is cut
every `max_utterance_s`, so a cue never waits on a long monologue.
"""

from __future__ import annotations

import logging
import multiprocessing.queues
import os
import queue
from dataclasses import dataclass

import av
import numpy as np

from townhall.media import SAMPLE_RATE

RECOGNIZER_RATE = 16_000
DEFAULT_MAX_UTTERANCE_S = 4.0
"""Long enough to hold a sentence whole (cutting mid-word costs accuracy), short enough
that a cue is on the page within ~3 s of most speech."""

AudioChunk = tuple[int, bytes]
"""(index at 48 kHz of the chunk's first sample, mono int16 PCM)."""
CueTuple = tuple[float, float, str]
"""(start_s, end_s, text) in program seconds."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecognizerConfig:
    model_dir: str = ""
    """A pocketsphinx model directory (holding an acoustic model folder, a language
    model `*.lm.bin` and a dictionary `*.dict`); empty means the one the wheel ships."""
    max_utterance_s: float = DEFAULT_MAX_UTTERANCE_S


def decoder_options(model_dir: str) -> dict[str, str]:
    """Decoder paths for a model directory laid out like pocketsphinx's own
    (`en-us/`, `en-us.lm.bin`, `cmudict-en-us.dict`); empty: the bundled English one."""
    if not model_dir:
        return {}
    entries = sorted(os.listdir(model_dir))
    acoustic = [e for e in entries if os.path.isfile(os.path.join(model_dir, e, "mdef"))]
    language = [e for e in entries if e.endswith(".lm.bin") and "phone" not in e]
    dictionary = [e for e in entries if e.endswith(".dict")]
    if not (acoustic and language and dictionary):
        raise ValueError(
            f"{model_dir} is not a pocketsphinx model directory "
            "(needs an acoustic model folder with mdef, a *.lm.bin and a *.dict)"
        )
    return {
        "hmm": os.path.join(model_dir, acoustic[0]),
        "lm": os.path.join(model_dir, language[0]),
        "dict": os.path.join(model_dir, dictionary[0]),
    }


class Recognition:
    """Endpointing and decoding of one program, fed 16 kHz PCM in any chunk size."""

    def __init__(self, config: RecognizerConfig) -> None:
        from pocketsphinx import (  # type: ignore[import-untyped]  # only the child loads it
            Decoder,
            Endpointer,
        )

        self._decoder = Decoder(
            samprate=RECOGNIZER_RATE, loglevel="FATAL", **decoder_options(config.model_dir)
        )
        self._endpointer = Endpointer(sample_rate=RECOGNIZER_RATE)
        self._frame_bytes: int = self._endpointer.frame_bytes
        self._max_utterance_s = config.max_utterance_s
        self._pending = b""
        self._offset_s = 0.0
        """Program time minus endpointer time: grows when the parent dropped audio."""
        self._processed_s = 0.0
        self._utterance_start: float | None = None

    def skip_to(self, program_s: float) -> None:
        """The next audio starts at `program_s` (audio before it was dropped)."""
        self._offset_s = max(self._offset_s, program_s - self._processed_s)

    def feed(self, pcm16k: bytes) -> list[CueTuple]:
        cues: list[CueTuple] = []
        data = self._pending + pcm16k
        usable = len(data) - len(data) % self._frame_bytes
        self._pending = data[usable:]
        for at in range(0, usable, self._frame_bytes):
            frame = data[at : at + self._frame_bytes]
            self._processed_s += len(frame) / 2 / RECOGNIZER_RATE
            was_speech = self._endpointer.in_speech
            speech = self._endpointer.process(frame)
            if speech is None:
                continue
            if not was_speech:
                self._decoder.start_utt()
                self._utterance_start = self._endpointer.speech_start
            self._decoder.process_raw(speech)
            if not self._endpointer.in_speech:
                cues += self._end_utterance(self._endpointer.speech_end)
            elif self._processed_s - (self._utterance_start or 0.0) >= self._max_utterance_s:
                cues += self._end_utterance(self._processed_s)
                self._decoder.start_utt()
                self._utterance_start = self._processed_s
        return cues

    def finish(self) -> list[CueTuple]:
        """The utterance in progress, at the end of the program."""
        if self._utterance_start is None:
            return []
        return self._end_utterance(self._processed_s)

    def _end_utterance(self, end_s: float) -> list[CueTuple]:
        self._decoder.end_utt()
        start = self._utterance_start or 0.0
        self._utterance_start = None
        hypothesis = self._decoder.hyp()
        text = hypothesis.hypstr.strip() if hypothesis is not None else ""
        if not text:
            return []
        return [(start + self._offset_s, end_s + self._offset_s, text)]


class Downsampler:
    """48 kHz to 16 kHz with FFmpeg's resampler (filtered, not just decimated)."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RECOGNIZER_RATE)

    def __call__(self, pcm48k: bytes) -> bytes:
        samples = np.frombuffer(pcm48k, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        return b"".join(
            bytes(out.planes[0])[: out.samples * 2] for out in self._resampler.resample(frame)
        )


PARENT_CHECK_S = 1.0
"""How often a recognizer with no audio checks that its server is still there."""


def _next(audio: multiprocessing.queues.Queue[AudioChunk | None]) -> AudioChunk | None:
    """The next chunk; None at the end of the program or when the server is gone (killed
    without a word: the recognizer must not outlive it)."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            return audio.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return None


def run(
    config: RecognizerConfig,
    audio: multiprocessing.queues.Queue[AudioChunk | None],
    cues: multiprocessing.queues.Queue[CueTuple | None],
) -> None:
    """The child process's main: until the None that ends the program, then one None
    back once every cue is out."""
    try:
        recognition = Recognition(config)
        downsample = Downsampler()
        expected = 0
        while (chunk := _next(audio)) is not None:
            first_sample, pcm = chunk
            if first_sample > expected:
                recognition.skip_to(first_sample / SAMPLE_RATE)
            expected = first_sample + len(pcm) // 2
            for cue in recognition.feed(downsample(pcm)):
                cues.put(cue)
        for cue in recognition.finish():
            cues.put(cue)
    except KeyboardInterrupt:  # the server's Ctrl-C reaches its children too
        pass
    finally:
        cues.put(None)
