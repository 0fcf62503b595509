"""The store's own refusal: the database cannot be reached right now.

It is a domain error (no HTTP here): the API maps it to 503 with Retry-After, so a
write made while PostgreSQL is down gets a clear answer instead of a hang or a 500.
"""

from __future__ import annotations

from townhall.domain.errors import Unavailable

RETRY_AFTER_S = 5.0
"""What a client is told to wait: about the time a restarted database takes to come up."""


class StoreUnavailable(Unavailable):
    code = "store_unavailable"

    def __init__(self, message: str = "the database cannot be reached; try again shortly") -> None:
        super().__init__(message, RETRY_AFTER_S)
