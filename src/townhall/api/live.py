"""The live stream: one long response per listener, fed by the shared fan-out.

Under our own server (townhall.server) the ASGI scope carries the connection's
transport; the handler writes the response head itself and hands the
transport to the fan-out, which then writes each shared chunk to every socket
in one loop. No coroutine runs per listener per chunk: this handler only
sleeps until the listener leaves. Under any other ASGI server the same fan-out
drives a small adapter that forwards through `send`.

With stream workers (townhall.edge) the listeners go to the stream port
instead; here the origin serves each worker's relay of the program and takes
its listener counts, both behind relay tokens. One ticket holds one stream per
node: the origin's own streams and the ones the workers report opening go into
one map, and the older stream of a ticket is cut (townhall.edge.one_stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Set
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from townhall.admission.stream_gate import StreamDenied
from townhall.api.bodies import read_json
from townhall.api.errors import JsonError, error_body
from townhall.api.stream_denials import denied_retry_after_s, denied_status
from townhall.audience.fanout import LiveFanout, LiveListener
from townhall.domain.errors import DomainError
from townhall.edge.one_stream import (
    MAX_OPENED_PER_REPORT,
    ORIGIN_NODE,
    Opening,
    OpeningsRefused,
    cut_replaced,
    parse_wire,
    to_wire,
)
from townhall.edge.relay import Refusal
from townhall.edge.relay_token import HEADER as RELAY_HEADER_NAME
from townhall.edge.relay_token import RelayRefused, check_relay_token
from townhall.edge.removals import removed_answer
from townhall.edge.reports import (
    MAX_REPORT_BYTES,
    ReportRefused,
    parse_counts,
    parse_figures,
    parse_people,
)
from townhall.service.live import LiveRooms
from townhall.service.relayed_programs import ProgramRefused, RelayedPrograms

if TYPE_CHECKING:
    from townhall.admission.signing import Signer
    from townhall.services import Services

TRANSPORT_EXTENSION = "townhall.transport"
RELAY_HEADER = RELAY_HEADER_NAME.encode()
RELAY_LISTENER_PREFIX = "relay:"
"""Listener id of a stream worker's relay on the origin's fan-out."""
CORS = (b"access-control-allow-origin", b"*")
"""A listen page served by one node plays the stream of the node that holds the stage
(another origin); the ticket is in the URL, no cookie is sent, so any origin may read
it, as from the stream workers (townhall.edge.protocol)."""
LIVE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: audio/aac\r\n"
    b"Cache-Control: no-cache, no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Access-Control-Allow-Origin: *\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)
"""Any page may read the stream (a join answer may send the listener to another node,
an edge: another origin for the browser), as on the stream workers' port."""
LIVE_HEADERS = [
    (b"content-type", b"audio/aac"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-content-type-options", b"nosniff"),
    CORS,
]


async def _refuse(
    send: Send, status: int, code: str, message: str, retry_after_s: int | None = None
) -> None:
    body = error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        CORS,
    ]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


class SendTransport(asyncio.WriteTransport):
    """Adapts the fan-out's transport interface to ASGI `send` for foreign servers.

    Its buffer is bounded exactly like a socket's: the fan-out sees the backlog
    through get_write_buffer_size() and cuts a listener that falls behind.
    """

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._wakeup = asyncio.Event()
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        self._chunks.append(bytes(data))
        self._size += len(data)
        self._wakeup.set()

    def get_write_buffer_size(self) -> int:
        return self._size

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._wakeup.set()

    def abort(self) -> None:
        self.close()

    async def pump(self) -> None:
        while not (self._closing and not self._chunks):
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._chunks:
                chunk = self._chunks.popleft()
                self._size -= len(chunk)
                await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        await self._send({"type": "http.response.body", "body": b""})


class LiveStream:
    """ASGI endpoint for GET /live/{space_id}.aac?ticket=...

    Whether the ticket may stream here is the stream gate's one decision (the
    stream workers ask the same); a second connection with the same ticket
    replaces the first."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        space_id = scope["path_params"]["space_id"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("ticket") or [""])[0]
        door = self._services.door
        try:  # the ticket first: a forged one costs one HMAC, never a lookup
            door.stream_gate.ticket(token, space_id, time.time())
        except StreamDenied as denied:
            await _deny(send, denied)
            return
        spaces = self._services.spaces
        try:
            await spaces.record(space_id)
        except DomainError as error:
            await _refuse(send, 404, error.code, error.message)
            return
        room = spaces.rooms.get(space_id)
        relayed = self._services.relayed_programs
        if room is not None:
            fanout, removed = room.program.live, room.removed
        elif relayed is not None:  # an edge: the program relayed from its origin
            try:
                fanout = await relayed.fanout(space_id, token)
            except ProgramRefused as refused:
                await _refuse_as(send, refused.refusal)
                return
            removed = await spaces.removed_from(space_id)
            relayed.set_removed(space_id, removed)
        else:
            await _refuse(send, 409, "not_live", "this space is not live on this server")
            return
        try:
            claims = door.stream_gate.admit(
                token,
                space_id,
                time.time(),
                removed=removed,
                listeners=door.listeners(),
                streaming=fanout.listener_ids,
            )
        except StreamDenied as denied:
            await _deny(send, denied)
            return
        door.stream_opened(space_id)
        if scope["method"] == "HEAD":
            await send({"type": "http.response.start", "status": 200, "headers": LIVE_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        holders = self._services.ticket_holders

        def opened(listener: LiveListener) -> None:  # cuts an older one on a worker
            opening = Opening(space_id, claims.listener_id, listener.attached_at)
            holders.record(ORIGIN_NODE, [opening])

        await _stream(
            scope, receive, send, fanout, claims.listener_id, replace=True, on_attached=opened
        )


async def _refuse_as(send: Send, refusal: Refusal) -> None:
    """The origin's refusal of an edge's relay (or the edge's own), passed on."""
    retry_after_s = 1 if refusal.status >= 500 else None
    await _refuse(send, refusal.status, refusal.code, refusal.message, retry_after_s)


async def _deny(send: Send, denied: StreamDenied) -> None:
    await _refuse(
        send, denied_status(denied), denied.code, denied.message, denied_retry_after_s(denied)
    )


async def _stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    fanout: LiveFanout,
    listener_id: str,
    *,
    replace: bool = False,
    on_attached: Callable[[LiveListener], None] | None = None,
) -> None:
    """Hand the connection to ``fanout`` until the listener (or relay) leaves; ``replace``
    closes any earlier connection of ``listener_id`` (one stream per ticket);
    ``on_attached`` is told of the connection once it streams."""
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if transport is not None:
        transport.write(LIVE_HEAD)
        listener = fanout.attach(transport, listener_id, replace=replace)
        if on_attached is not None:
            on_attached(listener)
        try:
            await _until_disconnect(receive)
        finally:
            fanout.detach(listener)
        return
    await send({"type": "http.response.start", "status": 200, "headers": LIVE_HEADERS})
    adapter = SendTransport(send)
    listener = fanout.attach(adapter, listener_id, replace=replace)
    if on_attached is not None:
        on_attached(listener)
    pump = asyncio.create_task(adapter.pump())
    try:
        await _until_disconnect(receive)
    finally:
        fanout.detach(listener)
        adapter.close()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pump


def _relay_node(signer: Signer, scope: Scope) -> str:
    """The stream worker's node id from its relay token; RelayRefused otherwise."""
    token = b""
    for name, value in scope.get("headers", ()):
        if name == RELAY_HEADER:
            token = value
            break
    if not token:
        raise RelayRefused("missing")
    return check_relay_token(signer, token.decode("latin-1"), time.time())


class RelayProgram:
    """ASGI endpoint for GET /internal/program/{space_id}.aac: a stream worker's relay.

    The live stream without a ticket, for a bearer of a relay token: each worker
    opens one per space it serves and fans it out itself. It is one connection of
    the program's fan-out like any listener (burst, backlog bound and all)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spaces = self._services.spaces
        try:
            node_id = _relay_node(self._services.signer, scope)
        except RelayRefused as refused:
            await _refuse(send, 403, "relay_refused", f"not a stream worker ({refused.code})")
            return
        space_id = scope["path_params"]["space_id"]
        try:
            await spaces.record(space_id)
        except DomainError as error:
            await _refuse(send, 404, error.code, error.message)
            return
        listener_id = f"{RELAY_LISTENER_PREFIX}{node_id}"
        room = spaces.rooms.get(space_id)
        relayed = self._services.relayed_programs
        if room is not None and not room.program.closed:
            fanout = room.program.live
        elif room is None and relayed is not None:  # an edge's worker: relay the relay
            try:
                fanout = await relayed.fanout(space_id, listener_id)
            except ProgramRefused as refused:
                await _refuse_as(send, refused.refusal)
                return
            relayed.set_removed(space_id, await spaces.removed_from(space_id))
        else:
            await _refuse(send, 409, "not_live", "this space is not live on this server")
            return
        await _stream(scope, receive, send, fanout, listener_id)


async def report_listeners(services: Services, request: Request) -> Response:
    """POST /internal/listeners ``{"counts": {space_id: n}, "opened"?: {space_id:
    [[listener_id, t]]}, "people"?: {space_id: [listener_id]}}`` from a stream worker
    (``people``: its signed-in listeners per space, named in the room's audience).

    Each report replaces the worker's last one (see townhall.edge.reports); the
    counts go to the shared state under the worker's node id, and the spaces whose
    count changed get their snapshot rebuilt on the next tick. The answer, 200
    ``{"removed": {space_id: [listener_id]}}``, names who was removed from the
    reported spaces that have removals (see townhall.edge.removals): the worker
    cuts and refuses them; and ``"replaced"`` (same shape as ``opened``; absent when
    empty) names the
    tickets whose streams there opened before ``t`` must be cut, a newer stream
    holding them elsewhere on this node (see townhall.edge.one_stream)."""
    try:
        node_id = _relay_node(services.signer, request.scope)
    except RelayRefused as refused:
        return _error(403, "relay_refused", f"not a stream worker ({refused.code})")
    body = await read_json(request, MAX_REPORT_BYTES)
    try:
        counts = parse_counts(body.get("counts"))
        figures = parse_figures(body.get("figures"))
        opened = parse_wire(body.get("opened"), MAX_OPENED_PER_REPORT)
        people = parse_people(body.get("people"))
    except (ReportRefused, OpeningsRefused) as refused:
        return _error(422, "bad_report", str(refused))
    spaces = services.spaces
    changed = services.listener_reports.replace(node_id, counts, figures)
    # counts expire: refresh all, in one bounded update (parse_counts bounds the report)
    await services.state.report_node_listeners(node_id, {**counts, **dict(changed)})
    for space_id, _ in changed:
        spaces.listeners_changed(space_id)
    tick_s = services.settings.snapshot_tick_s
    for space_id, listener_ids in people.items():
        await spaces.report_audience(space_id, node_id, listener_ids, tick_s)
    removed = removed_answer(
        counts, partial(_removed_in, spaces.rooms, services.relayed_programs)
    )
    holders = services.ticket_holders
    holders.record(node_id, opened)
    cut_replaced(holders.cuts_for(ORIGIN_NODE), partial(_fanout_of, spaces.rooms))
    answer: dict[str, object] = {"removed": removed}
    if replaced := to_wire(holders.cuts_for(node_id)):
        answer["replaced"] = replaced
    return JSONResponse(answer, headers={"cache-control": "no-store"})


def _fanout_of(rooms: LiveRooms, space_id: str) -> LiveFanout | None:
    room = rooms.get(space_id)
    return None if room is None else room.program.live


def _removed_in(
    rooms: LiveRooms, relayed: RelayedPrograms | None, space_id: str
) -> Set[str] | None:
    """Who was removed from a space this node serves: its room's set, or on an edge,
    the set of the program it relays (kept from the shared stage)."""
    room = rooms.get(space_id)
    if room is not None:
        return room.removed
    return None if relayed is None else relayed.removed_in(space_id)


def _error(status: int, code: str, message: str) -> Response:
    return JsonError(status, error_body(code, message), headers={"cache-control": "no-store"})
