"""The two routes every arriving listener calls, answered in front of Starlette.

In a flash crowd each listener does `GET /api/spaces/{id}` and `POST
/api/spaces/{id}/join` once, and most of their Python cost under Starlette was the
framework (middleware stack, routing, Request and Response objects, exception
wrappers), not our handlers. This plain ASGI class answers those two routes itself,
from the same services and with the same bytes as the Starlette routes (api/spaces.py
`get_space`, api/listening.py `join`): status, JSON, headers, ETag/304, Retry-After.
Anything else, and anything it does not recognise, goes to the wrapped app unchanged.
Measured in-process (no sockets): a snapshot 11.4 -> 1.7 µs, a join 37 -> 18 µs (of
which the door's admission and ticket are ~9); over sockets uvicorn and the kernel
cost the rest.

Refusals reuse api/errors.py's handlers, so an error is the very same response
either way; only the success answers are built here, and a test compares both ways
byte for byte. Two deliberate differences, both on input uvicorn never passes on or
nobody receives: Content-Length must be ASCII digits (str.isdigit would let "²"
through to a 500), and a client that hangs up before its body arrives gets no answer
and no log line (Starlette logs a 500 that nobody receives).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Message, Receive, Scope, Send

from townhall.api.auth import optional_user
from townhall.api.bodies import parse_model
from townhall.api.errors import RequestError, domain_error, unexpected_error
from townhall.api.listening import (
    add_stream_urls,
    join_fields,
    listener_bases,
    live_base,
    refuse_if_removed,
)
from townhall.api.models import JoinRequest
from townhall.api.paths import check_space_id
from townhall.api.spaces import SNAPSHOT_CACHE_CONTROL
from townhall.api.worker_joins import forwarded_client
from townhall.audience.snapshot import Snapshot
from townhall.config import Settings
from townhall.domain.errors import DomainError
from townhall.forwarded import client_origin

if TYPE_CHECKING:
    from townhall.services import Services

__all__ = ["ListenerFastPath"]

SPACE_PREFIX = "/api/spaces/"
JOIN_SUFFIX = "/join"
SNAPSHOT_METHODS = frozenset({"GET", "HEAD"})
CREDENTIAL_HEADERS = frozenset({b"authorization", b"cookie"})

MAX_ENCODED_SNAPSHOTS = 10_000
"""Pre-encoded snapshot headers kept, one per space asked for; past it the cache is
emptied and refills with the spaces still in demand (a cache miss costs ~1 µs)."""
MAX_LIVE_BASES = 256
"""Live-stream base URLs kept per (scheme, Host header): the Host header is the
client's to choose, so the cache is emptied when full rather than grown."""

JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""Starlette's JSONResponse rendering, built once instead of once per response."""
CONTENT_TYPE_JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")
SNAPSHOT_CACHE = (b"cache-control", SNAPSHOT_CACHE_CONTROL.encode("latin-1"))

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]


class ClientGone(Exception):
    """The client hung up before its body arrived: there is nobody to answer."""


@dataclass(frozen=True)
class _EncodedSnapshot:
    """A snapshot's response heads, encoded once per rebuild rather than per request.

    The header lists are shared by every response of this snapshot: ASGI servers only
    read them."""

    snapshot: Snapshot
    etag: bytes
    full: Headers
    not_modified: Headers

    @classmethod
    def of(cls, snapshot: Snapshot) -> _EncodedSnapshot:
        etag = snapshot.etag.encode("latin-1")
        not_modified = [(b"etag", etag), SNAPSHOT_CACHE]
        length = (b"content-length", str(len(snapshot.body)).encode("latin-1"))
        return cls(snapshot, etag, [*not_modified, length, CONTENT_TYPE_JSON], not_modified)


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a header, as Starlette's `Headers.get` reads it (names in the
    scope are lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _signed_in_maybe(scope: Scope) -> bool:
    """Whether the request presents a bearer token or a cookie (then auth.py decides)."""
    return any(key in CREDENTIAL_HEADERS for key, _ in scope["headers"])


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(413, "body_too_large", f"request body is larger than {max_bytes} bytes")


async def _read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """api/bodies.py `read_body` without a Request: the declared length first, then
    the actual length while reading."""
    declared = _header(scope, b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "bad_content_length", "Content-Length must be a number")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message: Message = await receive()
        kind = message["type"]
        if kind == "http.request":
            more = message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
        elif kind == "http.disconnect":
            raise ClientGone
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _read_optional_json(scope: Scope, receive: Receive, max_bytes: int) -> dict[str, Any]:
    """api/listening.py's join body: a JoinRequest (an empty body means `{}`), as the
    fields the door reads."""
    body = parse_model(JoinRequest, await _read_body(scope, receive, max_bytes), optional=True)
    return join_fields(body)


class ListenerFastPath:
    """ASGI app: the snapshot and join routes answered directly, the rest by `app`.

    `services` are the node's (townhall.services), the very ones the wrapped app's
    routes were built with; `router` is the wrapped app's, for code that starts the
    lifespan."""

    def __init__(self, app: Starlette, services: Services) -> None:
        self.app = app
        self.services = services
        self.answered = 0
        """Requests this fast path answered itself (the rest went to `app`)."""
        self._snapshots: dict[str, _EncodedSnapshot] = {}
        self._live_bases: dict[tuple[Any, ...], str] = {}
        self._live_bases_for: Settings | None = None

    @property
    def router(self) -> Router:
        return self.app.router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith(SPACE_PREFIX):
                rest = path[len(SPACE_PREFIX) :]
                method = scope["method"]
                if "/" not in rest:
                    if rest and method in SNAPSHOT_METHODS:
                        await self._answer(scope, receive, send, rest, join=False)
                        return
                elif method == "POST" and rest.endswith(JOIN_SUFFIX):
                    space_id = rest[: -len(JOIN_SUFFIX)]
                    if space_id and "/" not in space_id:
                        await self._answer(scope, receive, send, space_id, join=True)
                        return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, space_id: str, *, join: bool
    ) -> None:
        """Runs one route and answers as api/errors.py would, whatever it raises."""
        self.answered += 1
        response: Response
        try:
            if join:
                status, headers, body = await self._join(scope, receive, space_id)
            else:
                status, headers, body = await self._snapshot(scope, space_id)
        except DomainError as refusal:
            response = await domain_error(Request(scope), refusal)
        except ClientGone:
            return
        except Exception as exc:
            response = await unexpected_error(Request(scope), exc)
        else:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await response(scope, receive, send)

    # -- GET /api/spaces/{id} (api/spaces.py get_space, snapshot_response) -------------

    async def _snapshot(self, scope: Scope, space_id: str) -> Answer:
        snapshot = await self.services.spaces.snapshot(check_space_id(space_id))
        encoded = self._snapshots.get(space_id)
        if encoded is None or encoded.snapshot is not snapshot:
            if len(self._snapshots) >= MAX_ENCODED_SNAPSHOTS:
                self._snapshots.clear()
            encoded = self._snapshots[space_id] = _EncodedSnapshot.of(snapshot)
        if_none_match = _header(scope, b"if-none-match")
        if if_none_match is not None and encoded.etag in if_none_match:
            return 304, encoded.not_modified, b""
        return 200, encoded.full, snapshot.body

    # -- POST /api/spaces/{id}/join (api/listening.py join) ------------------------------

    async def _join(self, scope: Scope, receive: Receive, space_id: str) -> Answer:
        services = self.services
        spaces = services.spaces
        door = services.door
        address = forwarded_client(scope, services.signer) or client_origin(scope).address
        door.check_address(address)
        check_space_id(space_id)
        space = await spaces.record(space_id)
        space.require_live("join")
        user = None
        if _signed_in_maybe(scope):
            user = await optional_user(Request(scope, receive), services.accounts)
        await refuse_if_removed(spaces, space_id, user)
        settings = services.settings
        body = await _read_optional_json(scope, receive, settings.http.max_body_bytes)
        answer = await door.join(space_id, user, body)
        if "ticket" in answer:
            rejoin = body.get("ticket") is not None  # as door.join and the route read it
            bases = await listener_bases(self.services, space_id, rejoin)
            base = bases.live or self.live_base(scope, settings)
            add_stream_urls(answer, space_id, settings, base, bases.hls)
        content = JSON_ENCODER.encode(answer).encode("utf-8")
        length = (b"content-length", str(len(content)).encode("latin-1"))
        return 200, [NO_STORE, length, CONTENT_TYPE_JSON], content

    def live_base(self, scope: Scope, settings: Settings) -> str:
        """api/listening.py's `live_base`, remembered per scheme and Host: with stream
        workers and no configured URL it depends on the request's host name."""
        if settings is not self._live_bases_for:
            self._live_bases.clear()
            self._live_bases_for = settings
        key = (scope.get("scheme"), _header(scope, b"host"), scope.get("server"))
        base = self._live_bases.get(key)
        if base is None:
            if len(self._live_bases) >= MAX_LIVE_BASES:
                self._live_bases.clear()
            base = self._live_bases[key] = live_base(Request(scope), settings)
        return base
