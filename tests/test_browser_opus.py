"""Chromium plays the Opus rendition: hls.js picks it where MSE takes Opus in fMP4.

The host speaks from the studio (Chromium's fake microphone, a 440 Hz tone); a listener
opens the listening page with `?via=hls`. Chromium's MediaSource takes
`audio/mp4; codecs="opus"`, so the page loads the join answer's `hls_opus_url` (the Opus
rendition, townhall.audience.opus_rendition) rather than the AAC playlist, and the
listener hears the tone (FFT of the page's own audio through an AnalyserNode).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import (
    NO_LAG_DOOR,
    attach_analyser,
    chromium_available,
    create_space,
    go_live_with_mic,
    median_spectrum,
    page_factory,
    sign_up,
)
from conftest import RunningServer, start_server, stop_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
]

TONE_HZ = 440.0
UI_TIMEOUT_MS = 30_000
WARM_UP_MS = 3_000
RENDITION_JS = """
() => {
  const player = window.townhallPlayer;
  const level = player.hls && player.hls.levels[player.hls.currentLevel];
  return { codec: player.hlsCodec, url: level ? level.url[0] : null,
           audioCodec: level ? level.audioCodec : null,
           opusTaken: MediaSource.isTypeSupported('audio/mp4; codecs="opus"') };
}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "server", **NO_LAG_DOOR)
    try:
        yield running
    finally:
        stop_server(running)


def test_chromium_plays_the_opus_rendition_and_hears_the_tone(chromium, server) -> None:
    with page_factory(chromium, UI_TIMEOUT_MS) as new_page:
        host = new_page("desktop")
        sign_up(host, server.url, "opus_browser_host")
        space_id = create_space(host, "Opus")
        go_live_with_mic(host)

        listener = new_page("phone")
        listener.goto(f"{server.url}/s/{space_id}?via=hls")
        listener.wait_for_selector("#play:enabled")
        assert listener.evaluate("() => window.townhallPlayer.delivery") == "hlsjs"
        listener.click("#play")
        listener.wait_for_function("() => window.townhallPlayer.state === 'playing'")
        assert attach_analyser(listener) == "running"
        listener.wait_for_timeout(WARM_UP_MS)
        rendition = listener.evaluate(RENDITION_JS)
        heard = median_spectrum(listener, TONE_HZ, reads=4, interval_ms=250)
        played = listener.evaluate("() => window.townhallPlayer.audio.currentTime")

    print(f"\nrendition {rendition}; tone {heard.peak_hz:.0f} Hz at {heard.tone_db:.0f} dB")
    assert rendition["opusTaken"]
    assert rendition["codec"] == "opus"
    assert rendition["url"].endswith(f"/hls/{space_id}/opus/index.m3u8")
    assert played > 1.0
    assert abs(heard.peak_hz - TONE_HZ) < 15 and heard.tone_db > -70
