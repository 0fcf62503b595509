"""Allowances for the writes a spammer repeats: sign-ups, sign-ins, new spaces, reactions.

The door's per-address buckets (service/door.py) guard every write against floods;
these are narrower and slower, per action, and count per account as well as per
address: one account cannot create spaces from many addresses faster than its
allowance, one address cannot open accounts by the hundred, and guesses at one
username are slowed wherever they come from. Each limit is a token bucket (a burst
of N, refilled over its window) in a bounded LRU table (admission/token_bucket.py),
so neither made-up usernames nor rotating addresses grow memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from townhall.admission.token_bucket import KeyedBuckets
from townhall.config import WriteLimits
from townhall.domain.errors import TooManyRequests

MAX_KEYS = 50_000
"""Keys remembered per limit; past it the least recently seen is forgotten."""
HOUR_S = 3_600.0
MINUTE_S = 60.0


def _buckets(per_window: int, window_s: float) -> KeyedBuckets | None:
    return KeyedBuckets(per_window / window_s, per_window, MAX_KEYS) if per_window else None


class WriteLimiter:
    def __init__(self, limits: WriteLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sign_ups = _buckets(limits.sign_ups_per_address_per_hour, HOUR_S)
        self._sign_ins_by_address = _buckets(limits.sign_ins_per_address_per_minute, MINUTE_S)
        self._sign_ins_by_account = _buckets(limits.sign_ins_per_account_per_minute, MINUTE_S)
        self._spaces_by_account = _buckets(limits.spaces_per_account_per_hour, HOUR_S)
        self._spaces_by_address = _buckets(limits.spaces_per_address_per_hour, HOUR_S)
        self._reactions_by_address = _buckets(limits.reactions_per_address_per_minute, MINUTE_S)
        self._reactions_by_account = _buckets(limits.reactions_per_account_per_minute, MINUTE_S)

    def _take(self, what: str, *checks: tuple[KeyedBuckets | None, str, str]) -> None:
        """Takes one token from each bucket, or none at all if any is empty."""
        now = self._clock()
        taken: list[tuple[KeyedBuckets, str]] = []
        for buckets, key, whose in checks:
            if buckets is None or not key:
                continue
            if not buckets.take(key, now):
                for earlier, earlier_key in taken:
                    earlier.refund(earlier_key)
                retry = max(1.0, round(buckets.wait_s(key, now)))
                raise TooManyRequests(f"too many {what} {whose}; slow down", retry)
            taken.append((buckets, key))

    def sign_up(self, address: str) -> None:
        self._take("sign-ups", (self._sign_ups, address, "from your address"))

    def sign_in(self, address: str, username: str) -> None:
        self._take(
            "sign-ins",
            (self._sign_ins_by_address, address, "from your address"),
            (self._sign_ins_by_account, username.lower(), "for this account"),
        )

    def create_space(self, address: str, account_id: str) -> None:
        self._take(
            "new spaces",
            (self._spaces_by_account, account_id, "from your account"),
            (self._spaces_by_address, address, "from your address"),
        )

    def react(self, address: str, account_id: str | None) -> None:
        self._take(
            "reactions",
            (self._reactions_by_account, account_id or "", "from your account"),
            (self._reactions_by_address, address, "from your address"),
        )
