"""The receive-side packet order: straight through, late and duplicate packets dropped."""

from __future__ import annotations

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from townhall.stage.arrival import ArrivalOrderBuffer, decode_on_arrival


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
    p._data = bytes([seq % 256])  # what the receiver sets after depayloading
    return p


def passed(buffer: ArrivalOrderBuffer, seqs: list[int]) -> list[int]:
    out = []
    for seq in seqs:
        pli, frame = buffer.add(packet(seq))
        assert pli is False
        if frame is not None:
            assert frame.timestamp == seq * 960 and frame.data == bytes([seq % 256])
            out.append(seq)
    return out


def test_every_new_packet_goes_straight_to_the_decoder() -> None:
    buffer = ArrivalOrderBuffer()
    assert passed(buffer, [10, 11, 13, 14]) == [10, 11, 13, 14]  # a gap does not hold back


def test_late_and_duplicate_packets_are_dropped_and_counted() -> None:
    buffer = ArrivalOrderBuffer()
    assert passed(buffer, [10, 12, 11, 12, 13]) == [10, 12, 13]
    assert buffer.late == 2 and buffer.passed == 3


def test_sequence_numbers_wrap() -> None:
    assert passed(ArrivalOrderBuffer(), [65534, 65535, 0, 1]) == [65534, 65535, 0, 1]


def test_a_restarted_sender_is_followed() -> None:
    assert passed(ArrivalOrderBuffer(), [5000, 5001, 20, 21]) == [5000, 5001, 20, 21]


async def test_it_replaces_aiortcs_buffer_in_a_real_receiver() -> None:
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("audio").receiver
    assert isinstance(decode_on_arrival(receiver), ArrivalOrderBuffer)
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, ArrivalOrderBuffer)
    await pc.close()
