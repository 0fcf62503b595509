"""A loopback cluster of issue 8's roles, started by a test: origins and edges on one
Redis (state) and one PostgreSQL (store), and nginx in front of the edges. Every node
started is stopped, last first, however the block ends, and none may have logged a
traceback. Shared by the cluster tests (roles, failover, the browser across an edge kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import NO_LAG_DOOR, RunningServer, free_port, start_server, stop_server
from nginx_server import running_nginx


@dataclass
class Cluster:
    origins: list[RunningServer]
    edges: list[RunningServer]
    edge_stream_urls: list[str]
    """Where each edge's live listeners go (its own port, or its stream workers')."""
    nginx: str

    @property
    def origin(self) -> RunningServer:
        return self.origins[0]

    def edge_of(self, live_url: str) -> int:
        """Which edge (index) a join answer's live URL sends the listener to."""
        for index, base in enumerate(self.edge_stream_urls):
            if live_url.startswith(f"{base}/live/"):
                return index
        raise AssertionError(f"not sent to an edge: {live_url}")


def _node(root: Path, name: str, role: str, env: dict[str, str], *more: str) -> RunningServer:
    port = free_port()
    args = ("--role", role, "--public-url", f"http://127.0.0.1:{port}", *more)
    return start_server(root / name, port=port, args=args, **env)


@contextlib.contextmanager
def running_cluster(
    root: Path, redis_url: str, postgres_url: str, origins: int = 1, **env: str
) -> Iterator[Cluster]:
    """`origins` origins, two edges (the second with a stream worker) and nginx in front
    of the edges, with `env` added to every node's environment."""
    env = {
        "TOWNHALL_STATE": redis_url,
        "TOWNHALL_STORE": postgres_url,
        "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",  # every client is 127.0.0.1
        **NO_LAG_DOOR,
        **env,
    }
    started: list[RunningServer] = []
    try:
        for number in range(1, origins + 1):
            started.append(_node(root, f"origin{number}", "origin", env))
        started.append(_node(root, "edge1", "edge", env))
        worker_port = free_port()
        worker = ("--stream-workers", "1", "--stream-port", str(worker_port))
        started.append(_node(root, "edge2", "edge", env, *worker))
        edges = started[origins:]
        upstreams = [f"127.0.0.1:{edge.port}" for edge in edges]
        with running_nginx(root / "nginx", upstreams) as nginx:
            yield Cluster(
                started[:origins],
                edges,
                [edges[0].url, f"http://127.0.0.1:{worker_port}"],
                nginx,
            )
    finally:
        for server in reversed(started):
            stop_server(server)
    for server in started:
        assert "Traceback" not in server.log(), server.log()[-3000:]


async def within(
    seconds: float, probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool]
) -> Any:
    """`probe`'s first value that `accept` takes, polled until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s; last seen: {value!r}")
        await asyncio.sleep(0.1)


async def metric_samples(node: httpx.AsyncClient, admin_token: str, name: str) -> list[Any]:
    """Every sample named `name` on the node's GET /metrics."""
    answer = await node.get("/metrics", headers={"Authorization": f"Bearer {admin_token}"})
    assert answer.status_code == 200, answer.text
    return [
        sample
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == name
    ]


async def hold_stream(url: str, streaming: asyncio.Event) -> None:
    """One listener on the live stream until cancelled."""
    async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["access-control-allow-origin"] == "*"  # any node's page
        async for _ in response.aiter_raw():
            streaming.set()
