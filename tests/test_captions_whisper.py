"""A faster-whisper model directory through the captions path for real, offline (the
tests run in a network namespace with only loopback: a download would fail): the
model is told by its files, loads in the recognizer process, and each utterance of
espeak-ng speech comes back as one cue on the program clock. The model is made by
tests/tiny_whisper.py and knows no words (none can be had here), so its text is
checked for being the model's, not for being the speech; pocketsphinx's accuracy is
measured in test_captions_e2e.py and bench/captions.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speech import espeak
from tiny_whisper import SAID, write_tiny_whisper
from townhall.captions.captioner import Captioner
from townhall.captions.decoders import WhisperDecoder, open_decoder
from townhall.captions.models import ModelKind, check_model
from townhall.captions.recognizer import RecognizerConfig
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE

pytestmark = pytest.mark.slow

SENTENCES = ["good morning and welcome to the show", "thank you all for coming tonight"]
STOP_TIMEOUT_S = 120.0
"""Generous: Whisper decodes each utterance whole, on a loaded 2-core machine."""


@pytest.fixture(scope="module")
def whisper_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper"))


def test_a_whisper_directory_selects_the_whisper_engine(whisper_model: Path) -> None:
    assert check_model(str(whisper_model)) is ModelKind.FASTER_WHISPER
    assert isinstance(open_decoder(str(whisper_model)), WhisperDecoder)


async def test_each_utterance_becomes_one_whisper_cue(whisper_model: Path) -> None:
    pause = np.zeros(SAMPLE_RATE, dtype=np.int16)
    spoken = [espeak(sentence) for sentence in SENTENCES]
    program = np.concatenate([pause, spoken[0], pause, pause, spoken[1], pause])
    captioner = Captioner(
        "s", RecognizerConfig(model_dir=str(whisper_model)), queue_seconds=60, max_cues=10
    )
    captioner.start()
    try:
        usable = len(program) - len(program) % FRAME_SAMPLES
        for frame in program[:usable].reshape(-1, FRAME_SAMPLES):
            captioner.feed(frame)
        await captioner.stop(timeout_s=STOP_TIMEOUT_S)
    finally:
        await captioner.stop()
    cues = captioner.track.since(None)
    assert len(cues) == len(SENTENCES), cues
    assert all(set(cue.text) == {SAID} for cue in cues), cues
    second_starts_s = (len(pause) + len(spoken[0]) + 2 * len(pause)) / SAMPLE_RATE
    assert abs(cues[0].start_s - 1.0) < 0.6 and abs(cues[1].start_s - second_starts_s) < 0.6
    assert captioner.stats.chunks_dropped == 0
