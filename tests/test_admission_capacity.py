"""Capacity: admit while healthy, queue when the loop lags or the node is full, shed past that."""

from __future__ import annotations

import pytest

from townhall.admission import (
    DEFAULT_CAPACITY,
    Action,
    Capacity,
    LoopLagMonitor,
    QueuePolicy,
    decide,
)
from townhall.admission.capacity import MAX_SHED_RETRY_S


def test_healthy_node_admits():
    assert decide(0, 0.0).action is Action.ADMIT
    assert decide(DEFAULT_CAPACITY.max_listeners - 1, 10.0).reason == "ok"


def test_full_node_queues_and_the_stream_gate_agrees():
    cap = Capacity(max_listeners=100)
    assert cap.decide(99, 0.0).action is Action.ADMIT
    assert cap.has_room(99)
    full = cap.decide(100, 0.0)
    assert (full.action, full.reason, full.retry_after_s) == (Action.QUEUE, "full", 0.0)
    assert not cap.has_room(100)


def test_loop_lag_queues_first_then_sheds_with_a_growing_retry():
    cap = Capacity(max_listeners=1_000, max_loop_lag_ms=50.0, shed_lag_factor=3.0)
    assert cap.decide(10, 49.9).action is Action.ADMIT
    lagging = cap.decide(10, 50.0)
    assert (lagging.action, lagging.reason) == (Action.QUEUE, "loop_lag")
    assert cap.decide(10, 149.0).action is Action.QUEUE
    shed = cap.decide(10, 150.0)
    assert (shed.action, shed.reason) == (Action.SHED, "overloaded")
    assert 4.0 <= shed.retry_after_s <= 6.0 + 1  # 5 s ± jitter, rounded up
    deeper = [cap.decide(10, 600.0, key=k).retry_after_s for k in range(200)]
    assert min(deeper) > shed.retry_after_s  # a deeper overload pushes the crowd further out
    assert max(deeper) <= MAX_SHED_RETRY_S * 1.2 + 1
    assert len(set(deeper)) > 3  # and spreads it
    assert all(r == int(r) and r >= 1 for r in deeper)  # whole seconds for Retry-After
    # Lag is checked before fullness: an overloaded full node sheds.
    assert cap.decide(5_000, 200.0).action is Action.SHED


def test_zero_disables_a_limit():
    cap = Capacity(max_listeners=0, max_loop_lag_ms=0)
    assert cap.decide(10**9, 10_000.0).action is Action.ADMIT


def test_queue_policy_from_capacity():
    policy = QueuePolicy.from_capacity(Capacity(max_listeners=700, max_admissions_per_s=250.0))
    assert (policy.rate, policy.burst, policy.capacity) == (250.0, 250.0, 700)
    assert QueuePolicy.from_capacity(Capacity(), burst=10.0).burst == 10.0


def test_loop_lag_monitor_rises_fast_and_falls_slowly():
    monitor = LoopLagMonitor(rise=0.5, fall=0.1)
    for _ in range(20):
        monitor.observe(2.0)
    assert monitor.value_ms == pytest.approx(2.0)
    monitor.observe(202.0)
    assert monitor.value_ms == pytest.approx(102.0)  # one bad sample is half-believed at once
    monitor.observe(202.0)
    assert monitor.value_ms == pytest.approx(152.0)
    samples_to_recover = 0
    while monitor.value_ms > 50.0 and samples_to_recover < 100:
        monitor.observe(2.0)
        samples_to_recover += 1
    assert 8 <= samples_to_recover <= 15  # the door reopens slowly
    assert monitor.reset_peak() == 202.0 and monitor.peak_ms == 0.0


def test_loop_lag_from_timer_wakeups():
    monitor = LoopLagMonitor()
    assert monitor.observe_wake(10.0, 10.030) == pytest.approx(30.0)
    monitor.observe_wake(10.0, 9.9)  # woke early (clock granularity): no negative lag
    assert monitor.value_ms >= 0.0
    with pytest.raises(ValueError):
        LoopLagMonitor(rise=0.0)


def test_after_a_long_stall_a_calm_window_reopens_the_door():
    """Issue 6: the smoothed lag of a 4 s stall kept joins paused for ~1.5 s after it."""
    monitor = LoopLagMonitor()
    t = 0.0
    for _ in range(10):
        t += 0.05
        monitor.observe(1.0, at=t)
    t += 4.0
    monitor.observe(4000.0, at=t)  # one stall of 4 s
    assert monitor.value_ms >= 150.0
    calm_after = 0.0
    while monitor.value_ms >= 50.0:
        t += 0.05
        calm_after += 0.05
        monitor.observe(2.0, at=t)
        assert calm_after < 2.0
    assert 0.4 <= calm_after <= 0.6  # a whole window of good samples, no sooner


def test_a_stall_in_progress_counts_before_the_probe_can_report_it():
    monitor = LoopLagMonitor()
    monitor.observe_wake(10.0, 10.001)
    monitor.expect_wake(10.051)
    assert monitor.lag_now_ms(10.04) == pytest.approx(monitor.value_ms)  # on time so far
    assert monitor.lag_now_ms(10.451) == pytest.approx(400.0)  # 400 ms late: a stall
