"""The side-by-side table and the JSON file of one run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

REQUIRED_FIELDS = (
    "cpu_pct_per_1000",
    "late_share",
    "held_per_core_est",
    "accept_per_s",
    "ttfa_p50_s",
    "ttfa_p99_s",
    "storm_listeners",
    "storm_all_back_s",
    "full_joins_per_s",
)


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The headline figures per server, flat (None where a server has no such figure)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("icecast", "townhall"):
        r = results.get(name)
        if r is None:
            continue
        out[name] = {
            "listeners_measured": _get(r, "steady", "holding"),
            "idle_cpu_pct": r.get("idle_cpu_pct"),
            "server_cpu_pct": _get(r, "steady", "server_cpu_pct"),
            "cpu_pct_per_1000": _get(r, "steady", "cpu_pct_per_1000"),
            "late_share": _get(r, "steady", "late_share"),
            "kbps_per_listener": _get(r, "steady", "kbps_per_listener"),
            "held_per_core_est": _get(r, "steady", "held_per_core_est"),
            "accept_per_s": _get(r, "accept", "per_s"),
            "ttfa_p50_s": _get(r, "accept", "ttfa_p50_s"),
            "ttfa_p99_s": _get(r, "accept", "ttfa_p99_s"),
            "storm_listeners": _get(r, "storm", "listeners"),
            "storm_all_back_s": _get(r, "storm", "elapsed_s"),
            "storm_ttfa_p99_s": _get(r, "storm", "ttfa_p99_s"),
            "full_joins_per_s": _get(r, "joins", "per_s") if name == "townhall" else None,
            "join_to_audio_p99_s": _get(r, "joins", "join_to_audio_p99_s"),
            "node_listeners": _get(r, "node", "hold", "holding"),
            "node_late_share": _get(r, "node", "hold", "late_share"),
        }
    return out


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value:.2f} %"
    if kind == "share":
        return f"{100 * value:.2f} %"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.1f}"


ROWS = (
    ("listeners held while measuring", "listeners_measured", "int", None),
    ("server CPU, idle (source only)", "idle_cpu_pct", "pct", None),
    ("CPU % of a core per 1,000 listeners", "cpu_pct_per_1000", "pct", "lower"),
    ("late chunks (>1 % = over capacity)", "late_share", "share", None),
    ("delivered kbps per listener", "kbps_per_listener", "num", None),
    ("listeners per core (est., from CPU)", "held_per_core_est", "int", "higher"),
    ("accept rate: listeners/s to 1st audio", "accept_per_s", "int", "higher"),
    ("time to first audio p50", "ttfa_p50_s", "s", "lower"),
    ("time to first audio p99", "ttfa_p99_s", "s", "lower"),
    ("reconnect storm: listeners", "storm_listeners", "int", None),
    ("reconnect storm: all hear audio in", "storm_all_back_s", "s", "lower"),
    ("reconnect storm: TTFA p99", "storm_ttfa_p99_s", "s", "lower"),
    ("full joins/s (snapshot+join+audio)", "full_joins_per_s", "int", None),
    ("full join to first audio p99", "join_to_audio_p99_s", "s", None),
    ("listeners on the 2-core node", "node_listeners", "int", None),
    ("late chunks on the 2-core node", "node_late_share", "share", None),
)


def table(results: dict[str, Any]) -> str:
    figures = summary(results)
    ice = figures.get("icecast", {})
    town = figures.get("townhall", {})
    lines = [f"{'':40} {'townhall':>14} {'icecast 2':>14} {'townhall/icecast':>17}"]
    for label, key, kind, _better in ROWS:
        a, b = town.get(key), ice.get(key)
        both = isinstance(a, int | float) and isinstance(b, int | float) and b
        ratio = f"{a / b:.2f}x" if both else ""
        lines.append(f"{label:40} {_fmt(a, kind):>14} {_fmt(b, kind):>14} {ratio:>17}")
    joins, accept = town.get("full_joins_per_s"), ice.get("accept_per_s")
    if joins and accept:
        lines.append(f"{'full joins/s vs icecast accepts/s':40} {'':>14} {'':>14} "
                     f"{joins / accept:>16.2f}x")  # fmt: skip
    return "\n".join(lines)


def write_json(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    payload = {**results, "summary": summary(results)}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
