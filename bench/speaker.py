"""The townhall side's source: one aiortc speaker sending a 440 Hz tone in real time,
through the real stage (WebRTC, Opus, mixer) into the program encoder at 48 kbps.

The tone track and the signalling are the test suite's own (tests/tones.py,
tests/http_helpers.py): the bench drives the server exactly as the tests do."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench.source import TONE_AMPLITUDE, TONE_HZ
from http_helpers import speak_over_http
from tones import ToneClient, ToneTrack


async def connect_speaker(
    http: httpx.AsyncClient, space_id: str, headers: dict[str, str]
) -> ToneClient:
    tone = ToneTrack(TONE_HZ, amplitude=TONE_AMPLITUDE)
    return await speak_over_http(http, space_id, headers, tone)
