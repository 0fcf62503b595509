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

Who was removed from a space arrives on the answers to the count reports
(townhall.edge.removals); each relay keeps its space's removed set, refuses
those listeners (403 ``removed``, as the origin does) and cuts the ones already
listening. A new relay's opening asks for a report at once, and its first
listeners start only once that answer is in (it travels beside the origin's
stream head, so this costs about nothing), or after ``removals_wait_s`` if it
does not come: a removed listener does not get even the burst on a worker that
had not served the space before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from townhall.admission.signing import Signer
from townhall.audience.adts import ADTS_HEADER_BYTES
from townhall.audience.encoder import AAC_FRAME_SAMPLES
from townhall.audience.fanout import LiveFanout
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge.framing import AdtsFramer
from townhall.edge.relay_token import HEADER, issue_relay_token
from townhall.edge.reports import MAX_PEOPLE_PER_SPACE, WorkerFigures
from townhall.media import SAMPLE_RATE
from townhall.service.ids import signed_in_ids

log = logging.getLogger(__name__)

PROGRAM_PATH: Final = "/internal/program/{space_id}.aac"
READ_BYTES: Final = 64 * 1024
MAX_HEAD_BYTES: Final = 16 * 1024
"""The origin's answer head is a few hundred bytes; more means something is wrong."""
MAX_ERROR_BODY_BYTES: Final = 4 * 1024
REFUSAL_TTL_S: Final = 1.0
MAX_REMEMBERED_REFUSALS: Final = 4_096
"""Refusals kept (oldest forgotten first): bounds the memory a ticket flood can take."""
NO_ONE: Final[frozenset[str]] = frozenset()
PEOPLE_SCAN: Final = 2_000
"""Connections looked at per space and report for signed-in listeners' faces."""
REMOVALS_WAIT_S: Final = 1.0
"""A new relay holds its first listeners at most this long for the origin's removals;
past it they stream, and a removal that arrives later cuts them."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str


REMOVED: Final = Refusal(403, "removed", "you were removed from this space")


@dataclass(slots=True)
class RemovalStats:
    """Shared by every relay of a worker, closed ones included."""

    refused: int = 0
    """Streams refused because their listener was removed from the space."""
    cut: int = 0
    """Connections cut when the origin said their listener was removed."""
    answers: int = 0
    """Report answers applied."""
    answers_refused: int = 0
    """Report answers too large or malformed (past ``removals.MAX_ANSWER_BYTES``, say):
    none of their removals applied; the next answer, a report interval later, retries."""


class Waiter(Protocol):
    """A listener connection waiting for the relay's answer."""

    @property
    def listener_id(self) -> str: ...

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
        removal_stats: RemovalStats | None = None,
        removals_wait_s: float = REMOVALS_WAIT_S,
    ) -> None:
        self.space_id = space_id
        self.fanout = LiveFanout(audio, stream_bytes_per_second=_stream_bytes_per_second(audio))
        self.fanout.on_count_change = self._count_changed
        self.connected = False
        """The origin answered 200: its stream is flowing into ``fanout``."""
        self.streaming = False
        """Listeners are attached as they come (connected, and the removals are known)."""
        self._origin = origin
        self._edge = edge
        self._on_closed = on_closed
        self._pending: dict[Waiter, None] = {}
        self._grace: asyncio.TimerHandle | None = None
        self._framer = AdtsFramer()
        self.last_chunk_at: float | None = None
        """When the newest chunk from the origin arrived (monotonic): its age is the
        relay's lag, reported in the worker's figures (townhall.edge.reports)."""
        self.removed = NO_ONE
        """Listener ids refused here: the origin's word in its last report answer."""
        self._removals_known = False
        self._removals_wait_s = removals_wait_s
        self._removals_wait: asyncio.TimerHandle | None = None
        self._removal_stats = removal_stats or RemovalStats()
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def reported_count(self) -> int:
        """Listeners here minus this relay's own connection, which the origin counts."""
        return self.fanout.listener_count - (1 if self.connected else 0)

    def add(self, waiter: Waiter) -> None:
        if waiter.listener_id in self.removed:
            self._refuse_removed(waiter)
        elif self.streaming:
            waiter.start_stream(self.fanout)
        else:
            self._pending[waiter] = None

    def set_removed(self, removed: frozenset[str]) -> int:
        """Take the origin's removed set for this space: refuse the newly removed who are
        still waiting, cut the ones listening; returns how many connections were cut."""
        newly = removed - self.removed
        self.removed = removed
        self._removals_known = True
        cut = 0
        if newly:
            for waiter in [w for w in self._pending if w.listener_id in newly]:
                del self._pending[waiter]
                self._refuse_removed(waiter)
            cut = sum(self.fanout.cut(listener_id) for listener_id in newly)
            self._removal_stats.cut += cut
        if self.connected and not self.streaming:
            self._start_streaming()
        return cut

    @property
    def pending_count(self) -> int:
        """Listeners admitted here and waiting for the stream to start."""
        return len(self._pending)

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
            self._origin_answered()
            while data := await reader.read(READ_BYTES):
                chunk, duration_ms = self._framer.feed(data)
                if chunk:
                    self.last_chunk_at = time.monotonic()
                    self.fanout.publish(chunk, duration_ms)
        except TimeoutError:
            refusal = Refusal(504, "origin_timeout", "the origin did not answer in time")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            if not self.connected:
                refusal = Refusal(502, "origin_unreachable", f"the origin failed: {exc!r}")
        finally:
            if writer is not None:
                writer.close()
            self._finish(refusal)

    def _origin_answered(self) -> None:
        self.connected = True
        if self._removals_known:
            self._start_streaming()
        else:
            loop = asyncio.get_running_loop()
            self._removals_wait = loop.call_later(self._removals_wait_s, self._start_streaming)

    def _start_streaming(self) -> None:
        if self._removals_wait is not None:
            self._removals_wait.cancel()
            self._removals_wait = None
        if self.streaming or self.fanout.closed:
            return
        self.streaming = True
        pending, self._pending = self._pending, {}
        for waiter in pending:
            self.add(waiter)
        if self.fanout.listener_count == 0:
            self._count_changed(0)

    def _finish(self, refusal: Refusal | None) -> None:
        for timer in (self._grace, self._removals_wait):
            if timer is not None:
                timer.cancel()
        self._grace = self._removals_wait = None
        if refusal is None and not self.connected:
            refusal = Refusal(502, "origin_closed", "the origin closed the relay")
        pending, self._pending = self._pending, {}
        for waiter in pending:
            waiter.refuse(refusal or Refusal(410, "stream_ended", "the stream has ended"))
        self.fanout.close()  # listeners get EOF: the space ended or the origin went away
        self._on_closed(self, refusal)

    def _refuse_removed(self, waiter: Waiter) -> None:
        self._removal_stats.refused += 1
        waiter.refuse(REMOVED)

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

    def __init__(
        self,
        origin: Origin,
        audio: AudioSettings,
        edge: EdgeSettings,
        removals_wait_s: float = REMOVALS_WAIT_S,
    ) -> None:
        self._origin = origin
        self._removals_wait_s = removals_wait_s
        self._audio = audio
        self._edge = edge
        self._relays: dict[str, Relay] = {}
        self._refusals: OrderedDict[str, tuple[float, Refusal]] = OrderedDict()
        self.opened = 0
        self.closed_bytes_out = 0
        """Bytes written by relays since closed, so this worker's total never goes back."""
        self._closed_cut_slow = 0
        self.refusals_served = 0
        self.removals = RemovalStats()
        self.on_opened: Callable[[], None] | None = None
        """Told when a relay opens, so the worker can ask the origin for that space's
        removals at once rather than at the next report."""

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
            relay = Relay(
                space_id, self._origin, self._audio, self._edge, self._closed,
                self.removals, self._removals_wait_s,
            )  # fmt: skip
            self._relays[space_id] = relay
            self.opened += 1
            if self.on_opened is not None:
                self.on_opened()
        relay.add(waiter)
        return relay

    def relay(self, space_id: str) -> Relay | None:
        """The space's relay here, if this worker (or edge) relays it."""
        return self._relays.get(space_id)

    def is_removed(self, space_id: str, listener_id: str) -> bool:
        return listener_id in self.removed_in(space_id)

    def removed_in(self, space_id: str) -> frozenset[str]:
        """Who the origin last said was removed from the space (none before a relay)."""
        relay = self._relays.get(space_id)
        return NO_ONE if relay is None else relay.removed

    def streaming_in(self, space_id: str) -> Container[str]:
        """Listener ids with a stream of the space here (a reconnect replaces theirs)."""
        relay = self._relays.get(space_id)
        return () if relay is None else relay.fanout.listener_ids

    def fanout(self, space_id: str) -> LiveFanout | None:
        """The space's fan-out here, if this worker relays it."""
        relay = self._relays.get(space_id)
        return None if relay is None else relay.fanout

    @property
    def load(self) -> int:
        """Streams this worker holds or is about to start: what its capacity bounds."""
        return sum(r.fanout.listener_count + r.pending_count for r in self._relays.values())

    def apply_removed(self, reported: Iterable[str], removed: Mapping[str, frozenset[str]]) -> int:
        """The origin's answer to a report that named ``reported``: each of those spaces
        has exactly the removals the answer lists (none when absent). A relay that opened
        after the report left is not named and keeps what it has (nothing yet; the
        report its opening asked for brings its set). Returns the connections cut."""
        self.removals.answers += 1
        cut = 0
        for space_id in reported:
            relay = self._relays.get(space_id)
            if relay is not None:
                cut += relay.set_removed(removed.get(space_id, NO_ONE))
        return cut

    def counts(self) -> dict[str, int]:
        return {space_id: relay.reported_count for space_id, relay in self._relays.items()}

    def people(self, per_space: int = MAX_PEOPLE_PER_SPACE) -> dict[str, list[str]]:
        """Every relayed space's signed-in listeners here (the first `per_space`), for the
        room's faces; an empty list clears what the last report named."""
        return {
            space_id: signed_in_ids(relay.fanout.listener_ids, PEOPLE_SCAN)[:per_space]
            for space_id, relay in self._relays.items()
        }

    @property
    def listener_count(self) -> int:
        return sum(relay.fanout.listener_count for relay in self._relays.values())

    def figures(self, now: float) -> WorkerFigures:
        """What this worker adds to the node's metrics, from counters kept anyway."""
        relays = list(self._relays.values())
        ages = [now - r.last_chunk_at for r in relays if r.last_chunk_at is not None]
        return WorkerFigures(
            listeners=sum(r.fanout.listener_count for r in relays),
            bytes_out=self.closed_bytes_out + sum(r.fanout.stats.bytes_written for r in relays),
            cut_slow=self._closed_cut_slow + sum(r.fanout.stats.cut_slow for r in relays),
            relay_lag_s=max(ages, default=0.0),
            relays=len(relays),
        )

    def __len__(self) -> int:
        return len(self._relays)

    def __iter__(self) -> Iterator[Relay]:
        return iter(list(self._relays.values()))

    def end_streams(self) -> None:
        """Every relay's listeners are let go now; the relays themselves close later."""
        for relay in self._relays.values():
            relay.fanout.close()

    async def close(self) -> None:
        relays = list(self._relays.values())
        for relay in relays:
            relay.close()
        for relay in relays:
            with contextlib.suppress(asyncio.CancelledError):
                await relay._task

    def _closed(self, relay: Relay, refusal: Refusal | None) -> None:
        self.closed_bytes_out += relay.fanout.stats.bytes_written
        self._closed_cut_slow += relay.fanout.stats.cut_slow
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
