"""Wave sizes of paced "X is live" notifications: arrivals never outrun admissions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from townhall.domain.pacing import Load, PacingPolicy, unpaced_wave, wave_size

POLICY = PacingPolicy(interval_s=1.0, arrival_share=1.0, min_wave=1, max_wave=1_000)


def test_an_idle_node_gets_one_interval_of_its_admission_rate() -> None:
    load = Load(admissions_per_s=200, max_listeners=10_000, listeners=0, waiting=0)
    assert wave_size(load, POLICY) == 200


def test_the_queue_already_waiting_is_served_first() -> None:
    load = Load(admissions_per_s=200, max_listeners=10_000, listeners=0, waiting=150)
    assert wave_size(load, POLICY) == 50


def test_free_slots_bound_the_wave_and_a_full_space_still_trickles() -> None:
    nearly_full = Load(admissions_per_s=200, max_listeners=1_000, listeners=970, waiting=0)
    assert wave_size(nearly_full, POLICY) == 30
    full = Load(admissions_per_s=200, max_listeners=1_000, listeners=1_000, waiting=500)
    assert wave_size(full, POLICY) == POLICY.min_wave


def test_a_low_arrival_share_notifies_more_people_per_wave() -> None:
    load = Load(admissions_per_s=100, max_listeners=10_000, listeners=0, waiting=0)
    assert wave_size(load, PacingPolicy(arrival_share=0.25)) == 400
    assert wave_size(load, PacingPolicy(interval_s=2.0)) == 200


def test_unpaced_waves_are_whole_pages() -> None:
    assert unpaced_wave(POLICY) == 1_000


@given(
    rate=st.floats(0, 10_000),
    capacity=st.integers(0, 100_000),
    listeners=st.integers(0, 100_000),
    waiting=st.integers(0, 100_000),
    share=st.floats(0.01, 1.0),
)
def test_expected_arrivals_never_exceed_what_can_be_admitted(
    rate: float, capacity: int, listeners: int, waiting: int, share: float
) -> None:
    policy = PacingPolicy(arrival_share=share, min_wave=1, max_wave=100_000)
    load = Load(rate, capacity, listeners, waiting)
    size = wave_size(load, policy)
    assert policy.min_wave <= size <= policy.max_wave
    if size > policy.min_wave:
        expected_arrivals = size * share
        assert expected_arrivals <= rate * policy.interval_s - waiting + 1e-6
        assert expected_arrivals <= capacity - listeners - waiting + 1e-6
