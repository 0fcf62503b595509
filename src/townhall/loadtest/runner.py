"""One rehearsal from start to report: arrivals, attacks, progress, clean stop.

Why it is built like this: arrivals are scheduled from the profile alone (an
open model), each becomes a task (never a thread), and the only things that
run for the whole rehearsal are the arrival scheduler, the attacks, the
stats poller and a one-second ticker. Everything stops by itself at the
deadline - listeners are cancelled, which closes their sockets - or earlier
once every arrival has come and gone. The number of listeners alive at once
is bounded (``max_open``, sized from the file limit); an arrival past the
bound is counted as "skipped:client_full", never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import random
import resource
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from townhall.domain.pacing import PacingPolicy
from townhall.loadtest.addresses import (
    DEFAULT_ATTACKER_ADDRESSES,
    DEFAULT_LISTENER_ADDRESSES,
    AddressPool,
    parse_addresses,
)
from townhall.loadtest.attacks import start_attacks
from townhall.loadtest.client import DEFAULT_MAX_IDLE, HttpClient, RequestError
from townhall.loadtest.config import DEFAULT_DURATION_S, FILE_RESERVE, LoadtestConfig
from townhall.loadtest.context import RunContext
from townhall.loadtest.listener import Listener, start_listener
from townhall.loadtest.metrics import Recorder
from townhall.loadtest.notified import NotifyPlan, load_from_stats, notified_arrivals
from townhall.loadtest.pow import PowSolver
from townhall.loadtest.profiles import Profile, arrival_times, build_profile
from townhall.loadtest.progress import ProgressPrinter
from townhall.loadtest.report import build_report
from townhall.loadtest.serverstats import ServerStats
from townhall.loadtest.summary import summarize
from townhall.loadtest.target import Target, parse_target

TICK_S = 1.0
"""Timeline resolution and progress refresh."""
LAG_PROBE_S = 0.05
"""How often the client measures its own event-loop lag."""
SPAWN_SLACK_S = 0.002
"""Arrivals due within this are started together instead of sleeping for each."""
SPAWN_CATCH_UP_S = 2.0
"""At the deadline, time allowed for arrivals already due to be started."""
STOP_GRACE_S = 5.0
"""Time given to cancelled listeners and attacks to close their sockets."""


class LoadtestError(Exception):
    """The rehearsal could not start (unreachable server, no space, bad addresses)."""


def default_max_open(max_idle: int = DEFAULT_MAX_IDLE) -> int:
    """Listeners alive at once that the process's file limit allows (each holds one socket)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, soft - FILE_RESERVE - max_idle)


def _pool(spec: str, default: str, target: Target, what: str) -> AddressPool | None:
    if not (target.is_loopback and target.is_ipv4):
        if spec.strip().lower() not in ("", "none", default):
            raise LoadtestError(f"{what} addresses need a loopback IPv4 target")
        return None
    try:
        pool = parse_addresses(spec)
    except ValueError as exc:
        raise LoadtestError(f"{what} addresses: {exc}") from None
    if pool is not None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((pool.address(0), 0))
        except OSError as exc:
            raise LoadtestError(f"cannot bind {pool.address(0)}: {exc}") from None
        finally:
            probe.close()
    return pool


async def discover_space(client: HttpClient, timeout: float) -> str:
    """The first live space the server lists (GET /api/spaces)."""
    try:
        response = await client.request("GET", "/api/spaces", timeout=timeout)
    except RequestError as exc:
        raise LoadtestError(f"server unreachable: {exc}") from None
    if response.status != 200:
        raise LoadtestError(f"GET /api/spaces answered {response.status}; pass --space")
    try:
        live = response.json().get("live") or []
    except (ValueError, AttributeError):
        live = []
    for space in live:
        if isinstance(space, dict) and isinstance(space.get("id"), str):
            return str(space["id"])
    raise LoadtestError("no live space on the server; start one or pass --space ID")


class _LagMonitor:
    """Largest event-loop delay seen since the last read: is the generator keeping up?"""

    def __init__(self) -> None:
        self.max_lag_s = 0.0

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            before = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.max_lag_s = max(self.max_lag_s, loop.time() - before - LAG_PROBE_S)

    def read(self) -> float:
        value, self.max_lag_s = self.max_lag_s, 0.0
        return value


class _Run:
    """The moving parts of one rehearsal, so that stopping can reach all of them."""

    def __init__(
        self,
        ctx: RunContext,
        profile: Profile,
        duration_s: float,
        max_open: int,
        stats: ServerStats | None = None,
    ):
        self.ctx = ctx
        self.stats = stats
        self.told: list[tuple[float, int]] = []
        """Notify mode: (t, followers told so far) per wave."""
        self.profile = profile
        self.duration_s = duration_s
        self.max_open = max_open
        self.listeners: set[asyncio.Task[None]] = set()
        self.arrivals_done = asyncio.Event()
        self.bug: BaseException | None = None

    def _listener_done(self, listener: Listener, task: asyncio.Task[None]) -> None:
        self.listeners.discard(task)
        if task.cancelled():
            listener.cut_before_start()
        elif task.exception() is not None and self.bug is None:
            self.bug = task.exception()

    async def spawn_arrivals(self) -> None:
        ctx = self.ctx
        config = ctx.config
        loop = asyncio.get_running_loop()
        recorder = ctx.recorder
        rng = random.Random(config.seed) if config.poisson else None
        times = self._arrival_times(rng)
        try:
            for index, t in enumerate(times):
                delay = ctx.started_at + t - loop.time()
                if delay > SPAWN_SLACK_S:
                    await asyncio.sleep(delay)
                if len(self.listeners) >= self.max_open:
                    recorder.arrival()
                    recorder.error("client:max_open")
                    recorder.outcome("skipped:client_full")
                    continue
                listener, task = start_listener(ctx, index)
                self.listeners.add(task)
                task.add_done_callback(functools.partial(self._listener_done, listener))
        finally:
            self.arrivals_done.set()


    def _arrival_times(self, rng: random.Random | None) -> Iterator[float]:
        config = self.ctx.config
        if not config.notify_followers:
            return arrival_times(
                self.profile, until_s=self.duration_s, max_count=config.max_listeners, rng=rng
            )
        stats = self.stats
        plan = NotifyPlan(
            followers=min(config.notify_followers, config.max_listeners),
            paced=config.notify_paced,
            reaction_s=config.reaction_s,
            policy=PacingPolicy(
                interval_s=config.notify_interval_s, arrival_share=config.arrival_share
            ),
        )
        return notified_arrivals(
            plan,
            until_s=self.duration_s,
            rng=random.Random(config.seed),
            load=lambda: load_from_stats(stats.latest if stats else {}),
            told=self.told,
        )


def _totals(recorder: Recorder) -> dict[str, Any]:
    return {
        "arrivals": recorder.arrivals,
        "admitted": recorder.admitted,
        "errors": recorder.errors,
        "ttfa_p50": recorder.ttfa.percentile(0.5),
        "ttfa_p99": recorder.ttfa.percentile(0.99),
    }


async def run_loadtest(
    config: LoadtestConfig,
    *,
    progress: ProgressPrinter | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run one rehearsal and return its report (see ``report.build_report``)."""
    loop = asyncio.get_running_loop()
    try:
        target = parse_target(config.url, config.space)
    except (ValueError, OSError) as exc:
        raise LoadtestError(str(exc)) from None
    listener_pool = _pool(config.listener_addresses, DEFAULT_LISTENER_ADDRESSES, target, "listener")
    attacker_pool = _pool(config.source_addresses, DEFAULT_ATTACKER_ADDRESSES, target, "source")
    client = HttpClient(target.host, target.port, host_header=target.host_header)
    solver = PowSolver(config.pow_workers)
    background: list[asyncio.Task[Any]] = []
    run: _Run | None = None
    try:
        space = target.space or await discover_space(client, config.request_timeout_s)
        stats = ServerStats(client, config.stats_paths)
        await stats.discover()
        rate, base_rate = config.rate, config.base_rate
        if config.rate_is_capacity_multiple:
            capacity = config.capacity or stats.capacity
            if not capacity:
                raise LoadtestError(
                    "a rate relative to capacity needs --capacity or a server whose stats "
                    "give max_admissions_per_s"
                )
            rate *= capacity
            base_rate = base_rate * capacity if base_rate is not None else None
        profile = build_profile(
            config.profile, rate=rate, base_rate=base_rate, ramp_s=config.ramp_s,
            spike_at_s=config.spike_at_s, spike_s=config.spike_s, scale=config.scale,
            time_scale=config.time_scale,
        )
        duration = config.duration_s or profile.length_s or DEFAULT_DURATION_S
        recorder = Recorder(config.seed)
        ctx = RunContext(
            config=config, target=target, space=space, client=client, recorder=recorder,
            listener_addresses=listener_pool, attacker_addresses=attacker_pool,
            rng=random.Random(config.seed + 1), solver=solver,
        )
        run = _Run(
            ctx, profile, duration, config.max_open or default_max_open(client.max_idle), stats
        )
        await solver.start()
        wall_start = dt.datetime.now(dt.UTC)
        ctx.started_at = loop.time()
        ctx.deadline = ctx.started_at + duration
        lag = _LagMonitor()
        background.append(loop.create_task(run.spawn_arrivals(), name="arrivals"))
        attacks = start_attacks(ctx, profile.rate)
        background.extend(attacks)
        background.append(loop.create_task(stats.run(ctx.deadline), name="server-stats"))
        background.append(
            loop.create_task(lag.run(ctx.deadline + STOP_GRACE_S), name="lag-monitor")
        )
        stop_reason = await _tick_until_done(run, stats, lag, progress, stop, bool(attacks))
        elapsed = loop.time() - ctx.started_at
    finally:
        for task in background:
            task.cancel()
        pending = [*background, *(run.listeners if run else ())]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)
        await client.aclose()
        if run is not None:
            for other in run.ctx.clients[1:]:
                await other.aclose()
        solver.close()
        if progress is not None:
            progress.finish()
    capacity = config.capacity or stats.capacity
    summary = summarize(recorder, capacity=capacity)
    meta = {
        "target": config.url,
        "space": space,
        "started_at": wall_start.isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 3),
        "stop_reason": stop_reason,
        "expected_arrivals": round(profile.expected_arrivals(duration), 1),
        "peak_arrival_rate": round(max(r for _, r in profile.points), 3),
        "max_open": run.max_open,
        "server_stats_path": stats.path,
        "server_stats_polls": stats.polls,
        "client_connections_opened": sum(c.connections_opened for c in run.ctx.clients),
        "client_connections_reused": sum(c.connections_reused for c in run.ctx.clients),
        "other_origins": sorted(run.ctx.other_origins),
        "pow_solved": solver.solved,
        "event_loop": type(loop).__module__,
        "python": sys.version.split()[0],
        "client_bug": repr(run.bug) if run.bug else None,
        "notified_waves": [list(wave) for wave in run.told],
    }
    meta["capacity_per_s"] = capacity
    meta["recorder_state"] = recorder.to_state()  # for merging generator processes
    return build_report(
        config.to_json(), summary, recorder.timeline, recorder.told_vs_actual, meta
    )


async def _tick_until_done(
    run: _Run,
    stats: ServerStats,
    lag: _LagMonitor,
    progress: ProgressPrinter | None,
    stop: asyncio.Event | None,
    attacking: bool,
) -> str:
    """Close a timeline row every second until the deadline, a stop request, or no one left."""
    ctx = run.ctx
    loop = asyncio.get_running_loop()
    recorder = ctx.recorder
    cpu_before = time.process_time()
    wall_before = loop.time()
    tick = 0
    reason = "duration"
    while True:
        tick += 1
        next_tick = ctx.started_at + tick * TICK_S
        final = next_tick >= ctx.deadline
        until = min(next_tick, ctx.deadline)
        if stop is not None:
            try:
                await asyncio.wait_for(stop.wait(), max(until - loop.time(), 0))
                final, reason = True, "stopped"
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(max(until - loop.time(), 0))
        if run.arrivals_done.is_set() and not run.listeners and not attacking and not final:
            final, reason = True, "all listeners done"
        if final and reason == "duration" and not run.arrivals_done.is_set():
            # Arrivals due before the deadline still start, however late the loop runs:
            # the count of arrivals must not depend on how busy this machine is.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.arrivals_done.wait(), SPAWN_CATCH_UP_S)
        now = loop.time()
        cpu_now = time.process_time()
        extra: dict[str, Any] = {
            "client.cpu_percent": round(100 * (cpu_now - cpu_before) / max(now - wall_before, 1e-6),
                                        1),
            "client.loop_lag_ms": round(lag.read() * 1000, 1),
            "client.open_connections": sum(c.open_connections for c in ctx.clients),
        }
        extra.update({f"server.{k}": v for k, v in stats.latest.items()})
        cpu_before, wall_before = cpu_now, now
        row = recorder.tick(now - ctx.started_at, extra)
        if progress is not None:
            progress.update(row, _totals(recorder))
        if final:
            return reason
