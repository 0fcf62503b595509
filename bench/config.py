"""What one bench run does; every size has a flag (see ``python -m bench --help``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    listeners: int = 5_000
    """Held by each server while its CPU and late share are measured (one core)."""
    window: int = 1_000
    """Connections in flight at once while opening listeners and joining (all clients)."""
    storm: int = 20_000
    """townhall listeners dropped and reconnected at once; 0 skips the storms."""
    icecast_storm: int = 5_000
    """The same for Icecast, smaller by default only because opening Icecast listeners
    runs at ~100/s here (its listen backlog is 5): 20,000 would take minutes just to
    set up. At most its one process's file limit allows (~19,900)."""
    joins: int = 5_000
    """Full joins (snapshot + join + first audio) against townhall."""
    node_listeners: int = 30_000
    """Concurrent listeners on the whole 2-core node (townhall, stream workers on both
    cores); 0 skips the phase."""
    stream_workers: int = 2
    chunk_ms: int = 500
    """townhall's live chunk: 500 ms like the Icecast source's writes, so both servers
    write the same number of times per listener per second (townhall's default is
    100 ms; pass --chunk-ms 100 to measure that)."""
    bitrate: int = 48_000
    clients: int = 2
    """Listener client processes (each holds < 20,000 sockets)."""
    baseline_s: float = 5.0
    settle_s: float = 3.0
    measure_s: float = 10.0
    open_timeout_s: float = 90.0
    server_cpus: str = "1"
    client_cpus: str = "0"
    servers: tuple[str, ...] = ("icecast", "townhall")

    @classmethod
    def smoke(cls) -> BenchConfig:
        """A few seconds per server: proves the machinery, measures nothing serious."""
        return cls(
            listeners=200,
            window=200,
            storm=200,
            icecast_storm=200,
            joins=50,
            node_listeners=0,
            baseline_s=0.5,
            settle_s=0.5,
            measure_s=2.0,
            open_timeout_s=30.0,
        )
