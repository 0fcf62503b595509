"""Recordings: written as the space goes, playable after the end and after a hard crash."""

from __future__ import annotations

import asyncio
import io
import time

import av
import httpx
import numpy as np
import pytest

from conftest import start_server, stop_server
from http_helpers import speak_over_http
from tones import ToneTrack, first_onset, steady_tone_power

FREQ = 440.0
PRESENT_DBFS = -30.0
MAX_CRASH_LOSS_S = 2.0
"""What a hard kill may cost: the fragment in flight (0.5 s) plus encoder and network delay."""
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]


async def _host_live_space(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    await http.post("/api/users", json={"username": "host", "password": "password123"})
    token = await http.post("/api/tokens", json={"username": "host", "password": "password123"})
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    space = await http.post(
        "/api/spaces", json={"title": "Recorded", "record": True}, headers=headers
    )
    space_id = space.json()["id"]
    assert (await http.post(f"/api/spaces/{space_id}/start", headers=headers)).status_code == 200
    return space_id, headers


def _decode(body: bytes) -> tuple[np.ndarray, float]:
    with av.open(io.BytesIO(body)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(stream)])
    return samples, len(samples) / 48_000


async def test_recording_after_a_normal_end(server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        space_id, headers = await _host_live_space(http)
        speaker = await speak_over_http(http, space_id, headers, ToneTrack(FREQ, 0.2))
        await asyncio.sleep(3.5)
        ended = await http.post(f"/api/spaces/{space_id}/end", headers=headers)
        await speaker.close()
        assert ended.status_code == 200
        recording_url = ended.json()["recording_url"]
        assert recording_url == f"/api/spaces/{space_id}/recording"
        download = await http.get(recording_url, params={"download": "1"})
        assert download.status_code == 200
        assert download.headers["content-type"] == "audio/mp4"
        assert "attachment" in download.headers["content-disposition"]
        ranged = await http.get(recording_url, headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206 and len(ranged.content) == 100
        replay = await http.get(f"/s/{space_id}/replay")
        assert replay.status_code == 200
    audio, seconds = _decode(download.content)
    assert 3.0 <= seconds <= 6.0
    assert steady_tone_power(audio, 48_000, FREQ) > PRESENT_DBFS


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
async def test_recording_survives_the_server_stopping(tmp_path, how: str) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir)
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=15) as http:
            space_id, headers = await _host_live_space(http)
            tone = ToneTrack(FREQ, 0.2)
            speaker = await speak_over_http(http, space_id, headers, tone)
            await asyncio.sleep(5.0)
            assert tone.tone_started_at is not None
            killed_at = time.time()
            if how == "kill -9":
                first.kill_hard()
            else:
                stop_server(first)
            await speaker.close()
    finally:
        stop_server(first)
    spoken = killed_at - tone.tone_started_at
    on_disk = list((data_dir / "recordings").glob("*.mp4")) + list(
        (data_dir / "recordings").glob("*.m4a")
    )
    assert on_disk, "nothing was on disk when the server stopped"

    second = start_server(data_dir)
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=15) as http:
            snapshot = (await http.get(f"/api/spaces/{space_id}")).json()
            assert snapshot["state"] == "ended"
            assert snapshot["recording_url"]
            body = (await http.get(snapshot["recording_url"])).content
    finally:
        stop_server(second)
    audio, seconds = _decode(body)
    onset = first_onset(audio, 48_000, FREQ, -30.0)
    assert onset is not None, "the tone is not in the recording"
    kept = seconds - onset
    print(f"\n{how}: spoke {spoken:.2f} s before; the recording kept {kept:.2f} s of it")
    assert kept >= spoken - MAX_CRASH_LOSS_S
    assert steady_tone_power(audio[-48_000:], 48_000, FREQ) > PRESENT_DBFS
