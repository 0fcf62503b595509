"""A worker's copy of one space's program: read from the origin once, fanned out here.

The first listener of a space on this worker opens the relay; listeners who
arrive while it connects wait in ``pending`` (each is a connection, so the list
is bounded by the connection count) and learn the origin's answer: the stream,
or its refusal passed on. When the origin's stream ends (the space ended) the
local fan-out closes and every listener gets EOF. After the last listener
leaves, the relay lingers ``relay_grace_s`` so a listener who reconnects still
gets the burst, then closes.

A refusal from the origin (space unknown or not live) is remembered for
``REFUSAL_TTL_S`` so a crowd holding valid tickets for an ended space costs the
origin one request per worker per second, not one per listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from townhall.admission.signing import Signer
from townhall.audience.adts import ADTS_HEADER_BYTES
from townhall.audience.encoder import AAC_FRAME_SAMPLES
from townhall.audience.fanout import LiveFanout
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge.framing import AdtsFramer
from townhall.edge.relay_token import HEADER, issue_relay_token
from townhall.media import SAMPLE_RATE

log = logging.getLogger(__name__)

PROGRAM_PATH: Final = "/internal/program/{space_id}.aac"
READ_BYTES: Final = 64 * 1024
MAX_HEAD_BYTES: Final = 16 * 1024
"""The origin's answer head is a few hundred bytes; more means something is wrong."""
MAX_ERROR_BODY_BYTES: Final = 4 * 1024
REFUSAL_TTL_S: Final = 1.0
MAX_REMEMBERED_REFUSALS: Final = 4_096
"""Refusals kept (oldest forgotten first): bounds the memory a ticket flood can take."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str


class Waiter(Protocol):
    """A listener connection waiting for the relay's answer."""

    def start_stream(self, fanout: LiveFanout) -> None: ...

    def refuse(self, refusal: Refusal) -> None: ...


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    node_id: str
    signer: Signer

    def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        token = issue_relay_token(self.signer, self.node_id, time.time())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"{HEADER}: {token}\r\nConnection: close\r\n"
        )
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode("latin-1") + body


def _stream_bytes_per_second(audio: AudioSettings) -> float:
    """The program's real rate, ADTS framing included (as the origin's ProgramOutput says)."""
    return audio.bitrate / 8 + ADTS_HEADER_BYTES * SAMPLE_RATE / AAC_FRAME_SAMPLES


class Relay:
    def __init__(
        self,
        space_id: str,
        origin: Origin,
        audio: AudioSettings,
        edge: EdgeSettings,
        on_closed: Callable[[Relay, Refusal | None], None],
    ) -> None:
        self.space_id = space_id
        self.fanout = LiveFanout(audio, stream_bytes_per_second=_stream_bytes_per_second(audio))
        self.fanout.on_count_change = self._count_changed
        self.streaming = False
        self._origin = origin
        self._edge = edge
        self._on_closed = on_closed
        self._pending: dict[Waiter, None] = {}
        self._grace: asyncio.TimerHandle | None = None
        self._framer = AdtsFramer()
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def reported_count(self) -> int:
        """Listeners here minus this relay's own connection, which the origin counts."""
        return self.fanout.listener_count - (1 if self.streaming else 0)

    def add(self, waiter: Waiter) -> None:
        if self.streaming:
            waiter.start_stream(self.fanout)
        else:
            self._pending[waiter] = None

    def forget(self, waiter: Waiter) -> None:
        self._pending.pop(waiter, None)

    def close(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        refusal: Refusal | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            timeout = self._edge.relay_connect_timeout_s
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    self._origin.host, self._origin.port, limit=MAX_HEAD_BYTES
                )
                writer.write(
                    self._origin.request("GET", PROGRAM_PATH.format(space_id=self.space_id))
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = parse_head(head)
                if status != 200:
                    wanted = min(length or MAX_ERROR_BODY_BYTES, MAX_ERROR_BODY_BYTES)
                    body = await reader.read(wanted)
                    refusal = _refusal_from(status, body)
                    return
            self._start_streaming()
            while data := await reader.read(READ_BYTES):
                chunk, duration_ms = self._framer.feed(data)
                if chunk:
                    self.fanout.publish(chunk, duration_ms)
        except TimeoutError:
            refusal = Refusal(504, "origin_timeout", "the origin did not answer in time")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            if not self.streaming:
                refusal = Refusal(502, "origin_unreachable", f"the origin failed: {exc!r}")
        finally:
            if writer is not None:
                writer.close()
            self._finish(refusal)

    def _start_streaming(self) -> None:
        self.streaming = True
        pending, self._pending = self._pending, {}
        for waiter in pending:
            waiter.start_stream(self.fanout)
        if self.fanout.listener_count == 0:
            self._count_changed(0)

    def _finish(self, refusal: Refusal | None) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if refusal is None and not self.streaming:
            refusal = Refusal(502, "origin_closed", "the origin closed the relay")
        pending, self._pending = self._pending, {}
        for waiter in pending:
            waiter.refuse(refusal or Refusal(410, "stream_ended", "the stream has ended"))
        self.fanout.close()  # listeners get EOF: the space ended or the origin went away
        self._on_closed(self, refusal)

    def _count_changed(self, count: int) -> None:
        if count > 0:
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            return
        if self._grace is None and self.streaming and not self.fanout.closed:
            loop = asyncio.get_running_loop()
            self._grace = loop.call_later(self._edge.relay_grace_s, self.close)


class Relays:
    """Every relay of this worker, one per space with listeners (or in its grace)."""

    def __init__(self, origin: Origin, audio: AudioSettings, edge: EdgeSettings) -> None:
        self._origin = origin
        self._audio = audio
        self._edge = edge
        self._relays: dict[str, Relay] = {}
        self._refusals: OrderedDict[str, tuple[float, Refusal]] = OrderedDict()
        self.opened = 0
        self.refusals_served = 0

    def join(self, space_id: str, waiter: Waiter) -> Relay | None:
        """Hand ``waiter`` to the space's relay (opening it); None when the origin just
        refused this space and ``waiter`` was refused with the same answer."""
        remembered = self._refusals.get(space_id)
        if remembered is not None:
            until, refusal = remembered
            if time.monotonic() < until:
                self.refusals_served += 1
                waiter.refuse(refusal)
                return None
            del self._refusals[space_id]
        relay = self._relays.get(space_id)
        if relay is None:
            relay = Relay(space_id, self._origin, self._audio, self._edge, self._closed)
            self._relays[space_id] = relay
            self.opened += 1
        relay.add(waiter)
        return relay

    def counts(self) -> dict[str, int]:
        return {space_id: relay.reported_count for space_id, relay in self._relays.items()}

    @property
    def listener_count(self) -> int:
        return sum(relay.fanout.listener_count for relay in self._relays.values())

    def __len__(self) -> int:
        return len(self._relays)

    async def close(self) -> None:
        relays = list(self._relays.values())
        for relay in relays:
            relay.close()
        for relay in relays:
            with contextlib.suppress(asyncio.CancelledError):
                await relay._task

    def _closed(self, relay: Relay, refusal: Refusal | None) -> None:
        if self._relays.get(relay.space_id) is relay:
            del self._relays[relay.space_id]
        if refusal is not None and refusal.status in (404, 409, 410):
            self._refusals[relay.space_id] = (time.monotonic() + REFUSAL_TTL_S, refusal)
            self._refusals.move_to_end(relay.space_id)
            while len(self._refusals) > MAX_REMEMBERED_REFUSALS:
                self._refusals.popitem(last=False)


def parse_head(head: bytes) -> tuple[int, int | None]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    return int(parts[1]), length


def _refusal_from(status: int, body: bytes) -> Refusal:
    code, message = "origin_refused", f"the origin answered {status}"
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    if status in (401, 403):  # the origin refused *us*: a key mismatch, not the listener's fault
        return Refusal(502, "relay_refused", f"the origin refused this worker ({code})")
    return Refusal(status if 400 <= status < 500 else 502, code, message)
