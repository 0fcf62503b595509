"""The listen page in a real browser, served by stream workers.

With `--stream-workers` the live_url points at another port (another origin for
the browser): the page fetches it across origins (CORS), plays it through Media
Source Extensions and really carries the host's tone; once the host removes the
signed-in listener, the stream port refuses their ticket in a way the page can
read across origins.

Headless Debian Chromium through Playwright; WebRTC needs the loopback-only
namespace of scripts/isolated.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from browser import (
    attach_analyser,
    chromium_available,
    create_space,
    go_live_with_mic,
    median_spectrum,
    open_and_play,
    player_state,
    sign_up,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
    pytest.mark.server_env(TOWNHALL_EDGE_STREAM_WORKERS="2"),
]

TONE_HZ = 440.0
LISTEN_S = 3.0
MIN_ADVANCE_S = 1.5
MIN_TONE_DB = -70.0
"""As in test_browser: the mic's processing takes the tone to about -41 dBFS."""
PEAK_TOLERANCE_HZ = 15.0
REMOVED_MAX_S = 8.0
"""Bound on removal -> the page stops playing, and on removal -> the stream port
refuses the listener's ticket (~1 s: one count report); measured, printed."""
REFUSED_JS = """
async ([url, timeoutMs]) => {
  // The page asks the stream port (another origin) until it refuses the ticket; its
  // error answer must be readable across origins (CORS), as the player reads it.
  const deadline = performance.now() + timeoutMs;
  let tries = 0;
  while (performance.now() < deadline) {
    tries += 1;
    const conn = new AbortController();
    const res = await fetch(url, { signal: conn.signal, cache: 'no-store' });
    if (res.status !== 200) {
      const body = await res.json();
      return { status: res.status, code: body.error.code, tries };
    }
    conn.abort();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { status: 200, code: null, tries };
}
"""


def test_the_listen_page_plays_through_a_stream_worker(new_page, browser_server) -> None:
    host = new_page()
    sign_up(host, browser_server.url, "edge_browser_host")
    space_id = create_space(host, "Through the workers")
    go_live_with_mic(host)

    listener = new_page()
    sign_up(listener, browser_server.url, "edge_browser_guest")
    streams: list[str] = []
    listener.on("request", lambda r: streams.append(r.url) if "/live/" in r.url else None)
    to_playing = open_and_play(listener, browser_server.url, space_id, "edge_browser_host")
    assert attach_analyser(listener) == "running"
    before = player_state(listener)
    heard = median_spectrum(listener, TONE_HZ, reads=6, interval_ms=LISTEN_S * 1000 / 6)
    after = player_state(listener)
    advanced = after["currentTime"] - before["currentTime"]
    print(
        f"\nplay pressed -> playing: {to_playing:.2f} s; currentTime advanced {advanced:.2f} s"
        f" in {LISTEN_S:.1f} s; tone {heard.tone_db:.1f} dBFS at {heard.peak_hz:.1f} Hz"
    )
    print(f"player: {after}; streams: {streams}")
    assert streams and all(urlsplit(u).port == browser_server.port + 1 for u in streams)
    assert after["state"] == "playing" and after["delivery"] == "mse"
    assert advanced > MIN_ADVANCE_S
    assert heard.tone_db > MIN_TONE_DB
    assert abs(heard.peak_hz - TONE_HZ) < PEAK_TOLERANCE_HZ

    guest_id = listener.evaluate("fetch('/api/me').then((r) => r.json()).then((me) => me.id)")
    removed_at = time.monotonic()
    status = host.evaluate(
        """([spaceId, userId]) => fetch(`/api/spaces/${spaceId}/removals`, {
             method: 'POST', headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({user_id: userId})}).then((r) => r.status)""",
        [space_id, guest_id],
    )
    assert status == 200
    listener.wait_for_function(
        "() => window.townhallPlayer.state !== 'playing'", timeout=REMOVED_MAX_S * 1000, polling=50
    )
    page_stopped = time.monotonic() - removed_at
    refusal = listener.evaluate(REFUSED_JS, [streams[-1], REMOVED_MAX_S * 1000])
    refused = time.monotonic() - removed_at
    print(
        f"removal -> page stopped playing {page_stopped:.2f} s; the stream port refuses the"
        f" ticket {refused:.2f} s: {refusal}"
    )
    assert refusal["status"] == 403 and refusal["code"] == "removed"


def _api_calls(calls: list[tuple[str, str]], space_id: str, port: int) -> set[str]:
    """Which of the snapshot and the join the page asked on ``port``."""
    asked = set()
    for method, url in calls:
        parts = urlsplit(url)
        if parts.port != port:
            continue
        if method == "GET" and parts.path == f"/api/spaces/{space_id}":
            asked.add("snapshot")
        elif method == "POST" and parts.path == f"/api/spaces/{space_id}/join":
            asked.add("join")
    return asked


def test_an_anonymous_listener_joins_through_the_workers_or_the_api_without_them(
    new_page, browser_server
) -> None:
    """The listen page asks the snapshot and its join of the stream workers (their port
    is another origin: CORS, no preflight) and plays what that join answered; a page
    that cannot reach them falls back to the API and plays all the same."""
    host = new_page()
    sign_up(host, browser_server.url, "workers_join_host")
    space_id = create_space(host, "Joined at the workers")
    go_live_with_mic(host)
    api_port, workers_port = browser_server.port, browser_server.port + 1

    listener = new_page()  # nobody signed in: an anonymous listener, as a crowd is
    calls: list[tuple[str, str]] = []
    listener.on("request", lambda r: calls.append((r.method, r.url)))
    open_and_play(listener, browser_server.url, space_id, "workers_join_host")
    assert attach_analyser(listener) == "running"
    heard = median_spectrum(listener, TONE_HZ, reads=4, interval_ms=500)
    print(f"\nthrough the workers: tone {heard.tone_db:.1f} dBFS at {heard.peak_hz:.1f} Hz")
    assert _api_calls(calls, space_id, workers_port) == {"snapshot", "join"}
    assert _api_calls(calls, space_id, api_port) == set(), calls
    assert heard.tone_db > MIN_TONE_DB
    assert abs(heard.peak_hz - TONE_HZ) < PEAK_TOLERANCE_HZ

    cut_off = new_page()  # the workers' port unreachable from this page
    cut_off.route(f"http://127.0.0.1:{workers_port}/api/**", lambda route: route.abort())
    calls.clear()
    cut_off.on("request", lambda r: calls.append((r.method, r.url)))
    open_and_play(cut_off, browser_server.url, space_id, "workers_join_host")
    assert _api_calls(calls, space_id, api_port) == {"snapshot", "join"}, calls
    assert player_state(cut_off)["state"] == "playing"
