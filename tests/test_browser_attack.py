"""The listener page under attack mode: it solves the proof of work and plays.

Anonymous joins must carry a WebCrypto-solved proof of work (pow.js); the
page does it by itself and the listener hears the host as usual.
"""

from __future__ import annotations

import pytest

from browser import (
    BROWSER_TEST,
    attach_analyser,
    host_goes_live,
    median_spectrum,
    open_and_play,
)
from conftest import FAKE_MIC_HZ as TONE_HZ

POW_BITS = 14

pytestmark = [
    *BROWSER_TEST,
    pytest.mark.server_env(
        TOWNHALL_ADMISSION_ATTACK_MODE="on", TOWNHALL_ADMISSION_POW_BITS=str(POW_BITS)
    ),
]


def test_anonymous_listener_solves_the_challenge_and_hears(new_page, browser_server) -> None:
    host, listener = new_page(), new_page()
    space_id = host_goes_live(host, browser_server.url, "host_attack", "Under attack")

    states: list[str] = []
    listener.expose_function("noteState", lambda state: states.append(state))
    listener.add_init_script(
        "const hook = setInterval(() => { const p = window.townhallPlayer; if (!p) return;"
        " clearInterval(hook);"
        " p.addEventListener('change', () => window.noteState(p.state)); }, 5);"
    )
    open_and_play(listener, browser_server.url, space_id, "host_attack")
    assert "solving" in states, f"the page never proved work: {sorted(set(states))}"
    assert attach_analyser(listener) == "running"
    heard = median_spectrum(listener, TONE_HZ, reads=6, interval_ms=250)
    print(f"\nunder attack, the listener hears {heard.peak_hz:.0f} Hz at {heard.tone_db:.1f}")
    assert abs(heard.peak_hz - TONE_HZ) < 15
