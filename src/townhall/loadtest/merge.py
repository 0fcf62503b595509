"""One report from several generator processes' reports.

Why merge raw state rather than summaries: percentiles do not add up, so each
generator's report carries its recorder's totals and histogram buckets
(``meta.recorder_state``) and the merged summary is computed from their sum,
exactly as one process would have. The per-second timeline is merged row by
row (generators start within a moment of each other): counts and gauges are
summed, the server's figures are summed over distinct targets (generators that
share a target saw the same server), and a second's TTFA percentiles are the
worst generator's (per-second histograms are not kept). Pure, no I/O.
"""

from __future__ import annotations

from collections import Counter
from itertools import zip_longest
from typing import Any

from townhall.loadtest.metrics import Recorder
from townhall.loadtest.report import build_report
from townhall.loadtest.summary import summarize

SUMMED_ROW_FIELDS = (
    "arrivals", "admitted", "first_audio", "left", "joining", "waiting", "streaming",
)  # fmt: skip
WORST_ROW_FIELDS = ("ttfa_p50", "ttfa_p90", "ttfa_p99", "client.cpu_percent", "client.loop_lag_ms")


class MergeError(ValueError):
    """A generator's report lacks what merging needs (an older or failed run)."""


def _merge_rows(rows: list[dict[str, Any] | None], first_of_target: list[bool]) -> dict[str, Any]:
    present = [(row, first) for row, first in zip(rows, first_of_target, strict=True) if row]
    merged: dict[str, Any] = {"t": present[0][0]["t"]}
    for name in SUMMED_ROW_FIELDS:
        merged[name] = sum(row.get(name, 0) for row, _ in present)
    for name in WORST_ROW_FIELDS:
        values = [row[name] for row, _ in present if row.get(name) is not None]
        merged[name] = max(values) if values else None
    for name in ("errors", "attacks"):
        total: Counter[str] = Counter()
        for row, _ in present:
            total.update(row.get(name, {}))
        merged[name] = dict(total)
    for row, first in present:
        for name, value in row.items():
            if first and name.startswith("server.") and isinstance(value, int | float):
                merged[name] = merged.get(name, 0) + value
    return merged


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of the whole run: summary from the summed recorders, one timeline."""
    if not reports:
        raise MergeError("no generator reports to merge")
    recorder = Recorder()
    for report in reports:
        state = report.get("meta", {}).get("recorder_state")
        if state is None:
            raise MergeError("a generator report has no meta.recorder_state")
        recorder.merge_state(state)
    targets: dict[str, float | None] = {}
    first_of_target = []
    for report in reports:
        target = report["meta"]["target"]
        first_of_target.append(target not in targets)
        targets.setdefault(target, report["meta"].get("capacity_per_s"))
    timelines = [report["timeline"] for report in reports]
    recorder.timeline = [
        _merge_rows(list(rows), first_of_target) for rows in zip_longest(*timelines)
    ]
    capacities = list(targets.values())
    capacity = sum(c for c in capacities if c) if all(capacities) else None
    summary = summarize(recorder, capacity=capacity)
    meta = {
        "targets": sorted(targets),
        "generators": [
            {
                key: report["meta"].get(key)
                for key in ("target", "duration_s", "stop_reason", "max_open", "client_bug")
            }
            for report in reports
        ],
        "target": ", ".join(sorted(targets)),
        "space": reports[0]["meta"].get("space"),
        "started_at": min(report["meta"]["started_at"] for report in reports),
        "duration_s": max(report["meta"]["duration_s"] for report in reports),
        "capacity_per_s": capacity,
        "stop_reason": ", ".join(sorted({str(r["meta"].get("stop_reason")) for r in reports})),
        "client_bug": next(
            (r["meta"]["client_bug"] for r in reports if r["meta"].get("client_bug")), None
        ),
    }
    config = {**reports[0]["config"], "generators": len(reports), "urls": sorted(targets)}
    return build_report(config, summary, recorder.timeline, recorder.told_vs_actual, meta)
