"""Shared live state: what every node must agree on. In memory for one node, Redis for many."""

from townhall.state.base import NodeInfo, State, StateUnavailable
from townhall.state.choose import is_shared, open_state
from townhall.state.memory import MemoryState
from townhall.state.redis import RedisState

__all__ = [
    "MemoryState",
    "NodeInfo",
    "RedisState",
    "State",
    "StateUnavailable",
    "is_shared",
    "open_state",
]
