"""Live features across two role-`all` nodes on one redis-server and one store (as in
test_state_two_nodes.py): a follower whose event stream is open on node B hears "live
now" for a space started on node A."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer
from http_helpers import sse_events
from test_state_two_nodes import _two_nodes

pytestmark = [pytest.mark.slow]
WAIT_S = 20.0
"""Generous: a loaded 2-core machine; what is measured is that it arrives at all."""


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    yield from _two_nodes(tmp_path, redis_url)


def _account(http: httpx.Client, name: str) -> tuple[str, dict[str, str]]:
    credentials = {"username": name, "password": "correct horse"}
    created = http.post("/api/users", json=credentials)
    assert created.status_code == 201, created.text
    token = http.post("/api/tokens", json=credentials).json()["token"]
    return created.json()["id"], {"authorization": f"Bearer {token}"}


def test_a_follower_connected_to_node_b_hears_live_now_from_node_a(
    nodes: tuple[RunningServer, RunningServer],
) -> None:
    a, b = nodes
    with (
        httpx.Client(base_url=a.url, timeout=WAIT_S) as on_a,
        httpx.Client(base_url=b.url, timeout=WAIT_S) as on_b,
    ):
        host_id, host = _account(on_a, "famous")
        _, fan = _account(on_b, "fan")
        assert on_b.post("/api/users/famous/follow", headers=fan).status_code == 200
        space_id = on_a.post("/api/spaces", json={"title": "Now"}, headers=host).json()["id"]
        with on_b.stream("GET", "/api/me/events", headers=fan) as stream:
            assert stream.status_code == 200
            events = sse_events(stream.iter_lines(), within_s=WAIT_S)
            assert next(events)[0] == "ready"
            started = on_a.post(f"/api/spaces/{space_id}/start", headers=host)
            assert started.status_code == 200, started.text
            kind, data = next(events)
        assert kind == "notification"
        told = json.loads(data)
        assert told["kind"] == "space_live" and told["space_id"] == space_id
        assert told["host"] == {"id": host_id, "username": "famous"}
    for node in nodes:
        assert "Traceback" not in node.log()
