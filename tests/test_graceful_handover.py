"""Issue 8, a graceful stop: two origins (role all) on one Redis and one PostgreSQL.
SIGTERM the node that holds a live space's stage: it leaves the registry and hands the
space to the other at once (State.leave, State.claim_stage), which starts the stage and
streams the program, rather than after the stopped node's heartbeats expire; the
speaker offers again through it and a listener there hears the speaker's tone (FFT).
And a node told to stop refuses speakers' offers (409 node_stopping): one answered
there would join a stage about to close, and the speaker would go silent.

The heartbeats here expire after 15 s (a 3 s tick), so a take-over by expiry would be
seen only after ~15 s; the hand-over is measured and printed, and bounded generously.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster import within
from conftest import CHEAP_ARGON2, NO_CAPTIONS, NO_LAG_DOOR, RunningServer, running_servers
from http_helpers import sign_up
from test_failover import AFTER_HZ, BEFORE_HZ, PRESENT_DBFS, offer_until_accepted
from tones import Recording, read_live_stream, steady_tone_power
from townhall.config import load_settings
from townhall.domain.errors import Conflict
from townhall.media import SAMPLE_RATE
from townhall.services import build_services

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]

SECRET = "one-deployment-a-graceful-stop"
SLOW_TICK_S = "3"
"""Heartbeats expire after 5 ticks: 15 s."""
HANDED_OVER_WITHIN_S = 8.0
"""Bound on SIGTERM -> the survivor streams the space (generous: a loaded machine; the
expiry alone would take ~15 s)."""
WITHIN_S = 20.0
"""Bound on the speaker's re-offer being answered (generous: a loaded machine)."""
LISTEN_S = 3.0


@pytest.fixture
def origins(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> Iterator[tuple[RunningServer, RunningServer]]:
    env = {
        **NO_LAG_DOOR,
        "TOWNHALL_STATE": redis_url,
        "TOWNHALL_STORE": postgres_url,
        "TOWNHALL_SECRET": SECRET,
        "TOWNHALL_SNAPSHOT_TICK_S": SLOW_TICK_S,
    }
    with running_servers([tmp_path / "a", tmp_path / "b"], **env) as (a, b):
        yield a, b


async def _streams_here(b: httpx.AsyncClient, space_id: str) -> bool:
    """B answers joins with its own (relative) stream URL, and that stream flows."""
    joined = (await b.post(f"/api/spaces/{space_id}/join")).json()
    if not joined.get("live_url", "").startswith("/"):
        return False
    async with b.stream("GET", joined["live_url"]) as stream:
        if stream.status_code != 200:
            return False
        async for chunk in stream.aiter_raw():
            return bool(chunk)
    return False


async def test_a_sigterm_hands_the_space_to_the_other_origin_at_once(
    origins: tuple[RunningServer, RunningServer],
) -> None:
    node_a, node_b = origins
    async with (
        httpx.AsyncClient(base_url=node_a.url, timeout=15) as a,
        httpx.AsyncClient(base_url=node_b.url, timeout=15) as b,
    ):
        host = await sign_up(b, "host")
        created = await b.post("/api/spaces", json={"title": "Hand over"}, headers=host.headers)
        space_id = created.json()["id"]
        started = await a.post(f"/api/spaces/{space_id}/start", headers=host.headers)
        assert started.status_code == 200, started.text
        joined = (await b.post(f"/api/spaces/{space_id}/join")).json()
        assert joined["live_url"].startswith(node_a.url), "the stage is on A, where it started"
        speaker = await offer_until_accepted(b, space_id, host, BEFORE_HZ, HANDED_OVER_WITHIN_S)
        try:
            node_a.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            await within(
                HANDED_OVER_WITHIN_S, lambda: _streams_here(b, space_id), lambda here: here
            )  # fmt: skip
            handed_s = time.monotonic() - stopping
            print(f"\nSIGTERM to A -> B streams the space: {handed_s:.1f} s")
            await speaker.close()  # its stage connection dropped: it offers again
            speaker = await offer_until_accepted(b, space_id, host, AFTER_HZ, WITHIN_S)
            heard = Recording()
            joined = (await b.post(f"/api/spaces/{space_id}/join")).json()
            url = str(b.base_url.join(joined["live_url"]))
            await read_live_stream(url, heard, time.time() + LISTEN_S)
            power = steady_tone_power(heard.samples(), SAMPLE_RATE, AFTER_HZ)
            assert power > PRESENT_DBFS, f"the speaker's re-offer is not on B's stage: {power}"
        finally:
            await speaker.close()
        node_a.process.wait(timeout=15)  # (uvicorn re-raises the signal once stopped)
        ended = await b.post(f"/api/spaces/{space_id}/end", headers=host.headers)
        assert ended.status_code == 200, ended.text
    assert f"space {space_id} handed over to" in node_a.log()
    assert f"took over the stage of space {space_id}" in node_b.log()
    assert "Traceback" not in node_a.log() + node_b.log()


async def test_a_node_told_to_stop_refuses_speakers_offers(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    env = {**CHEAP_ARGON2, **NO_CAPTIONS, **NO_LAG_DOOR, "TOWNHALL_STORE": store}
    services = build_services(load_settings(env, data_dir=tmp_path / "node", port=18003))
    await services.start()
    try:
        host = await services.accounts.sign_up("host", "correct horse")
        space = await services.spaces.create(host, "Stopping")
        space_id = space.data["id"]
        await services.spaces.go_live(host, space_id)
        services.stop_signalled()
        with pytest.raises(Conflict) as refused:
            await services.spaces.connect_speaker(host, space_id, "v=0 an offer")
        assert refused.value.code == "node_stopping"
    finally:
        await services.stop()
