"""The one place a state backend is chosen from its URL (`--state`, TOWNHALL_STATE)."""

from __future__ import annotations

from urllib.parse import urlsplit

from townhall.state.base import State
from townhall.state.memory import MemoryState
from townhall.state.redis import RedisState

MEMORY = "memory"


class UnknownStateUrl(ValueError):
    """The configured state URL names no backend we have."""


REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_state_url(url: str) -> None:
    """Raises UnknownStateUrl for a URL no backend takes (the command line asks first)."""
    if url not in ("", MEMORY) and urlsplit(url).scheme not in REDIS_SCHEMES:
        raise UnknownStateUrl(
            f"unknown state backend {url!r}: use 'memory' or 'redis://host:port/db'"
        )


def is_shared(url: str) -> bool:
    """Whether the state the URL names is shared by many nodes (not this process's)."""
    return url not in ("", MEMORY)


def open_state(url: str) -> State:
    """`memory` (one process) or `redis://host:port/db` (`rediss://`, `unix://` too)."""
    check_state_url(url)
    if url in ("", MEMORY):
        return MemoryState()
    return RedisState(url)
