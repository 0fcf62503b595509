"""Runs the ASGI app on uvicorn, with what a public server needs below HTTP.

uvicorn keeps the connection's transport to itself, has no deadline for a
request that arrives slowly and no limit on the size of a request head (its
httptools parser holds an unfinished header in memory however long it grows),
so our protocol subclass adds five things:
- the transport in the scope's extensions (the ASGI way to offer server
  extras), for the live stream's shared-buffer fan-out (api/live.py);
- header and body deadlines, so slowloris connections are cut;
- a cap on the request head's size (431), checked before the parser sees the bytes;
- a cap on open connections per client address, refused before any parsing;
- behind trusted proxies, the forwarded client address and scheme in the scope
  (townhall.forwarded), once per request, for everything above to read. Trusted
  proxies are exempt from the connection cap: each carries many clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from townhall.admission.attack_mode import ATTACK_RESTRICTIONS
from townhall.admission.connection_caps import ConnectionCaps
from townhall.api.error_body import error_body
from townhall.api.live import TRANSPORT_EXTENSION
from townhall.config import Settings
from townhall.forwarded import TrustedProxies

log = logging.getLogger(__name__)


def _raw_error(status: str, code: str, message: str, retry_after_s: int | None = None) -> bytes:
    """A whole error response, for refusals made below the ASGI app."""
    body = error_body(code, message)
    retry = f"Retry-After: {retry_after_s}\r\n" if retry_after_s is not None else ""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{retry}"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


TOO_MANY_CONNECTIONS = _raw_error(
    "503 Service Unavailable", "too_many_connections", "too many open connections from you", 10
)
HEADER_TOO_LARGE = _raw_error(
    "431 Request Header Fields Too Large",
    "header_too_large",
    "the request line and headers are too large",
)


@dataclass
class ConnectionGuard:
    """Shared by every connection of one server: deadlines and per-address caps."""

    header_timeout_s: float
    body_timeout_s: float
    caps: ConnectionCaps = field(default_factory=lambda: ConnectionCaps(0))
    max_header_bytes: int = 0
    """0 disables the cap on a request head's size."""
    trusted: TrustedProxies = field(default_factory=TrustedProxies)
    cut_slow_headers: int = 0
    cut_slow_bodies: int = 0
    refused_large_heads: int = 0
    normal_max_per_address: int = 0
    attack_max_per_address: int = ATTACK_RESTRICTIONS.max_connections_per_address
    """The per-address connection cap while attack mode is on (the door's restrictions)."""

    def refusals(self) -> dict[str, int]:
        """Connections refused or cut below HTTP, by kind (for GET /metrics)."""
        return {
            "too_many_connections": self.caps.refused,
            "slow_headers": self.cut_slow_headers,
            "slow_body": self.cut_slow_bodies,
            "header_too_large": self.refused_large_heads,
        }

    def follow_attack_mode(self, active: bool) -> None:
        """Tightens the per-address cap while attack mode is on (an Events handler)."""
        self.caps.max_per_key = (
            self.attack_max_per_address if active else self.normal_max_per_address
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionGuard:
        http = settings.http
        return cls(
            http.header_timeout_s,
            http.body_timeout_s,
            ConnectionCaps(http.max_connections_per_address),
            http.max_header_bytes,
            TrustedProxies(http.trusted_proxies, http.forwarded_header),
            normal_max_per_address=http.max_connections_per_address,
        )


class GuardedProtocol(HttpToolsProtocol):
    guard: ConnectionGuard  # set on the subclass made by protocol_for()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._address = (self.client or ("?", 0))[0]
        self._behind_proxy = self.guard.trusted.trusts(self._address)
        self._counted = False
        if not self._behind_proxy and not self.guard.caps.acquire(self._address):
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._counted = not self._behind_proxy
        self._arm(self.guard.header_timeout_s, "headers")

    def data_received(self, data: bytes) -> None:
        """Feeds the parser at most the head cap's worth of an unfinished head.

        Whatever follows the head in the same read (a body, a pipelined request) is
        fed unchecked; a pipelined head is then counted from its next read on, so a
        connection never makes the parser hold more than the cap plus one read."""
        cap = self.guard.max_header_bytes
        if not (cap and self._in_head):
            super().data_received(data)
            return
        room = cap - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        super().data_received(data[:room])
        if self._in_head and not self.transport.is_closing():
            self.guard.refused_large_heads += 1
            self._disarm()
            self.transport.write(HEADER_TOO_LARGE)
            self.transport.close()
        elif not self.transport.is_closing():
            super().data_received(data[room:])

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self.guard.caps.release(self._address)
            self._counted = False
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, self._too_slow, what)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _too_slow(self, what: str) -> None:
        self._deadline = None
        if what == "headers":
            self.guard.cut_slow_headers += 1
        else:
            self.guard.cut_slow_bodies += 1
        log.info("cut %s: its request %s were too slow", self._address, what)
        self.transport.abort() if hasattr(self.transport, "abort") else self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_EXTENSION: self.transport}  # type: ignore[typeddict-unknown-key]
        if self._deadline is None:
            self._arm(self.guard.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.guard.body_timeout_s, "body")
        if self._behind_proxy:
            origin = self.guard.trusted.resolve(self._address, self.scheme or "http", self.headers)
            self.scope["client"] = (origin.address, 0)
            self.scope["scheme"] = origin.scheme
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()


def protocol_for(guard: ConnectionGuard) -> type[GuardedProtocol]:
    return type("TownhallProtocol", (GuardedProtocol,), {"guard": guard})


def uvicorn_config(app: Any, settings: Settings, guard: ConnectionGuard) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(guard),
        loop="uvloop",
        lifespan="on",
        timeout_keep_alive=15,
        timeout_graceful_shutdown=5,
        access_log=False,
        log_level="info",
        server_header=False,
        backlog=4096,
        proxy_headers=False,
    )


class StoppingServer(uvicorn.Server):
    """uvicorn, telling the app's long-lived streams (live event streams, live audio,
    relays) to end the moment a stop signal arrives: uvicorn waits for open connections
    before the app's own shutdown runs, so otherwise each stream would hold the stop for
    the whole grace period and then be cancelled (a traceback in the log). `on_stop` is
    called on the server's loop (Services.stop_signalled)."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_stop)
        super().handle_exit(sig, frame)

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)
