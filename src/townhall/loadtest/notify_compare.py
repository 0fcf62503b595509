"""The same followers told "X is live" without and with pacing, measured one after
the other against the same space, in one report side by side.

Each run is an ordinary rehearsal (runner.run_loadtest) whose arrivals come from
loadtest/notified.py; the comparison keeps, per run, the totals (arrivals,
admissions, waited, time to first audio) and the per-second rows of arrivals
against admissions, and writes `notify-comparison.json` beside the two full reports.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from townhall.loadtest.config import LoadtestConfig
from townhall.loadtest.progress import ProgressPrinter
from townhall.loadtest.report import write_report
from townhall.loadtest.runner import run_loadtest

MODES = (("unpaced", False), ("paced", True))
COMPARISON_NAME = "notify-comparison.json"
SETTLE_S = 2.0
"""Pause between the runs, so the first run's last listeners are gone from the stats."""


def _side(report: dict[str, Any]) -> dict[str, Any]:
    summary = report["summary"]
    return {
        "arrivals": summary["arrivals"],
        "admitted": summary["admitted"],
        "heard_audio": summary["heard_audio"],
        "waited": summary["waited"],
        "http_5xx": summary["http_5xx"],
        "ttfa_s": summary["ttfa_s"],
        "duration_s": report["meta"]["duration_s"],
        "notified_waves": report["meta"]["notified_waves"],
        "per_second": [
            {
                "t": row["t"],
                "arrivals": row["arrivals"],
                "admitted": row["admitted"],
                "waiting": row["waiting"],
                "ttfa_p50": row["ttfa_p50"],
            }
            for row in report["timeline"]
        ],
    }


async def compare(
    config: LoadtestConfig,
    report_dir: Path,
    progress: ProgressPrinter | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"followers": config.notify_followers, "runs": {}}
    for index, (name, paced) in enumerate(MODES):
        if index:
            await asyncio.sleep(SETTLE_S)
        if stop is not None and stop.is_set():
            break
        report = await run_loadtest(
            replace(config, notify_paced=paced), progress=progress, stop=stop
        )
        write_report(report, report_dir / name)
        result["runs"][name] = _side(report)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / COMPARISON_NAME).write_text(json.dumps(result, indent=1) + "\n")
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def comparison_lines(result: dict[str, Any]) -> list[str]:
    runs = result["runs"]
    names = list(runs)
    lines = [f"{result['followers']} followers told 'live now'".ljust(28)
             + "".join(f"{name:>14}" for name in names)]  # fmt: skip
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("arrivals", lambda r: str(r["arrivals"])),
        ("admitted", lambda r: str(r["admitted"])),
        ("heard audio", lambda r: str(r["heard_audio"])),
        ("waited in the room", lambda r: str(r["waited"])),
        ("5xx", lambda r: str(r["http_5xx"])),
        ("peak arrivals/s", lambda r: str(max((s["arrivals"] for s in r["per_second"]),
                                              default=0))),
        ("peak admitted/s", lambda r: str(max((s["admitted"] for s in r["per_second"]),
                                              default=0))),
        ("peak waiting", lambda r: str(max((s["waiting"] for s in r["per_second"]),
                                           default=0))),
        ("first audio p50", lambda r: _ms(r["ttfa_s"]["p50"])),
        ("first audio p90", lambda r: _ms(r["ttfa_s"]["p90"])),
        ("first audio p99", lambda r: _ms(r["ttfa_s"]["p99"])),
        ("run seconds", lambda r: f"{r['duration_s']:.0f}"),
    ]  # fmt: skip
    for label, cell in rows:
        lines.append(label.ljust(28) + "".join(f"{cell(runs[n]):>14}" for n in names))
    return lines
