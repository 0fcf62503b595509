"""The figures `townhall plan` sizes a deployment from, distilled from one bench run.

`python -m bench` writes them to bench/figures.json after every run that measured
townhall (with the date, the machine and the exact command); `python -m bench.figures
RESULTS.json` makes them again from a saved run. Only measured numbers go in: a
figure the run did not measure is left out, and `townhall plan` refuses to guess it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

FIGURES = Path(__file__).resolve().parent / "figures.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def planning_figures(results: dict[str, Any], command: str) -> dict[str, Any]:
    """The per-core and per-listener figures of a run's townhall side."""
    town = results["townhall"]
    config = results.get("config", {})
    steady, joins = town.get("steady", {}), town.get("joins", {})
    server_cores = len(str(config.get("server_cpus", "1")).split(","))
    idle_pct, joins_per_s = town.get("idle_cpu_pct"), joins.get("per_s")
    measured = {
        "listeners_per_core": steady.get("held_per_core_est"),
        "cpu_pct_per_1000_listeners": steady.get("cpu_pct_per_1000"),
        "rss_bytes_per_listener": steady.get("rss_bytes_per_listener"),
        "node_base_rss_bytes": town.get("idle_rss_bytes"),
        "space_cpu_share_of_core": idle_pct / 100 if idle_pct is not None else None,
        "full_joins_per_s_per_core": joins_per_s / server_cores if joins_per_s else None,
        "delivered_kbps_per_listener": steady.get("kbps_per_listener"),
        "late_share": steady.get("late_share"),
        "listeners_measured": steady.get("holding"),
    }
    return {
        "measured_at": results.get("measured_at")
        or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_avg": os.getloadavg()},
        "bitrate_bps": config.get("bitrate"),
        "chunk_ms": config.get("chunk_ms"),
        "server_cores": server_cores,
        "figures": {name: value for name, value in measured.items() if value is not None},
    }


def write_figures(results: dict[str, Any], command: str, path: Path = FIGURES) -> Path:
    """The run's figures; a per-space cost measured by bench/spaces.py (its "spaces" section,
    with speakers talking) is kept and wins over the idle phase's one-speaker figure."""
    figures = planning_figures(results, command)
    previous = json.loads(path.read_text()) if path.exists() else {}
    if "spaces" in previous:
        figures["spaces"] = previous["spaces"]
        share = previous.get("figures", {}).get("space_cpu_share_of_core")
        if share is not None:
            figures["figures"]["space_cpu_share_of_core"] = share
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.figures bench/results/bench-....json", file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    command = results.get("command") or f"python -m bench (saved run {argv[0]})"
    print(write_figures(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
