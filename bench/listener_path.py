"""``python -m bench.listener_path``: snapshot and full-join rates, before and after.

In one run, on this machine (issue 8, "the listener path scales with processes"):

1. **Snapshot rate**, side by side with nginx serving the very same bytes as a static
   file, with the same wrk (Debian's), the same core pinning (servers on
   ``--server-cpus``, wrk on ``--client-cpus``), keep-alive and one connection per
   request (``Connection: close``): townhall's API port (the origin process, as
   before), its stream port (the stream workers, after) and nginx with as many
   worker processes as townhall has stream workers.
2. **Full joins** (snapshot + join + first audio byte, bench/client.py) through the
   origin's API port (before) and through the stream port (after: the stream on a
   new connection, and on the join's keep-alive connection as a browser does), on the
   whole node (both cores, clients too), with the CPU each costs the origin, the rest
   of the node (stream workers) and the load generator (a rate its CPU limits says
   nothing about the server).

Re-executes itself through scripts/isolated (a private network namespace with only
loopback): townhall's side has a real WebRTC speaker. Every server it starts (one
townhall, one nginx) is stopped by PID at the end. Results: printed side by side and
written to bench/results/listener-path-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from bench.client import Target
from bench.config import BenchConfig
from bench.procstat import children, total_cpu
from bench.run import measure_joins
from bench.townhall_server import Townhall

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"
ISOLATED_MARK: Final = "TOWNHALL_BENCH_ISOLATED"
TOWNHALL_PORT: Final = 18_300
NGINX_PORT: Final = 18_310
SECRET: Final = "bench-secret-not-for-production-0123456789"
WRK: Final = "/usr/bin/wrk"
NGINX: Final = "/usr/sbin/nginx"
NGINX_CONF: Final = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
user root;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location = /api/spaces/{space_id} {{
            alias {dir}/snapshot.json;
            add_header Cache-Control "public, max-age=1, stale-while-revalidate=5";
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Options:
    seconds: int = 5
    connections: int = 64
    joins: int = 5_000
    window: int = 500
    stream_workers: int = 2
    server_cpus: str = "1"
    client_cpus: str = "0"
    rounds: int = 3
    """wrk runs per target and mode, interleaved; the best is kept (the machine is shared:
    other load moves single runs by 2-3x). 0: full joins only."""


def _isolated() -> bool:
    return set(os.listdir("/sys/class/net")) <= {"lo"}


async def wrk(url: str, options: Options, close: bool) -> dict[str, Any]:
    """One wrk run (pinned to the client cores): requests per second and errors."""
    command = [
        "taskset", "-c", options.client_cpus, WRK, "-t1", f"-c{options.connections}",
        f"-d{options.seconds}s", "--latency",
    ]  # fmt: skip
    if close:
        command += ["-H", "Connection: close"]
    process = await asyncio.create_subprocess_exec(
        *command, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), options.seconds + 30)
    text = out.decode(errors="replace")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    p99 = re.search(r"99%\s+(\S+)", text)
    done = re.search(r"(\d+) requests in", text)
    return {
        "per_s": float(rate.group(1)) if rate else 0.0,
        "requests": int(done.group(1)) if done else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
        "p99": p99.group(1) if p99 else None,
    }


class Nginx:
    """Debian's nginx serving ``body`` as a static file, pinned like townhall's workers."""

    def __init__(self, workdir: Path, body: bytes, space_id: str, options: Options) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "snapshot.json").write_bytes(body)
        conf = NGINX_CONF.format(
            workers=options.stream_workers, dir=self.dir, port=NGINX_PORT, space_id=space_id
        )
        (self.dir / "nginx.conf").write_text(conf)
        self._cpus = options.server_cpus
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            ["taskset", "-c", self._cpus, NGINX, "-p", str(self.dir), "-c",
             str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                try:
                    await http.get(f"http://127.0.0.1:{NGINX_PORT}/")
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError("nginx did not start") from None
                    await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _serving(name: str, townhall: Townhall, nginx: Nginx) -> list[int]:
    """The processes that answer ``name``'s requests (their CPU is what a request costs)."""
    if name == "nginx":
        assert nginx.process is not None
        return [nginx.process.pid, *children(nginx.process.pid)]
    assert townhall.process is not None
    if name == "townhall_origin":
        return [townhall.process.pid]
    return [
        pid
        for pid in children(townhall.process.pid)
        if b"townhall.edge.worker" in _cmdline(pid)
    ]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pin_workers(townhall: Townhall, server_cpus: set[int], origin_cpus: set[int]) -> None:
    """Stream workers on the server cores; the origin (which serves no snapshot from the
    stream port, only its speaker and a refresh per 0.5 s) beside the client."""
    assert townhall.process is not None
    for pid in townhall.pids:
        cpus = origin_cpus if pid == townhall.process.pid else server_cpus
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                os.sched_setaffinity(int(task.name), cpus)


async def snapshot_rates(townhall: Townhall, options: Options, workdir: Path) -> dict[str, Any]:
    path = f"/api/spaces/{townhall.space_id}"
    async with httpx.AsyncClient(timeout=10) as http:
        body = (await http.get(f"{townhall.url}{path}")).content
    nginx = Nginx(workdir / "nginx", body, townhall.space_id, options)
    await nginx.start()
    server_cpus = {int(c) for c in options.server_cpus.split(",")}
    client_cpus = {int(c) for c in options.client_cpus.split(",")}
    results: dict[str, Any] = {"snapshot_bytes": len(body)}
    try:
        targets = {
            "nginx": f"http://127.0.0.1:{NGINX_PORT}{path}",
            "townhall_workers": f"http://127.0.0.1:{townhall.stream_port}{path}",
            "townhall_origin": f"{townhall.url}{path}",
        }
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(options.rounds):  # interleaved: every target sees the same load
            for name, url in targets.items():
                if name == "townhall_origin":  # before: the origin answers (pinned alike)
                    townhall.set_cpus(server_cpus)
                else:
                    _pin_workers(townhall, server_cpus, client_cpus)
                pids = _serving(name, townhall, nginx)
                for mode, close in (("keep_alive", False), ("per_request", True)):
                    cpu_before = total_cpu(pids)
                    result = await wrk(url, options, close)
                    cpu_s = total_cpu(pids) - cpu_before
                    result["cpu_us_per_request"] = cpu_s * 1e6 / max(1, result["requests"])
                    runs.setdefault((mode, name), []).append(result)
                    print(f"  snapshot {mode:11s} {name:17s} {result['per_s']:9.0f}/s, "
                          f"{result['cpu_us_per_request']:6.1f} us CPU per request "
                          f"(non-2xx {result['non_2xx']})", flush=True)  # fmt: skip
        for (mode, name), each in runs.items():
            best = max(each, key=lambda run: run["per_s"])
            cpu = sorted(run["cpu_us_per_request"] for run in each)[len(each) // 2]
            results.setdefault(mode, {})[name] = best | {
                "runs": [r["per_s"] for r in each],
                "cpu_us_per_request_median": cpu,
            }
    finally:
        nginx.stop()
        townhall.set_cpus(server_cpus | client_cpus)
    for mode in ("keep_alive", "per_request"):
        by = results[mode]
        nginx_rate = by["nginx"]["per_s"] or 1.0
        by["workers_vs_nginx"] = by["townhall_workers"]["per_s"] / nginx_rate
        by["origin_vs_nginx"] = by["townhall_origin"]["per_s"] / nginx_rate
        nginx_cpu = by["nginx"]["cpu_us_per_request_median"]
        for name in ("townhall_workers", "townhall_origin"):  # rate per core, relative
            cpu = by[name]["cpu_us_per_request_median"] or float("inf")
            by[f"{name}_cpu_efficiency_vs_nginx"] = nginx_cpu / cpu
    return results


async def full_joins(townhall: Townhall, options: Options) -> dict[str, Any]:
    config = BenchConfig(
        joins=options.joins, window=options.window, clients=2, client_cpus="0,1",
        server_cpus="0,1", open_timeout_s=120.0,
    )  # fmt: skip
    townhall.set_cpus({0, 1})
    results: dict[str, Any] = {}
    phases = (
        ("via_origin", townhall.port, False),
        ("via_workers_two_connections", townhall.stream_port, False),
        ("via_workers", townhall.stream_port, True),
    )
    for name, api_port, one_connection in phases:
        target = Target(
            "127.0.0.1", townhall.stream_port, townhall.stream_path, secret=SECRET,
            space_id=townhall.space_id, origin_port=api_port, chunk_ms=500,
            stream_on_join_connection=one_connection,
        )  # fmt: skip
        print(f"  full joins {name}:", flush=True)
        results[name] = joins = await measure_joins(townhall, config, target)
        joins.update(_cpu_per_join(joins, townhall))
        if results[name]["failures"]:
            print("  server log (last lines):\n" + "\n".join(townhall.log().splitlines()[-15:]))
        await asyncio.sleep(2.0)  # the listeners of the last phase leave
    return results


def _cpu_per_join(joins: dict[str, Any], townhall: Townhall) -> dict[str, float]:
    """CPU microseconds per full join: the origin process, the stream workers (with the
    rest of the node's processes) and the load generator, which runs on the same cores:
    a rate that the generator's own CPU limits says nothing about the server."""
    assert townhall.process is not None
    joined = max(1, joins["joined"])
    seconds = joins["elapsed_s"]

    def per_join(pct: float) -> float:
        return float(pct / 100 * seconds / joined * 1e6)

    origin = joins["server_cpu_pct_by_pid"].get(str(townhall.process.pid), 0.0)
    return {
        "origin_cpu_us_per_join": per_join(origin),
        "workers_cpu_us_per_join": per_join(joins["server_cpu_pct"] - origin),
        "server_cpu_us_per_join": per_join(joins["server_cpu_pct"]),
        "generator_cpu_us_per_join": per_join(joins["client_cpu_pct"]),
    }


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    if "snapshot" in results:
        lines += _snapshot_table(results)
    joins = results.get("joins")
    if joins:
        lines += ["", "| full joins (snapshot+join+audio) | per s | p50 s | p99 s | failures "
                  "| server CPU us/join (origin + workers) | generator CPU us/join |",
                  "|---|---:|---:|---:|---|---:|---:|"]  # fmt: skip
        for name, label in (
            ("via_origin", "snapshot+join on the API port, stream on the stream port"),
            ("via_workers_two_connections", "all on the stream workers, stream on a new "
             "connection"),
            ("via_workers", "all on the stream workers, one keep-alive connection"),
        ):  # fmt: skip
            j = joins[name]
            lines.append(
                f"| {label} | {j['per_s'] or 0:,.0f} | {j['join_to_audio_p50_s'] or 0:.3f} | "
                f"{j['join_to_audio_p99_s'] or 0:.3f} | {j['failures']} | "
                f"{j['server_cpu_us_per_join']:.0f} ({j['origin_cpu_us_per_join']:.0f} + "
                f"{j['workers_cpu_us_per_join']:.0f}) | {j['generator_cpu_us_per_join']:.0f} |"
            )
    return "\n".join(lines)


def _snapshot_table(results: dict[str, Any]) -> list[str]:
    lines = ["| snapshot req/s | nginx (static file) | townhall origin (before) | "
             "townhall stream workers (after) | after / nginx | before / nginx |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for mode in ("keep_alive", "per_request"):
        by = results["snapshot"][mode]
        lines.append(
            f"| {mode.replace('_', '-')} | {by['nginx']['per_s']:,.0f} | "
            f"{by['townhall_origin']['per_s']:,.0f} | {by['townhall_workers']['per_s']:,.0f} | "
            f"{by['workers_vs_nginx']:.2f} | {by['origin_vs_nginx']:.2f} |"
        )
    lines += ["", "| server CPU per snapshot (median, us) | nginx | townhall origin (before) | "
              "townhall stream workers (after) | after: per-core rate / nginx's | before |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for mode in ("keep_alive", "per_request"):
        by = results["snapshot"][mode]
        lines.append(
            f"| {mode.replace('_', '-')} | {by['nginx']['cpu_us_per_request_median']:.1f} | "
            f"{by['townhall_origin']['cpu_us_per_request_median']:.1f} | "
            f"{by['townhall_workers']['cpu_us_per_request_median']:.1f} | "
            f"{by['townhall_workers_cpu_efficiency_vs_nginx']:.2f} | "
            f"{by['townhall_origin_cpu_efficiency_vs_nginx']:.2f} |"
        )
    return lines


async def run(options: Options, workdir: Path) -> dict[str, Any]:
    townhall = Townhall(
        workdir / "townhall", TOWNHALL_PORT, stream_workers=options.stream_workers,
        chunk_ms=500, bitrate=48_000, secret=SECRET, cpus=None,
    )  # fmt: skip
    try:
        await townhall.start()  # inside: a start that times out still stops what it started
        results: dict[str, Any] = {"options": options.__dict__}
        if options.rounds:
            results["snapshot"] = await snapshot_rates(townhall, options, workdir)
        if options.joins:
            results["joins"] = await full_joins(townhall, options)
        return results
    finally:
        await townhall.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not _isolated() and not os.environ.get(ISOLATED_MARK):
        script = ROOT / "scripts" / "isolated"
        env = {**os.environ, ISOLATED_MARK: "1"}
        os.execve(
            str(script), [str(script), sys.executable, "-m", "bench.listener_path", *argv], env
        )
    parser = argparse.ArgumentParser(prog="python -m bench.listener_path", description=__doc__)
    for name, default in Options().__dict__.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    options = Options(**vars(parser.parse_args(argv)))
    for tool in (WRK, NGINX):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install wrk nginx)")
    from townhall.stage.ice import use_host_addresses

    use_host_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="townhall-listener-path-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        results = asyncio.run(run(options, workdir))
    print()
    print(table(results))
    results["command"] = "python -m bench.listener_path " + " ".join(argv)
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"listener-path-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
