"""The waiting room: an O(1) first-come-first-served queue for a flash crowd.

The server keeps a handful of numbers per space, whatever the crowd's size.
Each arrival takes the next sequence number of its lane and carries it away
in a signed queue token; the server advances "admitted up to" at the rate it
can sustain (a token bucket with a burst), never past its free capacity. A
poll compares the token's number with that counter: position, ETA and the
time to come back follow by arithmetic, with no list of people anywhere.

Lanes. Signed-in people may use the priority lane. While both lanes have
people waiting, the priority lane gets `priority_share` of admissions
(default half) and the normal lane the rest; a lane with nobody waiting
leaves its share to the other, so no admission slot is ever wasted. With the
default, a signed-in person waits about as long as an anonymous one when the
two lanes are equally full, and much less when anonymous people are the bulk
of the crowd (the usual case in a flood). A share of 1.0 is strict priority.

ETA. A lane's ETA is its distance to the front divided by the rate it will
get: its share while the other lane is backlogged (the other lane's backlog
and recent arrival rate say for how long), the whole rate after. When free
capacity rather than the rate is what holds admissions back, the recent
observed admission rate is used instead and the answer says ``full``. Every
poll answers afresh, so an ETA corrects itself as the crowd changes.

Polling. The retry interval is half the ETA, kept within
[`min_retry_s`, `max_retry_s`] and spread by ±`jitter` with a factor drawn
from the token itself (deterministic, so tests replay exactly): close to the
front people poll every second or so, far back every minute at most, and a
spike's arrivals do not come back in step. With N people waiting at admission
rate r the room draws roughly 2·r·ln(N/r) + N/`max_retry_s` polls per second.

Ghosts. Someone who gives up still holds a number; when the counter passes
it, that admission costs nothing (nobody connects), so the rate overstates
real joins a little and capacity is never overshot: admissions not yet seen
connecting are counted as `in_flight` (decaying over `claim_tau_s`) and
taken off the free capacity.

`WaitingRoomState` is a plain dataclass of those numbers, so a shared backend
(Redis) can store it as a hash and run `advance` on it under a lock or in a
script; `advance` is the only function that changes it besides `arrive`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from townhall.admission._jitter import spread
from townhall.admission.capacity import DEFAULT_MAX_ADMISSIONS_PER_S, Capacity
from townhall.admission.refused import AdmissionRefused, refusal_code
from townhall.admission.signing import InvalidToken, Signer

Lane = Literal["n", "p"]
NORMAL: Final[Lane] = "n"
PRIORITY: Final[Lane] = "p"
KIND: Final = "q"
_FIELDS: Final = 7
_LANE_CODE: Final = {NORMAL: 0, PRIORITY: 1}

DEFAULT_RATE: Final = DEFAULT_MAX_ADMISSIONS_PER_S
"""Admissions per second when nothing better is configured (see QueuePolicy.from_capacity)."""
DEFAULT_PRIORITY_SHARE: Final = 0.5
DEFAULT_TOKEN_MAX_AGE_S: Final = 600.0
"""A token not refreshed by a poll for this long is refused (its holder left long ago);
must comfortably exceed max_retry_s. Each Waiting answer carries a refreshed token."""
DEFAULT_MIN_RETRY_S: Final = 1.0
DEFAULT_MAX_RETRY_S: Final = 60.0
DEFAULT_RETRY_FRACTION: Final = 0.5
DEFAULT_JITTER: Final = 0.2
DEFAULT_CLAIM_TAU_S: Final = 4.0
"""Admitted people connect within a poll or two (~1.5 s); after that they are listeners or
ghosts. At 2 s a filling room overshot capacity by ~3% in simulation, at 4 s not at all;
the price is that a ghost holds a free slot for a few seconds."""
DEFAULT_RATE_TAU_S: Final = 10.0
"""Time constant of the arrival and admission rate estimates."""
MAX_ETA_S: Final = 6 * 3600.0
"""ETAs are capped here: beyond it the honest answer is "hours", not a number."""
MAX_CLOCK_SKEW_S: Final = 5
"""Tokens issued this far in our future (another node's clock) are still accepted."""
_EPS: Final = 1e-9
_MIN_RATE_WINDOW_S: Final = 0.2


class QueueRefused(AdmissionRefused):
    """Codes: ``forged``, ``malformed``, ``expired``, ``wrong_space``, ``stale``.

    ``stale``: the token belongs to an earlier queue of this space (the server
    restarted its counters); the client should join again.
    """


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    rate: float = DEFAULT_RATE
    """Admissions per second the node sustains."""
    burst: float = DEFAULT_RATE
    """Admissions allowed at once after a quiet spell (default: one second's worth)."""
    capacity: int = 0
    """Listeners the node holds; admissions stop when full. 0 disables the limit."""
    priority_share: float = DEFAULT_PRIORITY_SHARE
    token_max_age_s: float = DEFAULT_TOKEN_MAX_AGE_S
    min_retry_s: float = DEFAULT_MIN_RETRY_S
    max_retry_s: float = DEFAULT_MAX_RETRY_S
    retry_fraction: float = DEFAULT_RETRY_FRACTION
    jitter: float = DEFAULT_JITTER
    claim_tau_s: float = DEFAULT_CLAIM_TAU_S
    rate_tau_s: float = DEFAULT_RATE_TAU_S

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        if not 0.0 <= self.priority_share <= 1.0:
            raise ValueError("priority_share is a fraction in [0, 1]")
        if not 0 < self.min_retry_s <= self.max_retry_s < self.token_max_age_s:
            raise ValueError("need 0 < min_retry_s <= max_retry_s < token_max_age_s")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter is a fraction in [0, 1)")

    @classmethod
    def from_capacity(cls, capacity: Capacity, **overrides: Any) -> QueuePolicy:
        """The node's limits as a queue: admit at its rate, up to its listeners."""
        rate = capacity.max_admissions_per_s or DEFAULT_RATE
        values: dict[str, Any] = {
            "rate": rate,
            "burst": max(1.0, rate),
            "capacity": capacity.max_listeners,
        }
        values.update(overrides)
        return cls(**values)


@dataclass(slots=True)
class WaitingRoomState:
    """Everything the server remembers about one space's queue."""

    epoch: int
    """Random id of this queue: tokens of an earlier one are refused as stale."""
    created_at: float
    updated_at: float
    allowance: float
    """Admissions available right now (the token bucket's level)."""
    next_seq: int = 0
    admitted_upto: float = 0.0
    """Normal-lane numbers below this are admitted; fractional progress is kept."""
    priority_next_seq: int = 0
    priority_admitted_upto: float = 0.0
    in_flight: float = 0.0
    """Admitted but not yet counted as listeners; decays over claim_tau_s."""
    admit_rate: float = 0.0
    arrival_rate: float = 0.0
    priority_arrival_rate: float = 0.0
    """The three rates are exponentially weighted counts divided by rate_tau_s."""

    @classmethod
    def fresh(cls, now: float, burst: float, epoch: int | None = None) -> WaitingRoomState:
        if epoch is None:
            epoch = int.from_bytes(os.urandom(4), "big")
        return cls(epoch=epoch, created_at=now, updated_at=now, allowance=burst)


def advance(
    state: WaitingRoomState,
    policy: QueuePolicy,
    now: float,
    *,
    listeners: int = 0,
    paused: bool = False,
) -> float:
    """Moves the admitted-up-to counters to `now`; returns how many were admitted.

    `paused` (the node is struggling, see capacity.decide) stops both the
    bucket's refill and admissions; arrivals still queue. A clock that goes
    backwards is ignored rather than trusted.
    """
    dt = now - state.updated_at
    available = state.allowance
    if dt > 0:
        if not paused:
            available += dt * policy.rate
        decay = math.exp(-dt / policy.rate_tau_s)
        state.admit_rate *= decay
        state.arrival_rate *= decay
        state.priority_arrival_rate *= decay
        state.in_flight *= math.exp(-dt / policy.claim_tau_s)
        state.updated_at = now
    if paused:
        return 0.0
    backlog_p = state.priority_next_seq - state.priority_admitted_upto
    backlog_n = state.next_seq - state.admitted_upto
    grant = min(available, backlog_p + backlog_n)
    if policy.capacity:
        grant = min(grant, policy.capacity - listeners - state.in_flight)
    grant = max(0.0, grant)
    # The bucket's cap applies to what is left over, not to what the backlog used
    # meanwhile: however rarely advance is called, the admitted count is the same.
    state.allowance = min(policy.burst, available - grant)
    if grant <= _EPS:
        return 0.0
    to_priority = min(backlog_p, max(policy.priority_share * grant, grant - backlog_n))
    to_normal = min(backlog_n, grant - to_priority)
    state.priority_admitted_upto = min(
        float(state.priority_next_seq), state.priority_admitted_upto + to_priority
    )
    state.admitted_upto = min(float(state.next_seq), state.admitted_upto + to_normal)
    state.in_flight += grant
    state.admit_rate += grant / policy.rate_tau_s
    return grant


@dataclass(frozen=True, slots=True)
class QueueToken:
    token: str
    seq: int
    lane: Lane
    arrived_at: int


@dataclass(slots=True)
class Admitted:
    seq: int
    lane: Lane
    epoch: int
    arrived_at: int
    waited_s: float

    @property
    def key(self) -> str:
        """Unique per arrival in this queue: a natural anonymous listener id."""
        return f"{self.epoch:x}-{self.lane}{self.seq}"


@dataclass(slots=True)
class Waiting:
    position: int
    """1 is next in this lane."""
    eta_s: float
    retry_after_s: float
    token: str
    """The same place in the queue, re-signed now: send this one next time."""
    lane: Lane
    full: bool = False
    """Free capacity, not the admission rate, is what holds the queue (ETA less certain)."""

    def to_json(self) -> dict[str, Any]:
        """The ``wait`` object of the join answer (API.md)."""
        return {
            "position": self.position,
            "eta_s": round(self.eta_s, 1),
            "retry_after_s": round(self.retry_after_s, 1),
            "token": self.token,
            "lane": "priority" if self.lane == PRIORITY else "normal",
            "full": self.full,
        }


@dataclass(frozen=True, slots=True)
class QueueStats:
    waiting: int
    waiting_priority: int
    arrivals: int
    admitted: int
    admit_rate_per_s: float
    arrival_rate_per_s: float
    in_flight: float
    epoch: int


@dataclass(slots=True)
class WaitingRoom:
    """One space's waiting room on one node: the state, its policy, and the key that signs."""

    signer: Signer
    space_id: str
    policy: QueuePolicy
    state: WaitingRoomState
    listeners: int = 0
    paused: bool = False
    refusals: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(
        cls, signer: Signer, space_id: str, now: float, policy: QueuePolicy | None = None
    ) -> WaitingRoom:
        policy = policy or QueuePolicy()
        return cls(signer, space_id, policy, WaitingRoomState.fresh(now, policy.burst))

    def set_load(self, listeners: int, paused: bool = False) -> None:
        """What the node carries now; `paused` when capacity.decide says QUEUE or SHED."""
        self.listeners = listeners
        self.paused = paused

    def note_connected(self, n: int = 1) -> None:
        """Admitted people whose streams opened: they are listeners now, no longer in flight."""
        self.state.in_flight = max(0.0, self.state.in_flight - n)

    def tick(self, now: float) -> float:
        return advance(self.state, self.policy, now, listeners=self.listeners, paused=self.paused)

    def arrive(self, now: float, priority: bool = False) -> QueueToken:
        self.tick(now)
        state, tau = self.state, self.policy.rate_tau_s
        if priority:
            lane, seq = PRIORITY, state.priority_next_seq
            state.priority_next_seq += 1
            state.priority_arrival_rate += 1.0 / tau
        else:
            lane, seq = NORMAL, state.next_seq
            state.next_seq += 1
            state.arrival_rate += 1.0 / tau
        arrived_at = int(now)
        return QueueToken(self._sign(lane, seq, arrived_at, now), seq, lane, arrived_at)

    def join(self, now: float, priority: bool = False) -> tuple[QueueToken, Admitted | Waiting]:
        """Arrive and learn the answer at once (no token check: we just signed it)."""
        queued = self.arrive(now, priority)
        return queued, self._status(queued.lane, queued.seq, queued.arrived_at, now)

    def poll(self, token: str, now: float) -> Admitted | Waiting:
        """Where the token's holder stands; QueueRefused if the token is not a live one of ours."""
        try:
            lane, seq, arrived_at = self._check(token, now)
        except QueueRefused as refused:
            self.refusals[refused.code] = self.refusals.get(refused.code, 0) + 1
            raise
        return self._status(lane, seq, arrived_at, now)

    def stats(self, now: float) -> QueueStats:
        self.tick(now)
        s = self.state
        return QueueStats(
            waiting=math.ceil(s.next_seq - s.admitted_upto - _EPS),
            waiting_priority=math.ceil(s.priority_next_seq - s.priority_admitted_upto - _EPS),
            arrivals=s.next_seq + s.priority_next_seq,
            admitted=math.floor(s.admitted_upto + s.priority_admitted_upto + _EPS),
            admit_rate_per_s=_unbiased(s.admit_rate, s, self.policy, now),
            arrival_rate_per_s=_unbiased(
                s.arrival_rate + s.priority_arrival_rate, s, self.policy, now
            ),
            in_flight=s.in_flight,
            epoch=s.epoch,
        )

    def _sign(self, lane: Lane, seq: int, arrived_at: int, now: float) -> str:
        fields = (KIND, self.space_id, self.state.epoch, lane, seq, arrived_at, int(now))
        return self.signer.sign(fields)

    def _check(self, token: str, now: float) -> tuple[Lane, int, int]:
        try:
            fields = self.signer.verify(token)
        except InvalidToken as exc:
            raise QueueRefused(refusal_code(exc.reason), "this queue token is not valid") from None
        if len(fields) != _FIELDS or fields[0] != KIND:
            raise QueueRefused("malformed", "this is not a queue token")
        _, space_id, epoch, lane_text, seq_text, arrived_text, issued_text = fields
        if lane_text not in _LANE_CODE or not (
            epoch.isdecimal()
            and seq_text.isdecimal()
            and arrived_text.isdecimal()
            and issued_text.isdecimal()
        ):
            raise QueueRefused("malformed", "this is not a queue token")
        if space_id != self.space_id:
            raise QueueRefused("wrong_space", "this queue token is for another space")
        if int(epoch) != self.state.epoch:
            raise QueueRefused("stale", "the queue was restarted; join again")
        issued_at = int(issued_text)
        if now - issued_at > self.policy.token_max_age_s:
            raise QueueRefused("expired", "this place in the queue has expired; join again")
        if issued_at > now + MAX_CLOCK_SKEW_S:
            raise QueueRefused("malformed", "this queue token is from the future")
        lane: Lane = PRIORITY if lane_text == PRIORITY else NORMAL
        seq = int(seq_text)
        next_seq = self.state.priority_next_seq if lane == PRIORITY else self.state.next_seq
        if seq >= next_seq:  # signed by us, but not by this queue's counters: a lost update
            raise QueueRefused("stale", "this place in the queue is unknown; join again")
        return lane, seq, int(arrived_text)

    def _status(self, lane: Lane, seq: int, arrived_at: int, now: float) -> Admitted | Waiting:
        self.tick(now)
        s, policy = self.state, self.policy
        if lane == PRIORITY:
            upto, share = s.priority_admitted_upto, policy.priority_share
            other_backlog = s.next_seq - s.admitted_upto
            other_arrivals = _unbiased(s.arrival_rate, s, policy, now)
        else:
            upto, share = s.admitted_upto, 1.0 - policy.priority_share
            other_backlog = s.priority_next_seq - s.priority_admitted_upto
            other_arrivals = _unbiased(s.priority_arrival_rate, s, policy, now)
        ahead = seq + 1 - upto
        if ahead <= _EPS:
            return Admitted(seq, lane, s.epoch, arrived_at, max(0.0, now - arrived_at))
        held_by_capacity = self.paused or (
            policy.capacity > 0 and policy.capacity - self.listeners - s.in_flight < 1
        )
        rate = policy.rate
        if held_by_capacity:
            rate = min(rate, _unbiased(s.admit_rate, s, policy, now))
        eta = lane_eta(ahead, rate, share, other_backlog, other_arrivals)
        base = min(policy.max_retry_s, max(policy.min_retry_s, eta * policy.retry_fraction))
        retry = spread(base, policy.jitter, s.epoch ^ int(now) << 32, seq << 1 | _LANE_CODE[lane])
        return Waiting(
            position=math.ceil(ahead - _EPS),
            eta_s=eta,
            retry_after_s=retry,
            token=self._sign(lane, seq, arrived_at, now),
            lane=lane,
            full=held_by_capacity,
        )


def lane_eta(
    ahead: float, rate: float, share: float, other_backlog: float, other_arrivals: float
) -> float:
    """Seconds until a lane admits `ahead` more people.

    The lane gets `share` of `rate` while the other lane has a backlog; that
    backlog shrinks at the other lane's share minus its arrivals. Afterwards
    the other lane only takes its new arrivals (at most its share) and this
    lane gets the rest. Capped at MAX_ETA_S.
    """
    if rate <= 0:
        return MAX_ETA_S
    other_share_rate = (1.0 - share) * rate
    rate_after = rate - min(other_arrivals, other_share_rate)
    own_rate = share * rate
    if other_backlog <= _EPS:
        eta = ahead / rate_after if rate_after > 0 else MAX_ETA_S
        return min(MAX_ETA_S, eta)
    other_drain = other_share_rate - other_arrivals
    if other_drain <= 0:
        return min(MAX_ETA_S, ahead / own_rate) if own_rate > 0 else MAX_ETA_S
    drain_s = other_backlog / other_drain
    if ahead <= own_rate * drain_s:
        return min(MAX_ETA_S, ahead / own_rate)
    if rate_after <= 0:
        return MAX_ETA_S
    return min(MAX_ETA_S, drain_s + (ahead - own_rate * drain_s) / rate_after)


def _unbiased(weighted: float, state: WaitingRoomState, policy: QueuePolicy, now: float) -> float:
    """An exponentially weighted rate, corrected for the queue's young age.

    Without the correction a queue opened 2 s ago would report a fifth of its
    true arrival rate (the weights have not filled up yet).
    """
    age = max(_MIN_RATE_WINDOW_S, now - state.created_at)
    return weighted / -math.expm1(-age / policy.rate_tau_s)
