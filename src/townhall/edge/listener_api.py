"""The two API routes every arriving listener calls, answered by a stream worker.

``GET|HEAD /api/spaces/{id}`` (the snapshot, from townhall.edge.snapshots) and
``POST /api/spaces/{id}/join`` (townhall.edge.joins: a ticket answered here, or
the origin's own answer to the forwarded join), on the stream port, so a node's
listener path grows with its worker processes rather than stopping at the one API
process. The answers are the origin's: the same JSON, status, ETag, Retry-After
and Cache-Control; only the connection's own headers differ (CORS on, as every
answer of the stream port, and keep-alive: a page makes both calls on one
connection). HTTP framing is townhall.edge.protocol's; this module only decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from townhall.admission.address_limit import AddressRefusal
from townhall.api.error_body import error_body
from townhall.edge.joins import LOCAL_BODIES, WorkerJoins
from townhall.edge.origin_calls import OriginAnswer, OriginUnreachable, call_origin
from townhall.edge.relay import Origin
from townhall.edge.snapshots import CachedSnapshot, SnapshotCache, unreachable_answer
from townhall.forwarded import TrustedProxies

CLIENT_HEADER: Final = "x-townhall-client"
"""The listener's address on a forwarded join (townhall.api.worker_joins)."""
CREDENTIAL_HEADERS: Final = frozenset({b"authorization", b"cookie"})
NOT_FORWARDED: Final = frozenset(
    {
        b"connection", b"keep-alive", b"content-length", b"transfer-encoding", b"upgrade",
        b"te", b"trailer", b"proxy-connection", b"expect", b"x-forwarded-for", b"forwarded",
        b"x-real-ip", b"x-townhall-client", b"x-townhall-relay",
    }
)  # fmt: skip
"""Hop-by-hop headers, and the ones that name a client: the worker names it itself."""
KEPT_ANSWER_HEADERS: Final = ("content-type", "cache-control", "retry-after", "etag")
MAX_FORWARDS_IN_FLIGHT: Final = 64
"""Joins one worker forwards at once; the rest wait their turn (each connection has at
most a few requests outstanding, see townhall.edge.protocol)."""
CORS: Final = b"access-control-allow-origin: *\r\n"
REASONS: Final = {
    200: "OK", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 409: "Conflict", 410: "Gone", 413: "Content Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 502: "Bad Gateway",
    503: "Service Unavailable",
}  # fmt: skip
JOIN_OK_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-type: application/json\r\n" + CORS
)

Answer = bytes | asyncio.Future[bytes]


def _connection(keep_alive: bool) -> bytes:
    return b"" if keep_alive else b"connection: close\r\n"


def relayed(answer: OriginAnswer, keep_alive: bool) -> bytes:
    """The origin's answer as this worker writes it."""
    head = f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Error')}\r\n" + "".join(
        f"{name}: {answer.headers[name]}\r\n"
        for name in KEPT_ANSWER_HEADERS
        if name in answer.headers
    )
    length = f"content-length: {len(answer.body)}\r\n"
    return (head + length).encode("latin-1") + CORS + _connection(keep_alive) + b"\r\n" + (
        answer.body
    )


@dataclass
class ListenerApi:
    origin: Origin
    snapshots: SnapshotCache
    joins: WorkerJoins
    trusted: TrustedProxies = field(default_factory=TrustedProxies)
    """Proxies whose X-Forwarded-For (or Forwarded) names the listener (settings.http)."""
    _forwarding: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_FORWARDS_IN_FLIGHT)
    )

    def snapshot(
        self, space_id: str, if_none_match: bytes | None, keep_alive: bool, head_only: bool
    ) -> Answer:
        entry = self.snapshots.cached(space_id)
        if entry is not None:
            return entry.response(if_none_match, keep_alive, head_only)
        return asyncio.ensure_future(
            self._snapshot_later(
                self.snapshots.get(space_id), if_none_match, keep_alive, head_only
            )
        )

    @staticmethod
    async def _snapshot_later(
        fetched: asyncio.Future[CachedSnapshot],
        if_none_match: bytes | None,
        keep_alive: bool,
        head_only: bool,
    ) -> bytes:
        entry = await asyncio.shield(fetched)  # one caller hanging up cancels no one's fetch
        return entry.response(if_none_match, keep_alive, head_only)

    def join(
        self,
        path: str,
        space_id: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        peer: str,
        keep_alive: bool,
    ) -> Answer:
        """A ticket from this worker's grant, or the origin's answer to the join.
        ``peer``: the connection's address (a trusted proxy's, maybe)."""
        origin = self.trusted.resolve(peer, "http", headers)
        client = origin.address
        host = None
        credentials = False
        for name, value in headers:
            if name == b"host":
                host = value
            elif name in CREDENTIAL_HEADERS:
                credentials = True
        if not credentials and body.strip() in LOCAL_BODIES:
            content = self.joins.answer_here(space_id, host, client, origin.scheme)
            if isinstance(content, AddressRefusal):
                return rate_limited(content, keep_alive)
            if isinstance(content, bytes):
                return _ticket_answer(content, keep_alive)
            if content is not None:
                return asyncio.ensure_future(
                    self._after_grant(content, path, headers, body, client, keep_alive)
                )
        return asyncio.ensure_future(self._forward(path, headers, body, client, keep_alive))

    async def _after_grant(
        self,
        waited: asyncio.Future[bytes | None],
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client: str,
        keep_alive: bool,
    ) -> bytes:
        content = await waited
        if content is not None:
            return _ticket_answer(content, keep_alive)
        return await self._forward(path, headers, body, client, keep_alive)

    async def _forward(
        self,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        client: str,
        keep_alive: bool,
    ) -> bytes:
        self.joins.stats.forwarded += 1
        sent = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name not in NOT_FORWARDED
        ]
        sent.append((CLIENT_HEADER, client))
        async with self._forwarding:
            try:
                answer = await call_origin(self.origin, "POST", path, body, sent)
            except OriginUnreachable:
                answer = unreachable_answer()
        return relayed(answer, keep_alive)


def _ticket_answer(content: bytes, keep_alive: bool) -> bytes:
    length = f"content-length: {len(content)}\r\n".encode("latin-1")
    return JOIN_OK_HEAD + length + _connection(keep_alive) + b"\r\n" + content


def rate_limited(refusal: AddressRefusal, keep_alive: bool) -> bytes:
    """The door's 429 for an address past its bucket (api/errors.py refusal_response)."""
    retry = refusal.retry_after_s
    body = error_body("rate_limited", refusal.message, retry_after_s=retry)
    headers = {"retry-after": str(round(retry)), "content-type": "application/json"}
    return relayed(OriginAnswer(429, headers, body), keep_alive)


def refused(status: int, code: str, message: str, keep_alive: bool) -> bytes:
    """An error this worker gives itself (bad framing), in the API's JSON shape."""
    body = error_body(code, message)
    return relayed(
        OriginAnswer(
            status, {"content-type": "application/json", "cache-control": "no-store"}, body
        ),
        keep_alive,
    )
