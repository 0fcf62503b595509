"""One bench run: the same phases against Icecast and townhall, one after the other.

Per server (pinned to ``server_cpus``, clients to ``client_cpus``):
1. idle CPU with the source running and no listener (subtracted later);
2. open ``listeners`` with ``window`` in flight: accept rate and time to first audio;
3. hold them ``measure_s``: CPU per 1,000 listeners and the share of late chunks;
4. top up to ``storm`` and reconnect them all at once: time until all hear audio again;
townhall only:
5. ``joins`` full joins (snapshot + join + first audio byte) per second;
6. the whole node: stream workers on both cores, ``node_listeners`` held at once.
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any, Final

from bench.client import Target
from bench.clients import Clients
from bench.config import BenchConfig
from bench.icecast import Icecast
from bench.procstat import cpu_seconds, open_files, rss_bytes, total_cpu
from bench.townhall_server import Townhall

ICECAST_PORT: Final = 18_000
TOWNHALL_PORT: Final = 18_100
ICECAST_FD_RESERVE: Final = 100
"""Files Icecast needs beside its listeners (listening socket, source, logs, ...)."""
SECRET: Final = "bench-secret-not-for-production-0123456789"
ADTS_OVERHEAD: Final = 1.03
"""ADTS headers (7 bytes per 1024-sample frame) on top of the AAC bitrate at 48 kbps."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _open_summary(replies: list[dict[str, Any]], requested: int) -> dict[str, Any]:
    ttfa = [t for r in replies for t in r["ttfa_s"]]
    opened = sum(r["opened"] for r in replies)
    elapsed = max((r["elapsed_s"] for r in replies), default=0.0)
    errors: dict[str, int] = {}
    for reply in replies:
        for key, count in reply.get("errors", {}).items():
            errors[key] = errors.get(key, 0) + count
    return {
        "requested": requested,
        "opened": opened,
        "retries": sum(r["retries"] for r in replies),
        "errors": errors,
        "elapsed_s": elapsed,
        "per_s": opened / elapsed if elapsed else None,
        "ttfa_p50_s": percentile(ttfa, 50),
        "ttfa_p99_s": percentile(ttfa, 99),
        "ttfa_max_s": max(ttfa, default=None),
    }


async def _cpu_over(pids: list[int], seconds: float) -> float:
    """Percent of one core used by ``pids`` over the next ``seconds``."""
    before, started = total_cpu(pids), time.monotonic()
    await asyncio.sleep(seconds)
    return (total_cpu(pids) - before) / (time.monotonic() - started) * 100


class CpuBracket:
    """Server and client CPU (percent of one core) over one phase."""

    def __init__(self, server: Any, clients: Clients) -> None:
        self._server = server
        self._clients = clients

    async def __aenter__(self) -> CpuBracket:
        self._pids = self._server.pids
        self._server_cpu = total_cpu(self._pids)
        self._each = {pid: cpu_seconds(pid) for pid in self._pids}
        self._client_cpu = sum(r["cpu_s"] for r in await self._clients.each({"cmd": "window"}))
        self._started = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._started
        client_cpu = sum(r["cpu_s"] for r in await self._clients.each({"cmd": "window"}))
        self.server_pct = (total_cpu(self._pids) - self._server_cpu) / elapsed * 100
        self.per_process = {
            str(pid): (cpu_seconds(pid) - before) / elapsed * 100
            for pid, before in self._each.items()
        }
        self.client_pct = (client_cpu - self._client_cpu) / elapsed * 100

    def as_dict(self) -> dict[str, float]:
        return {
            "server_cpu_pct": self.server_pct,
            "client_cpu_pct": self.client_pct,
            "server_cpu_pct_by_pid": self.per_process,
        }


async def _hold(server: Any, clients: Clients, seconds: float, bitrate: int) -> dict[str, Any]:
    """CPU and delivery while the listeners already open just listen."""
    await clients.each({"cmd": "window"})
    pids = server.pids
    before, started = total_cpu(pids), time.monotonic()
    client_before = sum(r["cpu_s"] for r in await clients.each({"cmd": "window"}))
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = (total_cpu(pids) - before) / elapsed * 100
    windows = await clients.each({"cmd": "window"})
    holding = sum(w["holding"] for w in windows)
    reads = sum(w["reads"] for w in windows)
    late = sum(w["late"] for w in windows)
    delivered = sum(w["bytes"] for w in windows) * 8 / elapsed / max(1, holding)
    return {
        "holding": holding,
        "server_cpu_pct": cpu,
        "client_cpu_pct": (sum(w["cpu_s"] for w in windows) - client_before) / elapsed * 100,
        "reads": reads,
        "late_reads": late,
        "late_share": late / reads if reads else None,
        "dropped": sum(w["dropped"] for w in windows),
        "kbps_per_listener": delivered / 1000,
        "expected_kbps": bitrate * ADTS_OVERHEAD / 1000,
        "open_files": {str(pid): open_files(pid) for pid in pids},
    }


async def measure(server: Any, name: str, config: BenchConfig, target: Target) -> dict[str, Any]:
    result: dict[str, Any] = {"server": name}
    clients = await Clients.start(config.clients, target, config.client_cpus)
    try:
        result["idle_cpu_pct"] = await _cpu_over(server.pids, config.baseline_s)
        print(f"  {name}: idle {result['idle_cpu_pct']:.1f} % of a core", flush=True)
        result["idle_rss_bytes"] = rss_bytes(server.pids)

        replies = await clients.split(
            {"cmd": "open", "timeout_s": config.open_timeout_s},
            config.listeners, config.window, config.open_timeout_s,
        )  # fmt: skip
        result["accept"] = _open_summary(replies, config.listeners)
        print(f"  {name}: opened {result['accept']['opened']} listeners "
              f"at {result['accept']['per_s'] or 0:.0f}/s", flush=True)  # fmt: skip

        await asyncio.sleep(config.settle_s)
        hold = await _hold(server, clients, config.measure_s, config.bitrate)
        fanout_cpu = max(0.0, hold["server_cpu_pct"] - result["idle_cpu_pct"])
        hold["fanout_cpu_pct"] = fanout_cpu
        hold["cpu_pct_per_1000"] = fanout_cpu / hold["holding"] * 1000 if hold["holding"] else None
        per_1000 = hold["cpu_pct_per_1000"]
        hold["held_per_core_est"] = int(100 / per_1000 * 1000) if per_1000 else None
        hold["rss_bytes"] = rss_bytes(server.pids)
        grown = hold["rss_bytes"] - result["idle_rss_bytes"]
        hold["rss_bytes_per_listener"] = grown / hold["holding"] if hold["holding"] else None
        result["steady"] = hold
        print(f"  {name}: {hold['holding']} held, {hold['server_cpu_pct']:.1f} % CPU, "
              f"late {100 * (hold['late_share'] or 0):.2f} %", flush=True)  # fmt: skip

        if config.storm and (name != "icecast" or config.icecast_storm):
            result["storm"] = await _storm(server, name, config, clients, hold["holding"])
        await clients.each({"cmd": "close"})
    finally:
        await clients.stop()
    return result


async def _storm(
    server: Any, name: str, config: BenchConfig, clients: Clients, holding: int
) -> dict[str, Any]:
    storm_n = config.storm
    if name == "icecast":
        storm_n = config.icecast_storm
        file_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        storm_n = min(storm_n, file_limit - ICECAST_FD_RESERVE)
    if storm_n > holding:
        await clients.split(
            {"cmd": "open", "timeout_s": config.open_timeout_s},
            storm_n - holding, config.window, config.open_timeout_s,
        )  # fmt: skip
    await asyncio.sleep(config.settle_s)
    before = sum(w["holding"] for w in await clients.each({"cmd": "window"}))
    async with CpuBracket(server, clients) as cpu:
        replies = await clients.each(
            {"cmd": "storm", "window": storm_n, "timeout_s": config.open_timeout_s},
            config.open_timeout_s + 30,
        )
    storm = _open_summary(replies, before)
    storm.update(cpu.as_dict())
    storm["listeners"] = before
    print(f"  {name}: storm of {before}: all back in {storm['elapsed_s']:.2f} s "
          f"({storm['opened']} back; errors {storm['errors']})", flush=True)  # fmt: skip
    return storm


async def measure_joins(server: Townhall, config: BenchConfig, target: Target) -> dict[str, Any]:
    clients = await Clients.start(config.clients, target, config.client_cpus)
    try:
        async with CpuBracket(server, clients) as cpu:
            replies = await clients.split(
                {"cmd": "joins", "timeout_s": config.open_timeout_s},
                config.joins, config.window, config.open_timeout_s,
            )  # fmt: skip
        await clients.each({"cmd": "close"})
    finally:
        await clients.stop()
    joined = sum(r["joined"] for r in replies)
    elapsed = max(r["elapsed_s"] for r in replies)
    times = [t for r in replies for t in r["join_to_audio_s"]]
    failures: dict[str, int] = {}
    for reply in replies:
        for key, count in reply["failures"].items():
            failures[key] = failures.get(key, 0) + count
    summary = {
        "requested": config.joins,
        "joined": joined,
        "elapsed_s": elapsed,
        "per_s": joined / elapsed if elapsed else None,
        "join_to_audio_p50_s": percentile(times, 50),
        "join_to_audio_p99_s": percentile(times, 99),
        "failures": failures,
        **cpu.as_dict(),
    }
    print(f"  townhall: {joined} full joins at {summary['per_s'] or 0:.0f}/s", flush=True)
    return summary


async def measure_node(server: Townhall, config: BenchConfig, target: Target) -> dict[str, Any]:
    """Both cores: the stream workers spread over them, clients unpinned too."""
    server.set_cpus({0, 1})
    count = max(config.clients, -(-config.node_listeners // 15_000))
    clients = await Clients.start(count, target, None)
    try:
        replies = await clients.split(
            {"cmd": "open", "timeout_s": config.open_timeout_s},
            config.node_listeners, config.window, config.open_timeout_s,
        )  # fmt: skip
        opened = _open_summary(replies, config.node_listeners)
        await asyncio.sleep(config.settle_s)
        hold = await _hold(server, clients, config.measure_s, config.bitrate)
        snapshot = await server.snapshot_listeners()
        await clients.each({"cmd": "close"})
    finally:
        await clients.stop()
    result = {"open": opened, "hold": hold, "snapshot_listeners": snapshot}
    print(f"  townhall node: {hold['holding']} held on 2 cores, snapshot says {snapshot}, "
          f"late {100 * (hold['late_share'] or 0):.2f} %", flush=True)  # fmt: skip
    return result


async def run(config: BenchConfig, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"config": {**config.__dict__, "servers": list(config.servers)}}
    if "icecast" in config.servers:
        print("icecast 2", flush=True)
        icecast = Icecast(
            workdir / "icecast", ICECAST_PORT, bitrate=config.bitrate, burst_s=1.0,
            max_lag_s=8.0, cpus=config.server_cpus,
        )  # fmt: skip
        await icecast.start()
        try:
            target = Target("127.0.0.1", ICECAST_PORT, icecast.stream_path, chunk_ms=500)
            results["icecast"] = await measure(icecast, "icecast", config, target)
        finally:
            await icecast.stop()
    if "townhall" in config.servers:
        print(f"townhall ({config.stream_workers} stream workers)", flush=True)
        townhall = Townhall(
            workdir / "townhall", TOWNHALL_PORT, stream_workers=config.stream_workers,
            chunk_ms=config.chunk_ms, bitrate=config.bitrate, secret=SECRET,
            cpus=config.server_cpus,
        )  # fmt: skip
        await townhall.start()
        try:
            stream_port = townhall.stream_port if config.stream_workers else townhall.port
            target = Target(
                "127.0.0.1", stream_port, townhall.stream_path, secret=SECRET,
                space_id=townhall.space_id, origin_port=townhall.port, chunk_ms=config.chunk_ms,
            )  # fmt: skip
            results["townhall"] = await measure(townhall, "townhall", config, target)
            if config.joins:
                results["townhall"]["joins"] = await measure_joins(townhall, config, target)
            if config.node_listeners:
                results["townhall"]["node"] = await measure_node(townhall, config, target)
        finally:
            await townhall.stop()
    return results
