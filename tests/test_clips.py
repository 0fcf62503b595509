"""Clips: the last seconds of a live space and a range of a recording, cut from the
program's own fragments (no re-encode), decoded here and checked by FFT; the rules
(who, how long, how often) and expiry through the real API."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import av
import httpx
import numpy as np
import pytest

from http_helpers import Account, assert_error, live_space, sign_up, speak_over_http
from tones import ToneTrack, first_onset, steady_tone_power
from townhall.app import create_app
from townhall.audience.clip_window import ClipWindow
from townhall.audience.fmp4 import Fragment
from townhall.audience.program import ProgramOutput
from townhall.config import AudioSettings, ClipSettings
from townhall.domain.errors import Unavailable
from townhall.domain.spaces import Space, SpaceState
from townhall.media import FRAME_SAMPLES
from townhall.service.clips import Clips, CutSlots, clip_path
from townhall.store import SqlStore
from townhall.store.clips import SqlClipStore

RATE = 48_000
BEFORE_HZ = 440.0
AFTER_HZ = 660.0
PRESENT_DBFS = -30.0
ABSENT_DB_BELOW = 25.0
"""A tone that is not in the clip reads at least this far below the one that is."""
FRAGMENT_S = 0.2


def _decode(body: bytes) -> tuple[np.ndarray, float, str]:
    with av.open(io.BytesIO(body)) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        samples = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(stream)])
    return samples, len(samples) / RATE, codec


def _fragment(sequence: int, seconds: float = FRAGMENT_S) -> Fragment:
    samples = round(seconds * RATE)
    return Fragment(sequence, sequence * samples, samples, RATE, b"")


# -- the window (pure) -------------------------------------------------------------------


def test_the_window_keeps_just_enough_fragments_for_its_seconds() -> None:
    window = ClipWindow(1.0)
    for sequence in range(100):
        window.add(_fragment(sequence))
    assert len(window) == 5 and window.held_s == pytest.approx(1.0)
    last = window.last(0.5)
    assert [f.sequence for f in last] == [97, 98, 99]  # whole fragments, >= 0.5 s
    assert [f.sequence for f in window.last(30)] == [95, 96, 97, 98, 99]


# -- through the API, with real audio ------------------------------------------------------


async def _speak_then_switch(
    client: httpx.AsyncClient, host: Account, space_id: str, before_s: float, after_s: float
):
    tone = ToneTrack(BEFORE_HZ)
    speaker = await speak_over_http(client, space_id, host.headers, tone)
    await asyncio.sleep(before_s)
    tone.freq = AFTER_HZ
    await asyncio.sleep(after_s)
    return speaker


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_ice")
async def test_a_listener_clips_the_last_seconds_of_a_live_space(
    client: httpx.AsyncClient,
) -> None:
    host = await sign_up(client, "clip_host")
    space = await live_space(client, host)
    speaker = await _speak_then_switch(client, host, space["id"], 3.0, 3.0)
    try:
        made = await client.post(f"/api/spaces/{space['id']}/clips", json={"seconds": 2})
    finally:
        await speaker.close()
    assert made.status_code == 201, made.text
    clip = made.json()
    assert clip["url"] == f"/api/clips/{clip['id']}"
    assert clip["page_url"] == f"/c/{clip['id']}"
    assert clip["source"] == "live" and clip["expires_at"].endswith("Z")
    audio = await client.get(clip["url"])
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/mp4"
    assert "immutable" in audio.headers["cache-control"]
    samples, seconds, codec = _decode(audio.content)
    assert codec == "aac"
    assert 2.0 <= seconds <= 2.0 + 2 * FRAGMENT_S
    assert clip["duration_s"] == pytest.approx(seconds, abs=0.05)
    after = steady_tone_power(samples, RATE, AFTER_HZ)
    before = steady_tone_power(samples, RATE, BEFORE_HZ)
    print(f"\nlive clip {seconds:.2f} s: {AFTER_HZ:g} Hz {after:.1f} dBFS, "
          f"{BEFORE_HZ:g} Hz {before:.1f} dBFS")  # fmt: skip
    assert after > PRESENT_DBFS
    assert before < after - ABSENT_DB_BELOW, "the clip is not the last seconds"

    page = await client.get(clip["page_url"])
    assert page.status_code == 200 and b"clip.js" in page.content
    info = await client.get(f"{clip['url']}/info")
    assert info.json()["id"] == clip["id"]
    listed = await client.get(f"/api/spaces/{space['id']}/clips")
    assert [c["id"] for c in listed.json()["clips"]] == [clip["id"]]

    stranger = await sign_up(client, "stranger")
    assert_error(await client.delete(clip["url"], headers=stranger.headers), 403)
    assert_error(await client.delete(clip["url"]), 401)
    deleted = await client.delete(clip["url"], headers=host.headers)
    assert deleted.status_code == 204
    assert_error(await client.get(clip["url"]), 404, "clip_not_found")


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_ice")
async def test_the_host_clips_a_range_of_the_recording(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "rec_host")
    space = await live_space(client, host, record=True)
    speaker = await _speak_then_switch(client, host, space["id"], 3.0, 3.0)
    ended = await client.post(f"/api/spaces/{space['id']}/end", headers=host.headers)
    await speaker.close()
    recording = await client.get(ended.json()["recording_url"])
    whole, _, _ = _decode(recording.content)
    switch_s = first_onset(whole, RATE, AFTER_HZ, -30.0)
    assert switch_s is not None and switch_s > 2.0
    url = f"/api/spaces/{space['id']}/clips"

    listener = await sign_up(client, "rec_listener")
    # One second on each side of the switch, clear of it and of the start (a loaded
    # machine may take a second or more to connect the speaker: 3 s of the first tone).
    range_before = {"start_s": switch_s - 1.3, "end_s": switch_s - 0.3}
    assert_error(await client.post(url, json=range_before, headers=listener.headers), 403)
    assert_error(await client.post(url, json=range_before), 401)
    assert_error(await client.post(url, json={"start_s": 1.0}, headers=host.headers), 422)
    too_far = {"start_s": 1.0, "end_s": switch_s + 60}
    assert_error(await client.post(url, json=too_far, headers=host.headers), 422, "invalid_end_s")
    assert_error(await client.post(url, json={}, headers=host.headers), 409, "space_ended")

    for wanted, present, absent in (
        (range_before, BEFORE_HZ, AFTER_HZ),
        ({"start_s": switch_s + 0.3, "end_s": switch_s + 1.3}, AFTER_HZ, BEFORE_HZ),
    ):
        made = await client.post(url, json=wanted, headers=host.headers)
        assert made.status_code == 201, made.text
        assert made.json()["source"] == "recording"
        samples, seconds, codec = _decode((await client.get(made.json()["url"])).content)
        assert codec == "aac" and seconds == pytest.approx(1.0, abs=0.1)
        loud = steady_tone_power(samples, RATE, present)
        assert loud > PRESENT_DBFS
        assert steady_tone_power(samples, RATE, absent) < loud - ABSENT_DB_BELOW


async def test_clip_requests_that_cannot_be_served_are_refused_clearly(
    client: httpx.AsyncClient,
) -> None:
    host = await sign_up(client, "rules_host")
    created = await client.post("/api/spaces", json={"title": "Later"}, headers=host.headers)
    url = f"/api/spaces/{created.json()['id']}/clips"
    assert_error(await client.post(url, json={}), 409, "space_not_live")
    for bad in ({"seconds": 0}, {"seconds": 31}, {"seconds": "ten"}, {"end_s": 3}):
        assert_error(await client.post(url, json=bad), 422)
    assert_error(
        await client.post(url, content=b"{", headers={"content-type": "application/json"}), 400
    )
    assert_error(await client.post("/api/spaces/nope/clips", json={}), 404)
    assert_error(await client.get("/api/clips/aaaaaaaaaaaa"), 404, "clip_not_found")
    assert_error(await client.get("/api/clips/" + "x" * 5000), 404, "clip_not_found")
    assert_error(await client.get("/api/clips/aaaaaaaaaaaa/info"), 404, "clip_not_found")
    live = await live_space(client, host, title="Silent so far")
    assert_error(await client.post(f"/api/spaces/{live['id']}/clips", json={}), 409,
                 "nothing_to_clip")  # fmt: skip


@pytest.fixture
async def short_lived_client(settings) -> AsyncIterator[httpx.AsyncClient]:
    """Clips that live one second, at most two per address per minute."""
    clips = ClipSettings(ttl_days=1.0 / 86_400, per_address_per_minute=2)
    app = create_app(replace(settings, clips=clips))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_ice")
async def test_clips_expire_and_each_address_has_an_allowance(
    short_lived_client: httpx.AsyncClient,
) -> None:
    client = short_lived_client
    host = await sign_up(client, "ttl_host")
    space = await live_space(client, host)
    speaker = await speak_over_http(client, space["id"], host.headers, ToneTrack(BEFORE_HZ))
    try:
        await asyncio.sleep(3.5)
        url = f"/api/spaces/{space['id']}/clips"
        # Three different lengths: three different clips (the same moment would be shared).
        first = await client.post(url, json={"seconds": 1})
        second = await client.post(url, json={"seconds": 2})
        third = await client.post(url, json={"seconds": 3})
    finally:
        await speaker.close()
    assert first.status_code == second.status_code == 201
    refused = assert_error(third, 429)
    assert refused["retry_after_s"] >= 1 and third.headers["retry-after"]
    clip_url = first.json()["url"]
    assert (await client.get(clip_url)).status_code == 200
    await asyncio.sleep(1.2)
    assert_error(await client.get(clip_url), 404, "clip_expired")
    clips_service = client._transport.app.services.clips  # type: ignore[attr-defined]
    assert await clips_service.sweep() == 2
    assert not list(clips_service._directory.glob("*.m4a"))
    assert_error(await client.get(clip_url), 404, "clip_not_found")


async def test_cuts_run_a_few_at_a_time_and_the_rest_are_told_to_come_back() -> None:
    slots = CutSlots(in_flight=1, waiting=1)
    release = threading.Event()
    first = asyncio.create_task(slots.run(lambda: release.wait(5)))
    second = asyncio.create_task(slots.run(lambda: "second"))
    await asyncio.sleep(0.05)
    with pytest.raises(Unavailable) as busy:
        await slots.run(lambda: "third")
    assert busy.value.code == "clips_busy" and busy.value.retry_after_s > 0
    release.set()
    assert await first is True and await second == "second"
    assert await slots.run(lambda: "again") == "again"  # the slots are free again


class _OneLiveSpace:
    """What Clips reads of Spaces, for one live space whose program the test feeds."""

    def __init__(self, space: Space, program: ProgramOutput) -> None:
        self.space = space
        self.rooms = {space.id: SimpleNamespace(program=program)}

    async def record(self, space_id: str) -> Space:
        return self.space


def _push_tone(program: ProgramOutput, seconds: float) -> None:
    t = np.arange(FRAME_SAMPLES)
    for _ in range(round(seconds * RATE / FRAME_SAMPLES)):
        start = program.stats.frames_pushed * FRAME_SAMPLES
        wave = 0.3 * 32767 * np.sin(2 * np.pi * BEFORE_HZ * (t + start) / RATE)
        program.push(wave.astype(np.int16))


async def test_a_crowd_clipping_the_same_moment_shares_one_clip(tmp_path) -> None:
    store = await SqlStore(f"sqlite:///{tmp_path / 'db.sqlite3'}").open()
    try:
        host = await store.create_user("hosthosthost", "host", "hash")
        space = Space("spacespacesp", "Crowd", host, SpaceState.LIVE, datetime.now(UTC))
        await store.save_space(space)
        program = ProgramOutput(AudioSettings())
        _push_tone(program, 3.0)
        clips = Clips(SqlClipStore(store), _OneLiveSpace(space, program),  # type: ignore[arg-type]
                      ClipSettings(), directory=tmp_path, live_window_s=30.0)  # fmt: skip
        crowd = await asyncio.gather(
            *(clips.clip_live(None, f"10.0.0.{n}", space.id, 2.0) for n in range(20))
        )
        assert len({clip.id for clip in crowd}) == 1
        assert len(list(tmp_path.glob("*.m4a"))) == 1
        _push_tone(program, 0.5)  # a later moment is another clip
        later = await clips.clip_live(None, "10.0.1.1", space.id, 2.0)
        assert later.id != crowd[0].id
        await clips.delete(host, later.id)
        again = await clips.clip_live(None, "10.0.1.2", space.id, 2.0)  # deleted: cut again
        assert again.id != later.id and clip_path(tmp_path, again.id).exists()
    finally:
        await store.close()
