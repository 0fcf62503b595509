"""Live captions end to end: espeak-ng speech sent through the stage by an aiortc
speaker comes back as cues (JSON, WebVTT, the HLS subtitle rendition) while the space
is live, and as WebVTT beside the recording after it ends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from conftest import start_server, stop_server
from http_helpers import assert_error, sign_up, speak_over_http
from speech import SpeechTrack, with_pauses, word_accuracy

SENTENCES = [
    "welcome to the town hall everyone",
    "today we talk about the weather and the news",
    "thank you all for coming tonight",
]
MIN_WORD_ACCURACY = 0.5
"""pocketsphinx's US model on espeak-ng's en-us+f2 voice: 0.86 on these sentences fed
straight to the recognizer (see bench/README.md for a larger set). Through Opus, the
mixer and the queue, below 0.5 something broke."""
MAX_CAPTION_DELAY_S = 5.0
"""From the end of the speech to its cue on the API: endpointing (~0.3 s of silence),
decoding, the 0.2 s collection tick and our 0.5 s poll; the issue asks for ~3 s."""
POLL_S = 0.5
CONNECT_BUDGET_S = 20.0
"""The speaker's connection and the 2 s lead before the speech starts, at most."""
LISTEN_AFTER_S = 7.0
"""Polling goes on this long after the speech: past MAX_CAPTION_DELAY_S."""
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]


async def _poll_cues(
    http: httpx.AsyncClient, space_id: str, track: SpeechTrack, deadline: float
) -> list[tuple[float, dict[str, object]]]:
    """Every new cue with the wall time it was first seen, polling as the page does,
    until LISTEN_AFTER_S after the track's speech ended."""
    seen: list[tuple[float, dict[str, object]]] = []
    since = None
    while time.time() < deadline:
        ended = track.speech_ended_at
        if ended is not None and time.time() > ended + LISTEN_AFTER_S:
            break
        params = {} if since is None else {"since": since}
        answer = await http.get(f"/api/spaces/{space_id}/captions", params=params)
        assert answer.status_code == 200, answer.text
        for cue in answer.json()["cues"]:
            seen.append((time.time(), cue))
            since = cue["end_s"]
        await asyncio.sleep(POLL_S)
    return seen


async def test_speech_on_stage_becomes_captions_live_in_hls_and_in_the_replay(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "server", TOWNHALL_CAPTIONS_ENABLED="1")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            host = await sign_up(http, "host")
            created = await http.post(
                "/api/spaces", json={"title": "Captioned", "record": True}, headers=host.headers
            )
            assert created.status_code == 201, created.text
            space_id = created.json()["id"]
            started = await http.post(f"/api/spaces/{space_id}/start", headers=host.headers)
            assert started.status_code == 200 and started.json()["captions"] is True

            track = SpeechTrack(with_pauses(SENTENCES), start_after_s=2.0)
            speaker = await speak_over_http(http, space_id, host.headers, track)
            speech_s = len(track.samples) / 48_000
            try:
                # Then the subtitle rendition, while the HLS window (12 s) still holds
                # the last sentence: its segments settle 5 s after the audio.
                deadline = time.time() + speech_s + CONNECT_BUDGET_S + LISTEN_AFTER_S
                seen = await _poll_cues(http, space_id, track, deadline)
                master = await http.get(f"/hls/{space_id}/master.m3u8")
                subtitles = await http.get(f"/hls/{space_id}/captions.m3u8")
                vtt_segments = [
                    (await http.get(f"/hls/{space_id}/{line}")).text
                    for line in subtitles.text.splitlines()
                    if line.endswith(".vtt")
                ]
            finally:
                await speaker.close()
            ended = await http.post(f"/api/spaces/{space_id}/end", headers=host.headers)
            assert ended.status_code == 200
            replay_vtt = await http.get(f"/api/spaces/{space_id}/captions.vtt")
            replay_json = await http.get(f"/api/spaces/{space_id}/captions")
            snapshot = (await http.get(f"/api/spaces/{space_id}")).json()
    finally:
        stop_server(server)

    heard = " ".join(str(cue["text"]) for _, cue in seen)
    accuracy = word_accuracy(" ".join(SENTENCES), heard)
    assert track.speech_ended_at is not None
    delay = seen[-1][0] - track.speech_ended_at if seen else float("inf")
    first_start, last_end = float(seen[0][1]["start_s"]), float(seen[-1][1]["end_s"])  # type: ignore[arg-type]
    print(f"\nexpected: {' '.join(SENTENCES)}\nheard:    {heard}")
    print(f"word accuracy {accuracy:.2f}; last cue {delay:.1f} s after the speech ended")
    assert accuracy >= MIN_WORD_ACCURACY
    assert delay <= MAX_CAPTION_DELAY_S
    assert last_end >= first_start + speech_s - 1.0, "the last sentence has no cue"
    starts = [float(cue["start_s"]) for _, cue in seen]  # type: ignore[arg-type]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), "no cue twice"

    assert master.status_code == 200
    assert "TYPE=SUBTITLES" in master.text and 'URI="captions.m3u8"' in master.text
    assert "index.m3u8" in master.text
    assert subtitles.status_code == 200 and vtt_segments, subtitles.text
    assert all(v.startswith("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:") for v in vtt_segments)
    in_segments = " ".join(vtt_segments)
    assert sum(str(cue["text"]) in in_segments for _, cue in seen) >= 2

    assert replay_vtt.status_code == 200 and replay_vtt.text.startswith("WEBVTT")
    assert replay_vtt.headers["content-type"].startswith("text/vtt")
    assert [c["text"] for c in replay_json.json()["cues"]] == [str(c["text"]) for _, c in seen]
    assert (server.data_dir / "recordings" / f"{space_id}.vtt").exists()
    assert snapshot["captions"] is True and snapshot["recording_url"]


async def test_caption_requests_that_cannot_be_answered_are_clear_refusals(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path / "server", TOWNHALL_CAPTIONS_ENABLED="1")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            host = await sign_up(http, "host")
            plain = await http.post(
                "/api/spaces", json={"title": "No captions", "captions": False},
                headers=host.headers,
            )  # fmt: skip
            space_id = plain.json()["id"]
            await http.post(f"/api/spaces/{space_id}/start", headers=host.headers)
            assert_error(await http.get(f"/api/spaces/{space_id}/captions"), 404, "no_captions")
            master = await http.get(f"/hls/{space_id}/master.m3u8")
            assert master.status_code == 200 and "SUBTITLES" not in master.text
            for since in ("abc", "-1", "nan", "1e308"):
                answer = await http.get(f"/api/spaces/{space_id}/captions?since={since}")
                assert_error(answer, 422)
            assert_error(await http.get("/api/spaces/nope/captions"), 404)
            bad = await http.post(
                "/api/spaces", json={"title": "x", "captions": "yes"}, headers=host.headers
            )
            assert_error(bad, 422)
    finally:
        stop_server(server)
    assert "Traceback" not in server.log()
