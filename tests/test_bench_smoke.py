"""The bench's machinery in miniature: 200 listeners on each server for a few seconds.

Asserts only that both servers delivered audio to the same client and that the
report has every field; the figures themselves mean nothing at this size.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.config import BenchConfig  # noqa: E402
from bench.report import REQUIRED_FIELDS, summary, table  # noqa: E402
from bench.run import run  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("loopback_ice"),
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("icecast2") is None, reason="Debian's icecast2 is needed"),
]


async def test_both_servers_deliver_audio_and_the_report_is_complete(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)  # Icecast drops root; it must get in
    config = BenchConfig.smoke()
    results = await asyncio.wait_for(run(config, tmp_path), 240)
    print("\n" + table(results))
    figures = summary(results)
    for server in ("icecast", "townhall"):
        steady = results[server]["steady"]
        assert steady["holding"] >= 0.9 * config.listeners, server
        # A short window holds only a few 0.5 s chunks: the rate is coarse, so the bound is.
        assert steady["kbps_per_listener"] > 0.5 * config.bitrate / 1000, server
        assert results[server]["storm"]["opened"] >= 0.9 * results[server]["storm"]["listeners"]
    assert results["townhall"]["joins"]["joined"] == config.joins
    for server in ("icecast", "townhall"):
        assert set(REQUIRED_FIELDS) <= set(figures[server]), server
        # CPU-derived figures may be None at this size (fan-out CPU within idle noise).
        for field in ("accept_per_s", "ttfa_p50_s", "ttfa_p99_s", "storm_all_back_s"):
            assert figures[server][field] is not None, (server, field)
    assert figures["townhall"]["full_joins_per_s"] is not None
