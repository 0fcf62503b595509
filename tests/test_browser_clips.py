"""A listener makes a clip of a live space in the browser and plays it: the clip's
own player carries the host's tone (Web Audio analyser), and its page passes axe-core
with no CSP complaint. Needs the loopback-only namespace of scripts/isolated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import (
    NO_LAG_DOOR,
    attach_element_analyser,
    axe_violations,
    chromium_available,
    collect_csp_violations,
    create_space,
    go_live_with_mic,
    median_spectrum,
    page_factory,
    screenshot,
    sign_up,
    wait_for_tone,
)
from conftest import FAKE_MIC_HZ, RunningServer, start_server, stop_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
]

UI_TIMEOUT_MS = 20_000
TONE_WAIT_MS = 10_000
MIN_TONE_DB = -70.0
PEAK_TOLERANCE_HZ = 15.0
AUDIO_BEFORE_CLIP_MS = 4_000
"""The host's mic has been live this long when the listener clips."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "server", **NO_LAG_DOOR)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_listener_makes_a_clip_and_plays_it(chromium, server, size: str) -> None:
    with page_factory(chromium, UI_TIMEOUT_MS) as new_page:
        host = new_page("desktop")
        sign_up(host, server.url, f"clip_host_{size}")
        space_id = create_space(host, "Clip me")
        go_live_with_mic(host)

        listener = new_page(size)
        csp = collect_csp_violations(listener)
        listener.goto(f"{server.url}/s/{space_id}")
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
        assert share.startswith(f"{server.url}/c/")
        listener.wait_for_function("() => document.querySelector('#clip-audio').readyState >= 1")
        duration = listener.evaluate("document.querySelector('#clip-audio').duration")
        assert 3.0 <= duration <= 30.4  # all the space had (seconds of mic), at most 30 s
        screenshot(listener, f"clip-page-{size}")
        assert axe_violations(listener) == []
        assert csp == []
