"""A stream worker's joins: most answered here, the rest forwarded to the origin.

``POST /api/spaces/{id}/join`` on the stream port. An anonymous join with no body
(or ``{}``) is what a crowd sends; the worker answers it itself when it holds a
*grant*: admissions the origin's door took ahead for it (``Door.grant``, the same
decision as a join arriving at an empty line: rate budget, listener cap, loop-lag
guard), valid for ``valid_s``. The ticket is signed here with the node's secret
exactly as the door signs one (townhall.admission.tickets), and the answer carries
the same fields as the origin's (townhall.api.stream_urls).

Everything else is forwarded whole to the origin's join route, with the listener's
address (townhall.api.worker_joins): signed-in listeners, queue tokens, proofs of
work, other bodies, and any join while this worker holds no grant for the space.
So the waiting room's order, attack mode, per-address limits, removals and every
refusal stay the origin's one implementation; a worker only ever says "yes" for
the origin, never "no". The origin grants nothing while anyone waits in line, in
attack mode or with per-address limits on, so those joins all go through it.

Grants grow with demand like a window: a join that finds no grant waits for the one
it asks for (``MIN_WANT`` at first; the joins arriving meanwhile wait for the same
request, at most ``MAX_WAITING``), and a grant that runs low asks for twice its size
ahead of running out. Joins the origin's grant does not cover are forwarded when it
granted less than asked (its budget, line or attack mode speaks), else asked for
again. One that expires part used asks for what was used next time, and hands what
it did not use back to the door at once (``returned``): taken from the rate budget and
never used, a burst's leftovers (up to 1,177 of 2,758 admissions in one measured
burst) would otherwise cut the admission rate the operator configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from townhall.admission.address_limit import AddressRefusal, check_address
from townhall.admission.signing import Signer
from townhall.admission.tickets import anonymous_listener_id, issue_ticket
from townhall.admission.token_bucket import AddressLimiter, BucketSpec
from townhall.api.stream_urls import add_stream_urls, live_url_base
from townhall.config import EdgeSettings
from townhall.edge.origin_calls import OriginAnswer, OriginUnreachable

log = logging.getLogger(__name__)

ADMISSIONS_PATH: Final = "/internal/admissions"
"""The origin's route that grants admissions (townhall.api.worker_joins)."""
MIN_WANT: Final = 4
MAX_WANT: Final = 5_000
REFUSED_RETRY_S: Final = 0.25
"""After the origin granted nothing (a line, attack mode, not live), joins are forwarded
without asking again for this long: a refused grant costs one request per interval."""
MAX_WAITING: Final = 10_000
"""Joins of one space that may wait here for a grant; past it they are forwarded."""
MAX_SPACES: Final = 10_000
"""Spaces with a grant or demand kept; past it the map is emptied (grants lost are
admissions the worker forwards instead)."""
MAX_HOST_BASES: Final = 256
LOCAL_BODIES: Final = frozenset({b"", b"{}"})
"""Bodies of a join the worker may answer itself: no field at all."""
JSON_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
)
"""The origin's rendering of a join answer (api/fastpath.py)."""

Host = tuple[str, bytes | None]
"""A request's scheme and Host header: where its live URL points."""
RequestGrant = Callable[[str, int, int, int], Awaitable[OriginAnswer]]
"""(space_id, want, joins answered since the last request, admissions returned unused)
-> the origin's answer."""


@dataclass(slots=True)
class Grant:
    left: int = 0
    until: float = 0.0
    """time.monotonic() after which ``left`` is void."""
    size: int = 0
    want: int = MIN_WANT
    answered: int = 0
    """Joins answered here since the last grant request (reported with the next)."""
    ticket_ttl_s: float = 300.0
    stage_url: str | None = None
    """Where the grant's listeners stream when not here (another node); None: here."""
    hls_url: str | None = None
    """Where their HLS playlist is, when not on `stage_url` or here."""
    asking: bool = False
    next_ask: float = 0.0
    """After a refused grant, no new request before this (time.monotonic())."""
    waiting: deque[tuple[asyncio.Future[bytes | None], Host]] = field(
        default_factory=deque
    )
    """Joins that wait for the grant under way (and their Host header)."""
    expiry: asyncio.TimerHandle | None = None
    """Set while admissions are left: at ``until``, what is left goes back to the door."""


@dataclass
class JoinStats:
    local: int = 0
    forwarded: int = 0
    grants: int = 0
    granted: int = 0
    grant_failures: int = 0
    expired_unused: int = 0
    returned: int = 0
    """Of ``expired_unused``, the admissions the door took back."""
    rate_limited: int = 0


@dataclass
class WorkerJoins:
    signer: Signer
    request_grant: RequestGrant
    edge: EdgeSettings
    stream_port: int
    host: str
    public_url: str
    opus: bool
    """The origin makes an Opus rendition (audio.opus_bitrate > 0)."""
    stats: JoinStats = field(default_factory=JoinStats)
    _grants: dict[str, Grant] = field(default_factory=dict)
    _bases: dict[Host, str] = field(default_factory=dict)
    _asking: set[asyncio.Future[None]] = field(default_factory=set)
    _limits: tuple[BucketSpec, BucketSpec] | None = None
    _limiter: AddressLimiter | None = None
    """This worker's share of the door's per-address limits (None: off), as the last
    grant said."""

    def answer_here(
        self, space_id: str, host_header: bytes | None, client: str, scheme: str = "http"
    ) -> bytes | AddressRefusal | asyncio.Future[bytes | None] | None:
        """The JSON body of a ticket answered here; or the refusal of ``client``'s
        address past its bucket (the door's words); or a future of either a ticket's body
        or None, once the grant asked for comes; or None: forward the join."""
        now = time.monotonic()
        grant = self._grants.get(space_id)
        if grant is None:
            if len(self._grants) >= MAX_SPACES:
                self._grants.clear()
            grant = self._grants[space_id] = Grant()
        if grant.left > 0 and now >= grant.until:  # its timer has not run yet
            self._give_back(space_id, grant)
        if self._limiter is not None:
            refusal = check_address(self._limiter, client, time.time())
            if refusal is not None:
                self.stats.rate_limited += 1
                return refusal
        if grant.left > 0:
            if grant.left <= grant.size // 4 and not grant.asking:  # ask ahead of running out
                self._ask_soon(space_id, grant, min(MAX_WANT, max(MIN_WANT, grant.size * 2)))
            return self._ticket(space_id, grant, (scheme, host_header))
        if now < grant.next_ask or len(grant.waiting) >= MAX_WAITING:
            return None  # the origin granted nothing a moment ago: it answers these itself
        waiter: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        grant.waiting.append((waiter, (scheme, host_header)))
        if not grant.asking:
            self._ask_soon(space_id, grant, grant.want)
        return waiter

    def _ticket(self, space_id: str, grant: Grant, host: Host) -> bytes:
        """One admission of the grant, as the door's answer would carry it."""
        grant.left -= 1
        if grant.left == 0:  # used up within its validity: the next one twice as big
            grant.want = min(MAX_WANT, max(MIN_WANT, grant.size * 2))
        grant.answered += 1
        self.stats.local += 1
        ticket = issue_ticket(
            self.signer, space_id, anonymous_listener_id(), time.time(), grant.ticket_ttl_s
        )
        answer: dict[str, Any] = {"ticket": ticket.token, "expires_at": ticket.expires_at}
        base = grant.stage_url or self._live_base(host)
        hls = grant.hls_url or grant.stage_url or self.public_url
        add_stream_urls(answer, space_id, base, hls, self.opus)
        return JSON_ENCODER.encode(answer).encode("utf-8")

    def _ask_soon(self, space_id: str, grant: Grant, want: int) -> None:
        grant.asking = True
        grant.want = want
        task = asyncio.ensure_future(self._ask(space_id, grant))
        self._asking.add(task)  # at most one per space
        task.add_done_callback(self._asking.discard)

    def _arm_expiry(self, space_id: str, grant: Grant) -> None:
        """One timer per grant, moved on lazily when a renewal extends ``until``."""
        if grant.expiry is None:
            grant.expiry = asyncio.get_running_loop().call_later(
                max(0.0, grant.until - time.monotonic()), self._expiry_due, space_id, grant
            )

    def _expiry_due(self, space_id: str, grant: Grant) -> None:
        grant.expiry = None
        if grant.left <= 0 or self._grants.get(space_id) is not grant:
            return
        if time.monotonic() < grant.until:  # renewed meanwhile
            self._arm_expiry(space_id, grant)
            return
        self._give_back(space_id, grant)

    def _give_back(self, space_id: str, grant: Grant) -> None:
        """The grant expired with admissions left: next time ask for what was used, and
        return the rest to the door now (with the joins answered since the last ask)."""
        unused = grant.left
        self.stats.expired_unused += unused
        grant.want = max(MIN_WANT, grant.size - unused)
        grant.left = 0
        answered, grant.answered = grant.answered, 0
        task = asyncio.ensure_future(self._return(space_id, grant, unused, answered))
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)

    async def _return(self, space_id: str, grant: Grant, unused: int, answered: int) -> None:
        try:
            answer = await self.request_grant(space_id, 0, answered, unused)
        except OriginUnreachable as exc:
            answer = OriginAnswer(502, {}, repr(exc).encode())
        if answer.status == 200:
            self.stats.returned += unused
        else:  # lost: the door's budget refills on its own, as before returns existed
            self.stats.grant_failures += 1
            grant.answered += answered
            log.debug("returning %d admissions of %s failed: %r", unused, space_id, answer)

    def _settle_waiting(self, space_id: str, grant: Grant, granted_all: bool) -> None:
        """The joins that waited for a grant: a ticket each while it lasts; then, if the
        origin granted all it was asked (more arrived meanwhile), another request, else
        (its budget, line or mode said no) the origin answers them itself."""
        waiting = grant.waiting
        while waiting and grant.left > 0:
            waiter, host = waiting.popleft()
            if not waiter.done():
                waiter.set_result(self._ticket(space_id, grant, host))
        if not waiting:
            return
        if granted_all and not grant.asking:
            self._ask_soon(space_id, grant, min(MAX_WANT, max(MIN_WANT, 2 * len(waiting))))
            return
        while waiting:
            waiter, _ = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _live_base(self, host: Host) -> str:
        """api/listening.py's live_base for a request with this scheme and Host header."""
        base = self._bases.get(host)
        if base is None:
            scheme, header = host
            text = (header or b"").decode("latin-1")
            try:
                hostname = urlsplit("//" + text).hostname if text else None
            except ValueError:
                hostname = None
            if len(self._bases) >= MAX_HOST_BASES:
                self._bases.clear()
            base = self._bases[host] = live_url_base(
                self.edge, self.stream_port, self.public_url, self.host, scheme, hostname
            )
        return base

    def _follow_limits(self, value: object) -> None:
        """Takes the grant's limits: ``[[rate, burst], [rate, burst]]`` or None."""
        if value is None:
            self._limits = self._limiter = None
            return
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("limits must be two [rate, burst] pairs")
        address, prefix = (BucketSpec(float(rate), float(burst)) for rate, burst in value)
        if (address, prefix) != self._limits:
            self._limits = (address, prefix)
            if self._limiter is None:
                self._limiter = AddressLimiter(address, prefix)
            else:
                self._limiter.reconfigure(address, prefix)

    async def _ask(self, space_id: str, grant: Grant) -> None:
        answered, grant.answered = grant.answered, 0
        want = grant.want
        try:
            answer = await self.request_grant(space_id, want, answered, 0)
            document = json.loads(answer.body) if answer.status == 200 else {}
            granted = int(document.get("granted", 0))
            valid_s = float(document.get("valid_s", 0.0))
            ttl = float(document.get("ticket_ttl_s", grant.ticket_ttl_s))
            stage_url = document.get("stage_url")
            hls_url = document.get("hls_url")
            self._follow_limits(document.get("limits"))
        except (OriginUnreachable, ValueError, TypeError, AttributeError) as exc:
            self.stats.grant_failures += 1
            grant.answered += answered
            log.debug("grant for %s failed: %r", space_id, exc)
            granted, valid_s, ttl, stage_url, hls_url = 0, 0.0, grant.ticket_ttl_s, None, None
        finally:
            grant.asking = False
        self.stats.grants += 1
        self.stats.granted += granted
        now = time.monotonic()
        if granted > 0 and ttl >= 1:
            if now >= grant.until:
                grant.left = 0
            grant.left += granted
            grant.size = grant.left
            grant.until = now + valid_s
            grant.ticket_ttl_s = ttl
            grant.stage_url = stage_url if isinstance(stage_url, str) and stage_url else None
            grant.hls_url = hls_url if isinstance(hls_url, str) and hls_url else None
            self._arm_expiry(space_id, grant)
        else:
            grant.want = MIN_WANT
            grant.next_ask = now + REFUSED_RETRY_S
        self._settle_waiting(space_id, grant, granted > 0 and granted >= want)
