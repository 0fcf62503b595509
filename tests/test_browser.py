"""End to end in a real browser: a host speaks into Chromium's fake microphone
(a 440 Hz tone), a second, anonymous browser context plays the space, and its
<audio> element really advances and really carries the tone.

Runs headless Debian Chromium through Playwright against `townhall serve`;
WebRTC needs the loopback-only namespace of scripts/isolated.
"""

from __future__ import annotations

import statistics
import time

import pytest
from browser import attach_analyser, chromium_available, launch_chromium, player_state, spectrum
from browser import write_tone_wav as write_tone

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
]

TONE_HZ = 440.0
PASSWORD = "correct horse battery"
UI_TIMEOUT_MS = 20_000
"""Generous: a loaded 2-core CI machine starts Chromium and aiortc slowly."""
LISTEN_S = 4.0
MIN_ADVANCE_S = 1.5
SPECTRUM_READS = 8
MIN_TONE_SNR_DB = 25.0
"""The 440 Hz bins over the median bin; AAC at 48 kbps leaves a pure tone > 50 dB clear."""
PEAK_TOLERANCE_HZ = 15.0


def sign_up_and_create_space(page, base_url: str) -> str:
    page.goto(base_url + "/")
    page.fill("#auth-form input[name=username]", "host_browser")
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


def test_listener_hears_the_host_live(server, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    tone = write_tone(tmp_path / "tone.wav", TONE_HZ)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, tone)
        try:
            host_context = browser.new_context()
            host_context.set_default_timeout(UI_TIMEOUT_MS)
            host = host_context.new_page()
            space_id = sign_up_and_create_space(host, server.url)
            go_live_with_mic(host)

            listener_context = browser.new_context()
            listener_context.set_default_timeout(UI_TIMEOUT_MS)
            listener = listener_context.new_page()
            listener.goto(f"{server.url}/s/{space_id}")
            listener.wait_for_selector("#play:enabled")
            assert listener.inner_text("#stage").startswith("HO")  # host_browser's avatar
            assert "host_browser" in listener.inner_text("#stage")

            pressed_at = time.monotonic()
            listener.click("#play")
            listener.wait_for_function("window.townhallPlayer.state === 'playing'")
            print(f"\nplay pressed -> playing: {time.monotonic() - pressed_at:.2f} s")
            print(f"analyser: {attach_analyser(listener)}")

            before = player_state(listener)
            spectra = []
            lags = []
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
            if lags:
                print(
                    f"lag behind newest received audio: median {statistics.median(lags):.2f} s,"
                    f" max {max(lags):.2f} s"
                )
            for s in spectra:
                print(f"  peak {s.peak_hz:6.1f} Hz  tone {s.tone_db:6.1f} dB  snr {s.snr_db:5.1f} dB")

            assert after["state"] == "playing"
            assert after["delivery"] == "mse"
            assert advanced > MIN_ADVANCE_S
            snrs = [s.snr_db for s in spectra]
            assert statistics.median(snrs) > MIN_TONE_SNR_DB, "the tone is not audible"
            peaks = [s.peak_hz for s in spectra]
            assert abs(statistics.median(peaks) - TONE_HZ) < PEAK_TOLERANCE_HZ
        finally:
            browser.close()
