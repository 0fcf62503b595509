"""LL-HLS: partial segments cut from the CMAF fragments, their playlist, and blocking
reload (`_HLS_msn`, `_HLS_part`) answered as soon as the part exists.

The packager is checked with synthetic fragments (no clock, no server); then a real
`townhall serve` with a speaker: blocking reloads follow the parts as they are made
(their timing is printed and checked against the declared durations), the parts carry
the speaker's tone (FFT), and ffmpeg still plays the playlist without a complaint.
"""

from __future__ import annotations

import asyncio
import io
import re
import statistics
import time
from collections.abc import Iterator

import av
import httpx
import numpy as np
import pytest

from browser import NO_LAG_DOOR
from conftest import RunningServer, start_server, stop_server
from http_helpers import assert_error, speak_over_http
from test_e2e_audio import _account, _ffmpeg_hls
from test_nginx_cache import edge  # noqa: F401  (the nginx edge of deploy/nginx)
from tones import ToneTrack, dominant_frequencies
from townhall.audience.encoder import AAC_FRAME_SAMPLES
from townhall.audience.fmp4 import Fragment
from townhall.audience.hls import HlsPackager
from townhall.audience.llhls import ReloadRequest
from townhall.config import AudioSettings

RATE = 48_000
SETTINGS = AudioSettings()
TONE_HZ = 660.0
PART_RE = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="(\d+)\.(\d+)\.m4s"')
BLOCKING_ROUNDS = 15


@pytest.fixture
def server(tmp_path) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    """A server whose door does not queue on loop lag (this is about HLS; see NO_LAG_DOOR)."""
    running = start_server(tmp_path / "server", **NO_LAG_DOOR)
    try:
        yield running
    finally:
        stop_server(running)


def fragments(count: int, frames=(10, 9)):  # type: ignore[no-untyped-def]
    """Fragments of alternately 10 and 9 AAC frames (~200 ms), as the Fragmenter cuts."""
    start = 0
    for i in range(count):
        samples = frames[i % len(frames)] * AAC_FRAME_SAMPLES
        yield Fragment(i + 1, start, samples, RATE, f"<fragment {i}>".encode())
        start += samples


def parts_in(playlist: str) -> list[tuple[int, int, float]]:
    return [(int(m[2]), int(m[3]), float(m[1])) for m in PART_RE.finditer(playlist)]


def test_each_fragment_is_a_part_at_once_and_segments_join_their_parts() -> None:
    clock = iter(range(1_000_000, 2_000_000)).__next__
    hls = HlsPackager(SETTINGS, clock=lambda: float(clock()))
    made = list(fragments(14))
    hls.add_fragment(made[0])
    assert hls.part(0, 0) == made[0].data
    assert parts_in(hls.playlist().decode()) == []  # nothing listed before a whole segment
    while hls.latest_sequence is None:
        hls.add_fragment(made.pop(1))
    hls.add_fragment(made.pop(1))  # the first part of segment 1: listed at once
    playlist = hls.playlist().decode()
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=" in playlist
    assert f"#EXT-X-PART-INF:PART-TARGET={hls.part_target_s:.5f}" in playlist
    assert parts_in(playlist)[-1][:2] == (1, 0)
    assert playlist.index('URI="1.0.m4s"') > playlist.index("\n0.m4s\n")  # after segment 0
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="1.1.m4s"' in playlist
    assert "#EXT-X-PROGRAM-DATE-TIME:" in playlist

    for fragment in made[1:]:
        hls.add_fragment(fragment)
    first = hls.segment_info(0)
    assert first is not None
    n = len(parts_in_segment := [p for p in parts_in(hls.playlist().decode()) if p[0] == 0])
    assert first.data == b"".join(hls.part(0, i) or b"" for i in range(n))
    assert abs(sum(d for _, _, d in parts_in_segment) - first.duration_s) < 1e-4
    # Every part fits the declared target (RFC 8216bis: a part never exceeds PART-TARGET).
    assert all(d <= hls.part_target_s for _, _, d in parts_in(hls.playlist().decode()))
    assert hls.longest_part_s <= hls.part_target_s


def test_blocking_reload_is_ready_exactly_when_its_part_exists() -> None:
    hls = HlsPackager(SETTINGS)
    made = fragments(30)
    hls.add_fragment(next(made))  # segment 0, part 0: made, not listed yet
    assert not hls.is_ready(ReloadRequest(0, 0))
    assert not hls.is_ready(ReloadRequest(0))  # the whole segment is not there yet
    while hls.latest_sequence is None:
        hls.add_fragment(next(made))
    assert hls.is_ready(ReloadRequest(0, 0))
    assert not hls.is_ready(ReloadRequest(1, 0))
    hls.add_fragment(next(made))
    assert hls.is_ready(ReloadRequest(1, 0))
    assert not hls.is_ready(ReloadRequest(1, 1))
    parts_of_0 = len([p for p in parts_in(hls.playlist().decode()) if p[0] == 0])
    assert hls.is_ready(ReloadRequest(0))
    # A player that guessed one more part than segment 0 had is answered by the playlist
    # that holds the next segment's first part.
    assert hls.is_ready(ReloadRequest(0, parts_of_0))
    assert hls.is_too_far_ahead(ReloadRequest(4))
    assert not hls.is_too_far_ahead(ReloadRequest(3))
    hls.close()
    assert hls.is_ready(ReloadRequest(3, 7))  # an ended stream answers at once


def test_parts_are_kept_only_for_the_newest_segments() -> None:
    hls = HlsPackager(SETTINGS)
    for fragment in fragments(200):
        hls.add_fragment(fragment)
    listed = {sequence for sequence, _, _ in parts_in(hls.playlist().decode())}
    newest = hls.latest_sequence
    assert newest is not None and listed <= set(range(newest - 3, newest + 2))
    assert hls.part(0, 0) is None  # long gone; the segment is what stays in the window
    assert hls.part(newest, 0) is not None


def test_reload_queries_are_checked() -> None:
    assert ReloadRequest.from_query(None, None) is None
    assert ReloadRequest.from_query("12", "3") == ReloadRequest(12, 3)
    for msn, part in [("x", None), ("-1", None), (None, "2"), ("1", "2.5"), ("9" * 13, None)]:
        try:
            ReloadRequest.from_query(msn, part)
        except ValueError:
            continue
        raise AssertionError(f"{msn!r}, {part!r} accepted")


@pytest.mark.usefixtures("loopback_ice")
async def test_blocking_reload_follows_the_parts_live(server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        _, host = await _account(http, "llhls_host")
        space = (await http.post("/api/spaces", json={"title": "LL"}, headers=host)).json()
        assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).is_success
        speaker = await speak_over_http(http, space["id"], host, ToneTrack(TONE_HZ, 0.0))
        try:
            url = (await http.post(f"/api/spaces/{space['id']}/join")).json()["hls_url"]
            folder = url.rsplit("/", 1)[0]
            await asyncio.sleep(1.5)
            playlist = (await http.get(url)).text
            target = float(re.search(r"PART-TARGET=([\d.]+)", playlist)[1])  # type: ignore[index]
            msn, part, _ = parts_in(playlist)[-1]
            answers, intervals, waits = [], [], []
            last = time.monotonic()
            for _ in range(BLOCKING_ROUNDS):
                part += 1
                asked = time.monotonic()
                response = await http.get(url, params={"_HLS_msn": msn, "_HLS_part": part})
                now = time.monotonic()
                assert response.status_code == 200, response.text
                assert "max-age" in response.headers["cache-control"]
                listed = {(s, i) for s, i, _ in parts_in(response.text)}
                if (msn, part) not in listed:  # the segment ended first: next one's part 0
                    msn, part = msn + 1, 0
                    assert (msn, part) in listed, response.text
                answers.append(response.text)
                waits.append(now - asked)
                intervals.append(now - last)
                last = now
            durations = [d for text in answers for _, _, d in parts_in(text)]
            print(
                f"\nLL-HLS: part target {target:.3f} s; parts {min(durations):.3f}-"
                f"{max(durations):.3f} s; blocking reload answered every"
                f" {statistics.median(intervals):.3f} s (median), waited median"
                f" {statistics.median(waits):.3f} s, max {max(waits):.3f} s"
            )
            assert max(durations) <= target
            assert min(durations) > 0.5 * target
            # One answer per part made: the cadence is the parts' duration, not a poll.
            assert statistics.median(intervals) < 3 * target

            # The parts are the program: init + the newest parts decode to the tone.
            init = (await http.get(f"{folder}/init.mp4")).content
            newest = parts_in(answers[-1])[-6:]
            body = init + b"".join(
                [(await http.get(f"{folder}/{s}.{i}.m4s")).content for s, i, _ in newest]
            )
            print(f"parts {newest}: {len(body) - len(init)} bytes")
            with av.open(io.BytesIO(body)) as container:
                pcm = np.concatenate(
                    [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
                )
            print(f"decoded {pcm.size} samples, peak {np.abs(pcm).max():.3f}")
            assert abs(dominant_frequencies(pcm, RATE, 1)[0] - TONE_HZ) < 5

            await _ffmpeg_hls(server.url + url)
        finally:
            await speaker.close()


async def test_bad_reload_requests_get_clear_errors(server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        _, host = await _account(http, "llhls_bad")
        space = (await http.post("/api/spaces", json={"title": "LL"}, headers=host)).json()
        assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).is_success
        url = (await http.post(f"/api/spaces/{space['id']}/join")).json()["hls_url"]
        folder = url.rsplit("/", 1)[0]
        assert_error(await http.get(url, params={"_HLS_msn": "x"}), 422)
        assert_error(await http.get(url, params={"_HLS_part": "1"}), 422)
        assert_error(await http.get(url, params={"_HLS_msn": "999999"}), 422, "hls_msn_ahead")
        started = time.monotonic()
        assert (await http.get(f"{folder}/999999.0.m4s")).status_code == 404
        assert time.monotonic() - started < 1.0  # never coming: not waited for


CROWD = 20


async def test_nginx_answers_a_crowd_of_blocking_reloads_with_one_origin_request(
    server,
    edge,  # noqa: F811
) -> None:
    """The deploy template keys the playlist cache on the query: every player blocked on
    the same part shares one request to the origin (the others wait on nginx's lock)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
        _, host = await _account(http, "llhls_edge")
        space = (await http.post("/api/spaces", json={"title": "LL"}, headers=host)).json()
        assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).is_success
        joined = (await http.post(f"/api/spaces/{space['id']}/join")).json()
        assert "hls_url" in joined, joined
        url = joined["hls_url"]
    async with httpx.AsyncClient(base_url=edge, timeout=15) as crowd:
        for _ in range(50):  # the first whole segment, then parts are listed
            listed = parts_in((await crowd.get(url)).text)
            if listed:
                break
            await asyncio.sleep(0.2)
        msn, part, _ = listed[-1]
        query = {"_HLS_msn": msn, "_HLS_part": part + 1}
        answers = await asyncio.gather(*(crowd.get(url, params=query) for _ in range(CROWD)))
    statuses = [a.headers.get("x-cache-status") for a in answers]
    print(f"\n{CROWD} players blocked on one part through nginx: {statuses.count('MISS')} MISS")
    assert all(a.status_code == 200 for a in answers)
    assert len({a.text for a in answers}) == 1
    assert statuses.count("MISS") == 1
    assert statuses.count("HIT") == CROWD - 1
