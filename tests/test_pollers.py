"""HLS listeners as distinct recent playlist pollers (townhall.audience.pollers)."""

from __future__ import annotations

from townhall.audience.pollers import RecentPollers


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_poller_counts_once_however_often_it_polls_and_leaves_after_the_window() -> None:
    clock = Clock()
    pollers = RecentPollers(window_s=10.0, clock=clock)
    for _ in range(5):
        pollers.saw("198.51.100.7", "hls.js")
        clock.now += 1.0
    pollers.saw("198.51.100.8", "hls.js")
    assert pollers.count() == 2
    clock.now += 9.5  # 10.5 s after the first one's last poll, 9.5 s after the second's
    assert pollers.count() == 1
    clock.now += 1.0
    assert pollers.count() == 0


def test_one_address_with_two_browsers_is_two_listeners() -> None:
    pollers = RecentPollers(window_s=10.0, clock=Clock())
    pollers.saw("203.0.113.1", "Firefox")
    pollers.saw("203.0.113.1", "Chrome")
    pollers.saw("203.0.113.1", "Chrome")
    assert pollers.count() == 2


def test_a_flood_of_invented_clients_is_bounded_and_counted() -> None:
    clock = Clock()
    pollers = RecentPollers(window_s=10.0, max_tracked=100, clock=clock)
    for n in range(1_000):
        pollers.saw("192.0.2.1", f"bot-{n}")
    assert pollers.count() == 100
    assert pollers.forgotten == 900
    pollers.saw("192.0.2.1", "bot-0")  # the oldest kept goes to make room
    assert pollers.count() == 100
