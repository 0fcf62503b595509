"""The per-address and per-prefix check of a join, as one decision for every process.

The door (townhall.service.door) and the stream workers (townhall.edge.joins) both
refuse a join past its address's or prefix's bucket with these words and this
Retry-After. A worker holds buckets of its share of the door's rate (its slice of
the node, as connections spread over the workers by SO_REUSEPORT). Pure logic.
"""

from __future__ import annotations

from dataclasses import dataclass

from townhall.admission.token_bucket import AddressLimiter


@dataclass(frozen=True, slots=True)
class AddressRefusal:
    refused_by: str
    """``"address"`` or ``"prefix"``."""
    retry_after_s: float

    @property
    def message(self) -> str:
        return f"too many requests from your {self.refused_by}; slow down"


def check_address(limiter: AddressLimiter, address: str, now: float) -> AddressRefusal | None:
    """None if ``address`` may make one more request now (its token taken), else why not.
    Anything that is not an IP (a unix socket, a test client) has nothing to key on and
    passes."""
    try:
        refused_by = limiter.check(address, now)
    except ValueError:
        return None
    if refused_by is None:
        return None
    return AddressRefusal(refused_by, max(1.0, round(limiter.retry_after_s(address, now))))
