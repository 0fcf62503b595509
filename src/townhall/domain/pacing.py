"""How many followers to tell "X is live" in the next wave: pure arithmetic.

The crowd is caused by the notification. Telling a million followers at once makes
a million arrivals in the same minute, most of whom meet a waiting room; telling
them at the rate the nodes can admit makes arrivals match admissions, so people
who come hear audio instead of a queue. The door reports what it can admit
(admissions per second, listener slots) and how many already wait; a wave is what
fits in one interval after the queue ahead of it has drained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Load:
    """What the admitting nodes report (service/door.py stats), summed over nodes."""

    admissions_per_s: float
    """How many listeners the nodes can admit per second."""
    max_listeners: int
    listeners: int
    waiting: int
    """People in the space's waiting room now."""


@dataclass(frozen=True)
class PacingPolicy:
    interval_s: float = 1.0
    """One wave per interval."""
    arrival_share: float = 1.0
    """Expected share of the notified who come at once. 1.0 assumes everyone does
    (never overfills); a deployment that measured 0.2 notifies five times as many."""
    min_wave: int = 1
    """A wave is never smaller, so a full space still tells its followers, slowly."""
    max_wave: int = 1_000
    """Nor larger: one wave is one page of the store and one bounded batch in memory."""


def wave_size(load: Load, policy: PacingPolicy) -> int:
    """Notifications for the next wave.

    Arrivals allowed = min(what the admission rate admits in one interval minus the
    queue already waiting, the free listener slots minus that queue); notifications =
    allowed arrivals / the share expected to come, clamped to [min_wave, max_wave]."""
    by_rate = load.admissions_per_s * policy.interval_s - load.waiting
    by_slots = load.max_listeners - load.listeners - load.waiting
    arrivals = max(0.0, min(by_rate, float(by_slots)))
    share = min(1.0, max(policy.arrival_share, 1e-3))
    wanted = math.floor(arrivals / share)
    return max(policy.min_wave, min(policy.max_wave, wanted))


def unpaced_wave(policy: PacingPolicy) -> int:
    """Without pacing every wave is as large as a page allows."""
    return policy.max_wave
