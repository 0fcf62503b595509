"""A rehearsal split over several generator processes and target nodes.

One generator process holds ~15,000 listeners and one core; a cluster needs more
of both, and its nodes should each see their share of the crowd. `townhall
loadtest URL1 URL2 --generators 4` starts four `townhall loadtest` processes,
assigned round robin to the URLs, each with its share of the crowd (``--scale``
divided among the generators of one target when the rate is a multiple of that
node's capacity, among all generators otherwise; ``--max-listeners`` divided
among all), its own seed and report directory, then merges their reports into
one (townhall.loadtest.merge). The partial reports stay beside the merged one.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townhall.loadtest.merge import merge_reports
from townhall.loadtest.report import JSON_NAME

GENERATOR_DIR = "generator-{index}"
STOP_GRACE_S = 60.0
"""After its own duration, a generator gets this long to stop and write its report."""


class GeneratorFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class GeneratorPlan:
    index: int
    url: str
    scale: float
    max_listeners: int
    seed: int

    def argv(self, options: list[str], report_dir: Path) -> list[str]:
        """``options`` are the user's own; the ones appended last win (argparse)."""
        return [
            self.url, *options, "--quiet",
            "--scale", repr(self.scale), "--max-listeners", str(self.max_listeners),
            "--seed", str(self.seed),
            "--report-dir", str(report_dir / GENERATOR_DIR.format(index=self.index)),
        ]  # fmt: skip


def plan_generators(
    urls: list[str], generators: int, *, scale: float, max_listeners: int, seed: int,
    rate_is_capacity_multiple: bool,
) -> list[GeneratorPlan]:  # fmt: skip
    if generators < 1 or not urls:
        raise ValueError("at least one generator and one URL")
    assigned = [urls[i % len(urls)] for i in range(max(generators, len(urls)))]
    per_target = Counter(assigned)
    plans = []
    for index, url in enumerate(assigned):
        share = per_target[url] if rate_is_capacity_multiple else len(assigned)
        plans.append(GeneratorPlan(
            index, url, scale / share, max(1, max_listeners // len(assigned)), seed + index,
        ))  # fmt: skip
    return plans


def run_generators(
    plans: list[GeneratorPlan], options: list[str], report_dir: Path, timeout_s: float
) -> dict[str, Any]:
    """Run every generator at once, wait for all, and return the merged report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "townhall", "loadtest", *plan.argv(options, report_dir)],
            stdout=(report_dir / f"{GENERATOR_DIR.format(index=plan.index)}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for plan in plans
    ]
    deadline = time.monotonic() + timeout_s + STOP_GRACE_S
    try:
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        late = [p for p in processes if p.poll() is None]
        for process in late:  # a generator stops early on SIGTERM and still reports
            process.terminate()
        for process in late:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_GRACE_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    failed = [plan.index for plan, p in zip(plans, processes, strict=True) if p.returncode != 0]
    if failed:
        raise GeneratorFailed(f"generator(s) {failed} failed; see {report_dir}/generator-N.log")
    reports = [
        json.loads((report_dir / GENERATOR_DIR.format(index=plan.index) / JSON_NAME).read_text())
        for plan in plans
    ]
    return merge_reports(reports)
