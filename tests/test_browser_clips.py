"""A listener makes a clip of a live space in the browser and plays it: the clip's
own player carries the host's tone (Web Audio analyser), and its page passes axe-core
with no CSP complaint. Needs the loopback-only namespace of scripts/isolated."""

from __future__ import annotations

import httpx
import pytest

from browser import (
    BROWSER_TEST,
    PASSWORD,
    attach_element_analyser,
    axe_violations,
    collect_csp_violations,
    go_live_with_mic,
    host_goes_live,
    median_spectrum,
    screenshot,
    sign_up,
    wait_for_tone,
)
from conftest import FAKE_MIC_HZ

pytestmark = [*BROWSER_TEST]

TONE_WAIT_MS = 10_000
MIN_TONE_DB = -70.0
PEAK_TOLERANCE_HZ = 15.0
SNAPSHOT_STALE_S = 6
AUDIO_BEFORE_CLIP_MS = 4_000
"""The host's mic has been live this long when the listener clips."""


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_listener_makes_a_clip_and_plays_it(new_page, browser_server, size: str) -> None:
    host = new_page("desktop")
    space_id = host_goes_live(host, browser_server.url, f"clip_host_{size}", "Clip me")

    listener = new_page(size)
    csp = collect_csp_violations(listener)
    listener.goto(f"{browser_server.url}/s/{space_id}")
    listener.wait_for_selector("#clip:enabled")
    listener.wait_for_timeout(AUDIO_BEFORE_CLIP_MS)
    listener.click("#clip")
    listener.wait_for_selector("#clip-audio")
    assert "ready" in listener.inner_text("#player-status")
    screenshot(listener, f"listen-clip-made-{size}")
    assert attach_element_analyser(listener, "#clip-audio") == "running"
    listener.evaluate("document.querySelector('#clip-audio').play()")
    wait_for_tone(listener, FAKE_MIC_HZ, MIN_TONE_DB, TONE_WAIT_MS)
    heard = median_spectrum(listener, FAKE_MIC_HZ, reads=5, interval_ms=200)
    print(f"\nthe clip plays {heard.peak_hz:.1f} Hz at {heard.tone_db:.1f} dBFS")
    assert abs(heard.peak_hz - FAKE_MIC_HZ) < PEAK_TOLERANCE_HZ
    assert listener.evaluate("document.querySelector('#clip-audio').currentTime") > 0.5
    assert axe_violations(listener) == []

    listener.click("#clip-page")
    listener.wait_for_selector("#clip:not([hidden])")
    assert listener.inner_text("#title") == "Clip me"
    share = listener.input_value("#share-link")
    assert share.startswith(f"{browser_server.url}/c/")
    listener.wait_for_function("() => document.querySelector('#clip-audio').readyState >= 1")
    duration = listener.evaluate("document.querySelector('#clip-audio').duration")
    assert 3.0 <= duration <= 30.4  # all the space had (seconds of mic), at most 30 s
    screenshot(listener, f"clip-page-{size}")
    assert axe_violations(listener) == []
    assert csp == []

    host.wait_for_selector("#clip-list a")  # the studio lists the space's clips
    assert axe_violations(host) == []
    host.click("#clip-list button.danger")
    host.wait_for_selector("#clips-section", state="hidden")
    clip_id = share.rsplit("/", 1)[1]
    assert httpx.get(f"{browser_server.url}/api/clips/{clip_id}").status_code == 404


def test_the_host_clips_a_range_of_the_recording(new_page, browser_server) -> None:
    host = new_page("desktop")
    csp = collect_csp_violations(host)
    sign_up(host, browser_server.url, "replay_host")
    credentials = {"username": "replay_host", "password": PASSWORD}
    token = httpx.post(f"{browser_server.url}/api/tokens", json=credentials).json()["token"]
    created = httpx.post(
        f"{browser_server.url}/api/spaces",
        json={"title": "Recorded", "record": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    space_id = created.json()["id"]
    host.goto(f"{browser_server.url}/s/{space_id}/studio")
    go_live_with_mic(host)
    host.wait_for_timeout(AUDIO_BEFORE_CLIP_MS)
    host.click("#end")
    host.click("#end")  # the second press confirms
    host.wait_for_selector("#summary:not([hidden])")

    # The snapshot may be served stale for 5 s (stale-while-revalidate): the page would
    # still say "live" if opened at once from the same browser.
    host.wait_for_timeout(SNAPSHOT_STALE_S * 1000)
    host.goto(f"{browser_server.url}/s/{space_id}/replay")
    host.wait_for_selector("#recording:not([hidden])")
    host.wait_for_selector("#clip-form:not([hidden])")
    host.fill("#clip-form input[name=start_s]", "1")
    host.fill("#clip-form input[name=length_s]", "2")
    host.click("#clip-form button[type=submit]")
    host.wait_for_selector("#clip-status a")
    screenshot(host, "replay-clip-made-desktop")
    assert axe_violations(host) == []
    host.click("#clip-status a")
    host.wait_for_selector("#clip:not([hidden])")
    host.wait_for_function("() => document.querySelector('#clip-audio').readyState >= 1")
    duration = host.evaluate("document.querySelector('#clip-audio').duration")
    assert 1.9 <= duration <= 2.2
    assert attach_element_analyser(host, "#clip-audio") == "running"
    host.evaluate("document.querySelector('#clip-audio').play()")
    wait_for_tone(host, FAKE_MIC_HZ, MIN_TONE_DB, TONE_WAIT_MS)
    assert csp == []
