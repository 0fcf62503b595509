"""The stage end to end in one process: real aiortc client peers send tones over loopback
to a real StageRoom; the program and each speaker's mix-minus are checked with an FFT.

Needs the loopback-only namespace: run with `scripts/isolated .venv/bin/pytest`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from tones import (
    Recording,
    ToneClient,
    ToneTrack,
    dominant_frequencies,
    steady_tone_power,
    tone_power,
)
from townhall.config import StageSettings
from townhall.media import SAMPLE_RATE
from townhall.stage import InvalidOffer, StageRoom, StageUnavailable

A_FREQ = 440.0
B_FREQ = 660.0
TONE_DBFS = -10.5  # ToneTrack's default amplitude 0.3
PRESENT_DBFS = -25.0
"""A tone at least this loud is "there" (sent at -10.5 dBFS, through Opus twice)."""
MIN_REJECTION_DB = 20.0
"""Own voice in one's mix-minus (or a muted voice in the program) must be this far below."""
ONSET_DBFS = -30.0
TONE_START_S = 0.6  # a whole number of 20 ms frames, so onsets are frame-aligned
SETTLE_S = 0.4
"""Time for a change (tone start, mute) to reach every output, with margin."""
CONNECT_TIMEOUT_S = 5.0
LATENCY_BOUND_S = 1.0
"""Generous bound (target < 0.3 s speaker to speaker): this is a shared 2-core machine."""

pytestmark = pytest.mark.usefixtures("loopback_ice")


async def join(room: StageRoom, user_id: str, tone: ToneTrack) -> ToneClient:
    client = await ToneClient.offer_with(tone)
    await client.accept(await room.connect(user_id, client.offer))
    return client


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def powers(samples, *freqs: float) -> list[float]:
    """Steady level of each tone: a loaded machine may stall the loop and drop a few frames."""
    return [steady_tone_power(samples, SAMPLE_RATE, f) for f in freqs]


async def test_program_and_mix_minus_carry_the_right_voices() -> None:
    program = Recording()
    changes = []
    room = StageRoom("space-1", StageSettings(), program, on_change=lambda: changes.append(1))
    await room.start()
    a = await join(room, "alice", ToneTrack(A_FREQ, start_after_s=TONE_START_S))
    b = await join(room, "bob", ToneTrack(B_FREQ, start_after_s=TONE_START_S))
    try:
        await wait_until(lambda: room.connected == {"alice", "bob"}, CONNECT_TIMEOUT_S, "peers")
        await wait_until(
            lambda: a.tone.tone_started_at and b.tone.tone_started_at, 3.0, "tones to start"
        )
        tones_on = max(a.tone.tone_started_at, b.tone.tone_started_at)
        await asyncio.sleep(SETTLE_S + 1.0)
        assert room.speaking() == {"alice", "bob"}
        window = tones_on + SETTLE_S

        # The program carries both voices, and nothing else stands out.
        p440, p660 = powers(program.samples(since=window), A_FREQ, B_FREQ)
        print(f"\nprogram: 440 Hz {p440:.1f} dBFS, 660 Hz {p660:.1f} dBFS")
        assert p440 > PRESENT_DBFS and p660 > PRESENT_DBFS
        peaks = dominant_frequencies(program.samples(since=window), SAMPLE_RATE, 2)
        assert sorted(peaks) == pytest.approx([A_FREQ, B_FREQ], abs=3), peaks

        # Each speaker hears the other and not themselves.
        a440, a660 = powers(a.heard.samples(since=window), A_FREQ, B_FREQ)
        b440, b660 = powers(b.heard.samples(since=window), A_FREQ, B_FREQ)
        print(f"alice hears: own 440 Hz {a440:.1f}, bob's 660 Hz {a660:.1f} dBFS")
        print(f"bob hears: alice's 440 Hz {b440:.1f}, own 660 Hz {b660:.1f} dBFS")
        assert a660 > PRESENT_DBFS and a440 < a660 - MIN_REJECTION_DB
        assert b440 > PRESENT_DBFS and b660 < b440 - MIN_REJECTION_DB

        # Latency: from the moment a tone leaves the client's track to when it is mixed
        # (program sink) and when it arrives decoded at the other client.
        to_program = program.onset_time(A_FREQ, ONSET_DBFS) - a.tone.tone_started_at
        a_to_b = b.heard.onset_time(A_FREQ, ONSET_DBFS) - a.tone.tone_started_at
        b_to_a = a.heard.onset_time(B_FREQ, ONSET_DBFS) - b.tone.tone_started_at
        print(
            f"latency: speaker->program {to_program * 1000:.0f} ms, "
            f"speaker->speaker {a_to_b * 1000:.0f} ms (a->b), {b_to_a * 1000:.0f} ms (b->a)"
        )
        assert 0 < to_program < LATENCY_BOUND_S
        assert 0 < a_to_b < LATENCY_BOUND_S and 0 < b_to_a < LATENCY_BOUND_S

        # Muting alice takes her out of the program and out of bob's ear; she still hears bob.
        room.set_muted("alice", True)
        muted_at = time.time()
        await asyncio.sleep(SETTLE_S + 0.6)
        # At least 0.5 s of audio after the settling time in every ear (under load 15 a
        # fixed sleep left alice's ear empty: -132 dBFS of nothing, not of silence).
        enough = SAMPLE_RATE // 2
        await wait_until(
            lambda: all(
                r.samples(since=muted_at + SETTLE_S).size >= enough
                for r in (program, a.heard, b.heard)
            ),
            CONNECT_TIMEOUT_S,
            "audio after the mute",
        )
        p440, p660 = powers(program.samples(since=muted_at + SETTLE_S), A_FREQ, B_FREQ)
        b440, _ = powers(b.heard.samples(since=muted_at + SETTLE_S), A_FREQ, B_FREQ)
        a440, a660 = powers(a.heard.samples(since=muted_at + SETTLE_S), A_FREQ, B_FREQ)
        print(f"alice muted: program 440 Hz {p440:.1f}, 660 Hz {p660:.1f}; bob hears {b440:.1f}")
        assert p660 > PRESENT_DBFS and p440 < p660 - MIN_REJECTION_DB
        assert b440 < p660 - MIN_REJECTION_DB
        assert a660 > PRESENT_DBFS
        assert room.speaking() == {"bob"}
        assert changes, "on_change never fired"

        stats = room.stats()
        print(f"clock: {stats.clock}")
        average_tick = stats.clock.total_tick_s / stats.clock.ticks
        print(f"tick: {average_tick * 1e6:.0f} µs average, {stats.clock.max_tick_s * 1e6:.0f} max")
        for user, s in stats.speakers.items():
            print(f"{user}: {s}")
        assert stats.clock.ticks > 0 and stats.clock.errors == 0
    finally:
        await room.stop()
        await asyncio.gather(a.close(), b.close())
    assert room.connected == frozenset()


async def test_reconnect_replaces_the_peer_and_a_closed_client_is_removed() -> None:
    changes = []
    room = StageRoom("space-2", StageSettings(), lambda frame: None, lambda: changes.append(1))
    await room.start()
    first = await join(room, "carol", ToneTrack(A_FREQ))
    second = None
    try:
        await wait_until(lambda: room.connected == {"carol"}, CONNECT_TIMEOUT_S, "first peer")
        second = await join(room, "carol", ToneTrack(A_FREQ))
        assert room.peers == {"carol"}
        await wait_until(
            lambda: room.stats().speakers["carol"].state == "connected",
            CONNECT_TIMEOUT_S,
            "second peer",
        )
        seen = len(changes)
        await second.close()
        await wait_until(lambda: room.peers == frozenset(), CONNECT_TIMEOUT_S, "removal")
        assert room.connected == frozenset()
        assert len(changes) > seen
    finally:
        await room.stop()
        await first.close()
        if second is not None:
            await second.close()


async def test_muted_before_connecting_never_reaches_the_program() -> None:
    program = Recording()
    room = StageRoom("space-3", StageSettings(), program)
    room.set_muted("dave", True)
    await room.start()
    client = await join(room, "dave", ToneTrack(A_FREQ))
    try:
        await wait_until(lambda: room.connected == {"dave"}, CONNECT_TIMEOUT_S, "peer")
        await wait_until(lambda: client.tone.tone_started_at is not None, 3.0, "tone")
        await asyncio.sleep(SETTLE_S + 0.5)
        level = tone_power(program.samples(since=client.tone.tone_started_at), SAMPLE_RATE, A_FREQ)
        assert level < TONE_DBFS - 60
        assert room.stats().speakers["dave"].inbound.pushed > 10  # audio did arrive
        assert room.speaking() == frozenset()
    finally:
        await room.stop()
        await client.close()


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("", "empty"),
        ("hello", "not SDP"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio"),
        ("v=0\r\nm=audio x RTP/AVP 0\r\n", "could not be parsed"),
    ],
)
async def test_offers_that_are_not_sdp_audio_are_refused(offer: str, message: str) -> None:
    room = StageRoom("space-4", StageSettings(), lambda frame: None)
    with pytest.raises(InvalidOffer, match=message):
        await room.connect("erin", offer)
    assert room.peers == frozenset()
    await room.stop()


async def test_offer_without_opus_is_refused() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("audio", direction="sendrecv")

    pcmu = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
    transceiver.setCodecPreferences(pcmu)
    await pc.setLocalDescription(await pc.createOffer())
    room = StageRoom("space-5", StageSettings(), lambda frame: None)
    try:
        with pytest.raises(InvalidOffer, match="Opus"):
            await room.connect("frank", pc.localDescription.sdp)
        video_pc, video_offer = await client_offer_video()
        with pytest.raises(InvalidOffer, match="video"):
            await room.connect("frank", video_offer)
        await video_pc.close()
    finally:
        await room.stop()
        await pc.close()


async def client_offer_video() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_a_stopped_room_refuses_connections() -> None:
    room = StageRoom("space-6", StageSettings(), lambda frame: None)
    await room.start()
    await room.stop()
    await room.stop()  # idempotent
    client = await ToneClient.offer_with(ToneTrack(A_FREQ))
    try:
        with pytest.raises(StageUnavailable, match="stopped"):
            await room.connect("gina", client.offer)
        with pytest.raises(StageUnavailable):
            await room.start()
    finally:
        await client.close()


async def test_disconnect_during_connect_wins() -> None:
    room = StageRoom("space-9", StageSettings(), lambda frame: None)
    await room.start()
    first = await ToneClient.offer_with(ToneTrack(A_FREQ))
    second = await ToneClient.offer_with(ToneTrack(A_FREQ))
    try:
        connecting = asyncio.create_task(room.connect("judy", first.offer))
        await asyncio.sleep(0)  # connect() is now inside ICE gathering
        await room.disconnect("judy")
        with pytest.raises(StageUnavailable, match="disconnected"):
            await connecting
        assert room.peers == frozenset()
        assert await room.connect("judy", second.offer)  # a later connect is not affected
        assert room.peers == {"judy"}
    finally:
        await room.stop()
        await first.close()
        await second.close()


def drop_rtp(pc: RTCPeerConnection, every: int) -> list[int]:
    """Make `pc` lose every `every`-th outgoing RTP packet (RTCP untouched): the network edge."""
    dropped: list[int] = []
    transport = pc.getTransceivers()[0].sender.transport
    send = transport._send_rtp
    count = 0

    async def lossy_send(data: bytes) -> None:
        nonlocal count
        is_rtcp = 192 <= data[1] <= 223
        if not is_rtcp:
            count += 1
            if count % every == 0:
                dropped.append(count)
                return
        await send(data)

    transport._send_rtp = lossy_send
    return dropped


async def test_lost_packets_do_not_leave_latency_behind() -> None:
    program = Recording()
    room = StageRoom("space-7", StageSettings(), program)
    await room.start()
    client = await join(room, "hana", ToneTrack(A_FREQ, start_after_s=1.2))
    try:
        dropped = drop_rtp(client.pc, every=15)
        await wait_until(lambda: client.tone.tone_started_at is not None, 5.0, "tone")
        await asyncio.sleep(SETTLE_S + 0.2)
        latency = program.onset_time(A_FREQ, ONSET_DBFS) - client.tone.tone_started_at
        print(f"\nafter {len(dropped)} lost packets: speaker->program {latency * 1000:.0f} ms")
        print(room.stats().speakers["hana"])
        assert dropped
        assert 0 < latency < 0.25
    finally:
        await room.stop()
        await client.close()


async def test_an_offer_without_candidates_still_connects() -> None:
    """Browsers send their offer before ICE gathering ends (trickle) and our API has no
    trickle endpoint: the server must learn the browser's address from its ICE checks."""
    room = StageRoom("space-8", StageSettings(), lambda frame: None)
    await room.start()
    client = await ToneClient.offer_with(ToneTrack(A_FREQ))
    offer = client.offer
    try:
        bare = "".join(line for line in offer.splitlines(keepends=True) if "candidate" not in line)
        assert "a=candidate" in offer and "a=candidate" not in bare
        await client.accept(await room.connect("ivan", bare))
        await wait_until(lambda: room.connected == {"ivan"}, CONNECT_TIMEOUT_S, "peer")
        await wait_until(
            lambda: room.stats().speakers["ivan"].inbound.pushed > 5, 3.0, "audio from the client"
        )
    finally:
        await room.stop()
        await client.close()


SHORT_CONNECT_TIMEOUT_S = 1.0


async def test_a_peer_that_never_connects_is_closed_after_the_timeout(caplog) -> None:
    """ICE that cannot succeed leaves aiortc 'connecting' for good; the room gives up
    after the timeout, removes the peer and logs what to do."""
    room = StageRoom("space-9", StageSettings(connect_timeout_s=SHORT_CONNECT_TIMEOUT_S), print)
    await room.start()
    client = await ToneClient.offer_with(ToneTrack(A_FREQ))
    try:
        await room.connect("judy", client.offer)  # the answer never reaches the client
        assert room.peers == {"judy"}
        give_up_s = SHORT_CONNECT_TIMEOUT_S + CONNECT_TIMEOUT_S
        await wait_until(lambda: room.peers == frozenset(), give_up_s, "removal")
        assert room.connected == frozenset()
        assert "TOWNHALL_STAGE_ICE_HOST_ADDRESSES" in caplog.text
        assert "127.0.0.1" in caplog.text  # the addresses it offered
    finally:
        await room.stop()
        await client.close()


async def test_a_connected_peer_outlives_the_connect_timeout() -> None:
    room = StageRoom(
        "space-10", StageSettings(connect_timeout_s=SHORT_CONNECT_TIMEOUT_S), lambda frame: None
    )
    await room.start()
    client = await join(room, "kim", ToneTrack(A_FREQ))
    try:
        await wait_until(lambda: room.connected == {"kim"}, CONNECT_TIMEOUT_S, "peer")
        await asyncio.sleep(SHORT_CONNECT_TIMEOUT_S * 1.5)
        assert room.connected == {"kim"}
    finally:
        await room.stop()
        await client.close()
