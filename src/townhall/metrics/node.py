"""One node's figures in Prometheus form, read from counters the code keeps anyway.

Nothing on the hot path calls into prometheus-client: the door, the fan-outs, the
HLS routes and the connection guard already count what matters (for /api/stats and
the load test), and this collector turns those counters into metric families when
Prometheus scrapes. A listener's bytes cost nothing more than they did.

The stream workers are separate processes; their figures arrive with the count
reports they already send every second (townhall.edge.reports) rather than
through prometheus-client's multiprocess mode, which would need a shared
directory of mmap files, a wipe on every restart, and a call per event into
prometheus-client's own metric objects in the workers' hot path.

Counters never go back: a space that ends takes its fan-out and HLS counters
with it, so their final values are kept here (each space's counter objects are
held until it has ended, then folded into ``_retired``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from townhall.audience.fanout import FanoutStats
from townhall.audience.hls_audience import HlsAudience
from townhall.edge.reports import ListenerReports, WorkerFigures
from townhall.service.live import LiveRoom
from townhall.service.relayed_programs import RelayedProgram

PREFIX: Final = "townhall"
MAIN_PROCESS: Final = "main"
DOOR_REFUSALS: Final = ("rate_limited_", "queue_", "pow_failed", "shed")
"""Door counters that are refusals (the rest are joins, admissions, waits)."""


class DoorFigures(Protocol):
    def stats(self) -> dict[str, Any]: ...


class RelayFigures(Protocol):
    """An edge's relayed programs (townhall.service.relayed_programs.RelayedPrograms)."""

    def programs(self, now: float) -> list[RelayedProgram]: ...

    def figures(self, now: float) -> WorkerFigures: ...

    def hls_counts(self) -> dict[str, int]: ...


class GuardFigures(Protocol):
    def refusals(self) -> dict[str, int]:
        """The connection guard's refusals by kind (townhall.server.ConnectionGuard)."""
        ...


@dataclass(frozen=True)
class RoomFigures:
    """What one live space on this node counts."""

    space_id: str
    live: FanoutStats
    hls: HlsAudience


def room_figures(rooms: Iterable[LiveRoom]) -> list[RoomFigures]:
    return [RoomFigures(r.space_id, r.program.live.stats, r.program.hls.audience) for r in rooms]


class Retired:
    """The counters of spaces that ended, so the node's totals keep growing."""

    def __init__(self) -> None:
        self.live_bytes = 0
        self.hls_bytes = 0
        self.cut_slow = 0
        self._open: dict[str, RoomFigures] = {}

    def update(self, rooms: Iterable[RoomFigures]) -> list[RoomFigures]:
        current = {room.space_id: room for room in rooms}
        for space_id, gone in list(self._open.items()):
            now = current.get(space_id)
            # ended, or ended and started again (a new fan-out): each scrape builds new
            # figures around the same counters, so the counters say which it is
            if now is None or now.live is not gone.live:
                self.live_bytes += gone.live.bytes_written
                self.hls_bytes += gone.hls.bytes_served
                self.cut_slow += gone.live.cut_slow
                del self._open[space_id]
        self._open.update(current)
        return list(current.values())


class NodeCollector(Collector):
    def __init__(
        self,
        door: DoorFigures,
        guard: GuardFigures,
        rooms: Callable[[], Iterable[RoomFigures]],
        reports: ListenerReports,
        relayed: RelayFigures | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`relayed`: on an edge, the programs it relays from the origins."""
        self._relayed = relayed
        self._door = door
        self._guard = guard
        self._rooms = rooms
        self._reports = reports
        self._clock = clock
        self._retired = Retired()

    def collect(self) -> Iterator[Metric]:
        stats = self._door.stats()
        rooms = self._retired.update(self._rooms())
        worker_counts = self._reports.counts()
        worker_figures = self._reports.figures()
        yield from self._audience(rooms, worker_counts)
        yield from self._relays(worker_counts)
        yield from self._door_metrics(stats)
        main = None if self._relayed is None else self._relayed.figures(self._clock())
        yield from self._bytes_out(rooms, worker_figures, main)
        yield from self._workers(worker_figures, main)
        yield from self._load(stats)

    def _audience(
        self, rooms: list[RoomFigures], worker_counts: dict[str, dict[str, int]]
    ) -> Iterator[Metric]:
        now = self._clock()
        listeners = GaugeMetricFamily(
            f"{PREFIX}_listeners",
            "Listeners now, per live space and format (live: the AAC stream, this "
            "process and its stream workers; hls: client addresses that fetched media "
            "in the last few segments)",
            labels=["space", "format"],
        )
        for room in rooms:
            # Each worker's report already leaves out its own relay connection, which
            # the origin's fan-out counts; the sum is the people listening.
            live = room.live.listeners + sum(
                c.get(room.space_id, 0) for c in worker_counts.values()
            )
            listeners.add_metric([room.space_id, "live"], max(0, live))
            listeners.add_metric([room.space_id, "hls"], room.hls.listeners(now))
        if self._relayed is not None:  # an edge: the listeners of the programs it relays
            hls = self._relayed.hls_counts()
            for program in self._relayed.programs(now):
                live = program.listeners + sum(
                    c.get(program.space_id, 0) for c in worker_counts.values()
                )
                listeners.add_metric([program.space_id, "live"], max(0, live))
                listeners.add_metric([program.space_id, "hls"], hls.pop(program.space_id, 0))
            for space_id, polling in hls.items():
                listeners.add_metric([space_id, "hls"], polling)
        yield listeners
        yield GaugeMetricFamily(f"{PREFIX}_live_spaces", "Spaces live on this node", len(rooms))

    def _door_metrics(self, stats: dict[str, Any]) -> Iterator[Metric]:
        counts: dict[str, int] = stats.get("counts", {})
        yield CounterMetricFamily(
            f"{PREFIX}_joins", "Join requests answered by the door", counts.get("joins", 0)
        )
        yield CounterMetricFamily(
            f"{PREFIX}_admissions", "Joins answered with a ticket", counts.get("admitted", 0)
        )
        yield CounterMetricFamily(
            f"{PREFIX}_waiting_answers",
            "Joins and polls answered with a place in line",
            counts.get("waiting", 0),
        )
        waiting = GaugeMetricFamily(
            f"{PREFIX}_waiting", "People in the waiting line now, per space", labels=["space"]
        )
        for space_id, queue in stats.get("queues", {}).items():
            waiting.add_metric([space_id], queue["waiting"])
        yield waiting
        refusals = CounterMetricFamily(
            f"{PREFIX}_refusals", "Requests refused, by kind", labels=["kind"]
        )
        for name, value in sorted(counts.items()):
            if name.startswith(DOOR_REFUSALS):
                refusals.add_metric([name], value)
        for kind, value in self._guard.refusals().items():
            refusals.add_metric([kind], value)
        yield refusals
        yield GaugeMetricFamily(
            f"{PREFIX}_admissions_per_second", "Admission rate now", stats["admissions_per_s"]
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_max_admissions_per_second",
            "Admission rate the door allows",
            stats["max_admissions_per_s"],
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_attack_mode", "1 while attack mode is on", int(stats["attack_mode"])
        )

    def _relays(self, worker_counts: dict[str, dict[str, int]]) -> Iterator[Metric]:
        programs = GaugeMetricFamily(
            f"{PREFIX}_relayed_programs",
            "Programs an edge relays, one per space, by the origin it relays it from "
            "(1 while relayed)",
            labels=["space", "origin"],
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_relayed_program_lag_seconds",
            "Age of the newest chunk an edge relayed from the origin, per space (grows "
            "when the origin's link stalls or the origin died)",
            labels=["space"],
        )
        if self._relayed is not None:
            for program in self._relayed.programs(self._clock()):
                programs.add_metric([program.space_id, program.origin], 1)
                lag.add_metric([program.space_id], program.lag_s)
        yield programs
        yield lag

    def _bytes_out(
        self, rooms: list[RoomFigures], workers: dict[str, Any], main: WorkerFigures | None
    ) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            f"{PREFIX}_bytes_out",
            "Bytes sent to listeners, per format and process (main's live bytes include "
            "one relay feed per space per stream worker)",
            labels=["format", "process"],
        )
        retired = self._retired
        relayed = 0 if main is None else main.bytes_out
        sent.add_metric(
            ["live", MAIN_PROCESS],
            retired.live_bytes + sum(room.live.bytes_written for room in rooms) + relayed,
        )
        sent.add_metric(
            ["hls", MAIN_PROCESS], retired.hls_bytes + sum(room.hls.bytes_served for room in rooms)
        )
        for node_id, figures in workers.items():
            sent.add_metric(["live", node_id], figures.bytes_out)
        yield sent
        cut = CounterMetricFamily(
            f"{PREFIX}_slow_listeners_cut",
            "Live listeners cut for falling behind, per process",
            labels=["process"],
        )
        relayed_cut = 0 if main is None else main.cut_slow
        cut.add_metric(
            [MAIN_PROCESS], retired.cut_slow + sum(r.live.cut_slow for r in rooms) + relayed_cut
        )
        for node_id, figures in workers.items():
            cut.add_metric([node_id], figures.cut_slow)
        yield cut

    def _workers(
        self, workers: dict[str, Any], main: WorkerFigures | None
    ) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            f"{PREFIX}_relay_lag_seconds",
            "Age of the newest chunk relayed from upstream, oldest over the process's "
            "relays (an edge's main process: from the origins; a stream worker: from its "
            "node); grows when the link stalls",
            labels=["process"],
        )
        if main is not None:
            lag.add_metric([MAIN_PROCESS], main.relay_lag_s)
        listeners = GaugeMetricFamily(
            f"{PREFIX}_worker_listeners", "Live listeners per stream worker", labels=["process"]
        )
        relays = GaugeMetricFamily(
            f"{PREFIX}_worker_relays", "Spaces relayed per stream worker", labels=["process"]
        )
        for node_id, figures in workers.items():
            lag.add_metric([node_id], figures.relay_lag_s)
            listeners.add_metric([node_id], figures.listeners)
            relays.add_metric([node_id], figures.relays)
        yield lag
        yield listeners
        yield relays
        yield GaugeMetricFamily(
            f"{PREFIX}_stream_workers_reporting",
            "Stream workers whose counts this node holds",
            len(self._reports.nodes()),
        )

    def _load(self, stats: dict[str, Any]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{PREFIX}_loop_lag_seconds",
            "How late the main event loop wakes (the door sheds load above its limit)",
            stats["loop_lag_ms"] / 1000,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_node_cpu_ratio",
            "CPU used by the main process over the last second (1 = one core)",
            stats["cpu_percent"] / 100,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_node_listeners", "Live listeners the door counts for capacity",
            stats["listeners"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{PREFIX}_node_max_listeners", "Live listeners the door admits at most",
            stats["max_listeners"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{PREFIX}_node_load1", "The machine's 1-minute load average", os.getloadavg()[0]
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_node_cores", "Cores this process may run on", len(os.sched_getaffinity(0))
        )
