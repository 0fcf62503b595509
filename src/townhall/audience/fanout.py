"""The live stream's fan-out: one shared chunk, written to every listener in one loop.

Icecast's shape: a burst ring of the last ``live_burst_ms`` of chunks for new
listeners (playback starts at once), and a hard bound on each listener's unsent
backlog. There is no per-listener queue and no per-listener coroutine: the one
``bytes`` object goes to ``transport.write`` for each connection, and the transport's
own write buffer *is* the listener's position in the stream. A listener whose buffer
passes the bound is cut and counted, never buffered further.

The HTTP layer writes the response head on the raw transport, then calls ``attach``;
from then on the fan-out writes body bytes only, and the body ends when the
connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
import time
from collections import deque
from collections.abc import Callable, KeysView
from dataclasses import dataclass, field

from townhall.config import AudioSettings

DEFAULT_SOCKET_SEND_BUFFER = 8 * 1024
"""SO_SNDBUF asked for each live socket (Linux doubles it). The backlog bound only sees
bytes the kernel refused; left to autotuning the kernel would hold minutes of a
48 kbps stream out of sight. 16 KiB in the kernel is ~2.7 s at 48 kbps and still
carries 16 KB/s at a 1 s round trip. 0 leaves the socket as it is."""


@dataclass(slots=True)
class FanoutStats:
    """Counters for one fan-out; every way a listener can leave has its own."""

    listeners: int = 0
    attached_total: int = 0
    detached: int = 0
    """Left through ``detach`` (the connection ended or the HTTP layer let go)."""
    gone: int = 0
    """Found closing during a publish (peer went away before ``detach``)."""
    cut_slow: int = 0
    """Cut because their unsent backlog passed ``live_max_lag_ms``."""
    cut_by_id: int = 0
    """Cut on request (``cut(listener_id)``: kicked, banned, ticket revoked)."""
    replaced: int = 0
    """Closed because the same ticket connected again (``attach(..., replace=True)``)."""
    closed_at_end: int = 0
    chunks_published: int = 0
    bytes_published: int = 0
    """Stream bytes (each chunk counted once, not once per listener)."""
    bytes_written: int = 0
    """Bytes handed to transports, bursts included."""
    burst_bytes_written: int = 0
    max_backlog_bytes: int = 0
    """The cut threshold in force."""


@dataclass(slots=True, eq=False)
class LiveListener:
    """One connection of one listener; identity is the connection, not the id."""

    listener_id: str
    transport: asyncio.WriteTransport
    attached_at: float = field(default_factory=time.monotonic)


class LiveFanout:
    """Shared-buffer fan-out of one live stream to any number of connections."""

    def __init__(
        self,
        settings: AudioSettings,
        *,
        stream_bytes_per_second: float | None = None,
        socket_send_buffer: int = DEFAULT_SOCKET_SEND_BUFFER,
    ) -> None:
        """``stream_bytes_per_second`` turns ``live_max_lag_ms`` into a byte bound; it
        defaults to the audio bitrate (pass the real rate, framing included)."""
        rate = stream_bytes_per_second or settings.bitrate / 8
        self._max_backlog = math.ceil(rate * settings.live_max_lag_ms / 1000)
        self._chunk_ms = float(settings.live_chunk_ms)
        self._burst_ms = float(settings.live_burst_ms)
        self._socket_send_buffer = socket_send_buffer
        self._burst: deque[tuple[bytes, float]] = deque()
        self._burst_bytes: bytes | None = None
        """The burst joined, until the next chunk (a crowd joining shares one copy)."""
        self._burst_held_ms = 0.0
        self._listeners: dict[LiveListener, None] = {}
        self._by_id: dict[str, set[LiveListener]] = {}
        self._closed = False
        self.stats = FanoutStats(max_backlog_bytes=self._max_backlog)
        self.on_count_change: Callable[[int], None] | None = None

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_backlog_bytes(self) -> int:
        return self._max_backlog

    def burst(self) -> bytes:
        """What a new listener gets first: the last ``live_burst_ms`` of the stream."""
        if self._burst_bytes is None:
            self._burst_bytes = b"".join(chunk for chunk, _ in self._burst)
        return self._burst_bytes

    def publish(self, chunk: bytes, duration_ms: float | None = None) -> None:
        """Write ``chunk`` to every listener; cut the ones too far behind."""
        if self._closed or not chunk:
            return
        self._remember(chunk, self._chunk_ms if duration_ms is None else duration_ms)
        self.stats.chunks_published += 1
        self.stats.bytes_published += len(chunk)
        limit = self._max_backlog
        gone: list[LiveListener] = []
        slow: list[LiveListener] = []
        written = 0
        for listener in self._listeners:
            transport = listener.transport
            if transport.is_closing():
                gone.append(listener)
                continue
            transport.write(chunk)
            written += len(chunk)
            if transport.get_write_buffer_size() > limit:
                slow.append(listener)
        self.stats.bytes_written += written
        if not (gone or slow):
            return
        for listener in gone:
            self._forget(listener)
        self.stats.gone += len(gone)
        for listener in slow:
            self._forget(listener)
            listener.transport.abort()  # drop the backlog now; no point flushing it
        self.stats.cut_slow += len(slow)
        self._count_changed()

    def attach(
        self,
        transport: asyncio.WriteTransport,
        listener_id: str,
        *,
        replace: bool = False,
        head: bytes = b"",
    ) -> LiveListener:
        """Start a connection: the burst now, then every published chunk.

        ``replace``: one connection per listener id (per ticket): any earlier one of
        ``listener_id`` is closed first, as a reconnect (see admission.stream_gate).
        ``head``: the response head, written with the burst in one send (a crowd of
        joins pays one system call per listener, not two)."""
        if replace and listener_id in self._by_id:
            self.stats.replaced += self.cut(listener_id, count=False)
        listener = LiveListener(listener_id, transport)
        self._tune_socket(transport)
        burst = self.burst()
        if head:
            transport.write(head + burst)
        elif burst:
            transport.write(burst)
            self.stats.bytes_written += len(burst)
            self.stats.burst_bytes_written += len(burst)
        self.stats.attached_total += 1
        if self._closed:
            transport.close()
            self.stats.closed_at_end += 1
            return listener
        self._listeners[listener] = None
        self._by_id.setdefault(listener_id, set()).add(listener)
        self._count_changed()
        return listener

    def detach(self, listener: LiveListener) -> None:
        """Stop writing to this connection (it is not closed here). Idempotent."""
        if listener in self._listeners:
            self._forget(listener)
            self.stats.detached += 1
            self._count_changed()

    @property
    def listener_ids(self) -> KeysView[str]:
        """Listener ids holding a connection here (a live view, not a copy)."""
        return self._by_id.keys()

    def first_listener_ids(self, limit: int) -> list[str]:
        """Up to `limit` of the ids listening here (one per listener, however many
        connections it holds), for the host's list of who is listening."""
        return list(itertools.islice(self._by_id, max(0, limit)))

    def cut(self, listener_id: str, *, count: bool = True) -> int:
        """Close every connection of ``listener_id``; returns how many there were."""
        connections = list(self._by_id.get(listener_id, ()))
        self._close(connections)
        if count:
            self.stats.cut_by_id += len(connections)
        return len(connections)

    def cut_older(self, listener_id: str, before: float) -> int:
        """Close the connections of ``listener_id`` attached before ``before`` (monotonic):
        a newer one of the same ticket holds it elsewhere (see townhall.edge.one_stream)."""
        older = [c for c in self._by_id.get(listener_id, ()) if c.attached_at < before]
        self._close(older)
        self.stats.replaced += len(older)
        return len(older)

    def _close(self, connections: list[LiveListener]) -> None:
        if not connections:
            return
        for listener in connections:
            self._forget(listener)
            listener.transport.close()
        self._count_changed()

    def close(self) -> None:
        """End the stream: every connection is closed after what it already has."""
        if self._closed:
            return
        self._closed = True
        listeners = list(self._listeners)
        self._listeners.clear()
        self._by_id.clear()
        for listener in listeners:
            listener.transport.close()
        self.stats.closed_at_end += len(listeners)
        self._count_changed()

    def _remember(self, chunk: bytes, duration_ms: float) -> None:
        self._burst.append((chunk, duration_ms))
        self._burst_bytes = None
        self._burst_held_ms += duration_ms
        while len(self._burst) > 1 and self._burst_held_ms - self._burst[0][1] >= self._burst_ms:
            self._burst_held_ms -= self._burst.popleft()[1]

    def _forget(self, listener: LiveListener) -> None:
        del self._listeners[listener]
        same_id = self._by_id.get(listener.listener_id)
        if same_id is not None:
            same_id.discard(listener)
            if not same_id:
                del self._by_id[listener.listener_id]

    def _count_changed(self) -> None:
        self.stats.listeners = len(self._listeners)
        if self.on_count_change is not None:
            self.on_count_change(len(self._listeners))

    def _tune_socket(self, transport: asyncio.WriteTransport) -> None:
        if not self._socket_send_buffer:
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        # A socket that takes no SO_SNDBUF (a Unix pipe in a test, say) keeps its own.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._socket_send_buffer)
