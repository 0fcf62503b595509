"""Listening tickets: the right to open a live stream, checked without shared state.

A ticket is signed ``("t", space_id, listener_id, expires_at)``; expires_at is
whole seconds on the server's clock (floor of now + ttl). Any node holding the
key can check one with a single HMAC, so a flood of forged tickets costs the
server one hash each and never reaches a counter, a lock or Redis. A listener
whose stream drops reconnects with the same ticket until it expires, without
queuing again.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Final

from townhall.admission.refused import AdmissionRefused, refusal_code
from townhall.admission.signing import InvalidToken, Signer

REJOIN_WINDOW_S: Final = 12 * 3_600
"""A ticket re-joins (rejoin_claims) up to this long after its expiry: a listener's
stream outlives its ticket (the ticket is checked when the stream opens), so the one in
hand after hours of listening has expired; past this, the listener joins as anyone."""
KIND: Final = "t"
"""First field of every ticket: a queue token or a challenge is never a ticket."""
_FIELDS: Final = 4


class TicketRefused(AdmissionRefused):
    """Codes: ``forged``, ``malformed``, ``expired``, ``wrong_space``."""


@dataclass(frozen=True, slots=True)
class Ticket:
    token: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class TicketClaims:
    space_id: str
    listener_id: str
    expires_at: int


ANONYMOUS_PREFIX: Final = "anon-"


def anonymous_listener_id() -> str:
    """A fresh listener id for an anonymous listener admitted at once (no queue number
    to derive one from): the door's and the stream workers' (townhall.edge.joins)."""
    return ANONYMOUS_PREFIX + secrets.token_urlsafe(9)


def issue_ticket(
    signer: Signer, space_id: str, listener_id: str, now: float, ttl_s: float
) -> Ticket:
    if ttl_s < 1:
        raise ValueError("ticket expiry has whole-second resolution; ttl_s must be >= 1")
    expires_at = math.floor(now + ttl_s)
    return Ticket(signer.sign((KIND, space_id, listener_id, expires_at)), expires_at)


def check_ticket(signer: Signer, token: str, space_id: str, now: float) -> TicketClaims:
    """The ticket's claims if it is ours, for this space, and not expired; else TicketRefused."""
    try:
        fields = signer.verify(token)
    except InvalidToken as exc:
        raise TicketRefused(refusal_code(exc.reason), "this ticket is not valid") from None
    if len(fields) != _FIELDS or fields[0] != KIND or not fields[3].isdecimal():
        raise TicketRefused("malformed", "this is not a listening ticket")
    _, ticket_space, listener_id, expiry = fields
    if ticket_space != space_id:
        raise TicketRefused("wrong_space", "this ticket is for another space")
    expires_at = int(expiry)
    if now >= expires_at:
        raise TicketRefused("expired", "this ticket has expired; join again")
    return TicketClaims(ticket_space, listener_id, expires_at)


def rejoin_claims(
    signer: Signer, token: str, space_id: str, now: float, window_s: float = REJOIN_WINDOW_S
) -> TicketClaims:
    """The claims of a ticket held by a listener whose stream dropped (its node died):
    ours and for this space, expired for at most `window_s`. The door gives the same
    listener a fresh ticket without a second wait in line, on whatever node it asks."""
    try:
        return check_ticket(signer, token, space_id, now - window_s)
    except TicketRefused as refused:
        if refused.code != "expired":
            raise
        raise TicketRefused("expired", "this ticket is too old to re-join with") from None
