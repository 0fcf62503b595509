"""Who is listening over HLS: counted as media is served, read by GET /metrics.

HLS has no connection to count, so a listener is a client address that fetched
media (a segment or a part) within the last ``window_s``: players fetch at least
one per segment duration, so a window of a few segments sees every playing one.
People behind one NAT (or one proxy not listed in --trusted-proxies) count as one,
and behind a cache (the nginx of deploy/, a CDN) only cache misses arrive here, so
the count is of this node's direct HLS clients: the cache's own logs or metrics
count the rest. The address map is bounded (oldest
forgotten first) and ``saturated`` says when the estimate hit that bound.

Pure logic, no I/O: the route calls ``served`` with the time and the address.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

DEFAULT_WINDOW_S: Final = 6.0
"""Three 2 s segments: a playing client fetches media at least once in it."""
MAX_ADDRESSES: Final = 100_000
"""Distinct addresses remembered per space (about 10 MB at the bound)."""


@dataclass
class HlsAudience:
    window_s: float = DEFAULT_WINDOW_S
    max_addresses: int = MAX_ADDRESSES
    bytes_served: int = 0
    """Every HLS byte answered (playlists, init, parts, segments): a counter."""
    requests: int = 0
    saturated: bool = False
    _last_seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def served(self, nbytes: int, now: float, address: str | None = None) -> None:
        """Count an answer; with ``address``, it was media and that client is listening."""
        self.bytes_served += nbytes
        self.requests += 1
        if address is None:
            return
        self._last_seen[address] = now
        self._last_seen.move_to_end(address)
        if len(self._last_seen) > self.max_addresses:
            self._last_seen.popitem(last=False)
            self.saturated = True

    def listeners(self, now: float) -> int:
        """Addresses that fetched media within the window (older ones are forgotten)."""
        horizon = now - self.window_s
        seen = self._last_seen
        while seen and next(iter(seen.values())) < horizon:
            seen.popitem(last=False)
        return len(seen)
