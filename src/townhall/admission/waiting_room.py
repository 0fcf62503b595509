"""The waiting room: an O(1) first-come-first-served queue for a flash crowd.

The server keeps a handful of numbers per space, whatever the crowd's size.
Each arrival takes the next sequence number of its lane and carries it away
in a signed queue token; the server advances "admitted up to" at the rate it
can sustain (a token bucket with a burst), never past its free capacity. A
poll compares the token's number with that counter: position, ETA and the
time to come back follow by arithmetic, with no list of people anywhere.

Claims. Passing a number is only a grant; it is *claimed* when its holder
polls and is told Admitted (that answer is what buys a ticket). People who
gave up, and flooders who join from many addresses and never come back,
hold numbers that are never claimed. If every grant cost a whole admission,
such placeholders would eat the rate: 300 dead joins/s against 20 live ones
left the live people 7% of a 50/s door. So the bucket pays for *expected
claims*: each lane learns the fraction q of its grants that get claimed, a
grant costs q, and the counter runs at rate/q, skipping dead numbers while
claims stay at the rate. Where everybody claims (q = 1) the room is exactly
a plain rate-limited counter: same numbers, same answers.

Learning q with counters only. Time is cut into periods of `claim_window_s`.
A lane's grants in the current period are its *young* cohort, those of the
previous one its *old* cohort; numbers are granted in order, so each cohort
is a range and a claim is attributed by its number. When a period ends the
old cohort has had one to two windows to be claimed (a client near the front
polls every `min_retry_s` ± jitter): its claimed fraction moves q halfway,
or all the way at once when it is clearly (beyond noise) higher; then it is
forgotten. Claims running clearly ahead of q within an open cohort (a flood
just ended: everyone being passed is real) raise q at once too. Someone
admitted the moment they arrive (the room was empty) is a sure claim: that
admission costs a whole one and is no evidence about who comes back.

Bounds. q is never taken below 1/`max_speedup`: the counter runs at most that
many times the rate however dead the queue looks, so a flood of up to that
multiple of the rate leaves live people their whole goodput, and a bigger
one leaves them rate·max_speedup·(their share of arrivals). A grant never
costs more than 1: claims count at most once per number of a cohort, so an
attacker who re-polls admitted tokens (there is no per-client state to tell a
repeat) can at worst push q to 1, the plain counter, never below it.

Slow pollers: the trade-off. Far back, people poll every `max_retry_s` (half
their ETA). When the counter speeds up, it may pass them before their next
poll; they stay admitted (whoever is passed is in, so order holds) and get in
at that poll, earlier than they were told. But until they come, their
numbers look dead, so q is underestimated: the counter skips faster than it
should, claims run above the rate for a while (never above max_speedup times
it), and when the late claims arrive q rises and the counter slows, so some
people who asked meanwhile wait longer than they were told. Simulated, 4,000
live people among 10,000 placeholders, all arriving within 10 s at a 50/s
door: everybody in after 81-90 s (a plain counter: 280 s), 90% of answers
right to within a poll, 1% too short by 6-16 s, the worst by 16-23 s; claims
peaked at ~120/s over 5 s. Late claims are not charged to the bucket:
charging them held claims to 55-64/s but the stalls they caused made ETAs
worse (10% of answers too short by 1-5 s, 1% by 10-25 s, the worst by
31-43 s; everybody in after ~118 s), and would let repeats of an old admitted
token stall the room. `max_speedup` bounds both the overshoot and how fast
the counter can sprint past live people.

Lanes. Signed-in people may use the priority lane. While both lanes have
people waiting, the priority lane gets `priority_share` of admissions
(default half) and the normal lane the rest; a lane with nobody waiting
leaves its share to the other, so no admission slot is ever wasted. Shares
are of the bucket, i.e. of expected claims: a flooded lane skips its dead
numbers within its own share and cannot take the other lane's. A share of
1.0 is strict priority.

ETA. A lane's ETA is the cost of the numbers ahead (their count times q)
divided by the rate it will get: its share while the other lane is
backlogged (the other lane's backlog and recent arrival rate say for how
long), the whole rate after. When free capacity rather than the rate is what
holds admissions back, the recent observed admission rate is used instead
and the answer says ``full``. Every poll answers afresh, so an ETA corrects
itself as the crowd changes.

Polling. The retry interval is half the ETA, kept within
[`min_retry_s`, `max_retry_s`] and spread by ±`jitter` with a factor drawn
from the token itself (deterministic, so tests replay exactly): close to the
front people poll every second or so, far back every minute at most, and a
spike's arrivals do not come back in step. With N people waiting at admission
rate r the room draws roughly 2·r·ln(N/r) + N/`max_retry_s` polls per second.

Capacity. Connections to expect are counted as `in_flight`: q per grant,
the rest of a whole one when it is claimed, one per late claim (no more per
period than a period grants); they decay over `claim_tau_s` or drop with
`note_connected`, and are taken off the free capacity.

`WaitingRoomState` is a dataclass of plain numbers (`to_fields` flattens it
for a hash), so a shared backend (Redis) can store it and run `advance`,
`admit_on_arrival` and `claim` on it under a lock or in a script; with
`WaitingRoom.arrive` they are all that change it.
"""

from __future__ import annotations

import dataclasses
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
ghosts. At 2 s a filling room overshot capacity by ~3% in simulation, at 4 s by at most one
listener in 500 (2 runs in 20); the price is that a ghost holds a free slot for a few
seconds. The hard limit is the stream's own check (Capacity.has_room)."""
DEFAULT_CLAIM_WINDOW_S: Final = 2.0
"""Length of a claim period: a grant is judged one to two of these after it is made.
Must exceed the slowest poll of a client at the front, min_retry_s·(1 + jitter) = 1.2 s,
plus a round trip; a shorter one learns a flood sooner."""
DEFAULT_MAX_SPEEDUP: Final = 8.0
"""The counter runs at most this many times the rate while skipping unclaimed numbers.
A flood of placeholders up to this multiple of the rate leaves live people their full
goodput; beyond it they get rate·speedup·(their share of arrivals). 1 disables skipping."""
DEFAULT_RATE_TAU_S: Final = 10.0
"""Time constant of the arrival and admission rate estimates."""
CLAIM_RATIO_WEIGHT: Final = 0.5
"""How far q moves towards a closed period's claimed fraction: a flood is believed over two
or three periods (4-6 s), and the noise of one period is halved."""
NOISE_SIGMAS: Final = 2.0
"""A cohort's claims scatter by about sqrt(q·grants) around q·grants; beyond this many of
those above, the change is real (a flood ended) and q follows at once."""
MIN_EVIDENCE: Final = 20
"""Grants a cohort needs for its claimed fraction to count in full, or to raise q at once:
a handful of numbers is noise (three people giving up, or three claiming, in a quiet
period must not swing the counter's speed)."""
MAX_CATCH_UP_PERIODS: Final = 64
"""Periods `advance` walks one by one; a longer silence is first covered in one stride.
Any room with people waiting is polled at least every max_retry_s·(1 + jitter)."""
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
    """Claimed admissions per second the node sustains."""
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
    claim_window_s: float = DEFAULT_CLAIM_WINDOW_S
    max_speedup: float = DEFAULT_MAX_SPEEDUP
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
        if self.claim_window_s <= self.min_retry_s * (1.0 + self.jitter):
            raise ValueError("claim_window_s must exceed min_retry_s * (1 + jitter)")
        if self.max_speedup < 1.0:
            raise ValueError("max_speedup must be >= 1 (1 disables skipping)")

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
class Cohort:
    """The numbers one lane granted in one claim period, and how many were claimed."""

    first: int = 0
    """The lane's whole admissions when the period began: the cohort is the numbers from here."""
    claims: int = 0
    """Claims of numbers passed while their holders waited."""
    on_arrival: int = 0
    """Numbers admitted as they arrived: claimed by the join answer itself, priced whole,
    and no evidence about who comes back (see `admit_on_arrival`)."""


@dataclass(slots=True)
class LaneCounters:
    """One lane's numbers: its sequence, its counter and what its grants became."""

    next_seq: int = 0
    admitted_upto: float = 0.0
    """Numbers below this are admitted; fractional progress is kept."""
    arrival_rate: float = 0.0
    """Exponentially weighted count of arrivals divided by rate_tau_s."""
    claim_ratio: float = 1.0
    """q: the fraction of numbers passed while their holders waited that get claimed (1 until
    a closed period says otherwise)."""
    late_claims: int = 0
    """Claims of numbers older than the old cohort since the last period closed."""
    young: Cohort = field(default_factory=Cohort)
    old: Cohort = field(default_factory=Cohort)

    @property
    def backlog(self) -> float:
        return self.next_seq - self.admitted_upto

    def cost(self, policy: QueuePolicy) -> float:
        """What one grant costs the bucket: the expected claims it brings, at least 1/speedup."""
        return min(1.0, max(1.0 / policy.max_speedup, self.claim_ratio))


@dataclass(slots=True)
class WaitingRoomState:
    """Everything the server remembers about one space's queue."""

    epoch: int
    """Random id of this queue: tokens of an earlier one are refused as stale."""
    created_at: float
    updated_at: float
    allowance: float
    """Expected claims the bucket can pay for right now (the token bucket's level)."""
    period_started_at: float
    """Start of the current claim period (of the young cohorts)."""
    normal: LaneCounters = field(default_factory=LaneCounters)
    priority: LaneCounters = field(default_factory=LaneCounters)
    in_flight: float = 0.0
    """Expected connections not yet seen as listeners; decays over claim_tau_s."""
    admit_rate: float = 0.0
    """Exponentially weighted allowance spent (expected claims) divided by rate_tau_s."""
    claimed: int = 0
    late_claims: int = 0

    @classmethod
    def fresh(cls, now: float, burst: float, epoch: int | None = None) -> WaitingRoomState:
        if epoch is None:
            epoch = int.from_bytes(os.urandom(4), "big")
        return cls(
            epoch=epoch, created_at=now, updated_at=now, allowance=burst, period_started_at=now
        )

    def lane(self, lane: Lane) -> LaneCounters:
        return self.priority if lane == PRIORITY else self.normal

    def to_fields(self) -> dict[str, int | float]:
        """Flat ``{"normal.young.claims": 3, ...}``: one hash, numbers only."""
        return _flatten(dataclasses.asdict(self))

    @classmethod
    def from_fields(cls, fields: dict[str, int | float]) -> WaitingRoomState:
        nested: dict[str, Any] = {}
        for key, value in fields.items():
            *path, name = key.split(".")
            node = nested
            for part in path:
                node = node.setdefault(part, {})
            node[name] = value

        def lane(values: dict[str, Any]) -> LaneCounters:
            young, old = Cohort(**values.pop("young")), Cohort(**values.pop("old"))
            return LaneCounters(**values, young=young, old=old)

        return cls(
            **nested | {"normal": lane(nested["normal"]), "priority": lane(nested["priority"])}
        )


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, int | float]:
    flat: dict[str, int | float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def _whole(upto: float) -> int:
    """Numbers fully admitted by a fractional counter."""
    return math.floor(upto + _EPS)


def advance(
    state: WaitingRoomState,
    policy: QueuePolicy,
    now: float,
    *,
    listeners: int = 0,
    paused: bool = False,
) -> float:
    """Moves the admitted-up-to counters to `now`; returns how many numbers were granted.

    `paused` (the node is struggling, see capacity.decide) stops both the
    bucket's refill and admissions; arrivals still queue and claim periods
    still close. A clock that goes backwards is ignored rather than trusted.
    Claim periods close at fixed times, so advancing in steps grants what one
    step does (up to MAX_CATCH_UP_PERIODS periods at once).
    """
    window = policy.claim_window_s
    if now < state.period_started_at + window - _EPS:  # the usual case: inside a period
        return _grant(state, policy, now, listeners, paused)
    granted = 0.0
    behind = math.floor((now - state.period_started_at) / window + _EPS)
    if behind > MAX_CATCH_UP_PERIODS:
        stride_end = state.period_started_at + (behind - MAX_CATCH_UP_PERIODS) * window
        granted += _grant(state, policy, stride_end, listeners, paused)
        _close_period(state, stride_end)
    while state.period_started_at + window <= now + _EPS:
        boundary = state.period_started_at + window
        granted += _grant(state, policy, boundary, listeners, paused)
        _close_period(state, boundary)
    return granted + _grant(state, policy, now, listeners, paused)


def _grant(
    state: WaitingRoomState, policy: QueuePolicy, now: float, listeners: int, paused: bool
) -> float:
    """The bucket between two period boundaries, where each lane's cost per grant is fixed.

    Everything is counted in expected claims (grants times cost), so within a
    period the maths is that of a plain token bucket.
    """
    dt = now - state.updated_at
    available = state.allowance
    if dt > 0:
        if not paused:
            available += dt * policy.rate
        decay = math.exp(-dt / policy.rate_tau_s)
        state.admit_rate *= decay
        state.normal.arrival_rate *= decay
        state.priority.arrival_rate *= decay
        state.in_flight *= math.exp(-dt / policy.claim_tau_s)
        state.updated_at = now
    if paused:
        return 0.0
    p, n = state.priority, state.normal
    backlog_p, backlog_n = p.next_seq - p.admitted_upto, n.next_seq - n.admitted_upto
    if backlog_p + backlog_n <= _EPS:  # nobody waits: only the bucket fills
        state.allowance = min(policy.burst, available)
        return 0.0
    cost_p, cost_n = p.cost(policy), n.cost(policy)
    need_p, need_n = backlog_p * cost_p, backlog_n * cost_n
    spend = min(available, need_p + need_n)
    if policy.capacity:
        spend = min(spend, policy.capacity - listeners - state.in_flight)
    spend = max(0.0, spend)
    # The bucket's cap applies to what is left over, not to what the backlog used
    # meanwhile: however rarely advance is called, the admitted count is the same.
    state.allowance = min(policy.burst, available - spend)
    if spend <= _EPS:
        return 0.0
    to_p = min(need_p, max(policy.priority_share * spend, spend - need_n))
    to_n = min(need_n, spend - to_p)
    before = p.admitted_upto + n.admitted_upto
    p.admitted_upto = min(float(p.next_seq), p.admitted_upto + to_p / cost_p)
    n.admitted_upto = min(float(n.next_seq), n.admitted_upto + to_n / cost_n)
    state.in_flight += spend
    state.admit_rate += spend / policy.rate_tau_s
    return p.admitted_upto + n.admitted_upto - before


def _close_period(state: WaitingRoomState, at: float) -> None:
    """The old cohorts have had a whole period to be claimed: learn from them, forget them."""
    for lane in (state.normal, state.priority):
        granted = lane.young.first - lane.old.first - lane.old.on_arrival
        if granted > 0:
            ratio = min(1.0, (lane.old.claims + lane.late_claims) / granted)
            q = lane.claim_ratio
            noise = NOISE_SIGMAS * math.sqrt(max(q, 1.0 / granted) / granted)
            if ratio - q > noise and granted >= MIN_EVIDENCE:
                lane.claim_ratio = ratio  # clearly more people claim: believe it at once
            else:
                weight = CLAIM_RATIO_WEIGHT * min(1.0, granted / MIN_EVIDENCE)
                lane.claim_ratio += weight * (ratio - q)
            lane.late_claims = 0
        lane.old = lane.young
        lane.young = Cohort(first=_whole(lane.admitted_upto))
    state.period_started_at = at


def admit_on_arrival(
    state: WaitingRoomState,
    policy: QueuePolicy,
    lane: Lane,
    listeners: int = 0,
    numbered: bool = True,
) -> int | None:
    """Takes a number for someone arriving at an empty room and admits it at once, if the
    bucket holds a whole admission (and there is a free slot); returns it, or None.

    Its holder is here and leaves with a ticket: a sure claim, so it costs a whole
    admission, not q. Priced at q, a counter that caught up with a flood would hand
    tickets on the spot to every arrival at max_speedup times the rate. Call it after
    `advance` to the same moment; with q = 1 it does what `arrive` and `advance` would.

    `numbered=False` (a line shared by many nodes, whose numbers the shared state hands
    out to people who wait) admits without taking a number: it returns -1.
    """
    p, n = state.priority, state.normal
    if p.next_seq - p.admitted_upto > _EPS or n.next_seq - n.admitted_upto > _EPS:
        return None
    if state.allowance < 1.0 - _EPS:
        return None
    if policy.capacity and policy.capacity - listeners - state.in_flight < 1.0 - _EPS:
        return None
    counters = state.lane(lane)
    seq = -1
    if numbered:
        seq = counters.next_seq
        counters.next_seq += 1
        counters.admitted_upto = float(counters.next_seq)
        counters.young.on_arrival += 1
    state.allowance -= 1.0
    state.in_flight += 1.0
    state.admit_rate += 1.0 / policy.rate_tau_s
    state.claimed += 1
    return seq


def admit_many_on_arrival(
    state: WaitingRoomState, policy: QueuePolicy, lane: Lane, wanted: int, listeners: int = 0
) -> int:
    """`admit_on_arrival` (unnumbered) ``wanted`` times at one instant, in one step:
    how many were admitted. A stream worker's grant asks for up to thousands at once,
    and a loop of single admissions held the origin's event loop for milliseconds.
    Call it after `advance` to the same moment."""
    p, n = state.priority, state.normal
    if wanted <= 0 or p.next_seq - p.admitted_upto > _EPS or n.next_seq - n.admitted_upto > _EPS:
        return 0
    admitted = min(wanted, math.floor(state.allowance + _EPS))
    if policy.capacity:
        free = policy.capacity - listeners - state.in_flight
        admitted = min(admitted, math.floor(free + _EPS))
    if admitted <= 0:
        return 0
    state.allowance -= admitted
    state.in_flight += admitted
    state.admit_rate += admitted / policy.rate_tau_s
    state.claimed += admitted
    state.lane(lane).arrival_rate += admitted / policy.rate_tau_s
    return admitted


def give_back(state: WaitingRoomState, policy: QueuePolicy, admissions: int) -> None:
    """Admissions taken with `admit_on_arrival` (unnumbered) that nobody used: a stream
    worker's grant that expired before its joins came. Taken, they were paid for from the
    bucket and counted in flight; kept lost, a burst's leftovers would cut the rate the
    operator configured. The bucket gets them back up to its burst (where it would stand
    had they never been taken), and they are no longer in flight. Call it after
    `advance` to the same moment."""
    if admissions <= 0:
        return
    state.allowance = min(policy.burst, state.allowance + admissions)
    state.in_flight = max(0.0, state.in_flight - admissions)
    state.admit_rate = max(0.0, state.admit_rate - admissions / policy.rate_tau_s)
    state.claimed = max(0, state.claimed - admissions)
    lane = state.normal
    lane.arrival_rate = max(0.0, lane.arrival_rate - admissions / policy.rate_tau_s)


def claim(state: WaitingRoomState, policy: QueuePolicy, lane: Lane, seq: int) -> None:
    """The holder of admitted number `seq` was told so (and gets a ticket): count the claim.

    Call it after `advance` to the same moment, once per Admitted answer.
    """
    counters = state.lane(lane)
    if seq >= counters.young.first:
        cohort, granted = counters.young, _whole(counters.admitted_upto) - counters.young.first
    elif seq >= counters.old.first:
        cohort, granted = counters.old, counters.young.first - counters.old.first
    else:  # passed more than a period ago: a slow poller (or a repeat); see "Slow pollers"
        counters.late_claims += 1
        state.late_claims += 1
        state.claimed += 1
        # A connection to expect; repeats of an old token must not fill the free capacity,
        # so no more per period than a period grants.
        if counters.late_claims <= counters.young.first - counters.old.first:  # old's size
            state.in_flight += 1.0
        return
    granted -= cohort.on_arrival
    if cohort.claims >= granted:  # more claims than numbers: repeats of an admitted token
        return
    cohort.claims += 1
    state.claimed += 1
    state.in_flight += 1.0 - counters.cost(policy)  # its grant reserved q of a connection
    # Claims of a fairly priced cohort scatter around q·granted (about ±sqrt of it): more
    # than that is a real change (a flood ended), and q follows at once.
    q = counters.claim_ratio
    excess = cohort.claims - q * granted - 1 - NOISE_SIGMAS * math.sqrt(q * granted)
    if excess > 0 and granted >= MIN_EVIDENCE:
        counters.claim_ratio = min(1.0, cohort.claims / granted)


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
    token_issued_at: int | None = None
    """When the polled token was signed (None: admitted on arrival, no token polled). Fixed
    for a given token, so a ticket derived from it is the same however often it is
    polled: a queue token turns into one ticket, not one per poll."""

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
    """Numbers not yet passed, in the normal lane (placeholders included)."""
    waiting_priority: int
    arrivals: int
    admitted: int
    """Numbers the counters passed (granted), claimed or not."""
    admit_rate_per_s: float
    """Allowance spent per second: expected claims, comparable with the policy's rate."""
    arrival_rate_per_s: float
    in_flight: float
    epoch: int
    claimed: int = 0
    """Admitted answers given (tickets), late ones included."""
    late_claims: int = 0
    claim_ratio: float = 1.0
    priority_claim_ratio: float = 1.0


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
    line_rate: float = 0.0
    """A line shared by several nodes: the pace every node's admissions move it at
    (townhall.service.shared_line measures it), for the ETAs. 0: this node's own rate."""

    @classmethod
    def open(
        cls,
        signer: Signer,
        space_id: str,
        now: float,
        policy: QueuePolicy | None = None,
        epoch: int | None = None,
    ) -> WaitingRoom:
        """`epoch`: fixed for a line that several nodes share (their tokens must check
        out on each other); random otherwise, so a restarted room refuses old tokens."""
        policy = policy or QueuePolicy()
        return cls(signer, space_id, policy, WaitingRoomState.fresh(now, policy.burst, epoch))

    def set_load(self, listeners: int, paused: bool = False) -> None:
        """What the node carries now; `paused` when capacity.decide says QUEUE or SHED.

        Set it before every tick, poll and join (the door does, and on its housekeeping
        tick): a pause must end when the overload does, not when somebody new arrives."""
        self.listeners = listeners
        self.paused = paused

    def note_connected(self, n: int = 1) -> None:
        """Admitted people whose streams opened: they are listeners now, no longer in flight."""
        self.state.in_flight = max(0.0, self.state.in_flight - n)

    def tick(self, now: float) -> float:
        return advance(self.state, self.policy, now, listeners=self.listeners, paused=self.paused)

    def arrive(self, now: float, priority: bool = False, seq: int | None = None) -> QueueToken:
        """Takes the next number of the lane: a place in the line (see `join`); or `seq`,
        the number a line shared by many nodes handed out (townhall.state)."""
        self.tick(now)
        lane: Lane = PRIORITY if priority else NORMAL
        counters = self.state.lane(lane)
        if seq is None:
            seq = counters.next_seq
        counters.next_seq = max(counters.next_seq, seq + 1)
        counters.arrival_rate += 1.0 / self.policy.rate_tau_s
        return self._token(lane, seq, now)

    def join(self, now: float, priority: bool = False) -> tuple[QueueToken, Admitted | Waiting]:
        """Arrive and learn the answer at once (no token check: we just signed it).

        An Admitted answer counts as a claim: the caller issues a ticket for it.
        """
        self.tick(now)
        lane: Lane = PRIORITY if priority else NORMAL
        if not self.paused:
            seq = admit_on_arrival(self.state, self.policy, lane, self.listeners)
            if seq is not None:
                self.state.lane(lane).arrival_rate += 1.0 / self.policy.rate_tau_s
                queued = self._token(lane, seq, now)
                return queued, Admitted(seq, lane, self.state.epoch, queued.arrived_at, 0.0)
        queued = self.arrive(now, priority)
        return queued, self._status(queued.lane, queued.seq, queued.arrived_at, now)

    def admit_unnumbered(self, now: float, priority: bool = False) -> Admitted | None:
        """For a line shared by many nodes: admits someone arriving at an empty line at
        once, taking no number (numbers go to people who wait); None if they must wait."""
        self.tick(now)
        if self.paused:
            return None
        lane: Lane = PRIORITY if priority else NORMAL
        if admit_on_arrival(self.state, self.policy, lane, self.listeners, numbered=False) is None:
            return None
        self.state.lane(lane).arrival_rate += 1.0 / self.policy.rate_tau_s
        return Admitted(-1, lane, self.state.epoch, int(now), 0.0)

    def admit_many_unnumbered(self, now: float, wanted: int) -> int:
        """`admit_unnumbered` up to ``wanted`` times at ``now``, in one step: how many
        were admitted (see `admit_many_on_arrival`)."""
        self.tick(now)
        if self.paused:
            return 0
        return admit_many_on_arrival(self.state, self.policy, NORMAL, wanted, self.listeners)

    def give_back(self, now: float, admissions: int) -> None:
        """Unused admissions of `admit_unnumbered` back into the bucket (see `give_back`)."""
        self.tick(now)
        give_back(self.state, self.policy, admissions)

    def wait_as(
        self, now: float, seq: int, priority: bool = False
    ) -> tuple[QueueToken, Admitted | Waiting]:
        """For a line shared by many nodes: a place in line under the shared number `seq`."""
        queued = self.arrive(now, priority, seq)
        return queued, self._status(queued.lane, queued.seq, queued.arrived_at, now)

    def follow(self, next_seq: int, admitted_upto: float, lane: Lane = NORMAL) -> None:
        """Takes in the shared line's counters (other nodes' arrivals and admissions):
        neither counter ever goes back."""
        counters = self.state.lane(lane)
        counters.next_seq = max(counters.next_seq, next_seq)
        counters.admitted_upto = max(counters.admitted_upto, min(admitted_upto, counters.next_seq))

    def poll(self, token: str, now: float) -> Admitted | Waiting:
        """Where the token's holder stands; QueueRefused if the token is not a live one of ours.

        An Admitted answer counts as a claim: the caller issues a ticket for it.
        """
        try:
            lane, seq, arrived_at, issued_at = self._check(token, now)
        except QueueRefused as refused:
            self.refusals[refused.code] = self.refusals.get(refused.code, 0) + 1
            raise
        status = self._status(lane, seq, arrived_at, now)
        if isinstance(status, Admitted):
            status.token_issued_at = issued_at
        return status

    def stats(self, now: float) -> QueueStats:
        self.tick(now)
        s, n, p = self.state, self.state.normal, self.state.priority
        return QueueStats(
            waiting=math.ceil(n.backlog - _EPS),
            waiting_priority=math.ceil(p.backlog - _EPS),
            arrivals=n.next_seq + p.next_seq,
            admitted=_whole(n.admitted_upto) + _whole(p.admitted_upto),
            admit_rate_per_s=_unbiased(s.admit_rate, s, self.policy, now),
            arrival_rate_per_s=_unbiased(n.arrival_rate + p.arrival_rate, s, self.policy, now),
            in_flight=s.in_flight,
            epoch=s.epoch,
            claimed=s.claimed,
            late_claims=s.late_claims,
            claim_ratio=n.claim_ratio,
            priority_claim_ratio=p.claim_ratio,
        )

    def _token(self, lane: Lane, seq: int, now: float) -> QueueToken:
        arrived_at = int(now)
        return QueueToken(self._sign(lane, seq, arrived_at, now), seq, lane, arrived_at)

    def _sign(self, lane: Lane, seq: int, arrived_at: int, now: float) -> str:
        fields = (KIND, self.space_id, self.state.epoch, lane, seq, arrived_at, int(now))
        return self.signer.sign(fields)

    def _check(self, token: str, now: float) -> tuple[Lane, int, int, int]:
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
        if seq >= self.state.lane(lane).next_seq:  # signed by us, not by these counters
            raise QueueRefused("stale", "this place in the queue is unknown; join again")
        return lane, seq, int(arrived_text), issued_at

    def _status(self, lane: Lane, seq: int, arrived_at: int, now: float) -> Admitted | Waiting:
        self.tick(now)
        s, policy = self.state, self.policy
        own, other = s.lane(lane), s.lane(PRIORITY if lane == NORMAL else NORMAL)
        share = policy.priority_share if lane == PRIORITY else 1.0 - policy.priority_share
        ahead = seq + 1 - own.admitted_upto
        if ahead <= _EPS:
            claim(s, policy, lane, seq)
            return Admitted(seq, lane, s.epoch, arrived_at, max(0.0, now - arrived_at))
        full = policy.capacity > 0 and policy.capacity - self.listeners - s.in_flight < 1
        held_by_capacity = self.paused or full
        # Paused (the loop lags), the line resumes at the rate it expects once the loop
        # recovers: that is the honest ETA (the pause itself is the caller's to add, as
        # the time before the person may come back). Full, it moves as people leave:
        # at the admission rate measured lately.
        rate = max(policy.rate, self.line_rate)
        if full and not self.paused:
            rate = min(rate, _unbiased(s.admit_rate, s, policy, now))
        # In expected claims: the bucket pays q per number, so dead numbers ahead cost less.
        cost, other_cost = own.cost(policy), other.cost(policy)
        other_arrivals = _unbiased(other.arrival_rate, s, policy, now)
        eta = lane_eta(
            ahead * cost, rate, share, other.backlog * other_cost, other_arrivals * other_cost
        )
        base = min(policy.max_retry_s, max(policy.min_retry_s, eta * policy.retry_fraction))
        retry = spread(base, policy.jitter, s.epoch ^ int(now) << 32, seq << 1 | _LANE_CODE[lane])
        if self.paused:  # nobody is admitted before they come back
            eta = max(eta, retry)
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
    """Seconds until a lane admits `ahead` more (in the bucket's units: expected claims).

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
