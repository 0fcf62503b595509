"""Concurrent connections per client address, capped.

Rate limits bound how fast one address can ask; this bounds how much it can
hold at once (open live streams, half-sent slowloris requests). The table has
an entry only for addresses that hold a connection right now, so its size is
bounded by the process's open files, never by the number of addresses seen.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MAX_PER_ADDRESS: Final = 32
"""Generous for a household or an office behind one NAT; tiny next to a node's capacity."""


class ConnectionCaps:
    """Counts open connections per key; `acquire` refuses past `max_per_key` (0 disables)."""

    __slots__ = ("_open", "max_per_key", "refused")

    def __init__(self, max_per_key: int = DEFAULT_MAX_PER_ADDRESS) -> None:
        self.max_per_key = max_per_key
        self._open: dict[str, int] = {}
        self.refused = 0

    def __len__(self) -> int:
        return len(self._open)

    def open_for(self, key: str) -> int:
        return self._open.get(key, 0)

    def acquire(self, key: str) -> bool:
        count = self._open.get(key, 0)
        if self.max_per_key and count >= self.max_per_key:
            self.refused += 1
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        """Pairs with a successful `acquire`; an unpaired release is ignored."""
        count = self._open.get(key, 0)
        if count <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = count - 1
