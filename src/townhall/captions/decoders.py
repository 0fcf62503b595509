"""The speech engines, each behind one small interface: an utterance in, its words out.

The recognizer process (recognizer.py) cuts the program into utterances with one
endpointer and hands each utterance's 16 kHz audio to a decoder as it arrives, so every
engine sees the same cuts and the cue timeline is computed once. Only the child
process imports an engine (they are large, and vosk and faster-whisper are optional:
`pip install 'townhall[captions-vosk]'` or `'townhall[captions-whisper]'`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from townhall.captions.models import ModelKind, detect_model, pocketsphinx_files

RECOGNIZER_RATE = 16_000
WHISPER_COMPUTE_TYPE = "int8"
"""CTranslate2's fastest on a CPU, at no measurable cost in words."""
WHISPER_THREADS = 1
"""One core at most per captioned space, like the other engines."""


class UtteranceDecoder(Protocol):
    def begin(self) -> None:
        """A new utterance starts."""

    def add(self, speech: bytes) -> None:
        """More of it: 16 kHz mono int16."""

    def end(self) -> str:
        """The utterance is over: its words ("" for none)."""


class PocketsphinxDecoder:
    """Decodes while the utterance goes on, so its words are ready at its end."""

    def __init__(self, model_dir: str) -> None:
        from pocketsphinx import Decoder  # type: ignore[import-untyped]

        options = pocketsphinx_files(Path(model_dir)) if model_dir else {}
        self._decoder = Decoder(samprate=RECOGNIZER_RATE, loglevel="FATAL", **(options or {}))

    def begin(self) -> None:
        self._decoder.start_utt()

    def add(self, speech: bytes) -> None:
        self._decoder.process_raw(speech)

    def end(self) -> str:
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return str(hypothesis.hypstr).strip() if hypothesis is not None else ""


class VoskDecoder:
    """Kaldi's streaming decoder; its own endpoints inside an utterance keep their words."""

    def __init__(self, model_dir: str) -> None:
        from vosk import KaldiRecognizer, Model, SetLogLevel  # type: ignore[import-untyped]

        SetLogLevel(-1)
        self._recognizer: Any = KaldiRecognizer(Model(model_dir), RECOGNIZER_RATE)
        self._words: list[str] = []

    def begin(self) -> None:
        self._recognizer.Reset()
        self._words = []

    def add(self, speech: bytes) -> None:
        if self._recognizer.AcceptWaveform(speech):
            self._words.append(json.loads(self._recognizer.Result()).get("text", ""))

    def end(self) -> str:
        self._words.append(json.loads(self._recognizer.FinalResult()).get("text", ""))
        return " ".join(w for w in self._words if w).strip()


class WhisperDecoder:
    """Whisper decodes a whole utterance at once (it is not a streaming model): the
    utterance's audio is kept until its end, bounded by the recognizer's cut."""

    def __init__(self, model_dir: str, language: str) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            model_dir,
            device="cpu",
            compute_type=WHISPER_COMPUTE_TYPE,
            cpu_threads=WHISPER_THREADS,
            local_files_only=True,
        )
        self._language = language
        self._audio: list[bytes] = []

    def begin(self) -> None:
        self._audio = []

    def add(self, speech: bytes) -> None:
        self._audio.append(speech)

    def end(self) -> str:
        samples = np.frombuffer(b"".join(self._audio), dtype=np.int16).astype(np.float32) / 32768
        self._audio = []
        if not len(samples):
            return ""
        segments, _info = self._model.transcribe(
            samples,
            language=self._language,
            beam_size=1,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()


def open_decoder(model_dir: str, language: str = "en") -> UtteranceDecoder:
    """The engine the directory is for (townhall.captions.models)."""
    kind = detect_model(model_dir)
    if kind is ModelKind.VOSK:
        return VoskDecoder(model_dir)
    if kind is ModelKind.FASTER_WHISPER:
        return WhisperDecoder(model_dir, language)
    return PocketsphinxDecoder(model_dir)
