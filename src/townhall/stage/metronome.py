"""One 20 ms clock for every stage of the node, instead of one timer per live space.

Each StageRoom used to run its own FrameClock: one task, one timer and one event-loop
wake-up per space every 20 ms, at phases that never line up, so twenty spaces woke the
loop a thousand times a second for the clocks alone. A Metronome runs one FrameClock
(the same absolute schedule, catch-up and skip) and on each beat runs the tick of every
stage that joined it, one after the other; a failing tick is counted on its own beat
and the others still run. Each stage keeps its own ClockStats (ticks, errors, time
spent); lateness and skipped ticks are the shared schedule's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from townhall.media import FRAME_SECONDS
from townhall.stage.clock import ClockStats, FrameClock, run_tick

__all__ = ["Beat", "Metronome"]


class Beat:
    """One stage's place on the metronome: FrameClock's interface (start, stop, running,
    stats), so a StageRoom runs the same on either."""

    def __init__(self, metronome: Metronome, on_tick: Callable[[], None]) -> None:
        self._metronome = metronome
        self._on_tick = on_tick
        self._own = ClockStats()
        self._joined = False

    @property
    def running(self) -> bool:
        return self._joined

    @property
    def stats(self) -> ClockStats:
        shared = self._metronome.stats
        return replace(
            self._own,
            late_ticks=shared.late_ticks,
            skipped_ticks=shared.skipped_ticks,
            max_lateness_s=shared.max_lateness_s,
        )

    def start(self) -> None:
        if not self._joined:
            self._joined = True
            self._metronome.join(self)

    async def stop(self) -> None:
        if self._joined:
            self._joined = False
            await self._metronome.leave(self)

    def tick(self) -> None:
        run_tick(self._on_tick, self._own)


class Metronome:
    """Drives the ticks of many stages from one FrameClock, running while any has joined."""

    def __init__(self, period: float = FRAME_SECONDS) -> None:
        self._clock = FrameClock(self._beat, period)
        self._beats: dict[Beat, None] = {}  # insertion-ordered set: stages tick in join order

    @property
    def stats(self) -> ClockStats:
        return self._clock.stats

    @property
    def running(self) -> bool:
        return self._clock.running

    def beat(self, on_tick: Callable[[], None]) -> Beat:
        """A clock for one stage; it ticks once started."""
        return Beat(self, on_tick)

    def join(self, beat: Beat) -> None:
        self._beats[beat] = None
        self._clock.start()

    async def leave(self, beat: Beat) -> None:
        self._beats.pop(beat, None)
        if not self._beats:
            await self._clock.stop()

    def _beat(self) -> None:
        for beat in list(self._beats):
            beat.tick()
