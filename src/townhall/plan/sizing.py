"""The arithmetic of a plan: pure, no I/O, every assumption a named field.

Edges hold the listeners (fan-out CPU, memory, egress); origins hold the stages
(one live space costs a share of a core before any listener) and feed each
edge's stream workers one copy of each program. Joins are admitted by every
edge core at the measured rate, so the time to let a whole crowd in follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from townhall.plan.figures import MeasuredFigures


@dataclass(frozen=True)
class Demand:
    listeners: int
    bitrate_bps: float = 48_000
    spaces: int = 1


@dataclass(frozen=True)
class Assumptions:
    cores_per_edge: int = 8
    cores_per_origin: int = 8
    target_utilisation: float = 0.6
    """Plan each core to this share of what the bench saw it do: headroom for spikes,
    noisy neighbours, and an edge lost (its listeners land on the others)."""
    spare_origins: int = 1
    """Origins beyond the need, so a crashed one's spaces have somewhere to go."""
    relay_feeds_per_edge_core: int = 1
    """Each stream worker (one per core) relays every live program from the origin once."""
    nic_bps_per_edge: float = 10e9
    """An edge's network link; planned to ``target_utilisation`` of it like its cores."""

    def __post_init__(self) -> None:
        if not 0 < self.target_utilisation <= 1:
            raise ValueError("target_utilisation must be in (0, 1]")
        if self.cores_per_edge < 1 or self.cores_per_origin < 1:
            raise ValueError("a node has at least one core")


@dataclass(frozen=True)
class Tier:
    nodes: int
    cores_each: int
    memory_bytes_each: float
    egress_bps_each: float
    spare: int = 0
    """Nodes kept idle for failover: counted in cores, not in egress."""

    @property
    def cores(self) -> int:
        return self.nodes * self.cores_each

    @property
    def egress_bps(self) -> float:
        return (self.nodes - self.spare) * self.egress_bps_each


@dataclass(frozen=True)
class Plan:
    edges: Tier
    origins: Tier
    admit_everyone_s: float
    """How long the waiting room takes to let the whole crowd in at the edges' join rate."""


def plan(figures: MeasuredFigures, demand: Demand, assumptions: Assumptions) -> Plan:
    if demand.listeners < 0 or demand.spaces < 1 or demand.bitrate_bps <= 0:
        raise ValueError("listeners >= 0, spaces >= 1 and a positive bitrate")
    use = assumptions.target_utilisation
    stream_bps = demand.bitrate_bps * figures.wire_overhead
    edge_cores_needed = demand.listeners / (figures.listeners_per_core * use)
    by_cpu = math.ceil(edge_cores_needed / assumptions.cores_per_edge)
    by_network = math.ceil(demand.listeners * stream_bps / (assumptions.nic_bps_per_edge * use))
    edges = max(by_cpu, by_network)
    listeners_per_edge = demand.listeners / edges if edges else 0.0
    edge_tier = Tier(
        nodes=edges,
        cores_each=assumptions.cores_per_edge,
        memory_bytes_each=figures.node_base_rss_bytes
        + listeners_per_edge * figures.rss_bytes_per_listener,
        egress_bps_each=listeners_per_edge * stream_bps,
    )
    origin_cores_needed = demand.spaces * figures.space_cpu_share_of_core / use
    working_origins = math.ceil(origin_cores_needed / assumptions.cores_per_origin)
    origins = working_origins + assumptions.spare_origins
    spaces_per_origin = demand.spaces / working_origins
    feeds = edges * assumptions.cores_per_edge * assumptions.relay_feeds_per_edge_core
    origin_tier = Tier(
        nodes=origins,
        cores_each=assumptions.cores_per_origin,
        # measured with one space per process: an upper bound for several per node
        memory_bytes_each=figures.node_base_rss_bytes * math.ceil(spaces_per_origin),
        egress_bps_each=spaces_per_origin * feeds * stream_bps,
        spare=assumptions.spare_origins,
    )
    join_rate = edge_tier.cores * figures.full_joins_per_s_per_core * use
    admit_s = demand.listeners / join_rate if join_rate else 0.0
    return Plan(edges=edge_tier, origins=origin_tier, admit_everyone_s=admit_s)
