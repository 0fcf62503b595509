"""An edge's HLS cache (townhall.service.edge_hls) in front of a real origin: a crowd's
blocking reloads of one playlist state cost the origin one request; answers live as
long as the origin's Cache-Control says; the cache stays within its byte bound; an
origin that does not answer is a refusal, not a crash."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import NO_LAG_DOOR, RunningServer, start_server, stop_server
from http_helpers import live_space, sign_up
from townhall.domain.errors import Conflict, NotFound
from townhall.service.edge_hls import EdgeHls

pytestmark = pytest.mark.slow
CROWD = 50
PLAYLIST_READY_S = 20.0
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "origin", **NO_LAG_DOOR)
    try:
        yield running
    finally:
        stop_server(running)
    assert "Traceback" not in running.log()


async def _live(origin: RunningServer) -> str:
    async with httpx.AsyncClient(base_url=origin.url, timeout=10) as http:
        return str((await live_space(http, await sign_up(http, "host")))["id"])


async def _playlist(edge: EdgeHls, space_id: str) -> str:
    deadline = asyncio.get_running_loop().time() + PLAYLIST_READY_S
    while True:
        answer = await edge.get(space_id, f"/hls/{space_id}/index.m3u8")
        if answer.status == 200 and HINT.search(answer.body.decode()):
            return answer.body.decode()
        assert asyncio.get_running_loop().time() < deadline, answer
        await asyncio.sleep(0.3)


async def test_a_crowd_waiting_for_one_part_costs_the_origin_one_request(
    origin: RunningServer,
) -> None:
    space_id = await _live(origin)

    async def stage_url(_: str) -> str:
        return origin.url

    edge = EdgeHls(stage_url)
    try:
        playlist = await _playlist(edge, space_id)
        hint = HINT.search(playlist)
        assert hint is not None
        blocking = f"/hls/{space_id}/index.m3u8?_HLS_msn={hint[1]}&_HLS_part={hint[2]}"
        before = edge.fetched
        answers = await asyncio.gather(*(edge.get(space_id, blocking) for _ in range(CROWD)))
        assert {answer.status for answer in answers} == {200}
        assert len({answer.body for answer in answers}) == 1
        assert f'URI="{hint[1]}.{hint[2]}.m4s"' in answers[0].body.decode()
        assert edge.fetched == before + 1, "one request to the origin for the whole crowd"
        assert answers[0].headers["cache-control"] == "public, max-age=6"

        again = await edge.get(space_id, blocking)  # kept: max-age=6
        assert again.body == answers[0].body and edge.fetched == before + 1

        plain = f"/hls/{space_id}/index.m3u8"
        for fetched in (before + 2, before + 3):
            await asyncio.sleep(1.5)  # past the plain playlist's max-age (1 s)
            await edge.get(space_id, plain)
            await edge.get(space_id, plain)
            assert edge.fetched == fetched, "fetched once per max-age, then kept"

        missing = await edge.get(space_id, f"/hls/{space_id}/no-such-file.m4s")
        assert missing.status == 404
    finally:
        await edge.close()


async def test_the_cache_keeps_within_its_bytes(origin: RunningServer) -> None:
    space_id = await _live(origin)

    async def stage_url(_: str) -> str:
        return origin.url

    bound = 3_000  # about two playlists
    edge = EdgeHls(stage_url, max_bytes=bound)
    try:
        playlist = await _playlist(edge, space_id)
        names = [line for line in playlist.splitlines() if line.endswith(".m4s")]
        assert names
        for name in [*names, "init.mp4"]:
            answer = await edge.get(space_id, f"/hls/{space_id}/{name}")
            assert answer.status == 200
            assert edge.cached_bytes <= bound
    finally:
        await edge.close()


async def test_no_origin_or_a_silent_one_is_a_refusal() -> None:
    async def nowhere(_: str) -> None:
        return None

    async def silent(_: str) -> str:
        return "http://127.0.0.1:9"  # discard: nothing listens on loopback here

    for stage_url, refusal in ((nowhere, NotFound), (silent, Conflict)):
        edge = EdgeHls(stage_url)
        try:
            with pytest.raises(refusal):
                await edge.get("abc", "/hls/abc/index.m3u8")
        finally:
            await edge.close()
