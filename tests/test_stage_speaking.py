"""The speaking indicator: lights up on speech, bridges pauses, goes dark after a hold."""

from __future__ import annotations

from townhall.stage.speaking import SpeakingDetector

THRESHOLD = -45.0
LOUD = -20.0
QUIET = -90.0


def run(detector: SpeakingDetector, user: str, level: float, ticks: int) -> list[bool]:
    """Feed `ticks` frames of `level`; returns whether the user was speaking after each."""
    states = []
    for _ in range(ticks):
        detector.update({user: level})
        states.append(user in detector.speaking)
    return states


def test_speech_lights_up_within_a_few_frames() -> None:
    d = SpeakingDetector(THRESHOLD)
    states = run(d, "a", LOUD, 5)
    assert states[-1]
    assert states.index(True) <= 2  # a loud voice crosses the 300 ms average quickly


def test_silence_never_lights_up_and_a_click_does_not_either() -> None:
    d = SpeakingDetector(THRESHOLD)
    assert not any(run(d, "a", QUIET, 20))
    d.update({"a": -40.0})  # one frame just above threshold, then silence
    assert not any(run(d, "a", QUIET, 20))


def test_short_pauses_do_not_flicker_and_long_ones_end_it() -> None:
    d = SpeakingDetector(THRESHOLD, window_ms=300, hold_ms=300)
    run(d, "a", LOUD, 25)
    assert all(run(d, "a", QUIET, 10))  # 200 ms pause between words: still speaking
    run(d, "a", LOUD, 10)
    states = run(d, "a", QUIET, 50)
    assert states[0] and not states[-1]  # a full second of silence: dark
    dark_after = states.index(False)
    assert 15 <= dark_after <= 35  # the window drains, then the hold: 0.3 to 0.7 s


def test_update_reports_changes_and_forgets_users_left_out() -> None:
    d = SpeakingDetector(THRESHOLD)
    changes = [d.update({"a": LOUD, "b": QUIET}) for _ in range(5)]
    assert changes.count(True) == 1 and d.speaking == {"a"}
    assert d.update({"b": QUIET}) is True  # "a" left (muted or gone): not speaking at once
    assert d.speaking == frozenset()
    assert d.update({"b": QUIET}) is False
