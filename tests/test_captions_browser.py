"""Captions on the listener page: the host's microphone (Chromium's fake capture playing
espeak-ng speech) goes live from the studio, and a listener's page shows the words; after
the end, the replay page shows them in time with the recording."""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser import (
    axe_violations,
    chromium_available,
    collect_csp_violations,
    create_space,
    go_live_with_mic,
    open_and_play,
    running_chromium,
    screenshot,
    sign_up,
)
from speech import with_pauses
from tones import SAMPLE_RATE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
]

SENTENCES = ["today we talk about the weather and the news", "thank you all for coming tonight"]
WORDS = {"today", "talk", "about", "weather", "news", "thank", "you", "all", "coming", "tonight"}
UI_TIMEOUT_MS = 30_000
CAPTION_WAIT_MS = 30_000
"""The mic connects, the listener plays, then a sentence (~3 s), its pause and its cue;
the page polls every 2 s. Generous for a loaded 2-core machine."""


def _speech_wav(path: Path) -> Path:
    """The sentences with pauses, as the fake microphone's (looped) file."""
    samples = with_pauses(SENTENCES, pause_s=1.5)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return path


def _wait_for_the_recording(base_url: str, space_id: str) -> None:
    """The replay page reads the snapshot once: open it when the recording is listed."""
    deadline = time.monotonic() + CAPTION_WAIT_MS / 1000
    while time.monotonic() < deadline:
        if httpx.get(f"{base_url}/api/spaces/{space_id}").json().get("recording_url"):
            return
        time.sleep(0.2)
    raise AssertionError("the recording was never listed")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """This module's Chromium speaks SENTENCES into its microphone (not the suite's tone)."""
    with running_chromium(_speech_wav(tmp_path_factory.mktemp("speech") / "speech.wav")) as b:
        yield b


@pytest.mark.server_env(TOWNHALL_CAPTIONS_ENABLED="1")
def test_captions_appear_on_the_listener_page(new_page, browser_server) -> None:
    host = new_page()
    sign_up(host, browser_server.url, "host")
    host.check("#create-form input[name=record]")
    space_id = create_space(host, "Captioned")
    go_live_with_mic(host)
    listener = new_page()
    csp = collect_csp_violations(listener)
    open_and_play(listener, browser_server.url, space_id, "host")
    # The fake microphone starts mid-file: wait past the first fragment.
    listener.wait_for_function(
        """(words) => {
          const shown = document.querySelector('#captions')?.innerText || '';
          const heard = new Set(shown.toLowerCase().split(/\\s+/));
          return words.filter((word) => heard.has(word)).length >= 3;
        }""",
        arg=sorted(WORDS),
        timeout=CAPTION_WAIT_MS,
    )
    shown = listener.inner_text("#captions").lower()
    assert listener.is_visible("#captions")
    assert axe_violations(listener) == []
    assert csp == []
    screenshot(listener, "listen-captions-desktop")

    host.click("#end")
    host.click("#end")  # the second press confirms
    host.wait_for_selector("#summary:not([hidden])")
    _wait_for_the_recording(browser_server.url, space_id)
    replay = new_page()
    replay_csp = collect_csp_violations(replay)
    replay.goto(f"{browser_server.url}/s/{space_id}/replay")
    replay.wait_for_selector("#recording:not([hidden])")
    replay.eval_on_selector("#recording-audio", "(audio) => audio.play()")
    replay.wait_for_selector("#replay-captions p", timeout=CAPTION_WAIT_MS)
    replayed = replay.inner_text("#replay-captions")
    assert axe_violations(replay) == [] and replay_csp == []
    screenshot(replay, "replay-captions-desktop")
    print(f"\ncaptions on the page: {shown!r}")
    assert len(WORDS & set(shown.split())) >= 3, shown
    print(f"captions on the replay: {replayed!r}")
    assert replayed.strip()


def _live_over_http(http: httpx.Client, headers: dict[str, str], title: str) -> str:
    created = http.post("/api/spaces", json={"title": title}, headers=headers)
    assert created.status_code == 201, created.text
    space_id = str(created.json()["id"])
    started = http.post(f"/api/spaces/{space_id}/start", headers=headers)
    assert started.status_code == 200, started.text
    return space_id


@pytest.mark.server_env(TOWNHALL_CAPTIONS_ENABLED="1", TOWNHALL_CAPTIONS_MAX_SPACES="1")
def test_a_listener_is_told_why_a_space_has_no_captions(new_page, browser_server) -> None:
    """One captioned space is this node's limit: the second goes live without, and its
    listener page says so instead of showing nothing."""
    url = browser_server.url
    with httpx.Client(base_url=url, timeout=30) as http:
        account = {"username": "host", "password": "correct horse"}
        assert http.post("/api/users", json=account).status_code == 201
        token = http.post("/api/tokens", json=account).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        captioned = _live_over_http(http, headers, "Captioned")
        without = _live_over_http(http, headers, "Past the limit")
    listener = new_page("desktop")
    csp = collect_csp_violations(listener)
    listener.goto(f"{url}/s/{without}")
    listener.wait_for_selector("#captions .captions-withheld")
    told = listener.inner_text("#captions")
    assert axe_violations(listener) == [] and csp == []
    screenshot(listener, "listen-captions-withheld-desktop")
    other = new_page("desktop")
    other.goto(f"{url}/s/{captioned}")
    other.wait_for_selector("#title:has-text('Captioned')")
    assert other.query_selector("#captions .captions-withheld") is None
    assert "already captioning as many spaces as it can" in told, told
