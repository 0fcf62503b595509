"""Shared live state: who is on stage, counters. In memory for one node."""

from townhall.state.base import State
from townhall.state.memory import MemoryState

__all__ = ["MemoryState", "State"]
