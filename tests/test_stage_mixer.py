"""The mix as pure numpy: program, mix-minus, muting, clipping, levels. No network."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tones import dominant_frequencies, tone_power
from townhall.media import FRAME_SAMPLES, SAMPLE_RATE
from townhall.stage.mixer import SILENCE_DBFS, level_dbfs, mix, to_mono


def sine(freq: float, amplitude: float = 0.25) -> np.ndarray:
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def const(value: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, value, dtype=np.int16)


def test_program_is_the_sum_and_each_minus_leaves_out_its_own_voice() -> None:
    result = mix([const(100), const(20), const(-3)], [True, True, True])
    assert result.program.dtype == np.int16 and result.program.shape == (FRAME_SAMPLES,)
    assert np.all(result.program == 117)
    assert result.minus.shape == (3, FRAME_SAMPLES)
    assert [int(row[0]) for row in result.minus] == [17, 97, 120]


def test_mix_minus_of_real_tones_holds_the_others_only() -> None:
    a, b, c = sine(400), sine(1000), sine(2200)
    result = mix([a, b, c], [True, True, True])
    assert sorted(round(f, -2) for f in dominant_frequencies(result.program, SAMPLE_RATE, 3)) == [
        400,
        1000,
        2200,
    ]
    hears_a = result.minus[0]
    assert tone_power(hears_a, SAMPLE_RATE, 400) < -80  # exact cancellation, not attenuation
    assert tone_power(hears_a, SAMPLE_RATE, 1000) > -15


def test_muted_speaker_is_in_nobodys_mix_but_hears_everyone() -> None:
    result = mix([const(1000), const(7)], [False, True])
    assert np.all(result.program == 7)
    assert np.all(result.minus[0] == 7)  # the muted speaker hears the other
    assert np.all(result.minus[1] == 0)  # the other does not hear the muted one


def test_sums_are_clipped_not_wrapped() -> None:
    loud = const(30_000)
    result = mix([loud, loud, const(-30_000)], [True, True, True])
    assert np.all(result.program == 30_000)  # exact in int32, fits once summed
    result = mix([loud, loud], [True, True])
    assert np.all(result.program == 32_767)
    assert np.all(result.minus == 30_000)  # minus is taken before clipping
    result = mix([const(-30_000), const(-30_000)], [True, True])
    assert np.all(result.program == -32_768)


def test_empty_stage_mixes_silence() -> None:
    result = mix([], [])
    assert result.program.shape == (FRAME_SAMPLES,) and not result.program.any()
    assert result.minus.shape == (0, FRAME_SAMPLES)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="mute flags"):
        mix([const(0)], [True, False])
    with pytest.raises(ValueError, match="960"):
        mix([np.zeros(480, dtype=np.int16)], [True])


def test_levels_are_rms_dbfs_per_speaker() -> None:
    result = mix([const(0), const(32767), sine(1000, amplitude=0.1)], [True, False, True])
    silent, full, quiet_sine = result.levels_dbfs
    assert silent == SILENCE_DBFS
    assert full == pytest.approx(0.0, abs=0.01)  # measured even when muted
    assert quiet_sine == pytest.approx(-23.0, abs=0.1)  # 0.1 amplitude sine: -20 dB - 3 dB
    assert level_dbfs(const(3277)) == pytest.approx(-20.0, abs=0.01)


def test_to_mono_averages_interleaved_channels() -> None:
    stereo = np.array([[100, 300, -2, -4, 32767, 32767]], dtype=np.int16)
    assert to_mono(stereo, 2).tolist() == [200, -3, 32767]
    assert to_mono(np.array([[5, 6]], dtype=np.int16), 1).tolist() == [5, 6]
    with pytest.raises(ValueError, match="channels"):
        to_mono(np.zeros(5, dtype=np.int16), 2)


def test_a_full_stage_mixes_in_well_under_a_millisecond() -> None:
    """13 speakers (host, 2 co-hosts, 10 speakers): the tick runs in the event loop."""
    frames = [sine(200 + 100 * i) for i in range(13)]
    unmuted = [i % 4 != 0 for i in range(13)]
    rounds = 500
    started = time.perf_counter()
    for _ in range(rounds):
        mix(frames, unmuted)
    per_tick = (time.perf_counter() - started) / rounds
    print(f"\nmix of 13 speakers: {per_tick * 1e6:.0f} µs per 20 ms tick")
    assert per_tick < 0.002  # generous: a loaded 2-core machine
