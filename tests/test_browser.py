"""End to end in a real browser: a host speaks into Chromium's fake microphone
(a 440 Hz tone), a second, anonymous browser context plays the space, and its
<audio> element really advances and really carries the tone; when the host
mutes, the tone really stops at the listener's ear.

Runs headless Debian Chromium through Playwright against `townhall serve`;
WebRTC needs the loopback-only namespace of scripts/isolated.
"""

from __future__ import annotations

import statistics
import time

import pytest

from browser import (
    attach_analyser,
    chromium_available,
    launch_chromium,
    player_state,
    spectrum,
    wait_for_tone_gone,
    write_tone_wav,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
]

TONE_HZ = 440.0
HOST = "host_browser"
PASSWORD = "correct horse battery"
UI_TIMEOUT_MS = 20_000
"""Generous: a loaded 2-core CI machine starts Chromium and aiortc slowly."""
LISTEN_S = 4.0
MIN_ADVANCE_S = 1.5
SPECTRUM_READS = 8
MIN_TONE_DB = -70.0
"""The browser's noise suppression and gain control take the tone down ~20 dB
(to about -41 dBFS in the analyser) but never near this."""
MIN_TONE_SNR_DB = 25.0
"""The 440 Hz bins over the median bin: measured > 100 dB; AAC noise would still pass."""
PEAK_TOLERANCE_HZ = 15.0
SILENT_DB = -90.0
MUTE_TO_SILENCE_MAX_S = 5.0
"""Bound on host mute -> silence at the listener; measured ~0.5 s, printed."""


def sign_up_and_create_space(page, base_url: str) -> str:
    page.goto(base_url + "/")
    page.fill("#auth-form input[name=username]", HOST)
    page.fill("#auth-form input[name=password]", PASSWORD)
    page.click("#auth-form button[value=signup]")
    page.wait_for_selector("#create-form", state="visible")
    page.fill("#create-form input[name=title]", "Tone check")
    page.click("#create-form button[type=submit]")
    page.wait_for_url("**/studio")
    return page.url.split("/s/")[1].split("/")[0]


def go_live_with_mic(page) -> None:
    page.click("#start")
    page.wait_for_selector("#state .state-live")
    page.click("#mic")
    page.wait_for_function(
        "document.querySelector('#mic-status').textContent.includes('live on stage')"
    )


def open_and_play(page, base_url: str, space_id: str) -> float:
    """Opens the listen page, presses play; returns seconds from press to playing."""
    page.goto(f"{base_url}/s/{space_id}")
    page.wait_for_selector("#play:enabled")
    assert HOST in page.inner_text("#stage")
    pressed_at = time.monotonic()
    page.click("#play")
    page.wait_for_function("window.townhallPlayer.state === 'playing'")
    return time.monotonic() - pressed_at


def test_listener_hears_the_host_live(server, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    tone = write_tone_wav(tmp_path / "tone.wav", TONE_HZ)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, tone)
        try:
            host_context = browser.new_context()
            host_context.set_default_timeout(UI_TIMEOUT_MS)
            host = host_context.new_page()
            space_id = sign_up_and_create_space(host, server.url)
            go_live_with_mic(host)

            listener_context = browser.new_context()  # anonymous: no cookie
            listener_context.set_default_timeout(UI_TIMEOUT_MS)
            listener = listener_context.new_page()
            to_playing = open_and_play(listener, server.url, space_id)
            print(f"\nplay pressed -> playing: {to_playing:.2f} s")
            assert attach_analyser(listener) == "running"

            before = player_state(listener)
            spectra, lags = [], []
            for _ in range(SPECTRUM_READS):
                listener.wait_for_timeout(LISTEN_S * 1000 / SPECTRUM_READS)
                spectra.append(spectrum(listener, TONE_HZ))
                now = player_state(listener)
                if now["bufferedEnd"] is not None:
                    lags.append(now["bufferedEnd"] - now["currentTime"])
            after = player_state(listener)
            advanced = after["currentTime"] - before["currentTime"]

            print(f"player: {after}")
            print(f"currentTime advanced {advanced:.2f} s in {LISTEN_S:.1f} s")
            print(
                f"playhead behind the newest received audio: median"
                f" {statistics.median(lags):.2f} s, max {max(lags):.2f} s"
            )
            for s in spectra:
                print(f"  peak {s.peak_hz:6.1f} Hz  {s.tone_db:6.1f} dBFS  snr {s.snr_db:5.1f} dB")

            assert after["state"] == "playing"
            assert after["delivery"] == "mse"
            assert advanced > MIN_ADVANCE_S
            assert statistics.median(s.tone_db for s in spectra) > MIN_TONE_DB
            assert statistics.median(s.snr_db for s in spectra) > MIN_TONE_SNR_DB
            assert abs(statistics.median(s.peak_hz for s in spectra) - TONE_HZ) < PEAK_TOLERANCE_HZ

            # The audio is the live stage, not something buffered: muting stops it within
            # the stream's latency. Measured from the click, so it includes the API call.
            muted_at = time.monotonic()
            host.click("#mute")
            wait_for_tone_gone(listener, TONE_HZ, SILENT_DB, MUTE_TO_SILENCE_MAX_S * 1000)
            mute_to_silence = time.monotonic() - muted_at
            print(f"host presses mute -> silence at the listener: {mute_to_silence:.2f} s")
        finally:
            browser.close()
