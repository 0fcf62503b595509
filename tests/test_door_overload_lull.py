"""Issue 6, section 1, end to end: the waiting room after a short overload.

The walk that found it, on one node with default settings and a live space:
5,000 concurrent snapshot GETs (loop lag past the guard) while 3,000 people join,
each from its own loopback /24. On the old code every one of them was told "six
hours" and to come back in a minute, and after the overload nobody was admitted
until somebody new joined. Here they come back when told, with their token, and
all must be in within ADMIT_ALL_S; the ETA they are told is never a sentinel; and
3,000 distinct addresses do not switch attack mode on by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import RunningServer, start_server, stop_server
from townhall.admission.waiting_room import MAX_ETA_S
from townhall.edge.limits import raise_open_file_limit
from townhall.loadtest.client import HttpClient, RequestError

SNAPSHOT_CROWD = 5_000
JOINERS = 3_000
ADMIT_ALL_S = 45.0
"""The issue's bound: every joiner admitted within this long of the start."""
OVERLOAD_S = 4.0
"""How long the snapshot crowd keeps asking (each of them at most GETS_EACH times)."""
GETS_EACH = 20
RESUME_S = 2.0
"""Admission resumes within this long of the overload's end (issue 6)."""
STATS_EVERY_S = 0.2
REQUEST_TIMEOUT_S = 20.0

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path / "node")  # defaults: the one node
    try:
        yield server
    finally:
        stop_server(server)


def joiner_address(i: int) -> str:
    """Each joiner in its own /24: 127.a.b.1 (the loopback /8 is all local on Linux)."""
    return f"127.{10 + i // 256}.{i % 256}.1"


def snapshot_address(i: int) -> str:
    return f"127.{100 + i // 250}.{i % 250}.2"


@dataclass
class Joiner:
    first_eta_s: float | None = None
    waited_from: float = 0.0
    admitted_at: float | None = None
    etas: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _join_until_admitted(
    http: HttpClient, path: str, address: str, me: Joiner, deadline: float
) -> None:
    """Join, then come back when told with the token, until a ticket or the deadline."""
    loop = asyncio.get_running_loop()
    body: dict[str, str] = {}
    while loop.time() < deadline:
        try:
            answer = await http.request(
                "POST", path, json_body=body, local_addr=address, timeout=REQUEST_TIMEOUT_S
            )
        except RequestError as error:
            me.errors.append(error.kind)
            await asyncio.sleep(1.0)
            continue
        if answer.status != 200:
            me.errors.append(f"{answer.status}:{answer.error_code()}")
            await asyncio.sleep(answer.retry_after() or 1.0)
            continue
        document = answer.json()
        if "ticket" in document:
            me.admitted_at = loop.time()
            return
        wait = document["wait"]
        me.etas.append(wait["eta_s"])
        if me.first_eta_s is None:
            me.first_eta_s, me.waited_from = wait["eta_s"], loop.time()
        body = {"token": wait["token"]}
        await asyncio.sleep(min(wait["retry_after_s"], max(0.0, deadline - loop.time())))


async def _snapshot_crowd(http: HttpClient, path: str, address: str, until: float) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(GETS_EACH):
        if loop.time() >= until:
            return
        try:
            await http.request("GET", path, local_addr=address, timeout=REQUEST_TIMEOUT_S)
        except RequestError:
            await asyncio.sleep(0.2)


async def _stats(http: HttpClient) -> dict:
    return (await http.request("GET", "/api/stats", timeout=REQUEST_TIMEOUT_S)).json()


async def _live_space(http: HttpClient) -> str:
    login = {"username": "host", "password": "password123"}
    await http.request("POST", "/api/users", json_body=login)
    token = (await http.request("POST", "/api/tokens", json_body=login)).json()["token"]
    host = [("Authorization", f"Bearer {token}")]
    space = (
        await http.request("POST", "/api/spaces", json_body={"title": "crowd"}, headers=host)
    ).json()
    started = await http.request("POST", f"/api/spaces/{space['id']}/start", headers=host)
    assert started.status == 200
    return space["id"]


async def test_the_line_after_an_overload_admits_everyone(node: RunningServer) -> None:
    assert raise_open_file_limit() > SNAPSHOT_CROWD + JOINERS + 500
    control = HttpClient("127.0.0.1", node.port)
    crowd = HttpClient("127.0.0.1", node.port, max_idle=SNAPSHOT_CROWD + JOINERS)
    loop = asyncio.get_running_loop()
    try:
        space_id = await _live_space(control)
        start = loop.time()
        deadline = start + ADMIT_ALL_S
        overload_until = start + OVERLOAD_S
        gets = [
            asyncio.create_task(
                _snapshot_crowd(
                    crowd, f"/api/spaces/{space_id}", snapshot_address(i), overload_until
                )
            )
            for i in range(SNAPSHOT_CROWD)
        ]
        await asyncio.sleep(0.3)  # the snapshot crowd is on its way: now the joins
        joiners = [Joiner() for _ in range(JOINERS)]
        joins = [
            asyncio.create_task(
                _join_until_admitted(
                    crowd, f"/api/spaces/{space_id}/join", joiner_address(i), joiners[i], deadline
                )
            )
            for i in range(JOINERS)
        ]
        await asyncio.gather(*gets)
        # The overload has ended when the node answers again: its loop stays stalled for
        # a moment after the crowd's last answer (measured: 1-2 s on the shared 2 cores).
        lull = await _stats(control)
        lull_at = loop.time()
        admitted_at_lull = lull["queues"].get(space_id, {}).get("admitted", 0)
        resumed_after: float | None = None
        while resumed_after is None and loop.time() < deadline and not all(j.done() for j in joins):
            await asyncio.sleep(STATS_EVERY_S)
            queue = (await _stats(control))["queues"].get(space_id, {})
            if queue.get("admitted", 0) > admitted_at_lull or not queue.get("waiting", 0):
                resumed_after = loop.time() - lull_at
        await asyncio.gather(*joins)
        done = await _stats(control)
    finally:
        await crowd.aclose()
        await control.aclose()

    admitted = [j for j in joiners if j.admitted_at is not None]
    queued = [j for j in joiners if j.first_eta_s is not None]
    last_in = max((j.admitted_at - start for j in admitted), default=float("nan"))
    print(
        f"\nqueued {len(queued)} of {JOINERS} (shed {done['counts'].get('shed', 0)}); "
        f"admitted {len(admitted)}, the last {last_in:.1f} s after the start; "
        f"waiting at the lull {lull['queues'].get(space_id, {}).get('waiting')}, "
        f"lag then {lull['loop_lag_ms']} ms; resumed {resumed_after} s after the lull; "
        f"attack mode {done['attack_mode']}"
    )
    assert len(admitted) == JOINERS, (
        f"{JOINERS - len(admitted)} never admitted; errors "
        f"{sorted({e for j in joiners for e in j.errors})[:10]}\n{node.log()[-2000:]}"
    )
    assert queued, "nobody queued: the overload did not happen and the test proves nothing"
    etas = [eta for j in queued for eta in j.etas]
    assert max(etas) < MAX_ETA_S / 10, f"a sentinel ETA was told: {max(etas)}"
    assert resumed_after is not None and resumed_after <= RESUME_S, resumed_after
    assert not done["attack_mode"], done["attack_reason"]
    assert "Traceback" not in node.log()
