"""An incremental HTTP/1.1 response parser: bytes in, head and body pieces out.

Why our own: the load generator holds tens of thousands of connections in one
process, and a general client (httpx: a pool, a state machine and several
objects per request) costs more CPU per connection than the server under test.
This parser does only what a response needs - status line, headers, and the
three ways a body ends (Content-Length, chunked, connection close) - and
hands body bytes to a callback without copying them into a message object.
Every buffer it keeps is bounded; going past a bound is a ``ProtocolError``.
Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_HEAD_BYTES = 64 * 1024
"""Status line and headers together; more is a broken or hostile server."""
MAX_CHUNK_LINE_BYTES = 4 * 1024
"""A chunk-size line with its extensions."""
NO_BODY_STATUSES = frozenset({204, 304})

BodyCallback = Callable[[bytes], None]


class ProtocolError(Exception):
    """The server sent something that is not an HTTP/1.1 response."""


class ResponseHead:
    __slots__ = ("headers", "reason", "status", "version")

    def __init__(self, version: str, status: int, reason: str, headers: dict[str, str]):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        """Lower-cased names; a repeated header keeps its values joined by ", "."""

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def parse_head(raw: bytes) -> ResponseHead:
    """Status line and headers, without the final blank line."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise ProtocolError("undecodable head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return ResponseHead(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseParser:
    """Feeds on bytes; calls ``on_head`` once, ``on_body`` per piece, ``on_done`` at the end.

    ``reusable`` tells afterwards whether the connection may carry another
    request (the body was delimited and nobody asked to close).
    """

    __slots__ = (
        "_buffer", "_is_head_request", "_on_body", "_on_done", "_on_head", "_remaining",
        "_state", "head",
    )

    def __init__(
        self,
        on_head: Callable[[ResponseHead], None],
        on_body: BodyCallback,
        on_done: Callable[[], None],
        *,
        head_request: bool = False,
    ):
        self._on_head = on_head
        self._on_body = on_body
        self._on_done = on_done
        self._is_head_request = head_request
        self._buffer = b""
        self._state = _HEAD
        self._remaining = 0
        self.head: ResponseHead | None = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def started(self) -> bool:
        """Any byte of the response has arrived (a stale keep-alive race has not happened)."""
        return bool(self._buffer) or self._state != _HEAD

    @property
    def reusable(self) -> bool:
        return (
            self._state == _DONE
            and self.head is not None
            and self.head.keep_alive
            and not self._buffer
        )

    def feed(self, data: bytes) -> None:
        if self._state == _DONE:
            if data:
                self._buffer += data  # unexpected: makes the connection unreusable
            return
        if self._state == _UNTIL_CLOSE and not self._buffer:
            self._on_body(data)
            return
        if self._state == _LENGTH and not self._buffer and len(data) < self._remaining:
            self._remaining -= len(data)
            self._on_body(data)
            return
        self._buffer += data
        while self._step():
            pass

    def feed_eof(self) -> None:
        """The server closed: ends a close-delimited body, else the response was cut short."""
        if self._state == _UNTIL_CLOSE:
            self._finish()
        elif self._state != _DONE:
            raise ProtocolError("connection closed before the response ended")

    def _finish(self) -> None:
        self._state = _DONE
        self._on_done()

    def _step(self) -> bool:
        """Consume what the buffer allows in the current state; True if progress was made."""
        state = self._state
        buf = self._buffer
        if state == _HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProtocolError("response head too large")
                return False
            head = parse_head(buf[:end])
            self._buffer = buf[end + 4 :]
            if 100 <= head.status < 200 and head.status != 101:
                return True  # interim response: the real one follows
            self.head = head
            self._on_head(head)
            self._begin_body(head)
            return self._state != _DONE or bool(self._buffer)
        if state == _LENGTH:
            if not buf:
                return False
            piece = buf[: self._remaining]
            self._buffer = buf[len(piece) :]
            self._remaining -= len(piece)
            self._on_body(piece)
            if self._remaining == 0:
                self._finish()
            return False
        if state == _UNTIL_CLOSE:
            if buf:
                self._buffer = b""
                self._on_body(buf)
            return False
        if state == _CHUNK_SIZE:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE_BYTES:
                    raise ProtocolError("chunk size line too long")
                return False
            size_text = buf[:end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from exc
            self._buffer = buf[end + 2 :]
            self._remaining = size
            self._state = _CHUNK_DATA if size else _TRAILERS
            return True
        if state == _CHUNK_DATA:
            if not buf:
                return False
            piece = buf[: self._remaining]
            self._buffer = buf[len(piece) :]
            self._remaining -= len(piece)
            self._on_body(piece)
            if self._remaining == 0:
                self._state = _CHUNK_END
            return bool(self._buffer)
        if state == _CHUNK_END:
            if len(buf) < 2:
                return False
            if buf[:2] != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
            self._buffer = buf[2:]
            self._state = _CHUNK_SIZE
            return True
        if state == _TRAILERS:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProtocolError("trailers too large")
                return False
            self._buffer = buf[end + 2 :]
            if end == 0:
                self._finish()
                return False
            return True
        return False

    def _begin_body(self, head: ResponseHead) -> None:
        if self._is_head_request or head.status in NO_BODY_STATUSES:
            self._finish()
            return
        encoding = head.headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding.split(",")[-1].strip() != "chunked":
                self._state = _UNTIL_CLOSE  # RFC 9112 6.3: unknown final coding ends at close
                head.headers["connection"] = "close"
            else:
                self._state = _CHUNK_SIZE
            return
        length_text = head.headers.get("content-length")
        if length_text is None:
            self._state = _UNTIL_CLOSE
            head.headers["connection"] = "close"
            return
        try:
            length = int(length_text.split(",")[0])
        except ValueError as exc:
            raise ProtocolError(f"bad Content-Length {length_text[:20]!r}") from exc
        if length < 0:
            raise ProtocolError("negative Content-Length")
        self._remaining = length
        if length == 0:
            self._finish()
        else:
            self._state = _LENGTH
