"""The one place a state backend is chosen from its URL (`--state`, TOWNHALL_STATE)."""

from __future__ import annotations

from urllib.parse import urlsplit

from townhall.state.base import State
from townhall.state.memory import MemoryState
from townhall.state.redis import RedisState

MEMORY = "memory"


class UnknownStateUrl(ValueError):
    """The configured state URL names no backend we have."""


def open_state(url: str) -> State:
    """`memory` (one process) or `redis://host:port/db` (`rediss://`, `unix://` too)."""
    if url in ("", MEMORY):
        return MemoryState()
    if urlsplit(url).scheme in ("redis", "rediss", "unix"):
        return RedisState(url)
    raise UnknownStateUrl(f"unknown state backend {url!r}: use 'memory' or 'redis://host:port/db'")
