"""The listener client, the same for every server: one process, uvloop, raw Protocols.

Driven over stdin/stdout with one JSON object per line (see ``COMMANDS``), so the
bench can hold listeners open while it measures the server, then storm them.
One process holds at most about 19,000 sockets here (the file limit), so the bench
runs several; each binds its own loopback source address so the 28k ephemeral
ports are per process, and closes with RST (SO_LINGER 0) so no TIME_WAIT piles up.

What it measures, identically for every server:
- time to first audio byte (TTFA) of every listener: connect → first body byte;
- per-chunk lateness: each listener should get a chunk every chunk interval (both
  servers write once per 0.5 s chunk by default); a read that comes more than 1.5
  intervals after that listener's previous one is late. A server over capacity
  cannot keep every listener's beat and the late share climbs; the client itself
  is measured too (its CPU is reported) so it is not mistaken for the server.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

import uvloop

LINGER_RST: Final = struct.pack("ii", 1, 0)
IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MAX_HEAD: Final = 16 * 1024
LATE_AFTER_CHUNKS: Final = 1.5
"""A read is late when it comes more than 1.5 chunk intervals after the same listener's
previous read: the server missed its beat by more than half a chunk."""
RETRY_PAUSE_S: Final = 0.05
ATTEMPT_TIMEOUT_S: Final = 5.0
"""A listener that hears nothing 5 s after it starts connecting gives up and tries a
fresh connection, as a player would; a fresh SYN also escapes the kernel's backoff
(1, 3, 7, 15 s...) for one dropped by a full accept queue."""
_now = time.monotonic


@dataclass
class Target:
    host: str
    port: int
    path: str
    """Stream path; ``{ticket}`` is replaced by a ticket minted per listener."""
    source_ip: str = "127.0.0.1"
    secret: str = ""
    space_id: str = ""
    origin_port: int = 0
    """For full joins: the API port (snapshot and join go there, the stream to ``port``)."""
    chunk_ms: float = 500.0
    stream_on_join_connection: bool = True
    """When ``origin_port`` is ``port``: ask the stream on the join's connection (as a
    browser reuses its keep-alive connection to the same origin), else on a new one."""
    extra: dict[str, Any] = field(default_factory=dict)


class Listener(asyncio.Protocol):
    __slots__ = ("first", "head", "last", "pool", "request", "started", "transport", "waiter")

    def __init__(self, pool: Pool, request: bytes) -> None:
        self.pool = pool
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.started = _now()
        self.first = 0.0
        self.last = 0.0
        self.head: bytearray | None = bytearray()
        self.waiter: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = _now()
        pool = self.pool
        if self.first:
            pool.bytes += len(data)
            pool.reads += 1
            if now - self.last > pool.late_after:
                pool.late += 1
            self.last = now
            return
        head = self.head
        assert head is not None
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HEAD:
                self._fail("head_too_large")
            return
        status = head[4:7] if head[:4] == b"ICY " else head[9:12]
        if status != b"200":
            self._fail(f"status_{status.decode('latin-1') or 'bad'}")
            return
        if len(head) - end - 4 <= 0:
            return
        pool.bytes += len(head) - end - 4
        self.head = None
        self.first = self.last = now
        pool.first_audio(self, now)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(False)

    def _fail(self, why: str) -> None:
        self.pool.errors[why] = self.pool.errors.get(why, 0) + 1
        if self.transport is not None:
            self.transport.abort()


def _answer(buffer: bytearray) -> tuple[bytes, bytes] | None:
    """(status, body) of the whole HTTP answer at the start of ``buffer`` (removed from
    it), or None while it is not whole. Bench-grade: the servers measured are ours and
    always send Content-Length."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower() + b"\r\n"
    at = head.find(b"content-length:")
    length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
    if len(buffer) < end + 4 + length:
        return None
    status, body = head[9:12], bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return status, body


LIVE_URL_KEY: Final = b'"live_url":"'


class FullJoin(asyncio.Protocol):
    """One listener's snapshot and join, then its stream (see ``Pool.joins``)."""

    __slots__ = ("buffer", "run", "started", "step", "transport")

    def __init__(self, run: JoinRun) -> None:
        self.run = run
        self.started = _now()
        self.step = 0
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        transport.write(self.run.snapshot_request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answer = _answer(self.buffer)
        if answer is None:
            return
        status, body = answer
        run = self.run
        if status != b"200":
            self._fail(("snapshot" if self.step == 0 else "join") + f"_{status.decode()}")
        elif self.step == 0:
            self.step = 1
            assert self.transport is not None
            self.transport.write(run.join_request)
        else:
            at = body.find(LIVE_URL_KEY)
            if at < 0:
                self._fail("waiting_room")
                return
            url = body[at + len(LIVE_URL_KEY) : body.index(b'"', at + len(LIVE_URL_KEY))]
            path = url[url.index(b"/live/") :].decode()
            self.step = 2
            run.stream(self, run.pool.stream_request(path))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.step < 2:
            self._fail("closed")

    def _fail(self, why: str) -> None:
        if self.step == 3:
            return
        self.step = 3
        if self.transport is not None:
            self.transport.abort()
        self.run.failed(why)


class JoinRun:
    """``n`` full joins, ``window`` at a time, driven by callbacks."""

    def __init__(self, pool: Pool, n: int, window: int) -> None:
        target = pool.target
        self.pool = pool
        self.left = n
        self.window = window
        self.in_flight = 0
        self.done: list[float] = []
        self.failures: dict[str, int] = {}
        self.finished: asyncio.Future[None] = pool.loop.create_future()
        self.same_connection = (
            target.origin_port == target.port and target.stream_on_join_connection
        )
        host = f"Host: {target.host}:{target.origin_port}\r\n"
        self.snapshot_request = f"GET /api/spaces/{target.space_id} HTTP/1.1\r\n{host}\r\n".encode()
        self.join_request = (
            f"POST /api/spaces/{target.space_id}/join HTTP/1.1\r\n"
            f"{host}Content-Length: 0\r\n\r\n"
        ).encode()
        self._tasks: set[asyncio.Task[None]] = set()

    def start_more(self) -> None:
        while self.left > 0 and self.in_flight < self.window and not self.finished.done():
            self.left -= 1
            self.in_flight += 1
            self._connect(self.pool.target.origin_port, FullJoin(self))

    def _connect(self, port: int, protocol: asyncio.Protocol) -> None:
        task = self.pool.loop.create_task(self.pool.connect(port, protocol))
        self._tasks.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.failed(f"{type(exc).__name__}:{getattr(exc, 'errno', '')}")

    def stream(self, join: FullJoin, request: bytes) -> None:
        """The join answered: its live stream, on the same connection or a new one."""
        listener = Listener(self.pool, request)
        listener.started = join.started
        listener.waiter = self.pool.loop.create_future()
        listener.waiter.add_done_callback(lambda heard: self._heard(listener, heard))
        if self.same_connection and join.transport is not None:
            transport = join.transport
            listener.transport = transport
            transport.set_protocol(listener)
            transport.write(request)
        else:
            if join.transport is not None:
                join.transport.close()
            self._connect(self.pool.target.port, listener)

    def _heard(self, listener: Listener, heard: asyncio.Future[bool]) -> None:
        if heard.result():
            self.done.append(listener.first - listener.started)
            self._next()
        else:
            self.failed("stream_refused")

    def failed(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1
        self._next()

    def _next(self) -> None:
        self.in_flight -= 1
        self.start_more()
        if self.left == 0 and self.in_flight == 0 and not self.finished.done():
            self.finished.set_result(None)

    def give_up(self) -> None:
        """The deadline: what is still in flight counts as failed."""
        if self.in_flight + self.left:
            self.failures["deadline"] = self.in_flight + self.left
        self.left = 0
        if not self.finished.done():
            self.finished.set_result(None)
        for task in self._tasks:
            task.cancel()


class Pool:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.loop = asyncio.get_running_loop()
        self.listeners: set[Listener] = set()
        self.ttfa: list[float] = []
        self.errors: dict[str, int] = {}
        self.bytes = 0
        self.reads = 0
        self.late = 0
        self.dropped = 0
        self.late_after = target.chunk_ms / 1000 * LATE_AFTER_CHUNKS
        self._signer = None
        if target.secret:
            from townhall.admission.signing import Signer

            self._signer = Signer(target.secret.encode())
        self._serial = 0

    # -- callbacks ----------------------------------------------------------------------------

    def first_audio(self, listener: Listener, now: float) -> None:
        self.listeners.add(listener)
        self.ttfa.append(now - listener.started)

    def lost(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.discard(listener)
            self.dropped += 1

    # -- requests -----------------------------------------------------------------------------

    def stream_request(self, path: str | None = None) -> bytes:
        target = self.target
        if path is None:
            path = target.path
            if "{ticket}" in path:
                path = path.replace("{ticket}", self._ticket())
        return (
            f"GET {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            "User-Agent: townhall-bench\r\nAccept: */*\r\n\r\n"
        ).encode()

    def _ticket(self) -> str:
        from townhall.admission.tickets import issue_ticket

        assert self._signer is not None
        self._serial += 1
        listener = f"bench-{os.getpid()}-{self._serial}"
        return issue_ticket(self._signer, self.target.space_id, listener, time.time(), 3600).token

    async def connect(self, port: int, protocol: asyncio.Protocol) -> None:
        """Connect from this process's source address. The port is left to connect()
        (IP_BIND_ADDRESS_NO_PORT): bind() with port 0 searches the whole ephemeral range
        and takes milliseconds once ~20,000 ports are in use, which made the *client*
        the bottleneck of a reconnect storm."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.target.source_ip, 0))
            sock.setblocking(False)
            # Handed over still connecting: uvloop queues the request until the socket is
            # writable and reports a refused connect as connection_lost, which saves a
            # future and a writer registration per connection in a storm.
            error = sock.connect_ex((self.target.host, port))
            if error not in (0, errno.EINPROGRESS):
                raise OSError(error, os.strerror(error))
            await self.loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()
            raise

    # -- commands -----------------------------------------------------------------------------

    async def open(
        self, n: int, window: int, timeout_s: float, requests: list[bytes] | None = None
    ) -> dict[str, Any]:
        """Open ``n`` listeners, at most ``window`` in flight; retry failures until the
        deadline. Returns when every one has heard audio (or at the deadline).

        ``requests`` reuses request heads (a reconnecting player keeps its ticket)."""
        started = _now()
        deadline = started + timeout_s
        gate = asyncio.Semaphore(window)
        ttfa_from = len(self.ttfa)
        retries = 0

        async def one(request: bytes | None) -> bool:
            nonlocal retries
            async with gate:
                while _now() < deadline:
                    listener = Listener(self, request or self.stream_request())
                    listener.waiter = self.loop.create_future()
                    try:
                        async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                            await self.connect(self.target.port, listener)
                            if await listener.waiter:
                                return True
                    except TimeoutError:  # before OSError, whose subclass it is
                        self.errors["attempt_timeout"] = self.errors.get("attempt_timeout", 0) + 1
                    except OSError as exc:
                        key = f"OSError:{exc.errno}"
                        self.errors[key] = self.errors.get(key, 0) + 1
                    if listener.transport is not None:
                        listener.transport.abort()
                    retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                return False

        errors_before = dict(self.errors)
        tasks = [
            asyncio.ensure_future(one(requests[i] if requests else None)) for i in range(n)
        ]
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            self.errors["deadline"] = self.errors.get("deadline", 0) + len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        opened = sum(1 for task in done if not task.cancelled() and task.result())
        elapsed = _now() - started
        return {
            "errors": {k: v - errors_before.get(k, 0) for k, v in self.errors.items()
                       if v != errors_before.get(k, 0)},
            "requested": n,
            "opened": opened,
            "retries": retries,
            "elapsed_s": elapsed,
            "ttfa_s": self.ttfa[ttfa_from:],
            "holding": len(self.listeners),
        }

    async def storm(self, window: int, timeout_s: float) -> dict[str, Any]:
        """Drop every listener at once (RST) and bring them straight back, each with the
        ticket it had."""
        dropped = list(self.listeners)
        self.listeners.clear()
        for listener in dropped:
            if listener.transport is not None:
                listener.transport.abort()
        return await self.open(len(dropped), window, timeout_s, [d.request for d in dropped])

    async def joins(self, n: int, window: int, timeout_s: float) -> dict[str, Any]:
        """Full joins: GET snapshot + POST join on the API port, then the live URL the
        join returned, until its first audio byte; at most ``window`` in flight. When the
        API port is the stream port (the stream workers answer both), the stream is asked
        on the same keep-alive connection, as a browser reuses it. Raw protocols and
        callbacks, no task per join: the generator shares the cores with the server, and
        each microsecond it spends is one the server does not get."""
        run = JoinRun(self, n, window)
        started = _now()
        run.start_more()
        try:
            await asyncio.wait_for(asyncio.shield(run.finished), timeout_s)
        except TimeoutError:
            run.give_up()
        return {
            "requested": n,
            "joined": len(run.done),
            "elapsed_s": _now() - started,
            "join_to_audio_s": run.done,
            "failures": run.failures,
        }

    def window(self) -> dict[str, Any]:
        """Counters since the last call (the bench brackets its CPU window with two)."""
        snapshot = {
            "reads": self.reads,
            "late": self.late,
            "bytes": self.bytes,
            "holding": len(self.listeners),
            "dropped": self.dropped,
            "errors": dict(self.errors),
            "cpu_s": _cpu_seconds(),
        }
        self.reads = self.late = self.bytes = 0
        return snapshot

    def close_all(self) -> int:
        n = len(self.listeners)
        for listener in list(self.listeners):
            if listener.transport is not None:
                listener.transport.abort()
        self.listeners.clear()
        return n


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


COMMANDS = ("open", "storm", "joins", "window", "close", "exit")


async def serve_commands(target: Target) -> None:
    pool = Pool(target)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout

    def reply(value: dict[str, Any]) -> None:
        out.write(json.dumps(value) + "\n")
        out.flush()

    reply({"ready": True, "pid": os.getpid()})
    while line := await reader.readline():
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "open":
            reply(await pool.open(**command))
        elif name == "storm":
            reply(await pool.storm(**command))
        elif name == "joins":
            reply(await pool.joins(**command))
        elif name == "window":
            reply(pool.window())
        elif name == "close":
            reply({"closed": pool.close_all()})
        elif name == "exit":
            pool.close_all()
            reply({"bye": True})
            return
        else:
            reply({"error": f"unknown command {name!r}"})


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    target = Target(**json.loads(sys.argv[1]))
    uvloop.run(serve_commands(target))


if __name__ == "__main__":
    main()
