"""GET /metrics: a real server with a stream worker, scraped and parsed with
prometheus_client's own parser; a join moves the join counters, a listener on the
worker appears under its space, HLS media fetched shows an HLS listener, and the
endpoint is refused without the operator token."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RunningServer, start_server, stop_server
from http_helpers import assert_error
from townhall.audience.fanout import FanoutStats
from townhall.audience.hls_audience import HlsAudience
from townhall.edge.reports import ListenerReports, ReportRefused, WorkerFigures, parse_figures
from townhall.metrics.node import Retired, RoomFigures

ADMIN_TOKEN = "metrics-operator-token-0123456789abcdef"
SECRET = "metrics-test-secret-0123456789abcdef"
DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "townhall.json"
METRIC_NAME = re.compile(r"\btownhall_[a-z0-9_]+")
WAIT_S = 15.0
POLL_S = 0.2
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

pytestmark = pytest.mark.slow


# -- pure parts -------------------------------------------------------------------------


def test_hls_listeners_are_recent_media_clients_and_bounded() -> None:
    audience = HlsAudience(window_s=6.0, max_addresses=2)
    audience.served(500, now=0.0)  # a playlist: bytes, no listener
    audience.served(1000, now=1.0, address="192.0.2.1")
    audience.served(1000, now=2.0, address="192.0.2.2")
    audience.served(1000, now=3.0, address="192.0.2.1")
    assert audience.listeners(now=3.0) == 2
    assert audience.bytes_served == 3500 and audience.requests == 4
    assert audience.listeners(now=8.5) == 1  # 192.0.2.2 last fetched at 2.0
    audience.served(1, now=9.0, address="192.0.2.3")
    audience.served(1, now=9.0, address="192.0.2.4")
    assert audience.listeners(now=9.0) == 2 and audience.saturated


def test_worker_figures_are_checked() -> None:
    good = parse_figures({"bytes_out": 10, "relay_lag_s": 0.25, "future_figure": 3})
    assert good == WorkerFigures(bytes_out=10, relay_lag_s=0.25)
    assert parse_figures(None) == WorkerFigures()
    for bad in ([], {"bytes_out": -1}, {"bytes_out": "1"}, {"relay_lag_s": float("nan")},
                {"listeners": True}):  # fmt: skip
        with pytest.raises(ReportRefused):
            parse_figures(bad)


def test_reports_keep_each_workers_last_figures() -> None:
    reports = ListenerReports()
    reports.replace("w0", {"s1": 2}, WorkerFigures(listeners=2, bytes_out=100))
    reports.replace("w0", {"s1": 3}, WorkerFigures(listeners=3, bytes_out=250))
    reports.replace("w1", {"s1": 1})
    assert reports.figures() == {"w0": WorkerFigures(listeners=3, bytes_out=250)}
    assert reports.counts() == {"w0": {"s1": 3}, "w1": {"s1": 1}}


def test_bytes_of_an_ended_space_stay_in_the_total() -> None:
    retired = Retired()
    live, hls = FanoutStats(bytes_written=100), HlsAudience(bytes_served=40)
    retired.update([RoomFigures("s1", live, hls)])
    live.bytes_written = 150  # written after the last scrape, before the space ended
    assert retired.update([]) == []
    assert (retired.live_bytes, retired.hls_bytes) == (150, 40)
    again = RoomFigures("s1", FanoutStats(bytes_written=7), HlsAudience())
    retired.update([again])  # the same space live again: a new fan-out
    retired.update([RoomFigures("s1", FanoutStats(), HlsAudience())])
    assert retired.live_bytes == 157


def test_a_running_space_is_not_retired_at_each_scrape() -> None:
    """Each scrape builds new RoomFigures around the same fan-out: its bytes must count
    once in the total, however many scrapes there were."""
    retired = Retired()
    live, hls = FanoutStats(bytes_written=100), HlsAudience(bytes_served=40)
    for _ in range(3):
        retired.update([RoomFigures("s1", live, hls)])
    assert (retired.live_bytes, retired.hls_bytes, retired.cut_slow) == (0, 0, 0)


# -- a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("metrics"),
        TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN,
        TOWNHALL_SECRET=SECRET,
        TOWNHALL_EDGE_STREAM_WORKERS="1",
    )
    try:
        yield server
    finally:
        stop_server(server)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: httpx.AsyncClient) -> Samples:
    answer = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(http: httpx.AsyncClient, check, what: str) -> Samples:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while True:
        samples = await scrape(http)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {samples}"
        await asyncio.sleep(POLL_S)


async def _live_space(http: httpx.AsyncClient) -> str:
    await http.post("/api/users", json={"username": "host", "password": "password123"})
    token = await http.post("/api/tokens", json={"username": "host", "password": "password123"})
    host = {"Authorization": f"Bearer {token.json()['token']}"}
    space = (await http.post("/api/spaces", json={"title": "metrics"}, headers=host)).json()
    assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).status_code == 200
    return space["id"]


async def test_the_grafana_dashboard_uses_only_metrics_a_node_exports(node: RunningServer) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }
    assert len(used) >= 10, used
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        answer = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    exported = set()
    for family in text_string_to_metric_families(answer.text):
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
        if family.type == "counter":
            exported.add(family.name + "_total")
    assert used <= exported, f"not exported: {sorted(used - exported)}"


async def test_metrics_need_the_operator_token(node: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        assert_error(await http.get("/metrics"), 401)
        assert_error(await http.get("/metrics", headers={"Authorization": "Bearer x" * 8}), 403)


async def test_joins_listeners_and_bytes_move(node: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        space_id = await _live_space(http)
        before = await scrape(http)
        assert value(before, "townhall_listeners", space=space_id, format="live") == 0
        join = (await http.post(f"/api/spaces/{space_id}/join")).json()
        after_join = await scrape(http)
        for counter in ("townhall_joins_total", "townhall_admissions_total"):
            assert value(after_join, counter) == value(before, counter) + 1, counter
        assert join["live_url"].startswith(f"http://127.0.0.1:{node.port + 1}/")
        await _worker_up(http, f"http://127.0.0.1:{node.port + 1}/healthz")
        async with http.stream("GET", join["live_url"]) as stream:
            assert stream.status_code == 200
            chunks = stream.aiter_raw()
            await anext(chunks)
            listening = await until(
                http,
                lambda s: (
                    value(s, "townhall_listeners", space=space_id, format="live") == 1
                    and value(s, "townhall_bytes_out_total", format="live", process=_worker(s)) > 0
                ),
                "the worker's listener in the space's count",
            )
        worker = _worker(listening)
        assert value(listening, "townhall_worker_listeners", process=worker) == 1
        assert 0 <= value(listening, "townhall_relay_lag_seconds", process=worker) < 5
        assert value(listening, "townhall_live_spaces") >= 1
        await until(
            http,
            lambda s: value(s, "townhall_listeners", space=space_id, format="live") == 0,
            "the listener who left to leave the count",
        )
        await _fetch_hls_media(http, join["hls_url"])
        hls = await scrape(http)
        assert value(hls, "townhall_listeners", space=space_id, format="hls") == 1
        assert value(hls, "townhall_bytes_out_total", format="hls", process="main") > 0


async def _worker_up(http: httpx.AsyncClient, health_url: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            if (await http.get(health_url)).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(POLL_S)
    raise AssertionError("the stream worker did not come up")


def _worker(samples: Samples) -> str:
    """The stream worker's process label, as its report names it."""
    for name, labels in samples:
        if name == "townhall_worker_listeners":
            return dict(labels)["process"]
    return "no-worker-yet"


async def _fetch_hls_media(http: httpx.AsyncClient, hls_url: str) -> None:
    """The playlist, then its first segment or part once there is one."""
    deadline = time.monotonic() + WAIT_S
    folder = hls_url.rsplit("/", 1)[0]
    while time.monotonic() < deadline:
        playlist = (await http.get(hls_url)).text
        media = re.findall(r'^(?!#)(\S+\.m4s)$|URI="([^"]+\.m4s)"', playlist, re.MULTILINE)
        names = [a or b for a, b in media]
        if names:
            answer = await http.get(f"{folder}/{names[0]}")
            assert answer.status_code == 200, answer.text
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"no HLS media in {WAIT_S} s")
