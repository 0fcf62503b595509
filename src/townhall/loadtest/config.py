"""Everything a rehearsal is told, as one typed object with named defaults.

Why a value object: the command line, the tests and the bench build runs the
same way, and the report echoes the whole object so a result always carries
the settings that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from townhall.loadtest.addresses import DEFAULT_ATTACKER_ADDRESSES, DEFAULT_LISTENER_ADDRESSES
from townhall.loadtest.profiles import DEFAULT_RAMP_S, DEFAULT_SPIKE_AT_S, DEFAULT_SPIKE_S

DEFAULT_RATE = 50.0
"""Arrivals per second (profile units) when none is given."""
DEFAULT_DURATION_S = 60.0
"""Run length when the profile has no natural length; --duration overrides."""
DEFAULT_MAX_LISTENERS = 100_000
DEFAULT_THINK_S = 0.5
"""Median pause between the page showing the snapshot and pressing Listen."""
DEFAULT_HOLD_S = 120.0
"""Median time a listener stays once audio plays (log-normal, so a long tail stays on)."""
DEFAULT_HOLD_SIGMA = 1.0
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_FIRST_AUDIO_TIMEOUT_S = 10.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0
"""A server's retry interval is obeyed up to this (a bug there must not freeze the run)."""
DEFAULT_SLOWLORIS_INTERVAL_S = 1.0
"""One header byte per this many seconds: slower than any honest client."""
DEFAULT_STATS_PATHS = ("/api/stats", "/api/health", "/metrics")
FILE_RESERVE = 512
"""Descriptors kept free, beyond the idle pool, when sizing --max-open by default: stats,
attacks, and sockets whose close the event loop has not completed yet."""


@dataclass(frozen=True)
class AttackRate:
    """Requests per second, absolute or as a multiple of the legitimate arrival rate."""

    value: float = 0.0
    relative: bool = False

    @classmethod
    def parse(cls, text: str) -> AttackRate:
        """"200" -> 200/s; "2x" -> twice the legitimate arrival rate at each moment."""
        text = text.strip().lower()
        relative = text.endswith("x")
        value = float(text[:-1] if relative else text)
        if value < 0:
            raise ValueError("an attack rate cannot be negative")
        return cls(value, relative)

    def at(self, legit_rate: float) -> float:
        return self.value * legit_rate if self.relative else self.value

    @property
    def active(self) -> bool:
        return self.value > 0

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}/s"


@dataclass(frozen=True)
class LoadtestConfig:
    url: str
    """Server base URL, or a space URL (/s/{id} or /api/spaces/{id})."""
    space: str | None = None
    profile: str = "constant"
    rate: float = DEFAULT_RATE
    rate_is_capacity_multiple: bool = False
    """``rate`` (and ``base_rate``) are multiples of the node's admission capacity."""
    base_rate: float | None = None
    ramp_s: float = DEFAULT_RAMP_S
    spike_at_s: float = DEFAULT_SPIKE_AT_S
    spike_s: float = DEFAULT_SPIKE_S
    scale: float = 1.0
    time_scale: float = 1.0
    poisson: bool = True
    duration_s: float | None = None
    max_listeners: int = DEFAULT_MAX_LISTENERS
    max_open: int | None = None
    """Concurrent listeners at most (each holds a socket); None sizes it from the file limit."""
    seed: int = 1
    hls_fraction: float = 0.0
    think_s: float = DEFAULT_THINK_S
    hold_s: float = DEFAULT_HOLD_S
    hold_sigma: float = DEFAULT_HOLD_SIGMA
    patience_s: float = 0.0
    """A waiting listener gives up after this long; 0 waits until the run ends."""
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    first_audio_timeout_s: float = DEFAULT_FIRST_AUDIO_TIMEOUT_S
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S
    listener_addresses: str = DEFAULT_LISTENER_ADDRESSES
    source_addresses: str = DEFAULT_ATTACKER_ADDRESSES
    join_flood: AttackRate = AttackRate()
    forged_tickets: AttackRate = AttackRate()
    snapshot_flood: AttackRate = AttackRate()
    slowloris: int = 0
    slowloris_interval_s: float = DEFAULT_SLOWLORIS_INTERVAL_S
    capacity: float | None = None
    """The node's admissions per second, for goodput as a share of it; None asks /api/stats."""
    stats_paths: tuple[str, ...] = DEFAULT_STATS_PATHS
    pow_workers: int = 1
    notify_followers: int = 0
    """Arrivals are followers told "X is live" (loadtest/notified.py) instead of the
    profile; 0 uses the profile."""
    notify_paced: bool = True
    reaction_s: float = 5.0
    notify_interval_s: float = 1.0
    arrival_share: float = 1.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("join_flood", "forged_tickets", "snapshot_flood"):
            data[name] = str(getattr(self, name))
        data["stats_paths"] = list(self.stats_paths)
        return data
