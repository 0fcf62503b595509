"""Hand each received Opus packet to the decoder the moment it arrives.

aiortc's audio receiver keeps its own jitter buffer (16 packets, prefetch 4) in
front of the decoder. On the stage that buffer only costs: it always holds
back 80 ms, and it releases at most one frame per arriving packet, so after a
single lost packet it stalls until 16 packets have piled up and then keeps
that backlog for the rest of the call, measured here as +200 ms speaker to
program after the first loss, for good. The stage already has a jitter queue
after the decoder (jitter.py) that absorbs timing jitter, bounds latency and
counts what it drops, so in front of the decoder we only need order:
packets newer than the last one go straight through, late or duplicate ones
are dropped (a late audio packet is useless once its successor has played).

aiortc has no public hook for this, so `decode_on_arrival` replaces the
receiver's private buffer; if a future aiortc renames it, the stage logs a
warning and keeps aiortc's behaviour (correct, only slower after loss).
"""

from __future__ import annotations

import logging

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

logger = logging.getLogger(__name__)

RESTART_DISTANCE = 100
"""A packet this many sequence numbers behind the newest is not late but a restarted
sender (new sequence origin): follow it instead of dropping everything for minutes."""
_PRIVATE_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"

__all__ = ["ArrivalOrderBuffer", "decode_on_arrival"]


class ArrivalOrderBuffer:
    """Drop-in for aiortc's JitterBuffer (same `add`) for single-packet audio frames."""

    def __init__(self) -> None:
        self._newest: int | None = None
        self.passed = 0
        self.late = 0
        """Packets dropped because a newer one had already gone to the decoder."""

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        newest = self._newest
        if newest is not None and not uint16_gt(seq, newest):
            behind = uint16_add(newest, -seq)
            if behind < RESTART_DISTANCE:
                self.late += 1
                return False, None
        self._newest = seq
        self.passed += 1
        data: bytes = packet._data  # type: ignore[attr-defined]  # set by the receiver
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


def decode_on_arrival(receiver: RTCRtpReceiver) -> ArrivalOrderBuffer | None:
    """Install an ArrivalOrderBuffer in an audio receiver; None if aiortc's layout changed."""
    if not hasattr(receiver, _PRIVATE_ATTRIBUTE):
        logger.warning("aiortc has no %s: keeping its audio jitter buffer", _PRIVATE_ATTRIBUTE)
        return None
    buffer = ArrivalOrderBuffer()
    setattr(receiver, _PRIVATE_ATTRIBUTE, buffer)
    return buffer
