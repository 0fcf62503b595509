"""Relay tokens: how a stream worker proves to the origin that it is one of ours.

The origin's internal routes (the program relay and the listener-count report)
answer only a bearer of a token signed with the node's secret. A relay token is
``("relay", node_id, expires_at)``: its first field keeps it from ever passing as
a listening ticket (kind ``"t"``) or any other token the same key signs. Workers
sign a fresh one for every request, so a short expiry costs nothing.
"""

from __future__ import annotations

import math
from typing import Final

from townhall.admission.signing import InvalidToken, Signer

KIND: Final = "relay"
HEADER: Final = "x-townhall-relay"
"""Request header that carries the token (lower case, as ASGI spells headers)."""
DEFAULT_TTL_S: Final = 60
"""Long enough for any clock skew between processes of one node, short enough that a
leaked token is worth little."""
_FIELDS: Final = 3


class RelayRefused(Exception):
    """The token is not a valid relay token; ``code`` says why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def issue_relay_token(
    signer: Signer, node_id: str, now: float, ttl_s: float = DEFAULT_TTL_S
) -> str:
    return signer.sign((KIND, node_id, math.floor(now + ttl_s)))


def check_relay_token(signer: Signer, token: str, now: float) -> str:
    """The worker's node id if the token is ours and current; else RelayRefused."""
    try:
        fields = signer.verify(token)
    except InvalidToken as exc:
        raise RelayRefused(exc.reason) from None
    if len(fields) != _FIELDS or fields[0] != KIND or not fields[2].isdecimal():
        raise RelayRefused("malformed")
    if now >= int(fields[2]):
        raise RelayRefused("expired")
    return fields[1]
