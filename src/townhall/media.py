"""The one audio format every part of townhall agrees on inside the server.

Speakers arrive as Opus at 48 kHz; the mixer, the encoder and the tests all
work in 20 ms frames of mono signed 16-bit PCM at that rate, so no component
ever resamples what another produced.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_SECONDS = FRAME_MS / 1000

PcmFrame = npt.NDArray[np.int16]
"""One 20 ms frame: FRAME_SAMPLES mono int16 samples."""

ProgramSink = Callable[[PcmFrame], None]
"""Receives the program mix, one frame every 20 ms, from the mixer clock."""


def silence() -> PcmFrame:
    return np.zeros(FRAME_SAMPLES, dtype=np.int16)
