"""HTTP answers to a refused stream (townhall.admission.stream_gate), one table for both
servers of the live stream: the origin's route and the stream workers' raw protocol."""

from __future__ import annotations

from typing import Final

from townhall.admission.stream_gate import OVER_CAPACITY, TICKET_REQUIRED, StreamDenied

FULL_RETRY_AFTER_S: Final = 5
"""When the server is full even for ticket holders (reconnects), come back this soon."""
_STATUS: Final = {TICKET_REQUIRED: 401, OVER_CAPACITY: 503}
"""Every other code (a bad ticket, a removal) is 403."""


def denied_status(denied: StreamDenied) -> int:
    return _STATUS.get(denied.code, 403)


def denied_retry_after_s(denied: StreamDenied) -> int | None:
    return FULL_RETRY_AFTER_S if denied.code == OVER_CAPACITY else None
