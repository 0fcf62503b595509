"""The door: who listens now, who waits in line, who is asked to come back.

Applies the pure admission logic (townhall.admission) to live requests. Every
answer is cheap and honest: a ticket, a place in the queue with an ETA, or a
refusal with Retry-After. Nothing here reads the database, and a forged token
is refused by its HMAC alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from townhall.admission import (
    AddressLimiter,
    AdmissionRefused,
    Admitted,
    AttackMode,
    BucketSpec,
    Capacity,
    LoopLagMonitor,
    QueuePolicy,
    QueueRefused,
    SpentChallenges,
    StreamGate,
    Ticket,
    Waiting,
    WaitingRoom,
    issue_challenge,
    issue_ticket,
    verify_solution,
)
from townhall.admission.address_limit import check_address
from townhall.admission.attack_mode import ATTACK_RESTRICTIONS, NORMAL_RESTRICTIONS
from townhall.admission.capacity import Action, Decision, shed_retry_s
from townhall.admission.signing import Signer
from townhall.admission.tickets import TicketRefused, anonymous_listener_id, rejoin_claims
from townhall.config import Settings
from townhall.domain.errors import Forbidden, Invalid, TooManyRequests, Unavailable
from townhall.domain.spaces import User
from townhall.service.events import Events
from townhall.service.shared_line import SharedLine
from townhall.state import State

log = logging.getLogger(__name__)

LAG_PROBE_S = 0.05
"""How often the loop-lag probe wakes; lag is how late it wakes."""
HOUSEKEEPING_S = 1.0
UNLIMITED = BucketSpec(rate=1e9, burst=1e9)
FORGERY_CODES = frozenset({"forged", "malformed"})
"""Queue-token refusals that count towards automatic attack mode: no honest client sends
them, and no per-address bucket has absorbed them."""
LINE_TICK_S = 0.2
"""How often every waiting room is moved on by time alone (issue 6: a line paused by an
overload resumed only when a fresh join happened to arrive)."""
ATTACK_MODE_TTL_S = 24 * 3600.0
"""How long an operator's attack-mode setting is kept in the shared state: every node of
the deployment follows it (a forgotten "on" must not outlive a day)."""
ATTACK_MODES: dict[bool | None, str] = {True: "on", False: "off", None: "auto"}
"""An operator's forced setting as the shared state holds it."""
SHARED_LINE_SPEEDUP = 1.0
"""A shared line's numbers are never taken for dead (QueuePolicy.max_speedup: 1 disables
skipping): no node sees the whole line's claims."""
MAX_QUEUED_SHED_RETRY_S = 15.0
"""Longest interval (before jitter) a person in line is told to stay away while the node
is overloaded. Their place is kept and an overload is seconds long, so sending them away
for a minute only made them wait long after it ended (the lull came and nobody polled)."""


class Door:
    def __init__(
        self,
        settings: Settings,
        signer: Signer,
        listeners: Callable[[], int],
        events: Events | None = None,
        state: State | None = None,
        line: SharedLine | None = None,
    ) -> None:
        """`listeners` counts the node's live-stream listeners; `events` is told when
        attack mode changes and tells the door when a space ends (its line goes);
        `state` carries an operator's attack-mode setting to every node; `line`, when
        several nodes serve one deployment, makes each space's line one sequence across
        them (townhall.service.shared_line)."""
        admission = settings.admission
        self._settings = settings
        self._signer = signer
        self._listeners = listeners
        stream_processes = max(1, settings.edge.stream_workers)
        self.capacity = Capacity(
            # the listener cap is per process that serves streams (its open-file limit)
            max_listeners=admission.max_listeners * stream_processes,
            max_admissions_per_s=admission.max_admissions_per_s,
            max_loop_lag_ms=admission.max_loop_lag_ms,
        )
        self._policy = QueuePolicy.from_capacity(
            self.capacity, priority_share=admission.priority_share
        )
        if line is not None:
            # A node of a shared line sees every node's grants but only the claims of
            # the polls that reach it: it would take the others' claims for dead numbers
            # and grant ever faster (the cluster rehearsal: 467/s through two doors of
            # 20/s). Until claims are shared too, each number costs one admission.
            self._policy = replace(self._policy, max_speedup=SHARED_LINE_SPEEDUP)
        self._limits_on = admission.per_address_rate > 0
        normal = NORMAL_RESTRICTIONS
        if self._limits_on:
            rate = admission.per_address_rate
            normal = replace(normal, per_address=BucketSpec(rate, rate * 5))
        attack = replace(ATTACK_RESTRICTIONS, pow_bits=admission.pow_bits)
        self.attack = AttackMode(normal=normal, attack=attack)
        if admission.attack_mode in ("on", "off"):
            self.attack.force(admission.attack_mode == "on")
        self._limiter = AddressLimiter(*self._bucket_specs())
        self.stream_gate = StreamGate(signer, self.capacity)
        """May this ticket stream here: the same decision as the stream workers'."""
        self.lag = LoopLagMonitor()
        self._spent = SpentChallenges()
        self._rooms: dict[str, WaitingRoom] = {}
        self.counts: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._events = events or Events()
        self._state = state
        self._line = line
        self._events.listen_space_ended(self.forget)
        self._cpu = (time.process_time(), time.monotonic(), 0.0)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._probe_forever(), name="door-probe"))
        if self._state is not None:
            follow = self._follow_shared_attack_mode_forever()
            self._tasks.append(asyncio.create_task(follow, name="door-attack-mode"))
        if self._line is not None:
            self._tasks.append(asyncio.create_task(self._sync_lines_forever(), name="door-lines"))

    async def stop(self) -> None:
        """Ends the door's loops. Each also ends at its next turn once `_stopping` is set:
        a cancel that lands inside a state call can be lost by the client library (seen
        with Redis: a node that had taken over a space never finished its shutdown)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for ended in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(ended, Exception):
                log.error("a door loop had failed: %r", ended)
        self._tasks.clear()

    async def _sync_lines_forever(self) -> None:
        """Every LINE_TICK_S, each line here takes in the other nodes' arrivals and
        admissions and adds its own (O(live spaces) calls to the state, none per join)."""
        assert self._line is not None
        while not self._stopping:
            await asyncio.sleep(LINE_TICK_S)
            for space_id, room in list(self._rooms.items()):
                try:
                    await self._line.sync(space_id, room)
                except Unavailable:
                    break  # the state is away: the lines here go on alone meanwhile

    async def _follow_shared_attack_mode_forever(self) -> None:
        """Applies the deployment's attack-mode setting (an operator's, made on any node)
        once per HOUSEKEEPING_S; in its own task so that an unreachable state never
        holds up the lag probe or the lines."""
        assert self._state is not None
        by_name = {name: on for on, name in ATTACK_MODES.items()}
        while not self._stopping:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                mode = await self._state.attack_mode()
            except Unavailable:
                continue  # the state is away: keep what we have
            if mode in by_name and by_name[mode] != self.attack.forced:
                log.warning("attack mode set to %s on another node", mode)
                self.force_attack_mode(by_name[mode])

    async def _probe_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_housekeeping = loop.time() + HOUSEKEEPING_S
        next_line_tick = loop.time() + LINE_TICK_S
        while not self._stopping:
            scheduled = loop.time() + LAG_PROBE_S
            self.lag.expect_wake(time.monotonic() + LAG_PROBE_S)
            await asyncio.sleep(LAG_PROBE_S)
            self.lag.observe_wake(scheduled, loop.time())
            if loop.time() >= next_line_tick:
                next_line_tick = loop.time() + LINE_TICK_S
                self.advance_lines()
            if loop.time() >= next_housekeeping:
                next_housekeeping = max(next_housekeeping + HOUSEKEEPING_S, loop.time())
                self._housekeeping()

    def _housekeeping(self) -> None:
        now = time.time()
        was = self.attack.active
        if self.attack.update(now) != was:
            log.warning(
                "attack mode %s (%s)", "on" if self.attack.active else "off", self.attack.reason
            )
            self._limiter.reconfigure(*self._bucket_specs())
            self._events.attack_mode_changed(self.attack.active)
        self._limiter.sweep(now)
        cpu, wall, _ = self._cpu
        cpu_now, wall_now = time.process_time(), time.monotonic()
        self._cpu = (cpu_now, wall_now, (cpu_now - cpu) / max(1e-6, wall_now - wall) * 100)

    def _bucket_specs(self) -> tuple[BucketSpec, BucketSpec]:
        if not self._limits_on and not self.attack.active:
            return UNLIMITED, UNLIMITED
        restrictions = self.attack.restrictions
        return restrictions.per_address, restrictions.per_prefix

    async def set_attack_mode(self, on: bool | None) -> None:
        """An operator's setting: here at once, on every node through the shared state."""
        self.force_attack_mode(on)
        if self._state is not None:
            await self._state.set_attack_mode(ATTACK_MODES[on], ATTACK_MODE_TTL_S)

    def force_attack_mode(self, on: bool | None) -> None:
        self.attack.force(on)
        self._housekeeping()
        self._limiter.reconfigure(*self._bucket_specs())
        self._events.attack_mode_changed(self.attack.active)

    # -- the hot path --------------------------------------------------------------------

    def check_address(self, address: str) -> None:
        """Per-address and per-prefix buckets for joins and writes; TooManyRequests when
        exhausted."""
        now = time.time()
        self.attack.record(now, requests=1)
        refusal = check_address(self._limiter, address, now)
        if refusal is not None:
            # Not a signal for attack mode: the bucket already absorbs this address (or
            # prefix); counting it let one client switch the whole node (issue 6).
            self.counts[f"rate_limited_{refusal.refused_by}"] += 1
            raise TooManyRequests(refusal.message, retry_after_s=refusal.retry_after_s)

    def _room(self, space_id: str, now: float) -> WaitingRoom:
        room = self._rooms.get(space_id)
        if room is None:
            epoch = None if self._line is None else self._line.epoch(space_id)
            room = self._rooms[space_id] = WaitingRoom.open(
                self._signer, space_id, now, self._policy, epoch
            )
        return room

    def forget(self, space_id: str) -> None:
        self._rooms.pop(space_id, None)
        if self._line is not None:
            self._line.forget(space_id)

    def _require_proof_of_work(self, body: dict[str, Any], now: float) -> None:
        bits = self.attack.restrictions.pow_bits
        proof = body.get("pow")
        if isinstance(proof, dict):
            challenge, solution = proof.get("challenge"), proof.get("solution")
            if (
                isinstance(challenge, str)
                and isinstance(solution, str)
                and verify_solution(
                    self._signer, challenge, solution, now, min_bits=bits, spent=self._spent
                )
            ):
                return
            self.counts["pow_failed"] += 1
        challenge = issue_challenge(self._signer, now, bits)
        self.attack.record(now, refused=1)
        raise Forbidden(
            "the server is under heavy load: solve the challenge and join again",
            "pow_required",
            challenge=challenge.token,
            difficulty=bits,
        )

    def _apply_load(self, room: WaitingRoom) -> Decision:
        """Tells the room what the node carries now (paused unless the node admits)."""
        listeners = self._listeners()
        decision = self.capacity.decide(listeners, self._lag_now_ms())
        room.set_load(listeners, paused=decision.action is not Action.ADMIT)
        return decision

    def _lag_now_ms(self) -> float:
        return self.lag.lag_now_ms(time.monotonic())

    def _stay_away(self, status: Waiting) -> Waiting:
        """Overloaded (shed): still a place in line (as cheap as a 503, and it keeps the
        person's place), polled no sooner than the overload says (from ~5 s at the shed
        threshold to MAX_QUEUED_SHED_RETRY_S). The retry is spread per person (keyed on
        their token), not per space, so the shed crowd does not come back in one wave.
        The ETA is the room's for a paused line (the rate it expects once the loop
        recovers), and at least the time until they come back: nobody is admitted sooner.
        Measured (scripts/rehearse, overload-lull): adding the stay-away time to the room's
        ETA instead over-promised the wait by ~50% (p50), since people who come back when
        told find the counter has moved meanwhile; this is within 5% (p90).

        A lag under the shed threshold pauses the line without this: telling people to
        stay away ~5 s then too cost the 10x spike rehearsal (lag hovering at the guard)
        hundreds of answers overdue, so those polls stay short (see WaitingRoom._status)."""
        self.counts["shed"] += 1
        stretched = shed_retry_s(
            self._lag_now_ms(),
            self.capacity,
            key=zlib.crc32(status.token.encode()),
            max_retry_s=MAX_QUEUED_SHED_RETRY_S,
        )
        retry = max(status.retry_after_s, stretched)
        return replace(status, retry_after_s=retry, eta_s=max(retry, status.eta_s))

    async def join(
        self, space_id: str, user: User | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A ticket, or a place in the line; raises a domain refusal (townhall.domain.errors:
        api/errors.py gives it its status and Retry-After)."""
        now = time.time()
        self.attack.record(now, joins=1)
        self.counts["joins"] += 1
        room = self._room(space_id, now)
        if body.get("ticket") is not None:
            return self._rejoin(space_id, body["ticket"], now)
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str):
                raise Invalid("token must be the string the line gave you", "invalid_token")
            decision = self._apply_load(room)
            try:
                status = await self._poll(space_id, room, token, now)
            except AdmissionRefused as refused:
                self.counts[f"queue_{refused.code}"] += 1
                if refused.code in FORGERY_CODES:
                    self.attack.record(now, refused=1)
                raise Forbidden(
                    refused.message + "; join again without a token", f"queue_{refused.code}"
                ) from None
        else:
            if self.attack.active and user is None:
                self._require_proof_of_work(body, now)
            decision = self._apply_load(room)
            if self._line is not None and user is None:
                status = await self._join_shared_line(space_id, room, now)
            else:
                _, status = room.join(now, priority=user is not None)
        if decision.action is Action.SHED and isinstance(status, Waiting):
            status = self._stay_away(status)
        if isinstance(status, Waiting):
            self.counts["waiting"] += 1
            return {"wait": status.to_json()}
        self.counts["admitted"] += 1
        ticket = self._ticket(space_id, user, status, now)
        return {"ticket": ticket.token, "expires_at": ticket.expires_at}

    def _rejoin(self, space_id: str, ticket: object, now: float) -> dict[str, Any]:
        """A listener whose stream dropped (its node died) comes back with its ticket: the
        same listener gets a fresh ticket here, without a second wait in line (tickets are
        signed with the deployment's secret, so any node can check one)."""
        if not isinstance(ticket, str):
            raise Invalid("ticket must be the string a join gave you", "invalid_ticket")
        try:
            claims = rejoin_claims(self._signer, ticket, space_id, now)
        except TicketRefused as refused:
            self.counts[f"rejoin_{refused.code}"] += 1
            raise Forbidden(
                refused.message + "; join again without it", f"ticket_{refused.code}"
            ) from None
        self.counts["rejoins"] += 1
        renewed = issue_ticket(
            self._signer, space_id, claims.listener_id, now, self._settings.ticket_ttl_s
        )
        return {"ticket": renewed.token, "expires_at": renewed.expires_at}

    async def _poll(
        self, space_id: str, room: WaitingRoom, token: str, now: float
    ) -> Admitted | Waiting:
        """The room's answer. On a shared line a number another node handed out since our
        last sync looks unknown here: the line is synced (one call to the state, on this
        rare path only) and the token asked about again."""
        try:
            return room.poll(token, now)
        except QueueRefused as refused:
            if self._line is None or refused.code != "stale":
                raise
        await self._line.sync(space_id, room)
        return room.poll(token, now)

    async def _join_shared_line(
        self, space_id: str, room: WaitingRoom, now: float
    ) -> Admitted | Waiting:
        """At once if nobody is in line (no call to the state), else the next number of
        the one line all nodes share."""
        admitted = room.admit_unnumbered(now)
        if admitted is not None:
            return admitted
        assert self._line is not None
        return room.wait_as(now, await self._line.number(space_id))[1]

    def _ticket(self, space_id: str, user: User | None, admitted: Admitted, now: float) -> Ticket:
        """The ticket an admission buys. An admitted queue token turns into one ticket:
        its listener id comes from the queue number and its expiry from the token's
        signing time, so polling the token again returns the very same ticket (a lost
        answer costs nothing, a shared token buys no second stream: see stream_gate).
        It expires at least ticket_ttl_s after the last poll a token allows."""
        ttl = self._settings.ticket_ttl_s
        if admitted.token_issued_at is None:
            listener_id = user.id if user else anonymous_listener_id()
            return issue_ticket(self._signer, space_id, listener_id, now, ttl)
        listener_id = user.id if user else f"anon-{admitted.key}"
        last_poll = admitted.token_issued_at + self._policy.token_max_age_s
        return issue_ticket(self._signer, space_id, listener_id, last_poll, ttl)

    def grant(self, space_id: str, want: int, joins: int = 0, returned: int = 0) -> int:
        """Admissions a stream worker may hand out itself, without asking again, for an
        anonymous join with no token: up to ``want``, each taken now exactly as
        `join` admits someone arriving at an empty line (``WaitingRoom.admit_unnumbered``:
        the same rate budget, listener cap and loop-lag guard). None while attack mode is
        on (proof of work) or anyone waits in line (the line's order is kept here): the
        worker then forwards its joins, which get `join`'s answer. Per-address limits
        the worker applies itself, with its share of them (`worker_limits`). ``joins`` are
        the joins the worker answered since its last request: they count towards
        automatic attack mode as here. ``returned`` are admissions of its earlier grants
        it did not use before they expired: the rate budget gets them back
        (`WaitingRoom.give_back`), so the rate configured is the rate listeners get."""
        now = time.time()
        if joins > 0:
            self.attack.record(now, requests=joins, joins=joins)
            self.counts["joins"] += joins
            self.counts["admitted"] += joins
        if returned > 0:
            self.counts["returned"] += returned
            returned_to = self._rooms.get(space_id)
            if returned_to is not None:
                returned_to.give_back(now, returned)
        if want <= 0 or self.attack.active:
            return 0
        room = self._room(space_id, now)
        if self._apply_load(room).action is not Action.ADMIT:
            return 0
        granted = room.admit_many_unnumbered(now, want)
        self.counts["granted"] += granted
        return granted

    def worker_limits(self, workers: int) -> tuple[BucketSpec, BucketSpec] | None:
        """One stream worker's per-address and per-prefix buckets, if limits are on: a
        ``1/workers`` share of this node's (connections spread evenly over the workers)."""
        if not self._limits_on and not self.attack.active:
            return None
        share = max(1, workers)
        return tuple(  # type: ignore[return-value]
            BucketSpec(spec.rate / share, max(1.0, spec.burst / share))
            for spec in self._bucket_specs()
        )

    def advance_lines(self) -> None:
        """Moves every line on by time and the node's load alone: after an overload the
        people in line are admitted (and find so at their next poll) though nobody new
        joins. Called by the probe every LINE_TICK_S; O(live spaces)."""
        now = time.time()
        for room in self._rooms.values():
            self._apply_load(room)
            room.tick(now)

    def stream_opened(self, space_id: str) -> None:
        room = self._rooms.get(space_id)
        if room is not None:
            room.note_connected()

    def listeners(self) -> int:
        """Live-stream listeners this node holds now (its capacity's measure)."""
        return self._listeners()

    # -- for operators -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = time.time()
        queues = {}
        for space_id, room in self._rooms.items():
            self._apply_load(room)
            queue = room.stats(now)
            queues[space_id] = {
                "waiting": queue.waiting + queue.waiting_priority,
                "admitted": queue.admitted,
                "admitted_per_s": round(queue.admit_rate_per_s, 1),
                "claimed": queue.claimed,
                "claim_ratio": round(queue.claim_ratio, 3),
                "paused": room.paused,
            }
        return {
            "cpu_percent": round(self._cpu[2], 1),
            "loop_lag_ms": round(self.lag.value_ms, 2),
            "listeners": self._listeners(),
            "max_listeners": self.capacity.max_listeners,
            "max_admissions_per_s": self.capacity.max_admissions_per_s,
            "attack_mode": self.attack.active,
            "attack_reason": self.attack.reason,
            "queues": queues,
            "admissions_per_s": sum(q["admitted_per_s"] for q in queues.values()),
            "waiting": sum(q["waiting"] for q in queues.values()),
            "counts": dict(self.counts),
        }
