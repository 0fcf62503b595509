"""Listeners held by one node against two nodes, each pinned to its own core: does a
second edge double what the deployment holds?

    /work/bin/quiet scripts/isolated .venv/bin/python -m bench.node_scaling
        [--listeners 3000] [--seconds 15] [--budget 80] [--rounds 2]

The local cluster (`scripts/cluster up`, its own code: Redis, PostgreSQL, one origin,
two edges on that Redis and PostgreSQL, nginx) carries one live space with a 440 Hz
WebRTC speaker on the origin; each edge relays the program once and fans it out.
edge1 is pinned to core 0 and edge2 to core 1 (`taskset -a`, every thread). Listener
client processes (bench.client: raw sockets, tickets signed with the deployment's
secret, as a join would give them) open `--listeners` live streams straight on an edge.

Per round (the two loaded phases in alternating order):
- **idle**: each edge's CPU with the program relayed and nobody listening;
- **one node**: `--listeners` on edge1 alone; edge1's CPU;
- **two nodes**: `--listeners` on edge1 and as many on edge2 at once; both CPUs.

CPU per listener = (CPU - idle CPU) / listeners. A node's capacity at a fixed CPU budget
(`--budget` % of its core) = (budget - idle) / CPU per listener (an extrapolation: a
process holds at most TOWNHALL_ADMISSION_MAX_LISTENERS, below its file limit). Scaling efficiency =
two-node capacity (edge1's + edge2's, measured together) / (2 x one-node capacity). The
clients' late-chunk share shows whether the edges kept their beat. Figures are the
median over rounds; everything started is stopped by PID (`scripts/cluster down`).
`--save` adds them to bench/figures.json (`edge_scaling_efficiency`, `node_scaling`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.client import Target
from bench.clients import Clients
from bench.cluster_rehearsal import SPEAKER_SCRIPT, SPEAKER_SETTLE_S, open_space
from bench.cluster_script import load_cluster
from bench.figures import FIGURES
from bench.procstat import cpu_seconds

CHUNK_MS = 500
"""The live chunk every edge writes per listener (the fan-out bench's default)."""
EDGE_ENV = {
    "TOWNHALL_AUDIO_LIVE_CHUNK_MS": str(CHUNK_MS),
    "TOWNHALL_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0",  # one source address per client
    "TOWNHALL_ADMISSION_MAX_LOOP_LAG_MS": "1000",
}
EDGE_CORES = {"edge1": 0, "edge2": 1}
OPEN_WINDOW = 200
OPEN_TIMEOUT_S = 120.0
SETTLE_S = 3.0
CLIENTS_PER_EDGE = 1


def pin(pid: int, core: int) -> None:
    """Every thread of the process on one core."""
    subprocess.run(
        ["taskset", "-a", "-cp", str(core), str(pid)], check=True, capture_output=True, timeout=10
    )


async def cpu_percent(pids: dict[str, int], seconds: float) -> dict[str, float]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    return {name: (cpu_seconds(pid) - before[name]) / elapsed * 100 for name, pid in pids.items()}


async def hold(
    clients: dict[str, Clients], pids: dict[str, int], listeners: int, seconds: float
) -> dict[str, Any]:
    """Open `listeners` on each edge in `clients`, let them settle, measure, close."""
    opened = await asyncio.gather(
        *(
            c.split(
                {"cmd": "open", "timeout_s": OPEN_TIMEOUT_S}, listeners, OPEN_WINDOW, OPEN_TIMEOUT_S
            )
            for c in clients.values()
        )
    )
    await asyncio.sleep(SETTLE_S)
    for c in clients.values():
        await c.each({"cmd": "window"})
    cpu = await cpu_percent({name: pids[name] for name in clients}, seconds)
    result: dict[str, Any] = {}
    for (name, c), replies in zip(clients.items(), opened, strict=True):
        windows = await c.each({"cmd": "window"})
        reads = sum(w["reads"] for w in windows)
        result[name] = {
            "opened": sum(r["opened"] for r in replies),
            "holding": sum(w["holding"] for w in windows),
            "cpu_pct": round(cpu[name], 2),
            "late_share": round(sum(w["late"] for w in windows) / reads, 4) if reads else None,
        }
        await c.each({"cmd": "close"})
    return result


def capacity(cpu_pct: float, idle_pct: float, holding: int, budget: float) -> float | None:
    """Listeners the node would hold at `budget` % of its core, by its CPU per listener."""
    per_listener = (cpu_pct - idle_pct) / holding if holding else 0.0
    return (budget - idle_pct) / per_listener if per_listener > 0 else None


async def measure(args: argparse.Namespace, cluster: Any, space: str) -> dict[str, Any]:
    secret = (Path(cluster.dir) / "secret").read_text().strip()
    nodes = {str(n["name"]): n for n in cluster.urls["nodes"]}
    pids = {str(p["name"]): int(p["pid"]) for p in cluster.processes}
    edges = {name: pids[name] for name in EDGE_CORES}
    for name, core in EDGE_CORES.items():
        pin(edges[name], core)
    clients: dict[str, Clients] = {}
    for name in EDGE_CORES:
        url = urlsplit(str(nodes[name]["url"]))
        target = Target(
            host=url.hostname or "127.0.0.1",
            port=url.port or 80,
            path=f"/live/{space}.aac?ticket={{ticket}}",
            secret=secret,
            space_id=space,
            chunk_ms=CHUNK_MS,
        )
        clients[name] = await Clients.start(CLIENTS_PER_EDGE, target, None)
    rounds = []
    try:
        for index in range(args.rounds):
            idle = await cpu_percent(edges, args.seconds)
            if index % 2 == 0:  # alternate which goes first: the machine drifts meanwhile
                one = await hold({"edge1": clients["edge1"]}, edges, args.listeners, args.seconds)
                two = await hold(clients, edges, args.listeners, args.seconds)
            else:
                two = await hold(clients, edges, args.listeners, args.seconds)
                one = await hold({"edge1": clients["edge1"]}, edges, args.listeners, args.seconds)
            entry = {"idle_cpu_pct": idle, "one_node": one, "two_nodes": two}
            entry["one_capacity"] = capacity(
                one["edge1"]["cpu_pct"], idle["edge1"], one["edge1"]["holding"], args.budget
            )
            entry["two_capacity"] = sum(
                capacity(two[n]["cpu_pct"], idle[n], two[n]["holding"], args.budget) or 0.0
                for n in EDGE_CORES
            )
            entry["efficiency"] = (
                entry["two_capacity"] / (2 * entry["one_capacity"])
                if entry["one_capacity"]
                else None
            )
            rounds.append(entry)
            print(
                f"round {index + 1}: idle {idle['edge1']:.1f} / {idle['edge2']:.1f} %; one node "
                f"{one['edge1']['holding']} held at {one['edge1']['cpu_pct']:.1f} %; two nodes "
                f"{two['edge1']['holding']} + {two['edge2']['holding']} held at "
                f"{two['edge1']['cpu_pct']:.1f} + {two['edge2']['cpu_pct']:.1f} %; "
                f"efficiency {entry['efficiency'] or 0:.2f}",
                flush=True,
            )
    finally:
        await asyncio.gather(*(c.stop() for c in clients.values()))
    return {"rounds": rounds}


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Prints the side-by-side table and adds its figures to `result` as its summary."""
    rounds = result["rounds"]

    def median(values: list[float | None]) -> float:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else 0.0

    one_cap = median([r["one_capacity"] for r in rounds])
    two_cap = median([r["two_capacity"] for r in rounds])
    per_1000_one = median(
        [
            (r["one_node"]["edge1"]["cpu_pct"] - r["idle_cpu_pct"]["edge1"])
            / r["one_node"]["edge1"]["holding"]
            * 1000
            for r in rounds
        ]
    )
    per_1000_two = median(
        [
            sum(r["two_nodes"][n]["cpu_pct"] - r["idle_cpu_pct"][n] for n in EDGE_CORES)
            / sum(r["two_nodes"][n]["holding"] for n in EDGE_CORES)
            * 1000
            for r in rounds
        ]
    )
    late_one = median([r["one_node"]["edge1"]["late_share"] for r in rounds])
    late_two = median([r["two_nodes"][n]["late_share"] for r in rounds for n in EDGE_CORES])
    print(
        f"\nlisteners held at {args.budget:g} % of a core per node, median of "
        f"{len(rounds)} round(s), {args.listeners} listeners per node measured:"
    )
    print(f"{'':<28}{'one node':>12}{'two nodes':>12}")
    print(f"{'CPU % per 1,000 listeners':<28}{per_1000_one:>12.2f}{per_1000_two:>12.2f}")
    print(f"{'late chunks':<28}{late_one:>11.2%} {late_two:>11.2%}")
    print(f"{'capacity (listeners)':<28}{one_cap:>12,.0f}{two_cap:>12,.0f}")
    efficiency = two_cap / (2 * one_cap) if one_cap else 0.0
    print(f"scaling efficiency = {two_cap:,.0f} / (2 x {one_cap:,.0f}) = {efficiency:.2f}")
    print(
        "(capacity extrapolates the CPU per listener to the budget; a process holds at most "
        "TOWNHALL_ADMISSION_MAX_LISTENERS, 18,000 by default, below its file limit)"
    )
    result["summary"] = {
        "cpu_pct_per_1000_one_node": round(per_1000_one, 3),
        "cpu_pct_per_1000_two_nodes": round(per_1000_two, 3),
        "capacity_one_node": round(one_cap),
        "capacity_two_nodes": round(two_cap),
        "scaling_efficiency": round(efficiency, 3),
        "late_share_one_node": late_one,
        "late_share_two_nodes": late_two,
        "budget_pct_of_core": args.budget,
        "listeners_per_node_measured": args.listeners,
    }


def save(result: dict[str, Any], argv: list[str]) -> None:
    """Into bench/figures.json beside the other benches' figures (`townhall plan` sizes
    edges linearly from listeners_per_core: this is the check that it may)."""
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {"figures": {}}
    data.setdefault("figures", {})["edge_scaling_efficiency"] = result["summary"][
        "scaling_efficiency"
    ]
    data["node_scaling"] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench.node_scaling " + " ".join(argv),
        "load_avg": os.getloadavg(),
        **result["summary"],
    }
    FIGURES.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.node_scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listeners", type=int, default=3000, help="per node")
    parser.add_argument("--seconds", type=float, default=15.0, help="each CPU window")
    parser.add_argument("--budget", type=float, default=80.0, help="%% of a core per node")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--save", action="store_true", help="into bench/figures.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        parser.error("needs two cores (one per node)")

    cluster_script = load_cluster()
    root = Path(tempfile.mkdtemp(prefix="townhall-scaling-"))
    root.chmod(0o755)  # PostgreSQL runs as `postgres` and must reach its directory
    state_dir = root / "cluster"
    os.environ.update(EDGE_ENV)
    if (
        cluster_script.up(
            argparse.Namespace(state_dir=state_dir, origins=1, edges=2, stream_workers=0)
        )
        != 0
    ):
        return 1
    cluster = cluster_script.Cluster(state_dir)
    cluster.load()
    speaker: subprocess.Popen[bytes] | None = None
    try:
        nginx = str(cluster.urls["nginx"])
        space, token = open_space(nginx)
        seconds = args.rounds * 4 * (args.seconds + 30) + 60
        speaker = subprocess.Popen(
            [sys.executable, str(SPEAKER_SCRIPT), nginx, space, token, str(seconds)],
            stdout=(state_dir / "speaker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(SPEAKER_SETTLE_S)
        result = asyncio.run(measure(args, cluster, space))
    finally:
        if speaker is not None and speaker.poll() is None:
            speaker.terminate()
            speaker.wait(timeout=15)
        cluster_script.down(argparse.Namespace(state_dir=state_dir))
    report(args, result)
    if args.save:
        save(result, argv)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": None}, **result}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
