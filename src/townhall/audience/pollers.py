"""HLS listeners, counted without tickets: distinct recent playlist pollers.

An HLS player has no connection to count: it fetches the playlist again every
target duration (every part with LL-HLS blocking reloads) for as long as it plays.
So a listener is a client that polled the playlist within the last `window_s`,
and a client is its address (behind trusted proxies, the forwarded one:
townhall.forwarded) with its User-Agent, so two people behind one NAT with
different browsers count twice.

What this cannot see: a cache in front (nginx, a CDN) answers most polls itself,
so the origin sees one poller per cache node, not per listener; two players on
one address with the same browser count once. The count is a lower bound, exact
only when players reach the origin directly.

Cheap by design: one dict update per poll, expired entries dropped from the old
end when counted; at most `max_tracked` clients are kept (the oldest go first),
so a flood of invented User-Agents costs bounded memory and the count saturates.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_WINDOW_S = 10.0
"""A poller counts this long after its last poll: players poll every 1 s (the segment
target) or faster, so a listener who stopped is gone from the count within this."""
DEFAULT_MAX_TRACKED = 100_000
"""Distinct pollers kept per space (each ~100 bytes); past it the oldest are forgotten."""


class RecentPollers:
    """Distinct clients that polled one space's playlist within the last `window_s`."""

    def __init__(
        self,
        window_s: float = DEFAULT_WINDOW_S,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._max_tracked = max_tracked
        self._clock = clock
        self._last_poll: OrderedDict[int, float] = OrderedDict()
        """hash(address, user agent) -> when it last polled, oldest first."""
        self.forgotten = 0
        """Pollers dropped at the bound while still recent (the count was saturated)."""

    def saw(self, address: str, user_agent: str) -> None:
        """One playlist poll from this client."""
        key = hash((address, user_agent))
        self._last_poll.pop(key, None)
        self._last_poll[key] = self._clock()
        if len(self._last_poll) > self._max_tracked:
            self._last_poll.popitem(last=False)
            self.forgotten += 1

    def count(self) -> int:
        """Distinct pollers within the window (expired ones are dropped now)."""
        oldest_counted = self._clock() - self._window_s
        while self._last_poll:
            key, polled = next(iter(self._last_poll.items()))
            if polled > oldest_counted:
                break
            del self._last_poll[key]
        return len(self._last_poll)
