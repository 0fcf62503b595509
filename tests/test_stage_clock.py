"""The mixer clock: absolute schedule, catch-up after a short stall, skip after a long one."""

from __future__ import annotations

import asyncio
import time

from townhall.stage.clock import FrameClock

PERIOD = 0.02


async def test_ticks_follow_an_absolute_schedule() -> None:
    times: list[float] = []

    def busy_tick() -> None:
        times.append(time.monotonic())
        time.sleep(0.005)  # a tick that takes time must not push the next ones back

    clock = FrameClock(busy_tick, PERIOD)
    clock.start()
    await asyncio.sleep(0.6)
    await clock.stop()
    await clock.stop()  # idempotent
    count = len(times)
    drift = (times[-1] - times[0]) - (count - 1) * PERIOD
    print(f"\n{count} ticks in 0.6 s, drift {drift * 1000:.1f} ms, {clock.stats}")
    assert 27 <= count <= 32
    assert abs(drift) < 0.075  # "period after the last tick" would be 29 * 5 ms = 145 ms late
    assert not clock.running


async def test_a_short_stall_is_caught_up_and_a_long_one_skipped() -> None:
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 5:
            time.sleep(0.1)  # the loop blocked for 5 periods: caught up
        if ticks == 20:
            time.sleep(0.5)  # 25 periods: more than the catch-up limit, skipped

    clock = FrameClock(tick, PERIOD)
    started = time.monotonic()
    clock.start()
    await asyncio.sleep(1.0)
    await clock.stop()
    elapsed = time.monotonic() - started
    print(f"\n{ticks} ticks in {elapsed:.2f} s, {clock.stats}")
    assert clock.stats.skipped_ticks >= 20
    assert ticks + clock.stats.skipped_ticks >= int(elapsed / PERIOD) - 5
    assert clock.stats.late_ticks >= 4


async def test_a_failing_tick_does_not_stop_the_clock() -> None:
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        raise RuntimeError("boom")

    clock = FrameClock(tick, PERIOD)
    clock.start()
    await asyncio.sleep(0.2)
    await clock.stop()
    assert ticks >= 5 and clock.stats.errors == ticks
