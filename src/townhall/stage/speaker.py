"""One speaker's WebRTC connection to the stage.

The peer answers the speaker's offer with a single audio transceiver, pinned to
Opus: it receives the speaker's voice (decoded in the event loop as each packet
arrives, see inline_decode.py, into a bounded jitter queue) and sends back the
mix-minus track the mixer feeds. The room decides what the connection's states
mean; this class only reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from townhall.stage.arrival import ArrivalOrderBuffer, decode_on_arrival
from townhall.stage.inline_decode import InlineDecoder, decode_inline
from townhall.stage.jitter import JitterQueue, JitterStats, Reframer
from townhall.stage.offer import OPUS_MIME, InvalidOffer
from townhall.stage.tracks import MixMinusTrack, frame_to_mono

logger = logging.getLogger(__name__)

ENDED_STATES = frozenset({"failed", "closed"})
"""Connection states after which aiortc will not carry media again."""
DEFAULT_CONNECT_TIMEOUT_S = 10.0
"""See StageSettings.connect_timeout_s."""

__all__ = ["ENDED_STATES", "Speaker", "SpeakerStats"]


@dataclass(frozen=True)
class SpeakerStats:
    state: str
    inbound: JitterStats
    inbound_queued: int
    outbound_sent: int
    outbound_dropped: int
    late_packets: int
    """Packets that arrived after a newer one had been decoded, dropped (see arrival.py)."""
    bad_frames: int


class Speaker:
    """One RTCPeerConnection: the speaker's voice in, their mix-minus out."""

    def __init__(
        self,
        user_id: str,
        on_state: Callable[[Speaker], None],
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.user_id = user_id
        self.timed_out = False
        self._connect_timeout_s = connect_timeout_s
        self._deadline: asyncio.TimerHandle | None = None
        self.inbound = JitterQueue()
        self.outbound = MixMinusTrack()
        self._reframer = Reframer()
        self._on_state = on_state
        # No STUN: a server's host addresses are what it offers (see ice.py); asking a public
        # STUN server on every connect would add seconds where it is unreachable.
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._reader: asyncio.Task[None] | None = None
        self._arrival: ArrivalOrderBuffer | None = None
        self._inline: InlineDecoder | None = None
        self._closed = False
        self.bad_frames = 0

    @property
    def state(self) -> str:
        """aiortc's connectionState: new, connecting, connected, failed or closed."""
        return "closed" if self._closed else self._pc.connectionState

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer and return the complete answer (ICE gathering done)."""
        transceiver = self._pc.addTransceiver(self.outbound, direction="sendrecv")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == OPUS_MIME]
        )
        self._arrival = decode_on_arrival(transceiver.receiver)
        self._inline = decode_inline(transceiver.receiver, self.inbound.push)
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", lambda: self._on_state(self))
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except ValueError as exc:  # aiortc's checks not covered by validate_offer
            raise InvalidOffer(f"the offer was refused: {exc}") from exc
        # setLocalDescription gathers every candidate before it returns: the answer is complete.
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        if self._connect_timeout_s > 0:
            self._deadline = asyncio.get_running_loop().call_later(
                self._connect_timeout_s, self._give_up_if_not_connected
            )
        return self._pc.localDescription.sdp

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.outbound.stop()
        try:
            await self._pc.close()
        except Exception:
            logger.exception("closing the peer of speaker %s failed", self.user_id)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def stats(self) -> SpeakerStats:
        return SpeakerStats(
            state=self.state,
            inbound=JitterStats(**vars(self.inbound.stats)),
            inbound_queued=len(self.inbound),
            outbound_sent=self.outbound.sent,
            outbound_dropped=self.outbound.dropped,
            late_packets=self._arrival.late if self._arrival else 0,
            bad_frames=self.bad_frames + (self._inline.bad_frames if self._inline else 0),
        )

    def _give_up_if_not_connected(self) -> None:
        """ICE that cannot succeed (no candidate the browser can reach) never fails on its
        own in aiortc: it stays 'connecting'. Closing the peer ends it ('closed'), which
        the room sees as any other ended connection; the log says what to do."""
        if self._closed or self._pc.connectionState == "connected":
            return
        self.timed_out = True
        local = self._pc.localDescription
        offered = [
            line.split()[4]
            for line in (local.sdp if local else "").splitlines()
            if line.startswith("a=candidate:") and len(line.split()) > 4
        ]
        logger.warning(
            "speaker %s: no WebRTC connection after %.0f s (offered ICE addresses: %s). "
            "Set TOWNHALL_STAGE_ICE_HOST_ADDRESSES to an address of this server that the "
            "speaker's browser can reach.",
            self.user_id,
            self._connect_timeout_s,
            ", ".join(sorted(set(offered))) or "none",
        )
        asyncio.get_running_loop().create_task(self._close_peer())

    async def _close_peer(self) -> None:
        try:
            await self._pc.close()
        except Exception:
            logger.exception("closing the peer of speaker %s failed", self.user_id)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self._inline is not None:
            return  # decoded as it arrives (inline_decode.py): the track never gets a frame
        if track.kind == "audio" and self._reader is None and not self._closed:
            self._reader = asyncio.get_running_loop().create_task(
                self._read(track), name=f"stage-speaker-{self.user_id}"
            )

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            try:
                samples = frame_to_mono(frame)
            except ValueError as exc:
                self.bad_frames += 1
                if self.bad_frames == 1:
                    logger.warning("speaker %s: dropping undecodable audio: %s", self.user_id, exc)
                continue
            for chunk in self._reframer.feed(samples):
                self.inbound.push(chunk)
