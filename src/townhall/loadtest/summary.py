"""The numbers a rehearsal is judged by, computed from what the recorder saw. Pure.

Goodput as a share of capacity: while the crowd exceeds what the node admits
(seconds in which anyone was waiting or shed), how many listeners per second
actually reached audio, divided by the node's admission capacity. 1.0 means
the node converted all its capacity into people hearing the space; a node
that collapses under the spike shows a share far below 1 even though it was
"busy". Without saturation the share compares with the whole run.

Told versus actual: for every listener put in the waiting room, the ETA of
its first answer against the time it really took to get a ticket. A positive
mean error means people waited longer than promised.
"""

from __future__ import annotations

from collections import Counter
from statistics import fmean
from typing import Any

from townhall.loadtest.metrics import Recorder

SHED_PREFIXES = ("5xx:503", "4xx:429")


def _sum_kinds(errors: Counter[str], prefix: str) -> int:
    return sum(n for kind, n in errors.items() if kind.startswith(prefix))


def goodput(rows: list[dict[str, Any]], capacity: float | None) -> dict[str, Any]:
    """First-audio listeners per second over the saturated seconds, and its share of capacity."""
    saturated = [
        r for r in rows
        if r.get("waiting", 0) > 0
        or any(kind.startswith(SHED_PREFIXES) for kind in r.get("errors", {}))
    ]
    basis = "saturated"
    window = saturated
    if not window:
        basis = "whole_run"
        window = [r for r in rows if r.get("arrivals", 0) or r.get("first_audio", 0)]
    per_s = fmean(r.get("first_audio", 0) for r in window) if window else 0.0
    return {
        "per_s": round(per_s, 3),
        "window_s": len(window),
        "basis": basis,
        "capacity_per_s": capacity,
        "share_of_capacity": round(per_s / capacity, 4) if capacity else None,
    }


def told_vs_actual(recorder: Recorder) -> dict[str, Any]:
    n = recorder.waited
    still = recorder.still_waiting
    pending: dict[str, Any] = {"still_waiting": still}
    if still:
        pending.update({
            "still_waiting_mean_told_s": round(recorder.still_waiting_told_total / still, 3),
            "still_waiting_mean_waited_s": round(recorder.still_waiting_waited_total / still, 3),
            "still_waiting_overdue": recorder.still_waiting_overdue,
        })
    if not n:
        return {"waited": 0, **pending}
    return {
        **pending,
        "waited": n,
        "mean_told_s": round(recorder.told_total / n, 3),
        "mean_actual_s": round(recorder.actual_total / n, 3),
        "mean_error_s": round(recorder.signed_error_total / n, 3),
        "abs_error_s": recorder.wait_error.summary(),
        "samples": len(recorder.told_vs_actual),
    }


def summarize(recorder: Recorder, *, capacity: float | None) -> dict[str, Any]:
    errors = recorder.errors
    rows = recorder.timeline
    outcomes = recorder.outcomes
    attacks: dict[str, Any] = {}
    for name, results in sorted(recorder.attacks.items()):
        entry: dict[str, Any] = {"requests": sum(results.values()), "results": dict(results)}
        latency = recorder.attack_latency.get(name)
        if latency is not None:
            key = "time_to_cut_s" if name == "slowloris" else "latency_s"
            entry[key] = latency.summary()
        if name == "forged_tickets":
            entry["accepted"] = sum(n for r, n in results.items() if r.startswith("ACCEPTED"))
        if name == "join_flood":
            entry["tickets_obtained"] = results.get("ticket", 0)
        if name == "slowloris":
            entry["survived"] = results.get("survived", 0)
            entry["cut"] = sum(n for r, n in results.items() if r.startswith("cut:"))
        attacks[name] = entry
    return {
        "arrivals": recorder.arrivals,
        "admitted": recorder.admitted,
        "heard_audio": recorder.heard_audio,
        "waited": recorder.waited,
        "outcomes": dict(outcomes),
        "errors_total": sum(errors.values()),
        "errors": dict(errors.most_common()),
        "http_5xx": _sum_kinds(errors, "5xx:"),
        "http_4xx": _sum_kinds(errors, "4xx:"),
        "timeouts": _sum_kinds(errors, "timeout:"),
        "connection_errors": _sum_kinds(errors, "conn:"),
        "stream_drops": recorder.stream_drops,
        "reconnects": recorder.reconnects,
        "resumed_s": recorder.resumed_s.summary(),
        "unrecognised_audio": recorder.unrecognised_audio,
        "mean_stream_kbps": round(8 * recorder.stream_bytes / recorder.stream_seconds / 1000, 2)
        if recorder.stream_seconds else None,
        "ttfa_s": recorder.ttfa.summary(),
        "stream_ttfb_s": recorder.stream_ttfb.summary(),
        "queue_wait_s": recorder.queue_wait.summary(),
        "snapshot_latency_s": recorder.snapshot_latency.summary(),
        "join_latency_s": recorder.join_latency.summary(),
        "told_vs_actual": told_vs_actual(recorder),
        "goodput": goodput(rows, capacity),
        "peak_streaming": max((r["streaming"] for r in rows), default=0),
        "peak_waiting": max((r["waiting"] for r in rows), default=0),
        "client_peak_cpu_percent": max((r.get("client.cpu_percent", 0) for r in rows), default=0),
        "client_max_loop_lag_ms": max((r.get("client.loop_lag_ms", 0) for r in rows), default=0),
        "attacks": attacks,
    }
