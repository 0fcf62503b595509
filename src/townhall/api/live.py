"""The live stream: one long response per listener, fed by the shared fan-out.

Under our own server (townhall.server) the ASGI scope carries the connection's
transport; the handler writes the response head itself and hands the
transport to the fan-out, which then writes each shared chunk to every socket
in one loop. No coroutine runs per listener per chunk: this handler only
sleeps until the listener leaves. Under any other ASGI server the same fan-out
drives a small adapter that forwards through `send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from urllib.parse import parse_qs

from starlette.types import Message, Receive, Scope, Send

from townhall.admission.tickets import TicketRefused, check_ticket
from townhall.domain.errors import DomainError

TRANSPORT_EXTENSION = "townhall.transport"
LIVE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: audio/aac\r\n"
    b"Cache-Control: no-cache, no-store\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Connection: close\r\n"
    b"\r\n"
)
LIVE_HEADERS = [
    (b"content-type", b"audio/aac"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-content-type-options", b"nosniff"),
]


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
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
    """ASGI endpoint for GET /live/{space_id}.aac?ticket=..."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        space_id = scope["path_params"]["space_id"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("ticket") or [""])[0]
        if not token:
            await _refuse(send, 401, "ticket_required", "join first: POST /api/spaces/{id}/join")
            return
        try:
            claims = check_ticket(app.state.signer, token, space_id, time.time())
        except TicketRefused as refused:
            await _refuse(send, 403, refused.code, refused.message)
            return
        spaces = app.state.spaces
        try:
            await spaces.record(space_id)
        except DomainError as error:
            await _refuse(send, 404, error.code, error.message)
            return
        room = spaces.rooms.get(space_id)
        if room is None:
            await _refuse(send, 409, "not_live", "this space is not live on this server")
            return
        if claims.listener_id in room.removed:
            await _refuse(send, 403, "removed", "you were removed from this space")
            return
        transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
        if scope["method"] == "HEAD":
            await send({"type": "http.response.start", "status": 200, "headers": LIVE_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        if transport is not None:
            transport.write(LIVE_HEAD)
            listener = room.program.live.attach(transport, claims.listener_id)
            try:
                await _until_disconnect(receive)
            finally:
                room.program.live.detach(listener)
            return
        await send({"type": "http.response.start", "status": 200, "headers": LIVE_HEADERS})
        adapter = SendTransport(send)
        listener = room.program.live.attach(adapter, claims.listener_id)
        pump = asyncio.create_task(adapter.pump())
        try:
            await _until_disconnect(receive)
        finally:
            room.program.live.detach(listener)
            adapter.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump
