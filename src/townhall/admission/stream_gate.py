"""One decision: may this ticket stream here?

The origin's live route (townhall.api.live) and every stream worker
(townhall.edge.protocol) ask this one question, so the two cannot drift apart
(they did: a worker with ``max_listeners=5`` served 20 listeners, and both
let one ticket run 20 streams). The answer, in order:

1. a ticket is there, ours, for this space and not expired (HMAC alone);
2. its listener was not removed from the space;
3. this process has room for one more stream, unless the ticket is already
   streaming here: a new connection with the same ticket *replaces* the old
   one (a reconnect), so it takes no new slot.

Rule 3's other half, closing the old connection, is the caller's: it attaches
the new one with ``LiveFanout.attach(..., replace=True)``. Pure logic: the
caller passes the time, the removed set, its listener count and who streams.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from townhall.admission.capacity import Capacity
from townhall.admission.refused import AdmissionRefused
from townhall.admission.signing import Signer
from townhall.admission.tickets import TicketClaims, TicketRefused, check_ticket


class StreamDenied(AdmissionRefused):
    """Codes: ``ticket_required``, ``forged``, ``malformed``, ``expired``, ``wrong_space``
    (the ticket), ``removed`` (the host's decision), ``over_capacity`` (this process)."""


TICKET_REQUIRED = "ticket_required"
REMOVED = "removed"
OVER_CAPACITY = "over_capacity"


@dataclass(frozen=True, slots=True)
class StreamGate:
    signer: Signer
    capacity: Capacity
    """The limits of whoever serves the stream (a stream worker: its own process's)."""

    def admit(
        self,
        token: str,
        space_id: str,
        now: float,
        *,
        removed: Container[str],
        listeners: int,
        streaming: Container[str],
    ) -> TicketClaims:
        """The ticket's claims when it may stream here; StreamDenied otherwise.

        ``listeners``: streams this server holds now (pending ones included);
        ``streaming``: listener ids that hold one of them (a reconnect replaces)."""
        claims = self.ticket(token, space_id, now)
        if claims.listener_id in removed:
            raise StreamDenied(REMOVED, "you were removed from this space")
        if claims.listener_id not in streaming and not self.capacity.has_room(listeners):
            raise StreamDenied(OVER_CAPACITY, "this server is full; try again shortly")
        return claims

    def ticket(self, token: str, space_id: str, now: float) -> TicketClaims:
        """Step 1 alone (one HMAC): to refuse a forged ticket before any lookup."""
        if not token:
            raise StreamDenied(TICKET_REQUIRED, "join first: POST /api/spaces/{id}/join")
        try:
            return check_ticket(self.signer, token, space_id, now)
        except TicketRefused as refused:
            raise StreamDenied(refused.code, refused.message) from None
