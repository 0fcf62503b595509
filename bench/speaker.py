"""The townhall side's source: one aiortc speaker sending a 440 Hz tone in real time,
through the real stage (WebRTC, Opus, mixer) into the program encoder at 48 kbps."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.source import TONE_AMPLITUDE, TONE_HZ

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960


class ToneTrack(MediaStreamTrack):
    """A sine paced on the monotonic clock, like aiortc's own AudioStreamTrack."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._sent = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        else:
            await asyncio.sleep(max(0.0, self._t0 + self._sent / SAMPLE_RATE - now))
        n = np.arange(self._sent, self._sent + FRAME_SAMPLES)
        wave = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * n / SAMPLE_RATE)
        mono = np.round(wave * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        frame.pts = self._sent
        self._sent += FRAME_SAMPLES
        return frame


async def connect_speaker(http, space_id: str, headers: dict[str, str]) -> RTCPeerConnection:  # type: ignore[no-untyped-def]
    pc = RTCPeerConnection()
    pc.addTrack(ToneTrack())
    await pc.setLocalDescription(await pc.createOffer())
    answer = await http.post(
        f"/api/spaces/{space_id}/stage/offer",
        json={"type": "offer", "sdp": pc.localDescription.sdp},
        headers=headers,
    )
    answer.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(**answer.json()))
    return pc
