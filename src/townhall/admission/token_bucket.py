"""Token buckets, alone and keyed by client address, with memory that cannot grow without bound.

A flood from few addresses is held by a per-address bucket; a flood spread
over a whole /24 (or an IPv6 /64, which one subscriber usually owns entirely)
by a per-prefix bucket with a larger allowance. The keyed table is an LRU of
at most `max_keys` entries: an attacker rotating through millions of source
addresses evicts entries instead of growing memory, and every eviction of a
bucket that had not refilled yet (a limit forgotten early) is counted.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

DEFAULT_MAX_KEYS: Final = 100_000
"""About 10 MB of buckets; beyond it the least recently seen key is forgotten."""
IPV4_PREFIX_BITS: Final = 24
IPV6_PREFIX_BITS: Final = 64
_ADDRESS_CACHE: Final = 65_536
"""Parsed addresses remembered (ipaddress costs ~2 µs, a cache hit ~0.1 µs)."""


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; starts full."""

    __slots__ = ("burst", "rate", "tokens", "updated_at")

    def __init__(self, rate: float, burst: float) -> None:
        _check(rate, burst)
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated_at: float | None = None

    def _refill(self, now: float) -> None:
        if self.updated_at is None:
            self.updated_at = now
        elif now > self.updated_at:
            self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate)
            self.updated_at = now

    def take(self, now: float, n: float = 1) -> bool:
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def wait_s(self, now: float, n: float = 1) -> float:
        """Seconds until `n` tokens are there: an honest Retry-After for a refusal."""
        self._refill(now)
        if n > self.burst:
            return float("inf")
        return max(0.0, (n - self.tokens) / self.rate)


class KeyedBuckets:
    """One token bucket per key in a bounded LRU table.

    A key unseen (or forgotten) starts with a full bucket, so forgetting a key
    whose bucket had refilled anyway changes nothing; forgetting one that had
    not is the price of the bound and is counted in `evictions_active`.
    `rate` and `burst` may be changed at any time (attack mode tightens them);
    existing buckets follow on their next refill.
    """

    __slots__ = (
        "_entries",
        "allowed",
        "burst",
        "evictions",
        "evictions_active",
        "max_keys",
        "rate",
        "refused",
    )

    def __init__(self, rate: float, burst: float, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        _check(rate, burst)
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._entries: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, at]
        self.allowed = 0
        self.refused = 0
        self.evictions = 0
        self.evictions_active = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def take(self, key: str, now: float, n: float = 1) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                self._evict_oldest(now)
            entry = self._entries[key] = [self.burst, now]
        else:
            self._entries.move_to_end(key)
            self._refill(entry, now)
        if entry[0] >= n:
            entry[0] -= n
            self.allowed += 1
            return True
        self.refused += 1
        return False

    def refund(self, key: str, n: float = 1) -> None:
        """Gives back tokens taken for a request that another limit then refused."""
        entry = self._entries.get(key)
        if entry is not None:
            entry[0] = min(self.burst, entry[0] + n)

    def wait_s(self, key: str, now: float, n: float = 1) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        self._refill(entry, now)
        if n > self.burst:
            return float("inf")
        return max(0.0, (n - entry[0]) / self.rate)

    def sweep(self, now: float, max_scan: int = 1_000) -> int:
        """Forgets up to `max_scan` keys idle long enough to have refilled; returns how many.

        Keys sit in order of last use, so the scan stops at the first key used
        too recently: every later one was used more recently still.
        """
        refill_s = self.burst / self.rate
        removed = 0
        entries = self._entries
        while entries and removed < max_scan:
            key, entry = next(iter(entries.items()))
            if now - entry[1] < refill_s:
                break
            del entries[key]
            removed += 1
        return removed

    def _refill(self, entry: list[float], now: float) -> None:
        if now > entry[1]:
            entry[0] = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
            entry[1] = now

    def _evict_oldest(self, now: float) -> None:
        _, entry = self._entries.popitem(last=False)
        self.evictions += 1
        if entry[0] + max(0.0, now - entry[1]) * self.rate < self.burst:
            self.evictions_active += 1


@dataclass(frozen=True, slots=True)
class BucketSpec:
    rate: float
    """Requests per second allowed on average."""
    burst: float
    """Requests allowed at once after a quiet spell."""


class AddressLimiter:
    """Per-address and per-prefix buckets, checked together.

    A request passes only if both its address and its prefix have a token; if
    the prefix refuses, the address token is given back, so a client whose
    neighbours flood is not also locked out by its own retries.
    """

    __slots__ = ("by_address", "by_prefix")

    def __init__(
        self,
        per_address: BucketSpec,
        per_prefix: BucketSpec,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.by_address = KeyedBuckets(per_address.rate, per_address.burst, max_keys)
        self.by_prefix = KeyedBuckets(per_prefix.rate, per_prefix.burst, max_keys)

    def check(self, ip: str, now: float, n: float = 1) -> str | None:
        """None if allowed, else which limit refused: ``"address"`` or ``"prefix"``."""
        address, prefix = address_keys(ip)
        if not self.by_address.take(address, now, n):
            return "address"
        if not self.by_prefix.take(prefix, now, n):
            self.by_address.refund(address, n)
            return "prefix"
        return None

    def retry_after_s(self, ip: str, now: float, n: float = 1) -> float:
        address, prefix = address_keys(ip)
        return max(self.by_address.wait_s(address, now, n), self.by_prefix.wait_s(prefix, now, n))

    def reconfigure(self, per_address: BucketSpec, per_prefix: BucketSpec) -> None:
        for buckets, spec in ((self.by_address, per_address), (self.by_prefix, per_prefix)):
            _check(spec.rate, spec.burst)
            buckets.rate, buckets.burst = spec.rate, spec.burst

    def sweep(self, now: float, max_scan: int = 1_000) -> int:
        return self.by_address.sweep(now, max_scan) + self.by_prefix.sweep(now, max_scan)


@lru_cache(maxsize=_ADDRESS_CACHE)
def address_keys(ip: str) -> tuple[str, str]:
    """The canonical address and its prefix (/24 for IPv4, /64 for IPv6).

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, what a dual-stack
    socket reports for an IPv4 client) counts as the IPv4 address, so one
    client cannot get two allowances by switching how it connects. Raises
    ValueError for anything that is not an IP address.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is None:
            base = int(addr) >> (128 - IPV6_PREFIX_BITS) << (128 - IPV6_PREFIX_BITS)
            network = ipaddress.IPv6Address(base)
            return str(addr), f"{network}/{IPV6_PREFIX_BITS}"
        addr = mapped
    base = int(addr) >> (32 - IPV4_PREFIX_BITS) << (32 - IPV4_PREFIX_BITS)
    return str(addr), f"{ipaddress.IPv4Address(base)}/{IPV4_PREFIX_BITS}"


def _check(rate: float, burst: float) -> None:
    if rate <= 0 or burst < 1:
        raise ValueError("a bucket needs rate > 0 and burst >= 1")
