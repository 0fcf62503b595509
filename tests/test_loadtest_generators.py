"""`townhall loadtest URL1 URL2 --generators 2`: two generator processes against two
real townhall servers, one merged report whose totals are the sum of the two
generators' own reports and of what the two servers counted."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from townhall.loadtest.cli import main as loadtest_main
from townhall.loadtest.generators import plan_generators
from townhall.loadtest.merge import MergeError, merge_reports
from townhall.loadtest.metrics import Recorder
from townhall.loadtest.report import build_report

pytestmark = pytest.mark.slow
SUMMED = ("arrivals", "admitted", "heard_audio", "http_5xx", "timeouts", "stream_drops")


def test_generators_share_the_crowd_by_target() -> None:
    relative = plan_generators(["a", "b"], 3, scale=1.0, max_listeners=90, seed=7,
                               rate_is_capacity_multiple=True)  # fmt: skip
    assert [(p.url, p.scale, p.seed) for p in relative] == [
        ("a", 0.5, 7), ("b", 1.0, 8), ("a", 0.5, 9),
    ]  # a 10x rate is 10x each node's capacity: a's two generators split a's share
    absolute = plan_generators(["a", "b"], 3, scale=1.0, max_listeners=90, seed=7,
                               rate_is_capacity_multiple=False)  # fmt: skip
    assert {p.scale for p in absolute} == {1 / 3} and {p.max_listeners for p in absolute} == {30}
    assert len(plan_generators(["a", "b", "c"], 1, scale=1, max_listeners=9, seed=0,
                               rate_is_capacity_multiple=False)) == 3  # fmt: skip


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[RunningServer]]:
    servers: list[RunningServer] = []
    try:
        for name in ("one", "two"):
            servers.append(start_server(tmp_path / name, TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0"))
        yield servers
    finally:
        for server in servers:
            stop_server(server)


async def _live_space(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await http.post("/api/users", json={"username": "host", "password": "password123"})
        token = await http.post("/api/tokens", json={"username": "host", "password": "password123"})
        host = {"Authorization": f"Bearer {token.json()['token']}"}
        space = (await http.post("/api/spaces", json={"title": "load"}, headers=host)).json()
        started = await http.post(f"/api/spaces/{space['id']}/start", headers=host)
        assert started.status_code == 200, started.text
        return str(space["id"])


def _admitted_by(server: RunningServer) -> int:
    return int(httpx.get(server.url + "/api/stats", timeout=10).json()["counts"].get("admitted", 0))


def test_two_generators_two_servers_one_merged_report(
    two_servers: list[RunningServer], tmp_path: Path
) -> None:
    urls = [f"{s.url}/s/{asyncio.run(_live_space(s.url))}" for s in two_servers]
    report_dir = tmp_path / "report"
    code = loadtest_main([
        *urls, "--generators", "2", "--rate", "6", "--uniform", "--duration", "4",
        "--think-s", "0", "--hold-s", "1", "--hold-sigma", "0.01", "--report-dir", str(report_dir),
    ])  # fmt: skip
    assert code == 0, [p.read_text()[-2000:] for p in report_dir.glob("*.log")]
    merged = json.loads((report_dir / "report.json").read_text())
    parts = [json.loads((report_dir / f"generator-{i}" / "report.json").read_text())
             for i in range(2)]  # fmt: skip
    assert sorted(p["meta"]["target"] for p in parts) == sorted(urls)
    assert merged["meta"]["targets"] == sorted(urls)
    for field in SUMMED:
        assert merged["summary"][field] == sum(p["summary"][field] for p in parts), field
    summary = merged["summary"]
    assert summary["arrivals"] >= 16 and all(p["summary"]["arrivals"] > 0 for p in parts)
    assert summary["ttfa_s"]["n"] == summary["heard_audio"] > 0
    assert sum(row["arrivals"] for row in merged["timeline"]) == summary["arrivals"]
    assert Counter(summary["outcomes"]) == sum(
        (Counter(p["summary"]["outcomes"]) for p in parts), Counter()
    )
    # the servers' own counts: every ticket the report counts, a server issued
    assert summary["admitted"] == sum(_admitted_by(s) for s in two_servers)
    assert (report_dir / "report.html").exists()


def _report(target: str, arrivals: int, server_listeners: int, ttfa_s: float) -> dict[str, Any]:
    recorder = Recorder()
    for _ in range(arrivals):
        recorder.arrival()
        recorder.first_audio(ttfa_s, ttfa_s / 2)
    recorder.tick(1.0, {"server.listeners": server_listeners, "client.cpu_percent": 10.0})
    meta = {"target": target, "started_at": "2026-11-26T11:00:00+00:00", "duration_s": 1.0,
            "stop_reason": "duration", "capacity_per_s": 5.0,
            "recorder_state": recorder.to_state()}  # fmt: skip
    return build_report({"seed": 1}, {}, recorder.timeline, [], meta)


def test_merged_percentiles_come_from_summed_histograms_and_servers_count_once() -> None:
    fast, slow = _report("a", 9, 100, 0.1), _report("b", 1, 40, 5.0)
    also_a = _report("a", 0, 100, 1.0)
    merged = merge_reports([fast, slow, also_a])
    ttfa = merged["summary"]["ttfa_s"]
    assert ttfa["n"] == 10 and ttfa["p50"] == pytest.approx(0.1, rel=0.02)
    assert ttfa["max"] == pytest.approx(5.0)  # the slow target's listener, not an average
    (row,) = merged["timeline"]
    assert row["arrivals"] == 10
    assert row["server.listeners"] == 140  # a and b once each: a's second generator saw a
    assert merged["meta"]["capacity_per_s"] == 10.0  # two distinct targets of 5/s
    with pytest.raises(MergeError):
        merge_reports([{**fast, "meta": {"target": "a"}}])
