"""The shared tone helpers measure what they claim (other audio tests rely on them)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tones import (
    FLOOR_DB,
    Recording,
    ToneTrack,
    dominant_frequencies,
    first_onset,
    steady_tone_power,
    tone_power,
)

RATE = 48_000


def sine(freq: float, seconds: float, amplitude: float, start_s: float = 0.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * freq * t) * (t >= start_s)


def test_tone_power_is_dbfs_of_that_frequency_only() -> None:
    mixed = sine(440, 1.0, 0.1) + sine(660, 1.0, 0.5)
    assert tone_power(mixed, RATE, 440) == pytest.approx(-20.0, abs=0.1)
    assert tone_power(mixed, RATE, 660) == pytest.approx(-6.0, abs=0.1)
    assert tone_power(sine(660, 1.0, 0.5), RATE, 440) < -100  # no leakage 220 Hz away
    ints = np.round(sine(440, 0.5, 0.25) * 32767).astype(np.int16)
    assert tone_power(ints, RATE, 440) == pytest.approx(-12.0, abs=0.1)  # int16 full scale = 1
    assert tone_power(np.zeros(100), RATE, 440) == FLOOR_DB
    assert tone_power(np.zeros(0), RATE, 440) == FLOOR_DB


def test_dominant_frequencies_finds_the_strongest_peaks_first() -> None:
    mixed = sine(440, 1.0, 0.1) + sine(660, 1.0, 0.5) + sine(1234.5, 1.0, 0.01)
    peaks = dominant_frequencies(mixed, RATE, 3)
    assert peaks[0] == pytest.approx(660, abs=0.5)
    assert peaks[1] == pytest.approx(440, abs=0.5)
    assert peaks[2] == pytest.approx(1234.5, abs=0.5)
    assert dominant_frequencies(np.zeros(10), RATE, 2) == []


def test_first_onset_finds_where_a_tone_starts() -> None:
    signal = sine(660, 1.0, 0.3) + sine(440, 1.0, 0.3, start_s=0.5)
    assert first_onset(signal, RATE, 440, -30) == pytest.approx(0.5, abs=0.01)
    assert first_onset(signal, RATE, 660, -30) == pytest.approx(0.0, abs=0.011)
    assert first_onset(signal, RATE, 1000, -30) is None
    assert first_onset(signal[:100], RATE, 440, -30) is None
    with pytest.raises(ValueError, match="mono"):
        first_onset(np.zeros((2, 100)), RATE, 440, -30)


async def test_tone_track_sends_silence_then_the_tone_in_real_time() -> None:
    track = ToneTrack(440, start_after_s=0.1)
    started = time.monotonic()
    frames = [await track.recv() for _ in range(10)]
    elapsed = time.monotonic() - started
    assert 0.15 < elapsed < 0.5  # 10 frames are paced over ~180 ms
    samples = np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames])
    assert not samples[:4800].any()  # 0.1 s of silence
    assert tone_power(samples[4800:], RATE, 440) == pytest.approx(-10.5, abs=0.2)
    assert track.tone_started_at is not None and track.tone_started_at <= time.time()
    assert [f.pts for f in frames[:2]] == [0, 960]


def test_recording_maps_an_onset_to_the_wall_time_it_arrived() -> None:
    recording = Recording()
    signal = np.round(sine(440, 0.2, 0.3, start_s=0.1) * 32767).astype(np.int16)
    for i, chunk in enumerate(np.split(signal, 10)):  # ten 20 ms chunks, arriving 1 s apart
        recording.add(chunk, at=1000.0 + i)
    assert recording.duration_s == pytest.approx(0.2)
    assert recording.onset_time(440, -30) in (1004.0, 1005.0)  # the tone starts in chunk 5
    assert recording.onset_time(440, -30, since=1007.0) == 1007.0
    assert recording.samples(since=1009.5).size == 0


def test_steady_tone_power_ignores_a_gap_that_a_long_projection_does_not() -> None:
    tone = sine(440, 1.0, 0.3)
    # 200 ms of dropped audio in the middle, resuming in antiphase (54 samples = half a period)
    gapped = np.concatenate([tone[:24_000], np.zeros(9_600), tone[24_054:]])
    assert tone_power(gapped, RATE, 440) < -20  # the whole-clip projection cancels itself
    assert steady_tone_power(gapped, RATE, 440) == pytest.approx(-10.5, abs=0.3)
    assert steady_tone_power(sine(660, 1.0, 0.3), RATE, 440) < -60
    assert steady_tone_power(tone[:100], RATE, 440) == tone_power(tone[:100], RATE, 440)
