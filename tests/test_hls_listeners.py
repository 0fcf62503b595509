"""HLS listeners count in the snapshot, and its peak outlives the end.

A real `townhall serve`: three players (three browsers behind one address, told apart by
User-Agent) poll the space's playlist; the snapshot's `listeners` shows them within a
tick or two, `peak_listeners` keeps the most, and after the end the ended snapshot still
carries the peak for the host's summary. Players that stop polling leave the count once
the window (3 s here) has passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import within
from conftest import RunningServer, start_server, stop_server
from http_helpers import live_space, sign_up

pytestmark = pytest.mark.slow
WINDOW_S = 3.0
COUNTED_S = 4.0
"""Two snapshot ticks and some slack for a loaded machine."""
PLAYERS = ("hls.js/1 Chromium", "AppleCoreMedia/1", "Lavf/60")


@pytest.fixture
def hls_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "server", TOWNHALL_AUDIO_HLS_LISTENER_WINDOW_S=str(WINDOW_S))
    try:
        yield running
    finally:
        stop_server(running)


async def test_hls_pollers_are_listeners_and_the_peak_is_kept_after_the_end(
    hls_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=hls_server.url, timeout=10) as http:
        host = await sign_up(http, "host")
        space = await live_space(http, host)
        space_id = space["id"]
        assert space["listeners"] == 0 and space["peak_listeners"] == 0
        playlist = f"/hls/{space_id}/index.m3u8"

        async def poll(players: tuple[str, ...]) -> None:
            for player in players:
                answer = await http.get(playlist, headers={"user-agent": player})
                assert answer.status_code == 200, answer.text

        async def snapshot() -> dict[str, Any]:
            await poll(PLAYERS[:2])  # two keep playing throughout
            return (await http.get(f"/api/spaces/{space_id}")).json()

        await poll(PLAYERS)
        seen = await within(COUNTED_S, snapshot, lambda s: s["listeners"] == 3)
        assert seen["peak_listeners"] == 3
        seen = await within(COUNTED_S + WINDOW_S, snapshot, lambda s: s["listeners"] == 2)
        assert seen["peak_listeners"] == 3, "the third stopped: the peak stays"

        ended = await http.post(f"/api/spaces/{space_id}/end", headers=host.headers)
        assert ended.status_code == 200, ended.text
        assert ended.json()["listeners"] == 0
        assert ended.json()["peak_listeners"] == 3
        later = (await http.get(f"/api/spaces/{space_id}")).json()
        assert later["state"] == "ended" and later["peak_listeners"] == 3
