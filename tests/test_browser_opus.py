"""Chromium plays the Opus rendition: hls.js picks it where MSE takes Opus in fMP4.

The host speaks from the studio (Chromium's fake microphone, a 440 Hz tone); a listener
opens the listening page with `?via=hls`. Chromium's MediaSource takes
`audio/mp4; codecs="opus"`, so the page loads the join answer's `hls_opus_url` (the Opus
rendition, townhall.audience.opus_rendition) rather than the AAC playlist, and the
listener hears the tone (FFT of the page's own audio through an AnalyserNode).
"""

from __future__ import annotations

from browser import (
    BROWSER_TEST,
    attach_element_analyser,
    host_goes_live,
    median_spectrum,
    play_with_hls_js,
)

pytestmark = [*BROWSER_TEST]

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


def test_chromium_plays_the_opus_rendition_and_hears_the_tone(new_page, browser_server) -> None:
    host = new_page("desktop")
    space_id = host_goes_live(host, browser_server.url, "opus_browser_host", "Opus")

    listener = new_page("phone")
    play_with_hls_js(listener, f"{browser_server.url}/s/{space_id}?via=hls")
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


MASTER_JS = """
async (url) => {
  const { default: Hls } = await import('/static/vendor/hls.light.min.mjs');
  const audio = document.createElement('audio');
  audio.id = 'master-audio';
  document.body.append(audio);
  const hls = new Hls({ lowLatencyMode: true });
  window.__masterHls = hls;
  window.__masterErrors = [];
  await new Promise((resolve, reject) => {
    hls.on(Hls.Events.MANIFEST_PARSED, resolve);
    hls.on(Hls.Events.ERROR, (_event, data) => {
      window.__masterErrors.push(data.details);
      if (data.fatal) reject(new Error(data.details));
    });
    hls.loadSource(url);
    hls.attachMedia(audio);
  });
  return hls.levels.map((level) => ({ codec: level.audioCodec, url: level.url[0] }));
}
"""
PLAYING_LEVEL_JS = """
() => {
  const hls = window.__masterHls;
  const level = hls.levels[hls.currentLevel];
  return { codec: level ? level.audioCodec : null, errors: window.__masterErrors,
           played: document.querySelector('#master-audio').currentTime };
}
"""


def test_hls_js_plays_the_master_playlist_with_both_renditions(new_page, browser_server) -> None:
    """The multivariant playlist names the AAC and the Opus variants by CODECS: hls.js
    (the page's own vendored build) sees both, picks one it can play, and the tone is in
    what it plays."""
    host = new_page("desktop")
    space_id = host_goes_live(host, browser_server.url, "master_host", "Master playlist")

    listener = new_page("desktop")
    listener.goto(f"{browser_server.url}/s/{space_id}")
    listener.wait_for_selector("#play:enabled")
    levels = listener.evaluate(MASTER_JS, f"/hls/{space_id}/master.m3u8")
    assert attach_element_analyser(listener, "#master-audio") == "running"
    listener.evaluate("document.querySelector('#master-audio').play()")
    listener.wait_for_function("() => document.querySelector('#master-audio').currentTime > 1")
    heard = median_spectrum(listener, TONE_HZ, reads=4, interval_ms=250)
    playing = listener.evaluate(PLAYING_LEVEL_JS)

    print(f"\nmaster: levels {levels}; hls.js plays {playing}; tone {heard.tone_db:.0f} dB")
    assert sorted(level["codec"] for level in levels) == ["mp4a.40.2", "opus"]
    assert playing["codec"] in ("mp4a.40.2", "opus")
    assert abs(heard.peak_hz - TONE_HZ) < 15 and heard.tone_db > -70
