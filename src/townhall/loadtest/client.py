"""A minimal HTTP/1.1 client on asyncio Protocols: keep-alive pool plus long-lived streams.

Why Protocols and not streams or httpx: each simulated listener is a few
hundred bytes of state and one socket; a live stream costs one
``data_received`` call per packet that only counts bytes. JSON calls reuse
idle connections per source address (a browser keeps its connection between
fetching the snapshot and joining); each live stream has its own connection.

Every failure becomes a :class:`RequestError` whose ``kind`` names it the way
the report counts it ("timeout:connect", "conn:refused", ...). Buffers are
bounded: a body past its limit is a "protocol:body_too_large" error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import socket
import sys
import termios
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from townhall.loadtest.http11 import ProtocolError, ResponseHead, ResponseParser

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_IDLE = 512
"""Idle keep-alive connections kept in all; past it the oldest is closed. Every descriptor
spent on an idle connection is one live listener fewer under the process's file limit."""
DEFAULT_IDLE_TIMEOUT_S = 4.0
"""Drop idle connections before the server's keep-alive timeout (uvicorn: 5 s) races us."""
MAX_BODY_BYTES = 1024 * 1024
"""JSON answers and playlists; HLS segments pass their own limit."""
MAX_ERROR_BODY_BYTES = 16 * 1024
"""Body kept from a non-2xx answer to a stream request (to read its error code)."""
PREFIX_BYTES = 16
"""Leading stream bytes kept to recognise the audio format."""
STREAM_RCVLOWAT_BYTES = 4096
"""Once audio flows, wake up for a stream only when this much is waiting (about 0.7 s at
48 kbps; end of stream still wakes at once). Ten wake-ups a second per listener become
about one and a half: the generator's CPU per listener drops several-fold."""
USER_AGENT = "townhall-loadtest/1"
P = TypeVar("P", bound=asyncio.BaseProtocol)


_ERRNO_KINDS = {
    errno.ECONNREFUSED: "conn:refused",
    errno.ECONNRESET: "conn:reset",
    errno.EPIPE: "conn:reset",
    errno.ECONNABORTED: "conn:reset",
    errno.ETIMEDOUT: "timeout:connect",
    errno.EADDRNOTAVAIL: "conn:addr_unavailable",
    errno.EADDRINUSE: "conn:addr_unavailable",
    errno.EMFILE: "client:fd_limit",
    errno.ENFILE: "client:fd_limit",
    errno.ENOBUFS: "client:no_buffers",
}


class RequestError(Exception):
    """A request that got no usable answer; ``kind`` is the report's error category."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def classify_os_error(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout:connect"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return _ERRNO_KINDS[exc.errno]
    if isinstance(exc, ConnectionError):
        return "conn:reset"
    return "conn:error"


def build_request(
    method: str,
    target: str,
    host: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


class Response:
    """A complete answer. ``started_at`` .. ``ended_at`` are event-loop times."""

    __slots__ = ("body", "ended_at", "first_body_at", "headers", "started_at", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, started_at: float,
                 first_body_at: float | None, ended_at: float):
        self.status = status
        self.headers = headers
        self.body = body
        self.started_at = started_at
        self.first_body_at = first_body_at
        self.ended_at = ended_at

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> str | None:
        return error_code_of(self.body)

    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


def error_code_of(body: bytes) -> str | None:
    """The ``error.code`` of a townhall error body, if it is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the delay form; dates are not worth it here)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class Stream:
    """A long-lived response on its own connection: the live audio stream.

    After the head, body bytes are only counted; ``first_byte`` resolves to the
    loop time of the first body byte and ``prefix`` keeps the leading bytes.
    For a non-2xx status the (small) body is read whole instead, into ``body``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.head: asyncio.Future[ResponseHead] = loop.create_future()
        self.first_byte: asyncio.Future[float] = loop.create_future()
        self.ended: asyncio.Future[str] = loop.create_future()
        """Resolves to why the stream stopped: "eof", "reset", "closed", "protocol"."""
        self.complete: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.prefix = b""
        self.body = b""
        self.bytes_received = 0
        self.counting = False
        """Set once the first body byte is in: from then on data is counted, not parsed."""
        self._connection: HttpConnection | None = None

    def close(self) -> None:
        """Close the connection, first counting what arrived but was not read yet
        (reads are coalesced, so up to STREAM_RCVLOWAT_BYTES may wait in the kernel)."""
        connection = self._connection
        if connection is not None:
            if self.counting and not connection.closed:
                self.bytes_received += connection.unread_bytes()
            connection.abort()


class HttpConnection(asyncio.Protocol):
    """One TCP connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: str | None, client: HttpClient):
        self._loop = loop
        self._client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._body = bytearray()
        self._body_limit = MAX_BODY_BYTES
        self._started_at = 0.0
        self._first_body_at: float | None = None
        self._stream: Stream | None = None
        self._client_closed = False

    # -- asyncio.Protocol --------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        stream = self._stream
        if stream is not None and stream.counting:
            stream.bytes_received += len(data)
            return
        if self._parser is None:
            self.abort()  # bytes nobody asked for: the connection is not reusable
            return
        try:
            self._parser.feed(data)
        except ProtocolError as exc:
            self._fail(RequestError("protocol", str(exc)))
            self.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._forget(self)
        parser = self._parser
        if parser is not None and not parser.done:
            try:
                parser.feed_eof()
            except ProtocolError:
                if exc is not None:
                    kind = classify_os_error(exc)
                else:
                    kind = "conn:closed" if parser.started else "conn:closed_before_response"
                self._fail(RequestError(kind, "connection lost before the response ended"))
        stream = self._stream
        if stream is not None and not stream.ended.done():
            reason = "closed" if self._client_closed else ("reset" if exc else "eof")
            stream.ended.set_result(reason)

    def unread_bytes(self) -> int:
        """Bytes waiting in the kernel's receive buffer (FIONREAD); 0 if unknown."""
        if self.transport is None:
            return 0
        sock = self.transport.get_extra_info("socket")
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, AttributeError, ValueError):
            return 0
        return int.from_bytes(raw, sys.byteorder, signed=True)

    def abort(self) -> None:
        self._client_closed = True
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- requests ----------------------------------------------------------
    def send(
        self, request: bytes, *, head_request: bool, body_limit: int
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.requests += 1
        self._waiter = self._loop.create_future()
        self._body = bytearray()
        self._body_limit = body_limit
        self._first_body_at = None
        self._started_at = self._loop.time()
        self._parser = ResponseParser(
            self._on_head_plain, self._on_body_plain, self._on_done_plain, head_request=head_request
        )
        self.transport.write(request)
        return self._waiter

    def send_stream(self, request: bytes, stream: Stream) -> None:
        assert self.transport is not None
        self.requests += 1
        self._stream = stream
        stream._connection = self
        self._parser = ResponseParser(
            self._on_head_stream, self._on_body_stream, self._on_done_stream
        )
        self.transport.write(request)

    @property
    def response_started(self) -> bool:
        return self._parser is not None and self._parser.started

    @property
    def reusable(self) -> bool:
        return not self.closed and self._parser is not None and self._parser.reusable

    def _fail(self, error: RequestError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        stream = self._stream
        if stream is not None:
            for future in (stream.head, stream.first_byte, stream.complete):
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: the caller may have stopped waiting

    def _on_head_plain(self, head: ResponseHead) -> None:
        pass

    def _on_body_plain(self, piece: bytes) -> None:
        if self._first_body_at is None:
            self._first_body_at = self._loop.time()
        if len(self._body) + len(piece) > self._body_limit:
            self._fail(RequestError("protocol:body_too_large", f"over {self._body_limit} bytes"))
            self.abort()
            return
        self._body += piece

    def _on_done_plain(self) -> None:
        parser = self._parser
        waiter = self._waiter
        if parser is None or parser.head is None or waiter is None or waiter.done():
            return
        waiter.set_result(Response(
            parser.head.status, parser.head.headers, bytes(self._body), self._started_at,
            self._first_body_at, self._loop.time(),
        ))

    def _on_head_stream(self, head: ResponseHead) -> None:
        stream = self._stream
        assert stream is not None
        stream.status = head.status
        stream.headers = head.headers
        if not stream.head.done():
            stream.head.set_result(head)

    def _on_body_stream(self, piece: bytes) -> None:
        stream = self._stream
        assert stream is not None
        if 200 <= stream.status < 300:
            stream.bytes_received += len(piece)
            if not stream.first_byte.done() and piece:
                stream.prefix = piece[:PREFIX_BYTES]
                stream.first_byte.set_result(self._loop.time())
                stream.counting = True
                self._coalesce_reads()
        elif len(stream.body) + len(piece) <= MAX_ERROR_BODY_BYTES:
            stream.body += piece

    def _coalesce_reads(self) -> None:
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, STREAM_RCVLOWAT_BYTES)

    def _on_done_stream(self) -> None:
        stream = self._stream
        assert stream is not None
        if not stream.complete.done():
            stream.complete.set_result(None)


class HttpClient:
    """Requests to one server: a keep-alive pool for short calls, a connection per stream."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        host_header: str | None = None,
        max_idle: int = DEFAULT_MAX_IDLE,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ):
        self.host = host
        self.port = port
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host_header = host_header or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self.max_idle = max_idle
        self.idle_timeout_s = idle_timeout_s
        self._idle: dict[str | None, list[HttpConnection]] = {}
        self._lru: OrderedDict[HttpConnection, None] = OrderedDict()
        self._open: set[HttpConnection] = set()
        self.connections_opened = 0
        self.connections_reused = 0
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    # -- connections -------------------------------------------------------
    async def connect(self, local_addr: str | None, timeout: float) -> HttpConnection:
        """A new pooled-kind connection, bound to ``local_addr`` first when given."""
        loop = asyncio.get_running_loop()
        protocol = await self.connect_raw(
            lambda: HttpConnection(loop, local_addr, self), local_addr, timeout
        )
        self._open.add(protocol)
        if self._closed:
            protocol.abort()
            raise RequestError("client:closed")
        return protocol

    async def connect_raw(
        self, factory: Callable[[], P], local_addr: str | None, timeout: float
    ) -> P:
        """A TCP connection to the server with any protocol (the caller closes it).

        Binding to a loopback alias before connecting is what makes the server
        see many (or few) client addresses from this one process.
        """
        if self._closed:
            raise RequestError("client:closed")
        loop = asyncio.get_running_loop()
        # The loop binds and connects (both event loops set TCP_NODELAY themselves):
        # measured 25% less CPU per connection than binding our own socket first.
        local = (local_addr, 0) if local_addr is not None else None
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(
                    factory, self.host, self.port, local_addr=local
                )
        except (OSError, TimeoutError) as exc:
            raise RequestError(classify_os_error(exc), str(exc)) from None
        self.connections_opened += 1
        return protocol

    def _forget(self, connection: HttpConnection) -> None:
        self._open.discard(connection)
        self._lru.pop(connection, None)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _take_idle(self, key: str | None, now: float) -> HttpConnection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            self._lru.pop(connection, None)
            if not connection.closed and now - connection.idle_since < self.idle_timeout_s:
                return connection
            connection.abort()
        return None

    def _release(self, connection: HttpConnection, now: float) -> None:
        if not connection.reusable or self._closed:
            connection.abort()
            return
        connection.idle_since = now
        self._idle.setdefault(connection.key, []).append(connection)
        self._lru[connection] = None
        while len(self._lru) > self.max_idle:
            oldest, _ = self._lru.popitem(last=False)
            oldest.abort()

    # -- requests ----------------------------------------------------------
    async def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        headers: Iterable[tuple[str, str]] = (),
        local_addr: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        body_limit: int = MAX_BODY_BYTES,
    ) -> Response:
        """One request on a pooled connection; a stale idle connection is retried once."""
        headers = list(headers)
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            headers.append(("Content-Type", "application/json"))
        raw = build_request(method, target, self.host_header, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in range(2):
            connection = self._take_idle(local_addr, loop.time()) if attempt == 0 else None
            reused = connection is not None
            if connection is None:
                connection = await self.connect(local_addr, max(deadline - loop.time(), 0.001))
            else:
                self.connections_reused += 1
            waiter = connection.send(raw, head_request=method == "HEAD", body_limit=body_limit)
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    response = await waiter
            except TimeoutError:
                connection.abort()
                raise RequestError("timeout:response", f"{method} {target}") from None
            except RequestError as exc:
                connection.abort()
                stale = reused and exc.kind in ("conn:closed_before_response", "conn:reset")
                if stale and not connection.response_started:
                    continue
                raise
            except BaseException:
                connection.abort()
                raise
            self._release(connection, loop.time())
            return response
        raise AssertionError("unreachable: the second attempt always returns or raises")

    async def stream(
        self,
        target: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        local_addr: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Stream:
        """GET on a connection of its own; returns once the head is in.

        A non-2xx answer is read whole (it is small) and the connection closed.
        The caller closes a 2xx stream with :meth:`Stream.close`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = await self.connect(local_addr, timeout)
        stream = Stream(loop)
        connection.send_stream(build_request("GET", target, self.host_header, headers), stream)
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                await stream.head
                if not 200 <= stream.status < 300:
                    await stream.complete
        except TimeoutError:
            connection.abort()
            raise RequestError("timeout:response", f"GET {target}") from None
        except BaseException:
            connection.abort()
            raise
        if not 200 <= stream.status < 300:
            connection.abort()
        return stream

    async def aclose(self) -> None:
        """Close every connection this client opened, idle or streaming."""
        self._closed = True
        for connection in list(self._open):
            connection.abort()
        self._idle.clear()
        self._lru.clear()
        await asyncio.sleep(0)


def status_kind(status: int, code: str | None = None) -> str:
    """The report's name for an HTTP error answer: "5xx:502" (a proxy's, no JSON code),
    "5xx:503:overloaded" (the server's own refusal names itself), "4xx:429:rate_limited"."""
    if status >= 500:
        return f"5xx:{status}:{code}" if code else f"5xx:{status}"
    return f"4xx:{status}:{code or '-'}"
