"""The recognizer process: program PCM in, caption cues out (pocketsphinx, or Vosk or
faster-whisper with `--captions-model`).

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
import queue
from dataclasses import dataclass

import av
import numpy as np

from townhall.captions.decoders import RECOGNIZER_RATE, UtteranceDecoder, open_decoder
from townhall.media import SAMPLE_RATE

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
    """A pocketsphinx, Vosk or faster-whisper model directory (townhall.captions.models
    tells which); empty means the English model the pocketsphinx wheel ships."""
    max_utterance_s: float = DEFAULT_MAX_UTTERANCE_S
    language: str = "en"
    """For multilingual Whisper models; the others are one language each."""


class Recognition:
    """Endpointing of one program, fed 16 kHz PCM in any chunk size; each utterance goes
    to the engine's decoder (townhall.captions.decoders) and comes back as one cue."""

    def __init__(self, config: RecognizerConfig, decoder: UtteranceDecoder | None = None) -> None:
        from pocketsphinx import Endpointer  # type: ignore[import-untyped]  # only the child

        self._decoder = decoder or open_decoder(config.model_dir, config.language)
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
                self._decoder.begin()
                self._utterance_start = self._endpointer.speech_start
            self._decoder.add(speech)
            if not self._endpointer.in_speech:
                cues += self._end_utterance(self._endpointer.speech_end)
            elif self._processed_s - (self._utterance_start or 0.0) >= self._max_utterance_s:
                cues += self._end_utterance(self._processed_s)
                self._decoder.begin()
                self._utterance_start = self._processed_s
        return cues

    def finish(self) -> list[CueTuple]:
        """The utterance in progress, at the end of the program."""
        if self._utterance_start is None:
            return []
        return self._end_utterance(self._processed_s)

    def _end_utterance(self, end_s: float) -> list[CueTuple]:
        text = self._decoder.end()
        start = self._utterance_start or 0.0
        self._utterance_start = None
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
