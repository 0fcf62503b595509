"""Arrivals caused by "X is live": all at once without pacing, in waves that follow the
server's capacity with it; and the comparison run against a real `townhall serve`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx

from conftest import start_server, stop_server
from townhall.domain.pacing import Load, PacingPolicy
from townhall.loadtest.cli import main as loadtest_main
from townhall.loadtest.notified import NotifyPlan, load_from_stats, notified_arrivals
from townhall.loadtest.notify_compare import COMPARISON_NAME

IDLE = Load(admissions_per_s=10, max_listeners=1_000, listeners=0, waiting=0)


def _arrivals(plan: NotifyPlan, load: Load = IDLE, until_s: float = 1_000.0):
    told: list[tuple[float, int]] = []
    times = list(
        notified_arrivals(plan, until_s=until_s, rng=random.Random(3), load=lambda: load, told=told)
    )
    return times, told


def test_unpaced_tells_everyone_at_once() -> None:
    times, told = _arrivals(NotifyPlan(followers=500, paced=False, reaction_s=2.0))
    assert told == [(0.0, 500)]
    assert len(times) == 500 and times == sorted(times)
    assert sum(t < 2.0 for t in times) > 250  # most of the crowd in the first seconds


def test_paced_waves_follow_the_admission_rate() -> None:
    plan = NotifyPlan(followers=100, paced=True, reaction_s=0.5, policy=PacingPolicy(1.0))
    times, told = _arrivals(plan)
    assert told[:3] == [(0.0, 10), (1.0, 20), (2.0, 30)]
    assert told[-1] == (9.0, 100)
    assert len(times) == 100 and times == sorted(times)
    per_second = [sum(s <= t < s + 1 for t in times) for s in range(12)]
    assert max(per_second) < 25  # about 10 a second, never the whole crowd


def test_a_queue_at_the_door_slows_the_waves_and_the_horizon_bounds_arrivals() -> None:
    busy = Load(admissions_per_s=10, max_listeners=1_000, listeners=0, waiting=8)
    _, told = _arrivals(NotifyPlan(followers=10, paced=True), load=busy)
    assert [n for _, n in told][:3] == [2, 4, 6]
    times, _ = _arrivals(NotifyPlan(followers=1_000, paced=False, reaction_s=50.0), until_s=5.0)
    assert 0 < len(times) < 1_000 and max(times) < 5.0


def test_the_servers_stats_are_the_load() -> None:
    stats = {"max_admissions_per_s": 20.0, "max_listeners": 100.0, "listeners": 7.0, "waiting": 3}
    assert load_from_stats(stats) == Load(20.0, 100, 7, 3)
    assert load_from_stats({}) == Load(0.0, 0, 0, 0)


def test_paced_notifications_keep_the_waiting_room_short(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "server",
        TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S="10",
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0",
        TOWNHALL_ADMISSION_ATTACK_MODE="off",
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            credentials = {"username": "famous", "password": "correct horse"}
            http.post("/api/users", json=credentials)
            token = http.post("/api/tokens", json=credentials).json()["token"]
            auth = {"authorization": f"Bearer {token}"}
            space = http.post("/api/spaces", json={"title": "Live"}, headers=auth).json()["id"]
            assert http.post(f"/api/spaces/{space}/start", headers=auth).status_code == 200
        report_dir = tmp_path / "report"
        code = loadtest_main(
            [server.url, "--space", space, "--quiet", "--notify-followers", "120",
             "--reaction-s", "1.5", "--hold-s", "20", "--duration", "20",
             "--report-dir", str(report_dir)]
        )  # fmt: skip
        assert code == 0
        runs = json.loads((report_dir / COMPARISON_NAME).read_text())["runs"]
        unpaced, paced = runs["unpaced"], runs["paced"]
        assert unpaced["arrivals"] == paced["arrivals"] == 120
        peak = {name: max(s["waiting"] for s in run["per_second"]) for name, run in runs.items()}
        assert peak["paced"] < peak["unpaced"] / 2, peak
        peak_arrivals = {
            name: max(s["arrivals"] for s in run["per_second"]) for name, run in runs.items()
        }
        assert peak_arrivals["paced"] < peak_arrivals["unpaced"], peak_arrivals
        assert paced["ttfa_s"]["p90"] < unpaced["ttfa_s"]["p90"]
        assert (report_dir / "paced" / "report.html").exists()
    finally:
        stop_server(server)
    assert "Traceback" not in server.log()
