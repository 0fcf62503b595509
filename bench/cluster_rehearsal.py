"""The rehearsal of issue 8 on the local cluster, in one command:

    /work/bin/quiet scripts/isolated .venv/bin/python -m bench.cluster_rehearsal
        [--rate-per-edge 20] [--spike 10] [--seconds 90] [--kill-at 40] [--generators 2]

1. `scripts/cluster up` (its own code, imported): Redis, PostgreSQL, 2 origins, 2 edges
   and nginx in front of the edges, on loopback, each edge's door admitting
   `--rate-per-edge` listeners per second (per-address limits off: every simulated
   listener comes from this machine).
2. A host opens a space through nginx and a 440 Hz WebRTC speaker goes on its stage
   (scripts/rehearsal_speaker.py; the offer reaches the origin through an edge).
3. `townhall loadtest` with `--generators` processes, all through nginx (as a real crowd
   comes through the load balancer or CDN), plays the `aug2024` profile scaled to this
   machine: time compressed `--time-scale` times, and the crowd scaled so that the
   opening minute (100k people at the real event) arrives at `--spike` times the
   admission capacity; after it the crowd keeps growing at about twice the capacity.
4. At `--kill-at` seconds one edge is SIGKILLed by its PID; its listeners re-join with
   their tickets through nginx and stream from the other edge.
5. Everything started is stopped by PID (`scripts/cluster down`), and the summary printed.

**Capacity**, precisely: the doors' configured admission rate (TOWNHALL_ADMISSION_
MAX_ADMISSIONS_PER_S, per node and space) summed over the nodes that admit, i.e. the
edges nginx sends joins to; after the kill, one edge fewer. Over the run it is the sum of
that per second. **Goodput** is what the listeners saw admitted (a ticket) per second in
the saturated seconds (someone was waiting or shed), as a share of that capacity over the
same seconds. The loadtest's own goodput (first audio per saturated second against the
two-edge capacity) is printed beside it. Exit status 0 when goodput >= 95 % of capacity,
no 5xx and no timeout were seen, and no node logged a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.cluster_script import load_cluster
from townhall.loadtest.cli import summary_lines
from townhall.loadtest.profiles import AUG2024_AT_START, AUG2024_OPENING_S

ROOT = Path(__file__).resolve().parents[1]
SPEAKER_SCRIPT = ROOT / "scripts" / "rehearsal_speaker.py"
TOWNHALL = ROOT / ".venv" / "bin" / "townhall"
OPENING_RATE = AUG2024_AT_START / AUG2024_OPENING_S
"""Arrivals per second of the real event's opening minute (the profile's spike)."""
GOODPUT_TARGET = 0.95
STATS_POLL_S = 1.0
SPEAKER_SETTLE_S = 4.0
"""Time for the speaker's WebRTC offer to reach the origin through an edge."""
LOADTEST_GRACE_S = 120.0
"""After its duration, the loadtest's generators get this long to report."""


class NodeWatch:
    """Polls every node's /api/stats once a second (listeners, door counts) in a thread."""

    def __init__(self, nodes: list[dict[str, Any]], token: str) -> None:
        self.nodes = nodes
        self.headers = {"Authorization": f"Bearer {token}"}
        self.last: dict[str, dict[str, Any]] = {}
        self.peak_listeners: dict[str, int] = {}
        self.timeline: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0, headers=self.headers) as http:
            while not self._stop.wait(STATS_POLL_S):
                row: dict[str, int] = {}
                for node in self.nodes:
                    try:
                        stats = http.get(f"{node['url']}/api/stats").json()
                    except (httpx.HTTPError, ValueError):
                        continue
                    name = str(node["name"])
                    self.last[name] = stats
                    row[name] = int(stats.get("listeners", 0))
                    self.peak_listeners[name] = max(self.peak_listeners.get(name, 0), row[name])
                self.timeline.append((time.monotonic(), row))

    def listeners_before(self, moment: float, name: str) -> int:
        seen = [row.get(name, 0) for t, row in self.timeline if t <= moment and name in row]
        return seen[-1] if seen else 0


def open_space(base: str) -> tuple[str, str]:
    """A host, a space started through nginx: (space id, the host's token)."""
    with httpx.Client(base_url=base, timeout=30) as http:
        account = {"username": "host", "password": "password123"}
        http.post("/api/users", json=account).raise_for_status()
        token = http.post("/api/tokens", json=account).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        space = http.post("/api/spaces", json={"title": "Rehearsal"}, headers=headers).json()
        http.post(f"/api/spaces/{space['id']}/start", headers=headers).raise_for_status()
    return str(space["id"]), str(token)


def kill_by_pid(entry: dict[str, Any], started: Any) -> bool:
    """SIGKILL the process the cluster recorded, if it is still that process."""
    pid = int(entry["pid"])
    if started(pid) != entry["started"]:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def capacity_goodput(
    rows: list[dict[str, Any]], rate: float, edges: int, kill_t: float | None
) -> dict[str, Any]:
    """Admitted per saturated second against the capacity of the edges alive that second."""
    saturated = [
        r
        for r in rows
        if r.get("waiting", 0) > 0
        or any(k.startswith(("5xx:503", "4xx:429")) for k in r.get("errors", {}))
    ]
    capacity = sum(
        rate * (edges - 1 if kill_t is not None and r["t"] > kill_t else edges) for r in saturated
    )
    admitted = sum(r.get("admitted", 0) for r in saturated)
    heard = sum(r.get("first_audio", 0) for r in saturated)
    return {
        "saturated_s": len(saturated),
        "capacity_admissions": round(capacity, 1),
        "admitted": admitted,
        "first_audio": heard,
        "share": round(admitted / capacity, 4) if capacity else None,
        "heard_share": round(heard / capacity, 4) if capacity else None,
    }


def tracebacks(state_dir: Path, names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if (state_dir / f"{name}.log").exists()
        and "Traceback" in (state_dir / f"{name}.log").read_text(errors="replace")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_rehearsal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rate-per-edge", type=float, default=20.0, help="each edge's door: admissions per second"
    )
    parser.add_argument(
        "--spike",
        type=float,
        default=10.0,
        help="the opening minute's arrivals, as a multiple of capacity",
    )
    parser.add_argument(
        "--time-scale", type=float, default=10.0, help="profile seconds per wall second"
    )
    parser.add_argument("--seconds", type=float, default=90.0, help="loadtest duration")
    parser.add_argument(
        "--kill-at",
        type=float,
        default=40.0,
        help="seconds into the loadtest when the second edge is SIGKILLed",
    )
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--hold-s", type=float, default=30.0, help="median listening time")
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.kill_at < args.seconds:
        parser.error("--kill-at must fall inside the run")

    cluster_script = load_cluster()
    root = Path(tempfile.mkdtemp(prefix="townhall-rehearsal-"))
    root.chmod(0o755)  # PostgreSQL runs as `postgres` and must reach its directory
    state_dir = args.state_dir or root / "cluster"
    edges = 2
    capacity = args.rate_per_edge * edges
    scale = args.spike * capacity / (OPENING_RATE * args.time_scale)
    os.environ["TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S"] = repr(args.rate_per_edge)
    os.environ["TOWNHALL_ADMISSION_PER_ADDRESS_RATE"] = "0"
    up = argparse.Namespace(state_dir=state_dir, origins=2, edges=edges, stream_workers=0)
    if cluster_script.up(up) != 0:
        return 1
    cluster = cluster_script.Cluster(state_dir)
    cluster.load()
    processes: list[subprocess.Popen[bytes]] = []
    watch: NodeWatch | None = None
    try:
        nginx = str(cluster.urls["nginx"])
        nodes = list(cluster.urls["nodes"])
        victim = next(n for n in reversed(nodes) if n["role"] == "edge")
        victim_entry = next(p for p in cluster.processes if p["name"] == victim["name"])
        space, token = open_space(nginx)
        speaker = subprocess.Popen(
            [sys.executable, str(SPEAKER_SCRIPT), nginx, space, token, str(args.seconds + 30)],
            stdout=(state_dir / "speaker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(speaker)
        time.sleep(SPEAKER_SETTLE_S)
        if speaker.poll() is not None:
            print(f"rehearsal: the speaker failed (see {state_dir}/speaker.log)", file=sys.stderr)
        watch = NodeWatch(nodes, str(cluster.urls["admin_token"]))
        watch.start()
        report_dir = root / "report"
        command = [
            str(TOWNHALL),
            "loadtest",
            f"{nginx}/s/{space}",
            "--generators",
            str(args.generators),
            "--profile",
            "aug2024",
            "--scale",
            repr(scale),
            "--time-scale",
            repr(args.time_scale),
            "--duration",
            repr(args.seconds),
            "--hold-s",
            repr(args.hold_s),
            "--capacity",
            repr(capacity),
            "--report-dir",
            str(report_dir),
            "--quiet",
        ]
        opening = OPENING_RATE * scale * args.time_scale
        print(
            f"rehearsal: capacity {capacity:g} admissions/s = {args.rate_per_edge:g}/s per "
            f"edge x {edges} edges (the nodes nginx sends joins to); aug2024 x {scale:.3g} "
            f"people, {args.time_scale:g}x faster: opening {opening:.0f} arrivals/s "
            f"({args.spike:g}x capacity)"
        )
        started = time.monotonic()
        loadtest = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        processes.append(loadtest)
        time.sleep(max(0.0, started + args.kill_at - time.monotonic()))
        killed_at = time.monotonic()
        on_victim = watch.listeners_before(killed_at, str(victim["name"]))
        killed = kill_by_pid(victim_entry, cluster_script.start_time)
        output, _ = loadtest.communicate(timeout=args.seconds + LOADTEST_GRACE_S)
        watch.stop()
        report = json.loads((report_dir / "report.json").read_text())
    finally:
        if watch is not None:
            watch.stop()
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        cluster_script.down(argparse.Namespace(state_dir=state_dir))

    print(output.decode(errors="replace").rstrip())
    summary = report["summary"]
    kill_t = killed_at - started if killed else None
    good = capacity_goodput(report["timeline"], args.rate_per_edge, edges, kill_t)
    resumed = summary["resumed_s"]
    broken = tracebacks(state_dir, [str(n["name"]) for n in nodes])
    print("---- cluster rehearsal summary ----")
    for line in summary_lines(report):
        print(line)
    print(
        f"capacity: {args.rate_per_edge:g} admissions/s per edge x {edges} edges "
        f"({args.rate_per_edge:g}/s x {edges - 1} after the kill); over the {good['saturated_s']}"
        f" saturated seconds {good['capacity_admissions']:g} admissions"
    )
    print(
        f"goodput: {good['admitted']} admitted = {good['share']:.1%} of capacity "
        f"(first audio {good['first_audio']} = {good['heard_share']:.1%})"
    )
    print(
        f"edge kill: {victim['name']} SIGKILLed at t={kill_t:.1f} s holding {on_victim} "
        f"listeners; {resumed['n']} re-joined and heard audio again after p50 "
        f"{resumed['p50'] or 0:.2f} s, p99 {resumed['p99'] or 0:.2f} s, max "
        f"{resumed['max'] or 0:.2f} s"
        if killed
        else "edge kill: the edge was gone already"
    )
    for node in nodes:
        name = str(node["name"])
        counts = (watch.last.get(name) or {}).get("counts", {}) if watch else {}
        peak = watch.peak_listeners.get(name, 0) if watch else 0
        print(
            f"  {name:<8} ({node['role']}): peak listeners {peak}, "
            f"joins {counts.get('joins', 0)}, admitted {counts.get('admitted', 0)}, "
            f"re-joins {counts.get('rejoins', 0)}, waiting answers {counts.get('waiting', 0)}"
        )
    verdict = {
        f"goodput >= {GOODPUT_TARGET:.0%}": (good["share"] or 0) >= GOODPUT_TARGET,
        "0 5xx": summary["http_5xx"] == 0,
        "0 timeouts": summary["timeouts"] == 0,
        "no traceback in a node's log": not broken,
    }
    print(
        "verdict: "
        + ", ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in verdict.items())
    )
    if broken:
        print(f"tracebacks in: {', '.join(broken)} (logs kept in {state_dir})")
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
