"""The waiting room, driven by simulated crowds in simulated time.

Each simulated client joins, then polls exactly when the server tells it to
(retry_after_s) with the refreshed token it was given, like the listener page.
A heartbeat records the server's admitted-up-to counters so that every
number's true admission time can be read off the curve and compared with
what its holder was told.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import random
import statistics
import time
from dataclasses import dataclass, field

import pytest

from townhall.admission import (
    Admitted,
    QueuePolicy,
    QueueRefused,
    Signer,
    Waiting,
    WaitingRoom,
    WaitingRoomState,
    advance,
)
from townhall.admission.waiting_room import MAX_ETA_S, NORMAL, PRIORITY, lane_eta

SECRET = b"waiting-room-test-secret-0123456789"
SPACE = "sp_flash"
HEARTBEAT_S = 0.05


@dataclass
class Crowd:
    """What happened to a simulated crowd."""

    room: WaitingRoom
    curve: dict[str, list[tuple[float, float]]]
    answers: list[tuple[float, str, int, Admitted | Waiting]] = field(default_factory=list)
    learned_at: dict[int, float] = field(default_factory=dict)
    place: dict[int, tuple[str, int, float]] = field(default_factory=dict)
    polls: dict[int, int] = field(default_factory=dict)
    _uptos: dict[str, list[float]] = field(default_factory=dict)

    def admitted_at(self, lane: str, seq: int) -> float:
        """When the server's counter passed `seq` (interpolated between heartbeats)."""
        curve = self.curve[lane]
        if len(self._uptos.get(lane, ())) != len(curve):
            self._uptos[lane] = [upto for _, upto in curve]
        target = seq + 1 - 1e-9
        i = bisect.bisect_left(self._uptos[lane], target)
        assert i < len(curve), f"{lane}{seq} never admitted"
        t1, u1 = curve[i]
        t0, u0 = curve[i - 1] if i else curve[i]
        return t1 if u1 == u0 else t0 + (target - u0) / (u1 - u0) * (t1 - t0)

    def waits(self) -> list[tuple[float, float, str, float]]:
        """(told_eta, actual_wait, lane, asked_at) for every Waiting answer."""
        return [
            (a.eta_s, self.admitted_at(lane, seq) - t, lane, t)
            for t, lane, seq, a in self.answers
            if isinstance(a, Waiting)
        ]


def simulate(policy: QueuePolicy, arrivals: list[tuple[float, bool]]) -> Crowd:
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, policy)
    crowd = Crowd(room, {NORMAL: [(0.0, 0.0)], PRIORITY: [(0.0, 0.0)]})
    events: list[tuple[float, int, int, str]] = [(t, 0, i, "") for i, (t, _) in enumerate(arrivals)]
    events.append((0.0, 1, -1, ""))
    heapq.heapify(events)
    outstanding = len(arrivals)
    budget = 100 * len(arrivals)  # every loop bounded: no client polls a hundred times
    while events and budget:
        budget -= 1
        now, kind, client, token = heapq.heappop(events)
        if kind == 1:  # heartbeat
            room.tick(now)
            crowd.curve[NORMAL].append((now, room.state.admitted_upto))
            crowd.curve[PRIORITY].append((now, room.state.priority_admitted_upto))
            if outstanding:
                heapq.heappush(events, (now + HEARTBEAT_S, 1, -1, ""))
            continue
        if kind == 0:
            queued, answer = room.join(now, priority=arrivals[client][1])
            crowd.place[client] = (queued.lane, queued.seq, now)
        else:
            answer = room.poll(token, now)
        crowd.polls[client] = crowd.polls.get(client, 0) + 1
        lane, seq, _ = crowd.place[client]
        crowd.answers.append((now, lane, seq, answer))
        if isinstance(answer, Admitted):
            assert (answer.lane, answer.seq) == (lane, seq)
            crowd.learned_at[client] = now
            outstanding -= 1
        else:
            heapq.heappush(events, (now + answer.retry_after_s, 2, client, answer.token))
    assert budget, "simulation did not finish"
    return crowd


def spike(n: int, per_s: float, priority_share: float = 0.0, seed: int = 7) -> list:
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    for _ in range(n):
        t += rng.expovariate(per_s)
        arrivals.append((t, rng.random() < priority_share))
    return arrivals


def assert_fifo(crowd: Crowd) -> None:
    """No one is told "wait" after someone behind them in the same lane was told "in"."""
    best: dict[str, int] = {NORMAL: -1, PRIORITY: -1}
    for _, lane, seq, answer in sorted(crowd.answers, key=lambda a: a[0]):
        if isinstance(answer, Admitted):
            best[lane] = max(best[lane], seq)
        else:
            assert seq > best[lane], f"{lane}{seq} still waiting after {lane}{best[lane]} got in"


def test_ten_thousand_arrivals_are_admitted_in_order_at_the_rate_with_honest_etas():
    rate = 100.0
    policy = QueuePolicy(rate=rate, burst=10.0)
    started = time.perf_counter()
    crowd = simulate(policy, spike(10_000, per_s=1_000.0))
    elapsed = time.perf_counter() - started

    assert len(crowd.learned_at) == 10_000
    assert_fifo(crowd)
    # The counter's admission times are in sequence order, at the configured rate.
    admitted = [crowd.admitted_at(NORMAL, seq) for seq in range(10_000)]
    assert admitted == sorted(admitted)
    backlog_from, backlog_to = admitted[100], admitted[-1]
    measured_rate = (10_000 - 1 - 100) / (backlog_to - backlog_from)
    assert measured_rate == pytest.approx(rate, rel=0.01)
    # Nobody got in before the burst plus what the rate allows.
    first_arrival = min(t for t, _ in spike(10_000, per_s=1_000.0))
    for seq in (500, 5_000, 9_999):
        assert admitted[seq] >= first_arrival + (seq + 1 - policy.burst) / rate - HEARTBEAT_S

    # Honest ETAs: the real wait matches what each answer said.
    waits = crowd.waits()
    errors = [actual - told for told, actual, _, _ in waits]
    print(
        f"\n{len(crowd.answers)} answers in {elapsed:.2f} s wall; ETA error "
        f"min {min(errors):+.3f} s max {max(errors):+.3f} s; "
        f"polls/client mean {statistics.mean(crowd.polls.values()):.1f} "
        f"max {max(crowd.polls.values())}"
    )
    for told, actual, _, _ in waits:
        assert abs(actual - told) <= 0.1 + 0.01 * told, (told, actual)
    # Clients learn they are in soon after the counter passes them, and never hammer.
    lateness = [
        crowd.learned_at[c] - crowd.admitted_at(lane, seq)
        for c, (lane, seq, _) in crowd.place.items()
    ]
    assert max(lateness) <= policy.min_retry_s * (1 + policy.jitter) + HEARTBEAT_S
    assert max(crowd.polls.values()) <= 15


def test_priority_lane_gets_its_share_and_each_lane_is_first_come_first_served():
    rate = 100.0
    policy = QueuePolicy(rate=rate, burst=10.0, priority_share=0.5)
    arrivals = spike(10_000, per_s=1_000.0, priority_share=0.2)
    crowd = simulate(policy, arrivals)
    assert len(crowd.learned_at) == 10_000
    assert_fifo(crowd)

    n_priority = sum(p for _, p in arrivals)
    # While both lanes are backlogged (until the priority lane drains) each gets half.
    drained = crowd.admitted_at(PRIORITY, n_priority - 1)
    mid_from, mid_to = 5.0, drained - 5.0
    p_curve, n_curve = dict(crowd.curve[PRIORITY]), dict(crowd.curve[NORMAL])
    ticks = sorted(t for t in p_curve if mid_from <= t <= mid_to)
    p_rate = (p_curve[ticks[-1]] - p_curve[ticks[0]]) / (ticks[-1] - ticks[0])
    n_rate = (n_curve[ticks[-1]] - n_curve[ticks[0]]) / (ticks[-1] - ticks[0])
    print(f"\nboth backlogged: priority {p_rate:.1f}/s normal {n_rate:.1f}/s")
    assert p_rate == pytest.approx(rate * 0.5, rel=0.01)
    assert n_rate == pytest.approx(rate * 0.5, rel=0.01)
    # Afterwards the normal lane takes the whole rate: no slot wasted.
    last = crowd.admitted_at(NORMAL, 10_000 - n_priority - 1)
    late_from = drained + 1.0
    after = (
        sum(1 for s in range(10_000 - n_priority) if crowd.admitted_at(NORMAL, s) > late_from) - 1
    ) / (last - late_from)
    assert after == pytest.approx(rate, rel=0.02)

    # ETAs: never more than 10% too short. They may be too long by up to ~40% for
    # people who asked during the spike: the room assumes the priority lane keeps
    # receiving arrivals at its recent rate, and this spike stops at once.
    too_short = [(told, actual) for told, actual, _, _ in crowd.waits() if actual > told]
    too_long = [(told, actual) for told, actual, _, _ in crowd.waits() if actual < told]
    worst_short = max((a - t) / max(t, 1.0) for t, a in too_short)
    worst_long = max((t - a) / max(t, 1.0) for t, a in too_long)
    print(f"worst ETA too short by {worst_short:.1%}, too long by {worst_long:.1%}")
    for told, actual in too_short:
        assert actual <= told * 1.10 + 0.25, (told, actual)
    for told, actual in too_long:
        assert actual >= told * 0.55, (told, actual)
    # Once the memory of the priority arrivals has faded (rate_tau_s = 10 s) the
    # estimates are close again.
    for told, actual, _, asked in crowd.waits():
        if asked > drained + 30.0:
            assert actual == pytest.approx(told, rel=0.02, abs=0.1)


def test_free_capacity_holds_the_queue_and_admissions_resume_as_people_leave():
    capacity, rate = 500, 200.0
    policy = QueuePolicy(rate=rate, burst=rate, capacity=capacity)
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, policy)
    rng = random.Random(3)
    events: list[tuple[float, int, int, str]] = []
    t = 0.0
    for client in range(2_000):
        t += rng.expovariate(1_000.0)
        events.append((t, 0, client, ""))
    heapq.heapify(events)
    listeners = peak = told_full = ghosts = 0
    admitted_at: dict[int, float] = {}
    budget = 200_000
    while events and budget:
        budget -= 1
        now, kind, client, token = heapq.heappop(events)
        room.set_load(listeners)
        if kind == 2:  # an admitted listener's stream connects
            listeners += 1
            room.note_connected()
            peak = max(peak, listeners)
            heapq.heappush(events, (now + rng.expovariate(1 / 10.0), 3, client, ""))
            continue
        if kind == 3:  # and later leaves
            listeners -= 1
            continue
        answer = room.join(now)[1] if kind == 0 else room.poll(token, now)
        if isinstance(answer, Admitted):
            admitted_at[client] = now
            if rng.random() < 0.1:  # gave up before connecting: a ghost
                ghosts += 1
            else:
                heapq.heappush(events, (now + 0.1, 2, client, ""))
        else:
            told_full += answer.full
            heapq.heappush(events, (now + answer.retry_after_s, 1, client, answer.token))
    assert budget, "simulation did not finish"
    duration = max(admitted_at.values())
    print(
        f"\npeak listeners {peak}/{capacity}, {told_full} answers said full, "
        f"{ghosts} ghosts, all 2000 in after {duration:.1f} s"
    )
    assert len(admitted_at) == 2_000
    assert peak <= capacity
    assert told_full > 0
    # Without the capacity bound the rate alone would have let everyone in within ~10 s.
    assert duration > 2_000 / rate * 1.5


def test_an_idle_room_admits_at_once_and_a_paused_one_admits_nobody():
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, QueuePolicy(rate=10.0, burst=5.0))
    answers = [room.join(1.0)[1] for _ in range(5)]
    assert all(isinstance(a, Admitted) for a in answers)
    queued, answer = room.join(1.0)
    assert isinstance(answer, Waiting) and answer.position == 1
    assert answer.eta_s == pytest.approx(0.1)

    room.set_load(listeners=0, paused=True)
    waiting = room.poll(queued.token, 100.0)
    assert isinstance(waiting, Waiting) and waiting.full
    room.set_load(listeners=0, paused=False)
    assert isinstance(room.poll(queued.token, 100.1), Admitted)


def test_retry_interval_grows_with_position_is_capped_and_spread():
    policy = QueuePolicy(rate=10.0, burst=1.0, min_retry_s=1.0, max_retry_s=60.0, jitter=0.2)
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, policy)
    answers = [room.join(0.0)[1] for _ in range(5_001)][1:]
    assert all(isinstance(a, Waiting) for a in answers)
    positions = [a.position for a in answers]
    assert positions == list(range(1, 5_001))
    assert answers[0].eta_s == pytest.approx(0.1)
    assert answers[-1].eta_s == pytest.approx(500.0)

    def factor(a: Waiting) -> float:
        base = min(policy.max_retry_s, max(policy.min_retry_s, a.eta_s * policy.retry_fraction))
        return a.retry_after_s / base

    factors = [factor(a) for a in answers]
    assert all(0.8 <= f <= 1.2 for f in factors)
    assert min(factors) < 0.82 and max(factors) > 1.18  # really spread, not constant
    near = statistics.mean(a.retry_after_s for a in answers[:10])
    middle = statistics.mean(a.retry_after_s for a in answers[190:210])
    far = [a.retry_after_s for a in answers[-100:]]
    assert near == pytest.approx(1.0, rel=0.2)
    assert middle == pytest.approx(10.0, rel=0.2)
    assert max(far) <= 60.0 * 1.2 and statistics.mean(far) == pytest.approx(60.0, rel=0.1)
    # Deterministic: the same token at the same second gets the same answer.
    again = room.poll(answers[1234].token, 0.0)
    assert isinstance(again, Waiting)
    assert again.retry_after_s == answers[1234].retry_after_s


def test_forged_expired_stale_and_foreign_tokens_are_refused_without_changing_the_queue():
    policy = QueuePolicy(rate=1.0, burst=1.0, token_max_age_s=600.0)
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, policy)
    room.join(0.0)
    queued, _ = room.join(0.0)
    before = dataclasses.replace(room.state)

    def refused(token: str, now: float = 1.0) -> str:
        with pytest.raises(QueueRefused) as info:
            room.poll(token, now)
        return info.value.code

    other_key = Signer(b"someone-else-entirely-0123456789")
    forged = other_key.sign(("q", SPACE, room.state.epoch, "n", 0, 0, 0))
    assert refused(forged) == "forged"
    tampered = queued.token[:-3] + ("AAA" if queued.token[-3:] != "AAA" else "BBB")
    assert refused(tampered) == "forged"
    assert refused("not a token") == "malformed"
    assert refused(room.signer.sign(("t", SPACE, "listener", 99))) == "malformed"
    assert refused(queued.token, now=601.0) == "expired"
    elsewhere = WaitingRoom.open(room.signer, "sp_other", 0.0, policy)
    assert refused(elsewhere.join(0.0)[0].token) == "wrong_space"
    restarted = WaitingRoom.open(room.signer, SPACE, 0.0, policy)
    with pytest.raises(QueueRefused) as info:
        restarted.poll(queued.token, 1.0)
    assert info.value.code == "stale"
    unknown = room.signer.sign(("q", SPACE, room.state.epoch, "n", 99, 0, 0))
    assert refused(unknown) == "stale"
    # Refusals were counted, and the queue's state was not even read for a write.
    assert room.refusals == {
        "forged": 2,
        "malformed": 2,
        "expired": 1,
        "wrong_space": 1,
        "stale": 1,
    }
    assert room.state == before


def test_a_refreshed_token_keeps_its_place_past_the_original_age_limit():
    policy = QueuePolicy(rate=1e-4, burst=1.0, token_max_age_s=600.0, max_retry_s=60.0)
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, policy)
    room.join(0.0)
    queued, answer = room.join(0.0)
    assert isinstance(answer, Waiting)
    token = answer.token
    for now in range(60, 1_800, 60):  # a patient client polling every minute for half an hour
        answer = room.poll(token, float(now))
        assert isinstance(answer, Waiting) and answer.position == 1
        token = answer.token
    with pytest.raises(QueueRefused):
        room.poll(queued.token, 1_800.0)  # the original, never refreshed, has expired


def test_state_is_plain_counters_and_advancing_in_steps_equals_one_step():
    policy = QueuePolicy(rate=50.0, burst=20.0, priority_share=0.3)
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, policy)
    for i in range(3_000):
        room.arrive(i * 0.001, priority=i % 4 == 0)
    one = dataclasses.replace(room.state)
    steps = dataclasses.replace(room.state)
    advance(one, policy, 20.0)
    for k in range(1, 2_001):
        advance(steps, policy, 3.0 + k * 0.0085)  # 2,000 small steps, 8.5 ms apart
    assert steps.updated_at == pytest.approx(20.0)
    assert steps.admitted_upto == pytest.approx(one.admitted_upto)
    assert steps.priority_admitted_upto == pytest.approx(one.priority_admitted_upto)
    total = one.admitted_upto + one.priority_admitted_upto
    assert total == pytest.approx(policy.burst + 20.0 * policy.rate)  # nothing lost
    # Everything is a number, so a shared backend can store it as a hash.
    assert all(isinstance(v, int | float) for v in dataclasses.asdict(one).values())
    assert WaitingRoomState(**dataclasses.asdict(one)) == one


@pytest.mark.parametrize(
    ("ahead", "share", "other_backlog", "other_arrivals", "expected"),
    [
        (100, 0.5, 0, 0, 1.0),  # alone: the whole rate
        (100, 0.5, 1_000, 0, 2.0),  # other lane busy throughout: half the rate
        (100, 0.5, 10, 0, 1.1),  # other lane drains in 0.2 s, then the whole rate
        (100, 0.5, 1_000, 80, 2.0),  # other lane never drains: stuck at our share
        (100, 0.5, 0, 30, 100 / 70),  # other lane's arrivals take 30/s of the door
        (100, 0.0, 100, 0, 2.0),  # no share: wait for the other lane, then the rate
        (100, 1.0, 1_000, 500, 1.0),  # strict priority ignores the other lane
    ],
)
def test_lane_eta(ahead, share, other_backlog, other_arrivals, expected):
    assert lane_eta(ahead, 100.0, share, other_backlog, other_arrivals) == pytest.approx(expected)


def test_lane_eta_is_capped_when_nothing_moves():
    assert lane_eta(10, 0.0, 0.5, 0, 0) == MAX_ETA_S
    assert lane_eta(1e12, 1.0, 0.5, 0, 0) == MAX_ETA_S


def test_waiting_answer_has_the_api_fields():
    room = WaitingRoom.open(Signer(SECRET), SPACE, 0.0, QueuePolicy(rate=1.0, burst=1.0))
    room.join(0.0)
    _, answer = room.join(0.0, priority=True)
    assert isinstance(answer, Waiting)
    body = answer.to_json()
    assert {"position", "eta_s", "retry_after_s", "token"} <= body.keys()
    assert body["lane"] == "priority"
