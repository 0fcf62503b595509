"""Who may use the operator endpoints: the bearer of the admin token."""

from __future__ import annotations

import hmac
import math
import time
from typing import Final

from townhall.admission.token_bucket import KeyedBuckets
from townhall.config import ADMIN_TOKEN_MIN_CHARS
from townhall.domain.errors import Forbidden, TooManyRequests, Unauthorized


class OperatorGate:
    """Who may use the operator endpoints: the bearer of the admin token.

    The token is compared in constant time and must be long enough not to be guessed
    (ADMIN_TOKEN_MIN_CHARS; a shorter one turns the endpoints off rather than leave
    them guessable); an address that sends wrong tokens is refused for a while after
    WRONG_TOKENS_BURST of them, whatever it sends next, so guessing cannot be fast
    even from many connections."""

    WRONG_TOKENS_BURST: Final = 5
    WRONG_TOKENS_PER_S: Final = 1 / 60
    """After the burst, one more guess a minute per address."""
    MAX_ADDRESSES: Final = 10_000
    """Addresses whose wrong guesses are remembered (an LRU: bounded however many guess)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._too_short = 0 < len(token) < ADMIN_TOKEN_MIN_CHARS
        self._wrong = KeyedBuckets(
            self.WRONG_TOKENS_PER_S, self.WRONG_TOKENS_BURST, self.MAX_ADDRESSES
        )

    def check(self, authorization: str, address: str) -> None:
        """Raises unless `authorization` is "Bearer <the admin token>"."""
        if not self._token:
            raise Forbidden("operator endpoints are off: set TOWNHALL_ADMIN_TOKEN", code="no_admin")
        if self._too_short:
            raise Forbidden(
                f"operator endpoints are off: TOWNHALL_ADMIN_TOKEN must be at least "
                f"{ADMIN_TOKEN_MIN_CHARS} characters",
                code="admin_token_too_short",
            )
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("send the operator token as a Bearer token", code="sign_in_required")
        now = time.monotonic()
        wait_s = self._wrong.wait_s(address, now)
        if wait_s > 0:
            raise TooManyRequests(
                "too many wrong operator tokens from your address; wait",
                retry_after_s=math.ceil(wait_s),
                code="too_many_attempts",
            )
        if not hmac.compare_digest(presented.strip().encode(), self._token):
            self._wrong.take(address, now)
            raise Forbidden("that is not the operator token", code="forbidden")
