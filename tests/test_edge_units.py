"""Stream-worker pieces without a server: ADTS framing, count reports, relay tokens,
removals (and a relay against a small loopback origin)."""

from __future__ import annotations

import asyncio
import time

import pytest

from townhall.admission.signing import Signer
from townhall.admission.tickets import issue_ticket
from townhall.audience.adts import adts_header
from townhall.audience.fanout import LiveFanout
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge import (
    ListenerReports,
    RelayRefused,
    RemovalsRefused,
    ReportRefused,
    check_relay_token,
    issue_relay_token,
    parse_counts,
    parse_removed,
    removed_answer,
)
from townhall.edge.framing import AdtsFramer
from townhall.edge.relay import Origin, Refusal, Relays
from townhall.edge.removals import MAX_ANSWER_BYTES, MAX_REMOVED_PER_SPACE
from townhall.edge.reports import MAX_PEOPLE_PER_SPACE, parse_people
from townhall.edge.worker import ReportAnswer, report_once

FRAME_MS = 1024 * 1000 / 48_000


def _frames(sizes: list[int]) -> bytes:
    return b"".join(
        adts_header(size, sample_rate_index=3, channels=1) + bytes([i % 251]) * size
        for i, size in enumerate(sizes)
    )


def test_framer_publishes_only_whole_frames_whatever_the_split() -> None:
    stream = _frames([100, 7, 300, 1, 250] * 4)
    for piece in (1, 3, 64, 1000):
        framer = AdtsFramer()
        out = bytearray()
        total_ms = 0.0
        for at in range(0, len(stream), piece):
            chunk, ms = framer.feed(stream[at : at + piece])
            if chunk:
                assert chunk[0] == 0xFF and chunk[1] & 0xF0 == 0xF0
            out += chunk
            total_ms += ms
        assert bytes(out) == stream
        assert total_ms == pytest.approx(20 * FRAME_MS)
        assert framer.stats.frames == 20 and framer.stats.skipped_bytes == 0


def test_framer_skips_garbage_to_the_next_syncword() -> None:
    framer = AdtsFramer()
    good = _frames([50, 60])
    chunk, ms = framer.feed(b"junk\x00\xff\x00" + good)
    assert chunk == good and ms == pytest.approx(2 * FRAME_MS)
    assert framer.stats.skipped_bytes == 7


def test_reports_replace_the_last_one_and_zero_what_is_gone() -> None:
    reports = ListenerReports()
    assert sorted(reports.replace("w0", {"a": 3, "b": 2})) == [("a", 3), ("b", 2)]
    assert reports.replace("w0", {"a": 3, "b": 2}) == []  # nothing changed
    assert sorted(reports.replace("w0", {"a": 5})) == [("a", 5), ("b", 0)]
    assert reports.replace("w1", {"a": 1}) == [("a", 1)]
    assert reports.replace("w0", {}) == [("a", 0)]  # a restarted worker's first report


def test_report_counts_are_checked() -> None:
    assert parse_counts({"a": 1, "b": -1}) == {"a": 1, "b": -1}
    for bad in ([], {"a": "1"}, {"a": True}, {"a": 1.5}, None):
        with pytest.raises(ReportRefused):
            parse_counts(bad)


def test_report_people_are_checked_and_bounded() -> None:
    assert parse_people(None) == {}
    assert parse_people({"a": ["abcdefghijkm"], "b": []}) == {"a": ["abcdefghijkm"], "b": []}
    too_many = [f"id{i}" for i in range(MAX_PEOPLE_PER_SPACE + 1)]
    for bad in ([], {"a": "x"}, {"a": [1]}, {"a": too_many}, {"a": ["x" * 65]}):
        with pytest.raises(ReportRefused):
            parse_people(bad)


def test_relay_tokens_are_not_tickets_and_expire() -> None:
    signer = Signer(b"k" * 32)
    token = issue_relay_token(signer, "edge-1", now=1000.0, ttl_s=60)
    assert check_relay_token(signer, token, now=1030.0) == "edge-1"
    with pytest.raises(RelayRefused, match="expired"):
        check_relay_token(signer, token, now=1061.0)
    with pytest.raises(RelayRefused, match="bad_signature"):
        check_relay_token(Signer(b"x" * 32), token, now=1030.0)
    ticket = issue_ticket(signer, "space", "listener", now=1000.0, ttl_s=60)
    with pytest.raises(RelayRefused, match="malformed"):
        check_relay_token(signer, ticket.token, now=1030.0)


def test_removed_answer_names_only_reported_spaces_with_removals() -> None:
    rooms = {"a": {"u2", "u1"}, "b": set(), "c": {"u9"}}
    answer = removed_answer(["a", "b", "gone"], rooms.get)
    assert answer == {"a": ["u1", "u2"]}  # "c" was not reported; "b" has no one
    assert parse_removed(answer) == {"a": frozenset({"u1", "u2"})}


def test_removed_answers_are_checked() -> None:
    assert parse_removed(None) == {}  # an origin that answers 204
    for bad in ([], {"a": "u1"}, {"a": [1]}, {"a": ["u"] * (MAX_REMOVED_PER_SPACE + 1)}):
        with pytest.raises(RemovalsRefused):
            parse_removed(bad)


class BufferTransport(asyncio.WriteTransport):
    """Where a listener's bytes go in these tests: kept, never blocking."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class Listener:
    """A stream-port connection as the relay sees it (the ``Waiter`` protocol)."""

    def __init__(self, listener_id: str) -> None:
        self.listener_id = listener_id
        self.transport = BufferTransport()
        self.refusal: Refusal | None = None
        self.streaming = False

    def start_stream(self, fanout: LiveFanout) -> None:
        self.streaming = True
        fanout.attach(self.transport, self.listener_id)

    def refuse(self, refusal: Refusal) -> None:
        self.refusal = refusal


async def _origin(frames: bytes, delay_s: float) -> asyncio.Server:
    """Answers any request with 200, then ``frames`` every 20 ms until closed; the answer
    head waits ``delay_s`` (a relay still connecting)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(delay_s)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/aac\r\n\r\n")
        try:
            for _ in range(500):  # 10 s at most
                writer.write(frames)
                await writer.drain()
                await asyncio.sleep(0.02)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def _until(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_relay_refuses_and_cuts_removed_listeners_only() -> None:
    server = await _origin(_frames([100]), delay_s=0.2)
    port = server.sockets[0].getsockname()[1]
    origin = Origin("127.0.0.1", port, "edge-test", Signer(b"k" * 32))
    relays = Relays(origin, AudioSettings(), EdgeSettings(relay_grace_s=0.1))
    opened: list[str] = []
    relays.on_opened = lambda: opened.append("asked")
    try:
        early = Listener("early")  # waits while the relay connects, removed before it streams
        keep, gone = Listener("keep"), Listener("gone")
        for listener in (early, keep, gone):
            relays.join("space1", listener)
        assert opened == ["asked"]  # one relay, one immediate report asked for
        assert relays.apply_removed(["space1"], {"space1": frozenset({"early"})}) == 0
        assert early.refusal is not None and early.refusal.code == "removed"
        await _until(lambda: keep.streaming and gone.streaming and len(gone.transport.data) > 0)

        # An answer to a report that did not name the space changes nothing.
        assert relays.apply_removed([], {"space1": frozenset({"gone"})}) == 0
        assert not gone.transport.closed
        cut = relays.apply_removed(["space1"], {"space1": frozenset({"early", "gone"})})
        assert cut == 1 and gone.transport.closed and not keep.transport.closed
        assert relays.is_removed("space1", "gone") and not relays.is_removed("space1", "keep")

        again = Listener("gone")
        relays.join("space1", again)
        assert again.refusal is not None and again.refusal.status == 403
        assert not again.streaming

        heard = len(keep.transport.data)
        await _until(lambda: len(keep.transport.data) > heard)  # the others keep streaming
        assert relays.removals.refused == 2 and relays.removals.cut == 1
        assert relays.removals.answers == 3

        # An answer without the space lifts its removals (the origin's set is the truth).
        relays.apply_removed(["space1"], {})
        back = Listener("gone")
        relays.join("space1", back)
        assert back.refusal is None and back.streaming
    finally:
        await relays.close()
        server.close()
        await server.wait_closed()


async def test_a_new_relay_holds_its_listeners_until_the_removals_are_known() -> None:
    server = await _origin(_frames([100]), delay_s=0.0)
    port = server.sockets[0].getsockname()[1]
    origin = Origin("127.0.0.1", port, "edge-test", Signer(b"k" * 32))
    wait_s = 0.3
    relays = Relays(origin, AudioSettings(), EdgeSettings(), removals_wait_s=wait_s)
    try:
        answered, removed = Listener("a"), Listener("removed")
        relay = relays.join("told", answered)
        relays.join("told", removed)
        assert relay is not None
        await _until(lambda: relay.connected)
        assert not answered.streaming and removed.refusal is None  # held: removals unknown
        assert relay.reported_count == -1  # the relay's own connection, counted at the origin
        relays.apply_removed(["told"], {"told": frozenset({"removed"})})
        assert answered.streaming  # at once, not after the wait
        assert removed.refusal is not None and not removed.streaming
        assert removed.transport.data == b"", "a removed listener got audio"

        silent = Listener("b")  # the origin never answers this relay's reports
        other = relays.join("untold", silent)
        assert other is not None
        await _until(lambda: other.connected)
        connected_at = time.monotonic()
        assert not silent.streaming
        await _until(lambda: silent.streaming)
        held = time.monotonic() - connected_at
        print(f"\nheld {held:.3f} s for removals that never came (wait {wait_s} s)")
        assert held >= wait_s * 0.9
    finally:
        await relays.close()
        server.close()
        await server.wait_closed()


async def test_report_answers_are_read_within_their_bound() -> None:
    answers = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n{"removed": {"s": ["u1"]}} ',
        b"HTTP/1.1 204 No Content\r\n\r\n",  # an origin from before removals
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_ANSWER_BYTES + 1),
        b'HTTP/1.1 200 OK\r\n\r\n{"removed": ["u1"]}',  # close-delimited, wrong shape
    ]
    bodies: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(await reader.readexactly(length))
        writer.write(answers[len(bodies) - 1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    origin = Origin("127.0.0.1", server.sockets[0].getsockname()[1], "w", Signer(b"k" * 32))
    try:
        assert await report_once(origin, {"s": 1}) == ReportAnswer(
            200, {"s": frozenset({"u1"})}, []
        )
        assert await report_once(origin, {"s": 1}) == ReportAnswer(204, {}, [])
        for _ in range(2):
            with pytest.raises(RemovalsRefused):
                await report_once(origin, {"s": 1})
    finally:
        server.close()
        await server.wait_closed()
    assert bodies[0] == b'{"counts":{"s":1}}'
