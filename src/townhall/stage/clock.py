"""The 20 ms heartbeat of a stage, on an absolute schedule.

Tick n is due at start + n * period, never "period after the last tick", so
lateness of one tick (a busy event loop) does not shift every later one and
the program keeps real time over hours. A late tick runs at once; the clock
catches up with back-to-back ticks for a short stall, but after a long one
(the loop blocked for seconds) it skips the missed ticks, counts them, and
resumes on the grid: catching up would only emit a burst of stale silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from townhall.media import FRAME_SECONDS

MAX_CATCH_UP_TICKS = 10
"""Late by more than this many periods (200 ms, the speaker queue bound): skip instead."""
LATE_TICK_S = 0.005
"""A tick this late counts as late in the stats (the loop was busy)."""
ERROR_LOG_EVERY = 500
"""A failing tick is logged the first time and then once per this many failures (10 s)."""

logger = logging.getLogger(__name__)

__all__ = ["ClockStats", "FrameClock", "run_tick"]


@dataclass
class ClockStats:
    ticks: int = 0
    late_ticks: int = 0
    skipped_ticks: int = 0
    max_lateness_s: float = 0.0
    max_tick_s: float = 0.0
    """Longest time one tick held the event loop."""
    total_tick_s: float = 0.0
    errors: int = 0


class FrameClock:
    """Calls `on_tick()` every `period` seconds in the running event loop."""

    def __init__(self, on_tick: Callable[[], None], period: float = FRAME_SECONDS) -> None:
        self._on_tick = on_tick
        self._period = period
        self._task: asyncio.Task[None] | None = None
        self.stats = ClockStats()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stage-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            # Always yield, even when late, so peers' tasks get to run between ticks.
            await asyncio.sleep(max(0.0, due - loop.time()))
            lateness = loop.time() - due
            if lateness > MAX_CATCH_UP_TICKS * self._period:
                missed = int(lateness // self._period)
                self.stats.skipped_ticks += missed
                due += missed * self._period
                lateness -= missed * self._period
            if lateness > LATE_TICK_S:
                self.stats.late_ticks += 1
            self.stats.max_lateness_s = max(self.stats.max_lateness_s, lateness)
            self._tick()
            due += self._period

    def _tick(self) -> None:
        run_tick(self._on_tick, self.stats)


def run_tick(on_tick: Callable[[], None], stats: ClockStats) -> None:
    """One tick, timed and counted in `stats`; a failure is logged (sparingly), not raised,
    so the clock keeps time."""
    stats.ticks += 1
    began = time.perf_counter()
    try:
        on_tick()
    except Exception:
        stats.errors += 1
        if stats.errors % ERROR_LOG_EVERY == 1:
            logger.exception("stage tick failed (%d failures so far)", stats.errors)
    spent = time.perf_counter() - began
    stats.total_tick_s += spent
    stats.max_tick_s = max(stats.max_tick_s, spent)
