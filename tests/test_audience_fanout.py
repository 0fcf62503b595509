"""The live fan-out over real sockets on 127.0.0.1, plus its bookkeeping and its cost."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from townhall.audience.fanout import LiveFanout, LiveListener
from townhall.config import AudioSettings

SETTINGS = AudioSettings(live_chunk_ms=100, live_burst_ms=1000, live_max_lag_ms=8000)
STREAM_RATE = 6_000  # bytes/s, ~48 kbps
CHUNK_BYTES = 600  # 100 ms at STREAM_RATE
TIMEOUT_S = 10.0


def chunk(n: int, size: int = CHUNK_BYTES) -> bytes:
    """Distinct, recognisable chunks so a reordering or a loss shows in a comparison."""
    return (n.to_bytes(4, "big") * (size // 4 + 1))[:size]


class FanoutServer(asyncio.Protocol):
    """What the HTTP layer does: hand the accepted transport to the fan-out."""

    def __init__(self, fanout: LiveFanout, ids: list[str]) -> None:
        self.fanout = fanout
        self.ids = ids
        self.listener: LiveListener | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.listener = self.fanout.attach(transport, self.ids.pop(0))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.fanout.detach(self.listener)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), TIMEOUT_S)


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_listeners_get_identical_bytes_a_stalled_one_is_cut_late_joiner_gets_burst() -> None:
    fanout = LiveFanout(SETTINGS, stream_bytes_per_second=STREAM_RATE)
    counts: list[int] = []
    fanout.on_count_change = counts.append
    ids = ["a", "b", "c", "stalled", "late"]
    server = await asyncio.get_running_loop().create_server(
        lambda: FanoutServer(fanout, ids), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    published: list[bytes] = []

    def publish(n: int) -> None:
        published.append(chunk(n))
        fanout.publish(published[-1], SETTINGS.live_chunk_ms)

    try:
        readers = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            readers.append((reader, writer))
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))  # and never reads
        await until(lambda: fanout.listener_count == 4, "four listeners")
        tasks = [asyncio.create_task(read_all(r)) for r, _ in readers]

        # Faster than real time so the stalled socket fills in well under a second.
        n = 0
        started = time.perf_counter()
        while fanout.stats.cut_slow == 0:
            assert n < 5_000, "the stalled listener was never cut"
            publish(n)
            n += 1
            if n % 10 == 0:
                await asyncio.sleep(0.001)  # let the readers drain
        cut_after = sum(map(len, published))
        print(
            f"\nstalled listener cut after {cut_after} bytes published "
            f"({cut_after / STREAM_RATE:.1f} s of audio; bound {fanout.max_backlog_bytes} B "
            f"in user space, the rest in kernel buffers), "
            f"{time.perf_counter() - started:.2f} s wall"
        )
        assert fanout.stats.cut_slow == 1
        assert fanout.listener_count == 3
        # Bound in user space plus two kernel buffers (SO_SNDBUF set by the fan-out, the
        # stalled client's small SO_RCVBUF): generous, but far from "unbounded".
        assert fanout.max_backlog_bytes < cut_after < fanout.max_backlog_bytes + 400_000
        stalled.setblocking(False)
        with pytest.raises((ConnectionResetError, BlockingIOError)):
            while stalled.recv(65536):
                pass  # the abort reaches the client as a reset once its buffer drains

        for _ in range(20):  # the others keep receiving
            publish(n)
            n += 1
        burst_expected = b"".join(published[-10:])  # 1000 ms of 100 ms chunks
        late_reader, late_writer = await asyncio.open_connection("127.0.0.1", port)
        await until(lambda: fanout.listener_count == 4, "the late joiner")
        late_task = asyncio.create_task(read_all(late_reader))
        after_join = len(published)
        for _ in range(5):
            publish(n)
            n += 1
            await asyncio.sleep(0.001)
        fanout.close()

        everything = b"".join(published)
        received = await asyncio.gather(*tasks)
        assert all(r == everything for r in received), [len(r) for r in received]
        late = await late_task
        assert late == burst_expected + b"".join(published[after_join:])
        assert fanout.stats.attached_total == 5
        assert fanout.stats.burst_bytes_written >= len(burst_expected)
        assert fanout.stats.closed_at_end == 4
        assert counts[:4] == [1, 2, 3, 4] and counts[-1] == 0
        for _, writer in [*readers, (late_reader, late_writer)]:
            writer.close()
        stalled.close()
    finally:
        server.close()
        await server.wait_closed()


class FakeTransport(asyncio.WriteTransport):
    """Counts bytes; its backlog is whatever the test says it is."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.backlog = 0
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def test_cut_by_id_closes_every_connection_of_that_listener() -> None:
    fanout = LiveFanout(SETTINGS)
    tabs = [FakeTransport(), FakeTransport()]
    other = FakeTransport()
    for t in tabs:
        fanout.attach(t, "alice")
    fanout.attach(other, "bob")
    assert fanout.cut("alice") == 2
    assert fanout.cut("alice") == 0
    assert all(t.closed for t in tabs) and not other.closed
    fanout.publish(chunk(1))
    assert other.written == CHUNK_BYTES and all(t.written == 0 for t in tabs)
    assert fanout.stats.cut_by_id == 2 and fanout.listener_count == 1


def test_gone_and_slow_listeners_are_dropped_and_counted() -> None:
    fanout = LiveFanout(SETTINGS, stream_bytes_per_second=STREAM_RATE)
    gone, slow, fine = FakeTransport(), FakeTransport(), FakeTransport()
    listeners = [fanout.attach(t, name) for t, name in [(gone, "g"), (slow, "s"), (fine, "f")]]
    gone.closed = True
    slow.backlog = fanout.max_backlog_bytes  # at the bound: kept
    fanout.publish(chunk(1))
    assert fanout.listener_count == 2 and fanout.stats.gone == 1
    slow.backlog += 1  # past it: cut
    fanout.publish(chunk(2))
    assert slow.aborted and fanout.stats.cut_slow == 1 and fanout.listener_count == 1
    assert fanout.max_backlog_bytes == STREAM_RATE * SETTINGS.live_max_lag_ms // 1000
    for listener in listeners:
        fanout.detach(listener)  # idempotent for the ones already dropped
    assert fanout.stats.detached == 1 and fanout.listener_count == 0


def test_burst_holds_the_last_second_only() -> None:
    fanout = LiveFanout(SETTINGS)
    for n in range(25):
        fanout.publish(chunk(n), 100)
    assert fanout.burst() == b"".join(chunk(n) for n in range(15, 25))
    fanout.publish(chunk(99, 6000), 1500)  # one chunk longer than the burst: still kept
    assert fanout.burst() == chunk(99, 6000)


def test_attach_after_close_gets_the_burst_then_eof() -> None:
    fanout = LiveFanout(SETTINGS)
    fanout.publish(chunk(1))
    fanout.close()
    late = FakeTransport()
    fanout.attach(late, "x")
    assert late.written == CHUNK_BYTES and late.closed and fanout.listener_count == 0
    fanout.publish(chunk(2))
    assert late.written == CHUNK_BYTES


def test_cost_per_listener_per_chunk() -> None:
    """Rough numbers: fake transports show the loop itself, socket pairs add the syscall."""
    fanout = LiveFanout(SETTINGS)
    for i in range(1000):
        fanout.attach(FakeTransport(), f"l{i}")
    payload = chunk(0, 640)
    rounds = 200
    started = time.process_time()
    for _ in range(rounds):
        fanout.publish(payload)
    per = (time.process_time() - started) / rounds / 1000
    print(f"\nfan-out loop, 1000 fake transports: {per * 1e9:.0f} ns per listener per chunk")
    assert per < 50e-6
    assert fanout.stats.bytes_written == 1000 * rounds * 640


async def test_cost_per_listener_per_chunk_on_real_sockets() -> None:
    loop = asyncio.get_running_loop()
    fanout = LiveFanout(SETTINGS)
    pairs = [socket.socketpair() for _ in range(200)]
    transports = []
    try:
        for ours, _ in pairs:
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
            transports.append(transport)
            fanout.attach(transport, "x")
        payload = chunk(0, 640)
        rounds = 30  # 19 KB per socket: fits the kernel buffer unread
        started = time.process_time()
        for _ in range(rounds):
            fanout.publish(payload)
        per = (time.process_time() - started) / rounds / len(pairs)
        print(f"\nfan-out to 200 socket pairs: {per * 1e6:.1f} µs per listener per chunk")
        assert fanout.stats.cut_slow == 0 and per < 500e-6
    finally:
        fanout.close()
        await asyncio.sleep(0)
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
        with contextlib.suppress(Exception):
            for transport in transports:
                transport.abort()
