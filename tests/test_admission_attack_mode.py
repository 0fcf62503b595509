"""Attack mode: switches on past its thresholds, off only after a calm spell, or by hand."""

from __future__ import annotations

import pytest

from townhall.admission import (
    ATTACK_RESTRICTIONS,
    NORMAL_RESTRICTIONS,
    AttackMode,
    AttackThresholds,
)
from townhall.admission.attack_mode import WindowCounter

THRESHOLDS = AttackThresholds(
    window_s=10,
    join_rate_on=1_000.0,
    join_rate_off=200.0,
    refused_share_on=0.25,
    refused_share_off=0.05,
    min_requests=100,
    calm_s=30.0,
)


def feed(mode: AttackMode, start: int, seconds: int, joins_per_s: int, **extra: int) -> list[bool]:
    states = []
    for t in range(start, start + seconds):
        mode.record(float(t), joins=joins_per_s, **extra)
        states.append(mode.update(t + 0.5))
    return states


def test_join_flood_switches_on_and_hysteresis_holds_it_until_calm():
    mode = AttackMode(THRESHOLDS)
    assert feed(mode, 0, 20, joins_per_s=500) == [False] * 20  # busy but below "on"
    assert mode.restrictions == NORMAL_RESTRICTIONS
    states = feed(mode, 20, 10, joins_per_s=3_000)
    assert states.index(True) == 1  # on as soon as the window holds 1,000 joins/s
    assert mode.active and mode.restrictions == ATTACK_RESTRICTIONS
    assert mode.restrictions.requires_pow
    assert mode.reason.startswith("joins")
    # Back between the thresholds: stays on, however long.
    assert all(feed(mode, 30, 120, joins_per_s=500))
    # Below "off": stays on for the calm spell (plus the window draining), then off.
    calm = feed(mode, 150, 60, joins_per_s=50)
    first_off = calm.index(False)
    assert THRESHOLDS.calm_s <= first_off <= THRESHOLDS.calm_s + THRESHOLDS.window_s + 1
    assert not any(calm[first_off:])
    assert mode.switches == 2


def test_a_pulsing_flood_does_not_flip_the_mode():
    mode = AttackMode(THRESHOLDS)
    flips = []
    for cycle in range(10):  # 5 s flood, 20 s quiet, ten times
        flips += feed(mode, cycle * 25, 5, joins_per_s=5_000)
        flips += feed(mode, cycle * 25 + 5, 20, joins_per_s=0)
    assert mode.switches == 1 and all(flips[5:])


def test_refused_share_switches_on_only_with_enough_requests():
    mode = AttackMode(THRESHOLDS)
    feed(mode, 0, 10, joins_per_s=1, requests=5, refused=4)  # 80% of a trickle: noise
    assert not mode.active
    feed(mode, 10, 10, joins_per_s=10, requests=100, refused=40)
    assert mode.active and mode.reason.startswith("refused")
    feed(mode, 20, 10, joins_per_s=10, requests=100, refused=10)  # 10%: between thresholds
    assert mode.active
    feed(mode, 30, 50, joins_per_s=10, requests=100, refused=1)
    assert not mode.active


def test_the_operator_overrides_both_ways():
    mode = AttackMode(THRESHOLDS)
    mode.force(True)
    assert mode.active and mode.restrictions.pow_bits > 0
    assert feed(mode, 0, 100, joins_per_s=0)[-1] is True
    mode.force(None)
    assert not mode.active
    feed(mode, 100, 5, joins_per_s=5_000)
    assert mode.active
    mode.force(False)
    assert not mode.active and feed(mode, 105, 5, joins_per_s=5_000) == [False] * 5
    assert mode.switches == 4


def test_window_counter_forgets_old_seconds():
    counter = WindowCounter(window_s=5)
    counter.add(0.2, 10)
    counter.add(0.9, 5)
    counter.add(3.0, 1)
    assert counter.total(4.99) == 16
    assert counter.total(5.0) == 1
    assert counter.rate(5.0) == pytest.approx(0.2)
    counter.add(10.0, 7)  # lands in the slot "0" used: stale count replaced
    assert counter.total(10.0) == 7


def test_thresholds_must_leave_a_gap():
    with pytest.raises(ValueError):
        AttackThresholds(join_rate_on=100.0, join_rate_off=200.0)
