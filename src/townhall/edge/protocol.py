"""The stream port's HTTP/1.1: one request per connection, then audio until EOF.

Kept tiny on purpose: a raw asyncio Protocol with httptools' parser and no
framework, because this is the path a flash crowd hits and every microsecond
per connection is paid tens of thousands of times. It answers

* ``GET /live/{space_id}.aac?ticket=...``: the live stream, if the stream gate
  (townhall.admission.stream_gate, the origin's own decision) lets the ticket
  stream here: ticket checked by HMAC alone (a forged ticket never reaches the
  relay or the origin), not removed, room in this worker (``max_listeners``),
  one stream per ticket (a new connection replaces the old one). A removal the
  relay learns later is applied by the relay, see townhall.edge.removals; a newer
  stream of the ticket on another process of this node, see townhall.edge.one_stream;
* ``HEAD`` of the same: the ticket's verdict, no body;
* ``GET|HEAD /api/spaces/{id}`` and ``POST /api/spaces/{id}/join``: the snapshot and
  the join, as the origin answers them (townhall.edge.listener_api), on a keep-alive
  connection: answers go out in the order asked, at most ``MAX_OUTSTANDING`` pending
  per connection (reading pauses past it), a body of at most ``MAX_BODY_BYTES``;
* ``GET /healthz``: this worker's counters as JSON;
* ``OPTIONS``: CORS preflight (the listener page fetches across ports);

and refuses everything else with the API's JSON error shape. Every response
carries ``Access-Control-Allow-Origin: *``, and all but those two API answers
``Connection: close``. A request head must arrive whole within ``header_timeout_s``
and ``max_header_bytes``; an idle keep-alive connection is closed after
``header_timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Final
from urllib.parse import parse_qs

import httptools

from townhall.admission.stream_gate import (
    OVER_CAPACITY,
    REMOVED,
    TICKET_REQUIRED,
    StreamDenied,
    StreamGate,
)
from townhall.api.error_body import error_body
from townhall.api.stream_denials import denied_retry_after_s, denied_status
from townhall.audience.fanout import LiveFanout, LiveListener
from townhall.config import EdgeSettings
from townhall.edge.listener_api import Answer, ListenerApi, refused
from townhall.edge.one_stream import Openings
from townhall.edge.relay import Refusal, Relay, Relays

NOT_TICKET_FAULTS: Final = frozenset({TICKET_REQUIRED, REMOVED, OVER_CAPACITY})
"""Gate refusals other than a bad ticket (those are counted as ``forged_or_expired``)."""
LIVE_PATH: Final = re.compile(r"^/live/([A-Za-z0-9_-]{1,64})\.aac$")
CORS: Final = b"Access-Control-Allow-Origin: *\r\n"
LIVE_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: audio/aac\r\n"
    b"Cache-Control: no-cache, no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n" + CORS + b"Connection: close\r\n\r\n"
)
PREFLIGHT: Final = (
    b"HTTP/1.1 204 No Content\r\n" + CORS + b"Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
    b"Access-Control-Max-Age: 86400\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
API_PATH: Final = re.compile(r"^/api/spaces/([^/]{1,256})(/join)?$")
MAX_BODY_BYTES: Final = 16 * 1024
"""A join body is a few hundred bytes (a proof of work); the origin has its own bound."""
MAX_OUTSTANDING: Final = 8
"""Pipelined API requests answered-but-not-yet-written per connection before reading
pauses: what one connection can make this worker hold is bounded."""
MAX_OWED: Final = 64
"""Answers one connection may be owed at all: reading pauses at MAX_OUTSTANDING, but one
read may hold many small pipelined requests; past this the connection is told to slow
down and closed (a browser never pipelines)."""
MAX_BYTES_AFTER_REQUEST: Final = 64 * 1024
"""A listener has nothing more to say once streaming; past this much it is cut."""
REASONS: Final = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class StreamStats:
    connections: int = 0
    open_connections: int = 0
    streams_started: int = 0
    refused: int = 0
    """Requests answered with an error (any 4xx/5xx), including the ones below."""
    forged_or_expired: int = 0
    """Tickets refused by the HMAC check, before any relay or origin is involved."""
    header_timeouts: int = 0
    oversized_heads: int = 0
    bad_requests: int = 0


class StreamService:
    """What every connection of one worker shares."""

    def __init__(
        self,
        gate: StreamGate,
        relays: Relays,
        edge: EdgeSettings,
        name: str,
        openings: Openings | None = None,
        api: ListenerApi | None = None,
    ) -> None:
        self.gate = gate
        """May this ticket stream here: the origin's own decision, on this process's
        listeners and capacity (see townhall.admission.stream_gate)."""
        self.relays = relays
        self.edge = edge
        self.name = name
        self.stats = StreamStats()
        self.openings = Openings() if openings is None else openings
        """Streams opened since the last report: the origin keeps one per ticket per node."""
        self.api = api
        """Snapshot and join (None: this port serves the live stream only)."""

    def health(self) -> bytes:
        return json.dumps(
            {
                "worker": self.name,
                "pid": os.getpid(),
                "listeners": self.relays.listener_count,
                "relays": len(self.relays),
                "relays_opened": self.relays.opened,
                "counts": self.relays.counts(),
                "removals": asdict(self.relays.removals),
                "openings": {"pending": len(self.openings), "dropped": self.openings.dropped},
                **self._api_health(),
                **asdict(self.stats),
            }
        ).encode()


    def _api_health(self) -> dict[str, object]:
        if self.api is None:
            return {}
        return {
            "snapshots": {"spaces": len(self.api.snapshots), **asdict(self.api.snapshots.stats)},
            "joins": asdict(self.api.joins.stats),
        }


def json_response(
    status: int, body: bytes, head_only: bool = False, retry_after_s: int | None = None
) -> bytes:
    retry = f"Retry-After: {retry_after_s}\r\n" if retry_after_s is not None else ""
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Cache-Control: no-store\r\n{retry}"
    ).encode() + CORS + b"Connection: close\r\n\r\n"
    return head if head_only else head + body


class StreamProtocol(asyncio.Protocol):
    __slots__ = (
        "_api", "_body", "_deadline", "_deadline_at", "_fanout", "_head_bytes", "_head_size",
        "_headers", "_last", "_listener", "_listener_id", "_outbox", "_parser", "_paused",
        "_relay", "_responded", "_served", "_service", "_space_id", "_trailing", "_transport",
        "_url",
    )

    def __init__(self, service: StreamService) -> None:
        self._service = service
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._head_bytes = 0
        """Bytes received for the request being read (head and body)."""
        self._head_size = 0
        """Its head's bytes as parsed (URL and headers)."""
        self._trailing = 0
        self._responded = False
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        """time.monotonic() by which the request being read must be whole: one timer per
        connection is moved on lazily, not made anew per keep-alive request."""
        self._relay: Relay | None = None
        self._fanout: LiveFanout | None = None
        self._listener: LiveListener | None = None
        self._listener_id = ""
        self._space_id = ""
        self._api: tuple[str, str, bool] | None = None
        """The API request being read: (raw path, space id, is a join)."""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: bytearray | None = None
        self._outbox: deque[Answer] = deque()
        """API answers in the order asked, some still being worked out (futures)."""
        self._last = False
        """No request after the ones in the outbox: close once it is written."""
        self._paused = False
        self._served = 0
        """API answers written on this connection (an idle one is then closed quietly)."""

    # -- asyncio --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        stats = self._service.stats
        stats.connections += 1
        stats.open_connections += 1
        self._arm_deadline()

    def data_received(self, data: bytes) -> None:
        if self._responded:
            self._trailing += len(data)
            if self._trailing > MAX_BYTES_AFTER_REQUEST and self._transport is not None:
                self._transport.abort()
            return
        self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)  # the head's size is checked as it is parsed
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            if not self._responded:
                self._service.stats.bad_requests += 1
                self._refuse(400, "bad_request", "malformed HTTP request")
            return
        # What one request may send in all (a head that never ends, a join's body); one
        # read is at most the transport's buffer, so this is checked after parsing it.
        limit = self._service.edge.max_header_bytes + MAX_BODY_BYTES
        if self._head_bytes > limit and not self._responded:
            self._service.stats.oversized_heads += 1
            self._refuse(431, "head_too_large", "the request head is too large")

    def eof_received(self) -> bool:
        return False  # a listener that hangs up is gone: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._service.stats.open_connections -= 1
        self._cancel_deadline()
        for pending in self._outbox:
            if not isinstance(pending, bytes):
                pending.cancel()
        self._outbox.clear()
        if self._fanout is not None and self._listener is not None:
            self._fanout.detach(self._listener)
        elif self._relay is not None:
            self._relay.forget(self)
        self._fanout = self._listener = self._relay = None
        self._transport = None

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_size = 0
        self._url = b""
        self._headers = []
        self._body = None
        self._api = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self._service.edge.max_header_bytes and not self._responded:
            self._service.stats.oversized_heads += 1
            self._refuse(431, "head_too_large", "the request head is too large")

    def on_body(self, body: bytes) -> None:
        if self._body is None or self._responded:
            return
        self._body += body
        if len(self._body) > MAX_BODY_BYTES:
            self._body = None
            self._refuse(413, "body_too_large", f"a join body is at most {MAX_BODY_BYTES} bytes")

    def on_headers_complete(self) -> None:
        if self._last or self._responded:
            self._cancel_deadline()
            return
        method = self._parser.get_method()
        if self._service.api is not None and self._url.startswith(b"/api/"):
            # an origin-form target (what the parser passed) needs no URL parser here
            path = self._url.partition(b"?")[0].decode("latin-1")
            self._api_request(method, path)  # its body, too, by the deadline
            return
        try:
            parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "bad_request", "malformed URL")
            return
        path = (parsed.path or b"").decode("latin-1")
        self._cancel_deadline()
        if self._outbox:
            self._refuse(400, "bad_request", "the live stream is asked for on its own connection")
            return
        if method == b"OPTIONS":
            self._respond(PREFLIGHT)
            return
        if method not in (b"GET", b"HEAD"):
            self._refuse(405, "method_not_allowed", "the stream port answers GET and HEAD")
            return
        if path == "/healthz":
            self._respond(json_response(200, self._service.health(), method == b"HEAD"))
            return
        match = LIVE_PATH.match(path)
        if match is None:
            self._refuse(404, "not_found", "the stream port serves /live/{space_id}.aac only")
            return
        self._live(match.group(1), (parsed.query or b"").decode("latin-1"), method == b"HEAD")

    def on_message_complete(self) -> None:
        api = self._api
        if api is None or self._responded or self._last:
            return
        self._api = None
        self._head_bytes = 0
        if len(self._outbox) >= MAX_OWED:
            self._refuse(503, "too_many_requests_pipelined", "wait for the answers you asked for")
            return
        path, space_id, join = api
        keep_alive = self._parser.should_keep_alive()
        service_api = self._service.api
        assert service_api is not None
        answer: Answer
        if join:
            peer = self._transport.get_extra_info("peername") if self._transport else None
            answer = service_api.join(
                path,
                space_id,
                self._headers,
                bytes(self._body or b""),
                str(peer[0]) if peer else "",
                keep_alive,
            )
        else:
            if_none_match = None
            for name, value in self._headers:
                if name == b"if-none-match":
                    if_none_match = value
                    break
            head_only = self._parser.get_method() == b"HEAD"
            answer = service_api.snapshot(space_id, if_none_match, keep_alive, head_only)
        if not keep_alive:
            self._last = True
        self._queue(answer)

    # -- the listener API (townhall.edge.listener_api) ----------------------------------------

    def _api_request(self, method: bytes, path: str) -> None:
        match = API_PATH.match(path)
        if match is None:
            self._refuse(404, "not_found", "the stream port serves the snapshot and the join only")
            return
        join = match.group(2) is not None
        if method == b"OPTIONS":
            self._respond(PREFLIGHT)
            return
        if join and method != b"POST":
            self._refuse(405, "method_not_allowed", "a join is a POST")
            return
        if not join and method not in (b"GET", b"HEAD"):
            self._refuse(405, "method_not_allowed", "the snapshot answers GET and HEAD")
            return
        if join:
            self._body = bytearray()
        self._api = (path, match.group(1), join)

    def _queue(self, answer: Answer) -> None:
        transport = self._transport
        if not self._outbox and isinstance(answer, bytes) and transport is not None:
            if not transport.is_closing():  # the common case: answered at once, in order
                transport.write(answer)
                self._served += 1
                self._after_writing(transport)
            return
        self._outbox.append(answer)
        if not isinstance(answer, bytes):
            answer.add_done_callback(self._answer_ready)
        self._flush()
        if len(self._outbox) >= MAX_OUTSTANDING and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()

    def _answer_ready(self, _: asyncio.Future[bytes]) -> None:
        self._flush()

    def _flush(self) -> None:
        """Writes the answers ready at the head of the outbox, in order."""
        transport = self._transport
        outbox = self._outbox
        while outbox:
            head = outbox[0]
            if isinstance(head, bytes):
                data = head
            elif not head.done():
                return
            elif head.cancelled() or head.exception() is not None:
                data = refused(503, "unavailable", "this answer failed; try again", False)
                self._last = True
            else:
                data = head.result()
            outbox.popleft()
            if transport is None or transport.is_closing():
                return
            transport.write(data)
            self._served += 1
        if transport is not None:
            self._after_writing(transport)

    def _after_writing(self, transport: asyncio.Transport) -> None:
        """Everything owed is written: close, or wait for the next request."""
        if transport.is_closing():
            return
        if self._last:
            self._responded = True
            transport.close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._arm_deadline()  # idle between requests: as long as for one head

    def _arm_deadline(self) -> None:
        timeout = self._service.edge.header_timeout_s
        self._deadline_at = time.monotonic() + timeout
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._deadline_passed)

    def _deadline_passed(self) -> None:
        remaining = self._deadline_at - time.monotonic()
        if remaining > 0:  # moved on since the timer was set
            self._deadline = asyncio.get_running_loop().call_later(
                remaining, self._deadline_passed
            )
            return
        self._too_slow()

    # -- the live stream --------------------------------------------------------------------

    @property
    def listener_id(self) -> str:
        """The ticket's listener (empty before the request head is read)."""
        return self._listener_id

    def _live(self, space_id: str, query: str, head_only: bool) -> None:
        token = (parse_qs(query).get("ticket") or [""])[0]
        relays = self._service.relays
        try:
            claims = self._service.gate.admit(
                token,
                space_id,
                time.time(),
                removed=relays.removed_in(space_id),
                listeners=relays.load,
                streaming=relays.streaming_in(space_id),
            )
        except StreamDenied as denied:
            if denied.code not in NOT_TICKET_FAULTS:
                self._service.stats.forged_or_expired += 1
            elif denied.code == REMOVED:
                relays.removals.refused += 1
            self._refuse(
                denied_status(denied), denied.code, denied.message, head_only,
                denied_retry_after_s(denied),
            )  # fmt: skip
            return
        if head_only:
            self._respond(LIVE_HEAD)
            return
        self._responded = True  # the relay answers: stream or refusal
        self._listener_id = claims.listener_id
        self._space_id = space_id
        self._relay = relays.join(space_id, self)

    def start_stream(self, fanout: LiveFanout) -> None:
        """The relay is streaming: the head, the burst, then every chunk."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._service.stats.streams_started += 1
        self._fanout = fanout
        self._listener = listener = fanout.attach(
            transport, self._listener_id, replace=True, head=LIVE_HEAD
        )
        self._service.openings.opened(self._space_id, self._listener_id, listener.attached_at)

    def refuse(self, refusal: Refusal) -> None:
        self._refuse(refusal.status, refusal.code, refusal.message)

    # -- helpers ----------------------------------------------------------------------------

    def _refuse(
        self,
        status: int,
        code: str,
        message: str,
        head_only: bool = False,
        retry_after_s: int | None = None,
    ) -> None:
        self._service.stats.refused += 1
        self._respond(json_response(status, error_body(code, message), head_only, retry_after_s))

    def _respond(self, data: bytes) -> None:
        if self._outbox:  # after the answers still owed on this connection
            self._last = True
            self._outbox.append(data)
            self._flush()
            return
        self._responded = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            transport.close()

    def _too_slow(self) -> None:
        self._deadline = None
        if self._outbox:  # waiting on us, not on the client
            self._arm_deadline()
            return
        if self._served and self._head_bytes == 0 and self._transport is not None:  # idle
            self._responded = True
            self._transport.close()
            return
        if not self._responded:
            self._service.stats.header_timeouts += 1
            self._refuse(408, "header_timeout", "the request head took too long")

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
