"""The numpy audio level aiortc's senders use once a stage exists (stage/audio_level.py)."""

from __future__ import annotations

import av
import numpy as np
import pytest
from aiortc import rtp

from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.audio_level import (
    aiortc_audio_level_dbov,
    audio_level_dbov,
    use_fast_audio_level,
)


def stereo_frame(samples: np.ndarray) -> av.AudioFrame:
    interleaved = np.repeat(samples.astype(np.int16), 2).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
    frame.sample_rate = SAMPLE_RATE
    return frame


@pytest.mark.parametrize("amplitude", [0, 1, 30, 300, 3000, 10000, 32767])
def test_the_same_level_as_aiortcs_own(amplitude: int) -> None:
    rng = np.random.default_rng(amplitude)
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    for samples in (
        amplitude * np.sin(2 * np.pi * 440 * t),
        rng.uniform(-amplitude, amplitude, FRAME_SAMPLES),
        np.full(FRAME_SAMPLES, amplitude),
    ):
        frame = stereo_frame(np.round(samples))
        assert audio_level_dbov(frame) == aiortc_audio_level_dbov(frame)


def test_a_mono_frame_too() -> None:
    samples = np.round(0.3 * 32767 * np.sin(np.arange(FRAME_SAMPLES) / 7)).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    assert audio_level_dbov(frame) == aiortc_audio_level_dbov(frame)


def test_aiortc_uses_it_once_installed() -> None:
    use_fast_audio_level()
    assert rtp.compute_audio_level_dbov is audio_level_dbov
