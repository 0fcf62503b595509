"""The per-space captions choice is kept with the space: it survives a restart of the
node and holds on whichever node starts the space; past the node-wide limit a space
goes live without captions and its snapshot, on every node, says why.

Real `townhall serve` processes (one recognizer process per captioned live space);
two nodes share a real redis-server and one SQLite store, as test_state_two_nodes does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import NO_LAG_DOOR, start_server, stop_server
from http_helpers import Account, assert_error, sign_up

pytestmark = pytest.mark.slow

CAPTIONER_OF_ONE = {
    "TOWNHALL_CAPTIONS_ENABLED": "1",
    "TOWNHALL_CAPTIONS_MAX_SPACES": "1",
    **NO_LAG_DOOR,
}
NO_CAPTIONER = {"TOWNHALL_CAPTIONS_ENABLED": "0", **NO_LAG_DOOR}
SHARED_SECRET = "captions-choice-two-nodes"
SEEN_WITHIN_S = 10.0
"""What one node decided shows on the other (the decision takes ~1 s; generous on a
loaded machine)."""


async def _create(http: httpx.AsyncClient, host: Account, title: str, **fields: Any) -> str:
    created = await http.post("/api/spaces", json={"title": title, **fields}, headers=host.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _start(http: httpx.AsyncClient, host: Account, space_id: str) -> dict[str, Any]:
    started = await http.post(f"/api/spaces/{space_id}/start", headers=host.headers)
    assert started.status_code == 200, started.text
    return dict(started.json())


def _captions(snapshot: dict[str, Any]) -> tuple[bool, bool, str | None]:
    return snapshot["captions_requested"], snapshot["captions"], snapshot["captions_withheld"]


async def _eventually(http: httpx.AsyncClient, space_id: str, expected: tuple[Any, ...]) -> None:
    deadline = time.monotonic() + SEEN_WITHIN_S
    while True:
        answer = await http.get(f"/api/spaces/{space_id}")
        assert answer.status_code == 200, answer.text
        seen = _captions(answer.json())
        if seen == expected:
            return
        assert time.monotonic() < deadline, f"{space_id}: {seen} is not {expected}"
        await asyncio.sleep(0.2)


async def test_the_choice_survives_a_restart_and_the_limit_is_answered(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    server = start_server(data_dir, **CAPTIONER_OF_ONE)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            host = await sign_up(http, "host")
            quiet = await _create(http, host, "No captions", captions=False)
            first = await _create(http, host, "Captioned by default")
            second = await _create(http, host, "Asks for captions", captions=True)
            snapshot = (await http.get(f"/api/spaces/{quiet}")).json()
            assert _captions(snapshot) == (False, False, None)
    finally:
        stop_server(server)

    server = start_server(data_dir, **CAPTIONER_OF_ONE)  # the choices come back from the store
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert _captions(await _start(http, host, quiet)) == (False, False, None)
            assert _captions(await _start(http, host, first)) == (True, True, None)
            full = await _start(http, host, second)  # one captioned space is this node's limit
            assert full["state"] == "live"
            assert _captions(full) == (True, False, "node_limit")
            assert_error(await http.get(f"/api/spaces/{second}/captions"), 404, "no_captions")
            assert (await http.get(f"/api/spaces/{first}/captions")).status_code == 200
            master = await http.get(f"/hls/{second}/master.m3u8")
            assert master.status_code == 200 and "SUBTITLES" not in master.text
            for space_id in (quiet, first, second):
                ended = await http.post(f"/api/spaces/{space_id}/end", headers=host.headers)
                assert ended.status_code == 200, ended.text
            after = (await http.get(f"/api/spaces/{second}")).json()
            assert _captions(after) == (True, False, "node_limit")  # kept with the record
    finally:
        stop_server(server)
    assert "Traceback" not in server.log()
    assert "goes live without captions" in server.log()


async def test_the_choice_holds_on_the_node_that_starts_the_space(
    tmp_path: Path, redis_url: str
) -> None:
    shared = tmp_path / "shared"
    env = {"TOWNHALL_STATE": redis_url, "TOWNHALL_SECRET": SHARED_SECRET}
    with_captioner = start_server(shared, **env, **CAPTIONER_OF_ONE)
    try:
        without = start_server(shared, **env, **NO_CAPTIONER)
        try:
            async with (
                httpx.AsyncClient(base_url=with_captioner.url, timeout=30) as a,
                httpx.AsyncClient(base_url=without.url, timeout=30) as b,
            ):
                host = await sign_up(a, "host")
                here = await _create(a, host, "Started where captions run")
                there = await _create(a, host, "Started where none run")
                assert_error(
                    await b.post(
                        "/api/spaces", json={"title": "x", "captions": True}, headers=host.headers
                    ),
                    422,
                    "captions_unavailable",
                )
                assert _captions(await _start(a, host, here)) == (True, True, None)
                await _eventually(b, here, (True, True, None))
                started = _captions(await _start(b, host, there))
                # Placement (nodes/placement.py) may put the stage on either node (a node
                # just started can read busy): the choice follows the node that holds it.
                joined = (await b.post(f"/api/spaces/{there}/join")).json()
                on_a = joined["live_url"].startswith(with_captioner.url)
                expected = (True, True, None) if on_a else (True, False, "no_captioner")
                assert started == expected, (joined["live_url"], started)
                await _eventually(a, there, expected)
                for space_id in (here, there):
                    ended = await a.post(f"/api/spaces/{space_id}/end", headers=host.headers)
                    assert ended.status_code == 200, ended.text
        finally:
            stop_server(without)
    finally:
        stop_server(with_captioner)
    assert "Traceback" not in with_captioner.log() + without.log()
