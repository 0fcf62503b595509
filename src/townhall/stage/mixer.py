"""The stage mix as pure functions on 20 ms frames: no clock, no network, no state.

Everything is whole-array numpy so that one tick for a full stage (13 speakers)
costs microseconds in the event loop. Sums are taken in int32, where thirteen
full-scale int16 signals cannot overflow, and clipped to int16 only at the end,
so that mix-minus (program minus one's own voice) is exact before clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from townhall.media import FRAME_SAMPLES, PcmFrame

INT16_MIN = np.iinfo(np.int16).min
INT16_MAX = np.iinfo(np.int16).max
FULL_SCALE = 32768.0
"""Divisor that maps int16 samples to [-1, 1)."""
SILENCE_DBFS = -120.0
"""Level reported for digital silence (instead of -inf, which is awkward to compare)."""

__all__ = [
    "SILENCE_DBFS",
    "MixResult",
    "level_dbfs",
    "mix",
    "to_mono",
]


@dataclass(frozen=True)
class MixResult:
    program: PcmFrame
    """Sum of every unmuted speaker: what the audience hears."""
    minus: npt.NDArray[np.int16]
    """Row i is what speaker i hears: the program without speaker i. Shape (n, FRAME_SAMPLES)."""
    levels_dbfs: npt.NDArray[np.float64]
    """RMS level of each speaker's own input this frame (muted or not), in dBFS."""


def mix(frames: Sequence[PcmFrame], unmuted: Sequence[bool]) -> MixResult:
    """Mix one tick: the program plus one mix-minus per speaker.

    `frames[i]` is speaker i's frame (silence if nothing arrived); `unmuted[i]`
    says whether it goes into the mix. A muted speaker is in nobody's mix but
    still hears everyone else.
    """
    if len(frames) != len(unmuted):
        raise ValueError(f"{len(frames)} frames but {len(unmuted)} mute flags")
    if not frames:
        return MixResult(
            program=np.zeros(FRAME_SAMPLES, dtype=np.int16),
            minus=np.zeros((0, FRAME_SAMPLES), dtype=np.int16),
            levels_dbfs=np.zeros(0, dtype=np.float64),
        )
    stack = np.stack(frames).astype(np.int32)
    if stack.shape[1] != FRAME_SAMPLES:
        raise ValueError(f"frames must hold {FRAME_SAMPLES} samples, got {stack.shape[1]}")
    contribution = stack * np.asarray(unmuted, dtype=np.int32)[:, None]
    total = contribution.sum(axis=0)
    return MixResult(
        program=_clip(total),
        minus=_clip(total[None, :] - contribution),
        levels_dbfs=level_dbfs(stack),
    )


def level_dbfs(samples: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
    """RMS level of each row (or of a 1-D frame) in dBFS: a full-scale square wave is 0."""
    scaled = samples.astype(np.float64) / FULL_SCALE
    mean_square = np.mean(scaled * scaled, axis=-1)
    floor = 10.0 ** (SILENCE_DBFS / 10.0)
    return 10.0 * np.log10(np.maximum(mean_square, floor))


def to_mono(interleaved: npt.NDArray[np.int16], channels: int) -> PcmFrame:
    """Average interleaved int16 channels into one (a browser's mono mic arrives as stereo
    from the Opus decoder with both channels equal)."""
    flat = interleaved.reshape(-1)
    if channels == 1:
        return flat.astype(np.int16, copy=True)
    if flat.size % channels:
        raise ValueError(f"{flat.size} samples do not split into {channels} channels")
    summed = flat.reshape(-1, channels).astype(np.int32).sum(axis=1)
    return (summed // channels).astype(np.int16)


def _clip(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    return np.clip(values, INT16_MIN, INT16_MAX).astype(np.int16)
