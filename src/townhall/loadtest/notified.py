"""Arrivals caused by a notification: followers told "X is live", with or without
pacing, each coming after their own reaction time.

Unpaced, every follower is told at t=0 and the crowd is the reaction-time curve of
all of them at once. Paced, they are told in waves, one per interval, each sized by
the very arithmetic the server's notifier uses (domain/pacing.py) on the server's
reported capacity and waiting room (`GET /api/stats`, read by the run's
ServerStats), so arrivals follow what can be admitted.

Arrivals are yielded in time order from a heap of pending ones: a wave is told
when the next wave is due before the earliest pending arrival. Everything is
bounded: at most `followers` arrivals, none past `until_s`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from townhall.domain.pacing import Load, PacingPolicy, wave_size

DEFAULT_REACTION_S = 5.0
"""Mean seconds from being told to arriving (exponential): a phone buzzes, a thumb taps."""


@dataclass(frozen=True)
class NotifyPlan:
    followers: int
    paced: bool
    reaction_s: float = DEFAULT_REACTION_S
    policy: PacingPolicy = field(default_factory=PacingPolicy)


def load_from_stats(latest: dict[str, float]) -> Load:
    """The server's /api/stats numbers as the pacing's input (missing: nothing admitted
    yet, so a wave is the policy's minimum)."""
    return Load(
        admissions_per_s=latest.get("max_admissions_per_s", 0.0),
        max_listeners=int(latest.get("max_listeners", 0)),
        listeners=int(latest.get("listeners", 0)),
        waiting=int(latest.get("waiting", 0)),
    )


def notified_arrivals(
    plan: NotifyPlan,
    *,
    until_s: float,
    rng: random.Random,
    load: Callable[[], Load],
    told: list[tuple[float, int]] | None = None,
) -> Iterator[float]:
    """Arrival instants in [0, until_s) of `plan.followers` notified followers.

    `load` is read when a wave is told (the consumer reaches that time); each wave is
    appended to `told` as (t, notified so far) for the report."""
    pending: list[float] = []
    notified = 0
    next_wave = 0.0
    while True:
        while notified < plan.followers and (not pending or next_wave <= pending[0]):
            if next_wave >= until_s:
                break
            size = wave_size(load(), plan.policy) if plan.paced else plan.followers
            size = min(size, plan.followers - notified)
            for _ in range(size):
                heapq.heappush(pending, next_wave + rng.expovariate(1.0 / plan.reaction_s))
            notified += size
            if told is not None:
                told.append((round(next_wave, 3), notified))
            next_wave += plan.policy.interval_s
        if not pending:
            return
        t = heapq.heappop(pending)
        if t >= until_s:
            continue
        yield t
