"""Attack mode: when to tighten the door, and what tightening means.

Normal operation is generous: anonymous people join with one request, and
per-address limits only stop the absurd. Attack mode makes anonymous joins
pay a proof of work and tightens the per-address and per-prefix buckets and
the connections an address may hold; signed-in people keep their priority
lane and skip the proof of work.

It switches on by the operator's hand or automatically, when over the last
`window_s` either joins arrive far faster than the node admits (a flood, or
a crowd big enough that making bots pay costs humans nothing: they would
wait anyway) or a large share of requests is being refused for reasons no
per-address or per-prefix bucket absorbs (forged tokens, failed proofs of
work). Refusals by those buckets are not fed here: one address or one prefix
hammering its own limit is already stopped, and must not tighten the door for
everybody (issue 6). It switches off only after
both signals have stayed below lower thresholds for `calm_s`: hysteresis,
so a flood that pulses does not flip the mode every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from townhall.admission.proof_of_work import DEFAULT_BITS
from townhall.admission.token_bucket import BucketSpec

DEFAULT_WINDOW_S: Final = 10
DEFAULT_JOIN_RATE_ON: Final = 10_000.0
"""Joins per second: 5x the default admission rate (a queue growing by 8,000 a second)."""
DEFAULT_JOIN_RATE_OFF: Final = 2_000.0
DEFAULT_REFUSED_SHARE_ON: Final = 0.25
DEFAULT_REFUSED_SHARE_OFF: Final = 0.05
DEFAULT_MIN_REQUESTS: Final = 500
"""Below this many requests in the window the refused share is noise, not a signal."""
DEFAULT_CALM_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class AttackThresholds:
    window_s: int = DEFAULT_WINDOW_S
    join_rate_on: float = DEFAULT_JOIN_RATE_ON
    join_rate_off: float = DEFAULT_JOIN_RATE_OFF
    refused_share_on: float = DEFAULT_REFUSED_SHARE_ON
    refused_share_off: float = DEFAULT_REFUSED_SHARE_OFF
    min_requests: int = DEFAULT_MIN_REQUESTS
    calm_s: float = DEFAULT_CALM_S

    def __post_init__(self) -> None:
        if self.window_s < 1:
            raise ValueError("window_s must be at least one second")
        if self.join_rate_off > self.join_rate_on or self.refused_share_off > self.refused_share_on:
            raise ValueError("off thresholds must not exceed on thresholds (hysteresis)")


@dataclass(frozen=True, slots=True)
class Restrictions:
    """What the door looks like in one mode."""

    pow_bits: int
    """Proof-of-work difficulty for anonymous joins; 0 means no proof of work."""
    per_address: BucketSpec
    per_prefix: BucketSpec
    max_connections_per_address: int

    @property
    def requires_pow(self) -> bool:
        return self.pow_bits > 0


NORMAL_RESTRICTIONS: Final = Restrictions(
    pow_bits=0,
    per_address=BucketSpec(rate=20.0, burst=100.0),
    per_prefix=BucketSpec(rate=400.0, burst=2_000.0),
    max_connections_per_address=32,
)
"""A polling listener needs well under 1 request/s; an office behind one NAT joining at
once (snapshot + join each) fits the burst."""
ATTACK_RESTRICTIONS: Final = Restrictions(
    pow_bits=DEFAULT_BITS,
    per_address=BucketSpec(rate=2.0, burst=10.0),
    per_prefix=BucketSpec(rate=50.0, burst=200.0),
    max_connections_per_address=8,
)


class WindowCounter:
    """Events per second over the last `window_s` seconds, in one-second slots (bounded)."""

    __slots__ = ("_counts", "_slots", "window_s")

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._counts = [0] * window_s
        self._slots = [-1] * window_s

    def add(self, now: float, n: int = 1) -> None:
        slot = int(now)
        i = slot % self.window_s
        if self._slots[i] != slot:
            self._slots[i] = slot
            self._counts[i] = 0
        self._counts[i] += n

    def total(self, now: float) -> int:
        current = int(now)
        return sum(
            count
            for count, slot in zip(self._counts, self._slots, strict=True)
            if current - self.window_s < slot <= current
        )

    def rate(self, now: float) -> float:
        return self.total(now) / self.window_s


class AttackMode:
    """Decides attack mode from counts fed to it; `update(now)` re-evaluates.

    `force(True/False)` is the operator's switch and wins over the signals;
    `force(None)` hands control back to them.
    """

    def __init__(
        self,
        thresholds: AttackThresholds | None = None,
        normal: Restrictions = NORMAL_RESTRICTIONS,
        attack: Restrictions = ATTACK_RESTRICTIONS,
    ) -> None:
        self.thresholds = thresholds or AttackThresholds()
        self.normal = normal
        self.attack = attack
        window = self.thresholds.window_s
        self._joins = WindowCounter(window)
        self._requests = WindowCounter(window)
        self._refused = WindowCounter(window)
        self._auto = False
        self._calm_since: float | None = None
        self.forced: bool | None = None
        self.switches = 0
        """Times the effective mode changed, for metrics."""
        self.reason = ""
        """Why automatic attack mode last switched on (empty when it never did)."""

    @property
    def active(self) -> bool:
        return self._auto if self.forced is None else self.forced

    @property
    def restrictions(self) -> Restrictions:
        return self.attack if self.active else self.normal

    def force(self, on: bool | None) -> None:
        before = self.active
        self.forced = on
        if self.active != before:
            self.switches += 1

    def record(self, now: float, *, requests: int = 0, joins: int = 0, refused: int = 0) -> None:
        """Counts what happened at `now`; a refused request also counts as a request."""
        if requests:
            self._requests.add(now, requests)
        if joins:
            self._joins.add(now, joins)
        if refused:
            self._refused.add(now, refused)

    def signals(self, now: float) -> tuple[float, float]:
        """(joins per second, refused share of requests) over the window."""
        requests = self._requests.total(now)
        share = 0.0
        if requests >= self.thresholds.min_requests:
            share = self._refused.total(now) / requests
        return self._joins.rate(now), share

    def update(self, now: float) -> bool:
        """Re-evaluates automatic mode and returns whether attack mode is active."""
        t = self.thresholds
        before = self.active
        join_rate, refused_share = self.signals(now)
        if not self._auto:
            if join_rate >= t.join_rate_on or refused_share >= t.refused_share_on:
                self._auto = True
                self._calm_since = None
                self.reason = (
                    f"joins {join_rate:.0f}/s"
                    if join_rate >= t.join_rate_on
                    else f"refused {refused_share:.0%} of requests"
                )
        elif join_rate <= t.join_rate_off and refused_share <= t.refused_share_off:
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= t.calm_s:
                self._auto = False
                self._calm_since = None
        else:
            self._calm_since = None
        if self.active != before:
            self.switches += 1
        return self.active
