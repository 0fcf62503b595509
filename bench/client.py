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
        join returned, until its first audio byte."""
        started = _now()
        deadline = started + timeout_s
        gate = asyncio.Semaphore(window)
        done: list[float] = []
        failures: dict[str, int] = {}

        async def one() -> None:
            async with gate:
                t0 = _now()
                try:
                    async with asyncio.timeout(max(0.1, deadline - t0)):
                        live_path = await self._join_over_api()
                        listener = Listener(self, self.stream_request(live_path))
                        listener.waiter = self.loop.create_future()
                        listener.started = t0
                        await self.connect(self.target.port, listener)
                        if await listener.waiter:
                            done.append(_now() - t0)
                            return
                        failures["stream_refused"] = failures.get("stream_refused", 0) + 1
                except (OSError, TimeoutError, ValueError) as exc:
                    key = type(exc).__name__
                    failures[key] = failures.get(key, 0) + 1

        await asyncio.gather(*(one() for _ in range(n)))
        return {
            "requested": n,
            "joined": len(done),
            "elapsed_s": _now() - started,
            "join_to_audio_s": done,
            "failures": failures,
        }

    async def _join_over_api(self) -> str:
        target = self.target
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        await self.connect(target.origin_port, protocol)
        writer = asyncio.StreamWriter(protocol._transport, protocol, reader, self.loop)  # type: ignore[attr-defined]
        try:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            host = f"Host: {target.host}:{target.origin_port}\r\n"
            writer.write(f"GET /api/spaces/{target.space_id} HTTP/1.1\r\n{host}\r\n".encode())
            status, _ = await _read_response(reader)
            if status != 200:
                raise ValueError(f"snapshot answered {status}")
            writer.write(
                f"POST /api/spaces/{target.space_id}/join HTTP/1.1\r\n{host}"
                "Content-Length: 0\r\n\r\n".encode()
            )
            status, body = await _read_response(reader)
            if status != 200:
                raise ValueError(f"join answered {status}")
            answer = json.loads(body)
            if "live_url" not in answer:
                raise ValueError("waiting room")
            url = answer["live_url"]
            return url[url.index("/live/") :]
        finally:
            writer.close()

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


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


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
