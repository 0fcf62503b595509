"""The shared, read-mostly things every simulated listener and attacker needs during a run."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from townhall.loadtest.addresses import AddressPool
from townhall.loadtest.client import HttpClient
from townhall.loadtest.config import LoadtestConfig
from townhall.loadtest.metrics import Recorder
from townhall.loadtest.target import Target

if TYPE_CHECKING:
    from townhall.loadtest.pow import PowSolver


@dataclass
class RunContext:
    config: LoadtestConfig
    target: Target
    space: str
    client: HttpClient
    recorder: Recorder
    listener_addresses: AddressPool | None
    attacker_addresses: AddressPool | None
    rng: random.Random
    solver: PowSolver | None = None
    started_at: float = 0.0
    """Event-loop time of the run's t=0."""
    deadline: float = 0.0
    """Event-loop time at which the run stops every listener."""
    pow_stats: dict[str, int] = field(default_factory=dict)

    def listener_address(self, index: int) -> str | None:
        pool = self.listener_addresses
        return pool.address(index) if pool is not None else None

    def attacker_address(self, index: int) -> str | None:
        pool = self.attacker_addresses
        return pool.address(index) if pool is not None else None
