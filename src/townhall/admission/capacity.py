"""What one node can carry, and the decision taken on every join because of it.

"Past capacity the server answers honestly and cheaply before the people
already listening notice anything." Listeners notice the event loop first:
every live chunk to every socket is written by it, so when it lags, audio
stalls for everybody. New joins therefore stop being admitted (they queue)
as soon as the loop lags a little, and stop being served at all (503 with
Retry-After, the cheapest answer there is) when it lags a lot, well before a
listener's buffer (~0.3 s with MSE) runs dry.

Defaults are per worker process; the fan-out benchmark (`bench/`) is where
they are measured, and configuration overrides them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from townhall.admission._jitter import spread

DEFAULT_MAX_LISTENERS: Final = 18_000
"""Open streams per worker: under the ~20,000 open files one process may hold here,
leaving room for API requests, queue polls and the stage."""
DEFAULT_MAX_ADMISSIONS_PER_S: Final = 2_000.0
"""Joins a worker admits per second (snapshot + join + first audio) while keeping the
loop responsive; the issue asks for at least 5x Icecast's ~800 accepts/s per node."""
DEFAULT_MAX_LOOP_LAG_MS: Final = 50.0
"""Loop lag above which new joins wait: half a live chunk, far from an audible gap."""
DEFAULT_SHED_LAG_FACTOR: Final = 3.0
"""Joins are refused outright (503) past this multiple of max_loop_lag_ms (150 ms)."""
DEFAULT_SHED_RETRY_S: Final = 5.0
MAX_SHED_RETRY_S: Final = 60.0
SHED_JITTER: Final = 0.2


class Action(StrEnum):
    ADMIT = "admit"
    """Healthy: the waiting room admits at its configured rate."""
    QUEUE = "queue"
    """Take the join into the waiting room, but admit nobody new for now."""
    SHED = "shed"
    """Answer 503 + Retry-After without touching anything else."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    """``ok``, ``full``, ``loop_lag`` or ``overloaded``: for counters and the client."""
    retry_after_s: float = 0.0
    """Set for SHED; the waiting room gives its own interval for QUEUE."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """Limits of one worker; 0 disables a limit."""

    max_listeners: int = DEFAULT_MAX_LISTENERS
    max_admissions_per_s: float = DEFAULT_MAX_ADMISSIONS_PER_S
    max_loop_lag_ms: float = DEFAULT_MAX_LOOP_LAG_MS
    shed_lag_factor: float = DEFAULT_SHED_LAG_FACTOR
    shed_retry_s: float = DEFAULT_SHED_RETRY_S

    @property
    def shed_lag_ms(self) -> float:
        return self.max_loop_lag_ms * self.shed_lag_factor

    def has_room(self, listeners: int) -> bool:
        """The hard check when a ticket holder opens a stream."""
        return not self.max_listeners or listeners < self.max_listeners

    def decide(
        self,
        listeners: int,
        loop_lag_ms: float,
        key: int = 0,
        max_retry_s: float = MAX_SHED_RETRY_S,
    ) -> Decision:
        return decide(listeners, loop_lag_ms, self, key=key, max_retry_s=max_retry_s)


DEFAULT_CAPACITY: Final = Capacity()


def decide(
    listeners: int,
    loop_lag_ms: float,
    capacity: Capacity = DEFAULT_CAPACITY,
    *,
    key: int = 0,
    max_retry_s: float = MAX_SHED_RETRY_S,
) -> Decision:
    """What to do with a join right now; `key` (e.g. a hash of the address) spreads retries.

    The SHED interval grows with how far past the shed threshold the loop is,
    so a deeper overload pushes the crowd further out instead of back at once,
    up to `max_retry_s` (before jitter).
    """
    if capacity.max_loop_lag_ms and loop_lag_ms >= capacity.shed_lag_ms:
        retry = math.ceil(shed_retry_s(loop_lag_ms, capacity, key=key, max_retry_s=max_retry_s))
        return Decision(Action.SHED, "overloaded", float(max(1, retry)))
    if capacity.max_loop_lag_ms and loop_lag_ms >= capacity.max_loop_lag_ms:
        return Decision(Action.QUEUE, "loop_lag")
    if not capacity.has_room(listeners):
        return Decision(Action.QUEUE, "full")
    return Decision(Action.ADMIT, "ok")


def shed_retry_s(
    loop_lag_ms: float,
    capacity: Capacity = DEFAULT_CAPACITY,
    *,
    key: int = 0,
    max_retry_s: float = MAX_SHED_RETRY_S,
) -> float:
    """How long to stay away from an overloaded node, spread by `key`, in fractions of a
    second (a Retry-After header takes the ceiling; a queue answer can say it exactly)."""
    severity = max(1.0, loop_lag_ms / capacity.shed_lag_ms) if capacity.shed_lag_ms else 1.0
    base = min(max_retry_s, capacity.shed_retry_s * severity)
    return spread(base, SHED_JITTER, key, int(loop_lag_ms))


DEFAULT_RISE: Final = 0.5
"""Weight of a new sample when lag goes up: react within two or three samples."""
DEFAULT_FALL: Final = 0.1
"""Weight when lag goes down: reopen the door slowly, not on one lucky sample."""
DEFAULT_CALM_WINDOW_S: Final = 0.5
"""A window this long of samples all under the guard reopens the door after a stall."""
CALM_COVERAGE: Final = 0.8
"""The window counts once its samples span this much of it (the probe's own period)."""
MAX_RECENT_SAMPLES: Final = 256
"""Bound on the samples kept for the window (a 50 ms probe keeps ~10)."""


class LoopLagMonitor:
    """Smoothed event-loop lag, fast up and slow down; fed samples, does no I/O itself.

    The caller measures, e.g. every 100 ms::

        t = loop.time(); await asyncio.sleep(0.1)
        monitor.observe_wake(t + 0.1, loop.time())

    After a long stall the EWMA alone keeps reading high for a while (a 4 s stall
    is believed at 2 s and takes ~15 good samples to fall under 50 ms), though
    the loop has been fine since. So when samples carry their time, the value is
    also capped by the worst sample of the last `calm_window_s`: a whole window of
    good samples, not one lucky one, reopens the door, and it does so within that
    window of the overload's end (issue 6: "admission resumes within 2 s").
    """

    __slots__ = ("_expected", "_recent", "calm_window_s", "ewma_ms", "fall", "peak_ms", "rise",
                 "samples", "value_ms")  # fmt: skip

    def __init__(
        self,
        rise: float = DEFAULT_RISE,
        fall: float = DEFAULT_FALL,
        calm_window_s: float = DEFAULT_CALM_WINDOW_S,
    ) -> None:
        if not (0 < rise <= 1 and 0 < fall <= 1):
            raise ValueError("rise and fall are EWMA weights in (0, 1]")
        self.rise = rise
        self.fall = fall
        self.calm_window_s = calm_window_s
        self.value_ms = 0.0
        self.ewma_ms = 0.0
        self.peak_ms = 0.0
        self.samples = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=MAX_RECENT_SAMPLES)
        self._expected: float | None = None

    def observe(self, lag_ms: float, at: float | None = None) -> float:
        """One sample; `at` (seconds, any clock) lets a calm window cap the value."""
        lag_ms = max(0.0, lag_ms)
        if self.samples == 0:
            self.ewma_ms = lag_ms
        else:
            weight = self.rise if lag_ms > self.ewma_ms else self.fall
            self.ewma_ms += weight * (lag_ms - self.ewma_ms)
        self.value_ms = self.ewma_ms
        if at is not None:
            self._recent.append((at, lag_ms))
            while self._recent[0][0] < at - self.calm_window_s:
                self._recent.popleft()
            if self._recent[0][0] <= at - self.calm_window_s * CALM_COVERAGE:
                self.value_ms = min(self.ewma_ms, max(lag for _, lag in self._recent))
        self.peak_ms = max(self.peak_ms, lag_ms)
        self.samples += 1
        return self.value_ms

    def expect_wake(self, at: float) -> None:
        """The probe is about to sleep until `at` (seconds, the clock of `lag_now_ms`)."""
        self._expected = at

    def lag_now_ms(self, now: float) -> float:
        """The lag to decide on now: the smoothed value, or more if the probe is late right
        now. During a stall the probe cannot wake to report it, and every request handled
        in the stall would otherwise be judged on the lag from before it (issue 6: joins
        answered "come back in 1 s" in the middle of a multi-second stall)."""
        if self._expected is None:
            return self.value_ms
        return max(self.value_ms, (now - self._expected) * 1000.0)

    def observe_wake(self, scheduled_at: float, woke_at: float) -> float:
        """A timer meant to fire at `scheduled_at` (seconds) fired at `woke_at`."""
        return self.observe((woke_at - scheduled_at) * 1000.0, at=woke_at)

    def reset_peak(self) -> float:
        """The peak since the last reset (for a metrics scrape), then forgets it."""
        peak, self.peak_ms = self.peak_ms, 0.0
        return peak
