"""One stream worker process: the stream port's HTTP, relays and count reports.

Started by the supervisor as ``python -m townhall.edge.worker``; everything it
needs arrives on the command line except the secret, which it reads from an
inherited pipe (never an argument, which any local user can read in ``ps``).
It binds the stream port with SO_REUSEPORT beside its siblings, so the kernel
spreads new connections over the workers, and exits when told (SIGTERM), when
its parent is gone, or when it cannot bind.

Once per ``report_interval_s`` it reports its listener counts to the origin,
and the answer carries who was removed from the spaces it reported (see
townhall.edge.removals): a host's removal reaches every worker within about a
report interval. A relay that opens asks for a report at once, so a removed
listener who lands on a worker new to the space is refused or cut within one
round trip, not one interval. The report also carries the streams opened since
the last one, and the answer the ones this worker must cut because a newer
stream of the same ticket opened on another process of the node (see
townhall.edge.one_stream): one ticket, one stream per node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, fields
from typing import Any, Final

import uvloop

from townhall.admission.capacity import Capacity
from townhall.admission.signing import Signer
from townhall.admission.stream_gate import StreamGate
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge.joins import ADMISSIONS_PATH, WorkerJoins
from townhall.edge.limits import raise_open_file_limit
from townhall.edge.listener_api import ListenerApi
from townhall.edge.one_stream import (
    MAX_CUTS_PER_ANSWER,
    Opening,
    OpeningsRefused,
    cut_replaced,
    parse_wire,
    to_wire,
)
from townhall.edge.origin_calls import OriginAnswer, call_origin
from townhall.edge.protocol import StreamProtocol, StreamService
from townhall.edge.relay import Origin, Relays, parse_head
from townhall.edge.removals import MAX_ANSWER_BYTES, RemovalsRefused, parse_removed
from townhall.edge.reports import WorkerFigures
from townhall.edge.snapshots import SnapshotCache
from townhall.forwarded import TrustedProxies

log = logging.getLogger(__name__)

LISTEN_BACKLOG: Final = 65_535
"""Accept queue per worker, capped by the kernel at net.core.somaxconn (4096 by default;
raise it on a node that expects a flash crowd). A reconnect storm lands all at once,
and a full queue costs a listener a 1 s SYN retransmit, or a dropped request that
comes back only after TCP's retransmission backoff."""
REPORT_PATH: Final = "/internal/listeners"
REPORT_TIMEOUT_S: Final = 2.0
MIN_REPORT_GAP_S: Final = 0.02
"""Reports asked for at once (relays opening) still leave this much between them, so a
burst of new spaces costs the origin a few reports, not one per space."""
SHUTDOWN_FLUSH_S: Final = 0.2
"""After closing every stream, a moment for the kernel to take the last bytes."""
MAX_SECRET_BYTES: Final = 4_096


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    host: str
    port: int
    origin_host: str
    origin_port: int
    node_id: str
    parent_pid: int
    audio: AudioSettings
    edge: EdgeSettings
    max_listeners: int = 0
    """Streams this worker holds at most (admission.max_listeners: per process); 0: no cap."""
    public_url: str = ""
    """The node's public URL (settings.public_url): join answers name it as the origin's."""
    trusted_proxies: tuple[str, ...] = ()
    forwarded_header: str = "x-forwarded-for"
    """settings.http's: behind a proxy, per-address limits key on its client (as the
    origin's do, townhall.forwarded)."""

    def to_args(self) -> list[str]:
        return [
            "--index", str(self.index), "--host", self.host, "--port", str(self.port),
            "--origin-host", self.origin_host, "--origin-port", str(self.origin_port),
            "--node-id", self.node_id, "--parent-pid", str(self.parent_pid),
            "--audio", json.dumps(_as_dict(self.audio)), "--edge", json.dumps(_as_dict(self.edge)),
            "--max-listeners", str(self.max_listeners), "--public-url", self.public_url,
            "--trusted-proxies", ",".join(self.trusted_proxies),
            "--forwarded-header", self.forwarded_header,
        ]  # fmt: skip


def _as_dict(settings: Any) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def reuseport_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class ReportAnswer:
    status: int
    removed: dict[str, frozenset[str]]
    """Removed listener ids of the reported spaces that have any."""
    replaced: list[Opening]
    """Tickets whose streams here that opened before ``at`` must be cut (see one_stream)."""


async def report_once(
    origin: Origin,
    counts: dict[str, int],
    opened: list[Opening] | None = None,
    figures: WorkerFigures | None = None,
    people: dict[str, list[str]] | None = None,
) -> ReportAnswer:
    """POST this worker's counts, the streams it ``opened`` since the last report, its
    ``figures`` (for /metrics) and the signed-in ``people`` streaming per space (the
    room's faces) to the origin; returns the HTTP status and, on success, removals and
    cuts.

    Raises RemovalsRefused (a ValueError) for an answer past ``MAX_ANSWER_BYTES`` or not
    of the agreed shape: none of its removals or cuts is applied."""
    report: dict[str, object] = {"counts": counts}
    if opened:
        report["opened"] = to_wire(opened)
    if figures is not None:
        report["figures"] = figures.to_json()
    if people:
        report["people"] = people
    body = json.dumps(report, separators=(",", ":")).encode()
    async with asyncio.timeout(REPORT_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(origin.host, origin.port)
        try:
            writer.write(origin.request("POST", REPORT_PATH, body))
            status, length = parse_head(await reader.readuntil(b"\r\n\r\n"))
            if status != 200:
                return ReportAnswer(status, {}, [])
            if length is not None and length > MAX_ANSWER_BYTES:
                raise RemovalsRefused(f"a report answer of {length} bytes")
            if length is None:  # close-delimited: read to EOF, one byte past the bound
                answer = await reader.read(MAX_ANSWER_BYTES + 1)
                if len(answer) > MAX_ANSWER_BYTES:
                    raise RemovalsRefused("a report answer past the bound")
            else:
                answer = await reader.readexactly(length)
        finally:
            writer.close()
    try:
        document = json.loads(answer) if answer else {}
    except ValueError:
        raise RemovalsRefused("a report answer that is not JSON") from None
    if not isinstance(document, dict):
        raise RemovalsRefused("a report answer that is not an object")
    try:
        replaced = parse_wire(document.get("replaced"), MAX_CUTS_PER_ANSWER)
    except OpeningsRefused as refused:
        raise RemovalsRefused(f"a report answer's cuts: {refused}") from None
    return ReportAnswer(status, parse_removed(document.get("removed")), replaced)


class ReportClock:
    """When the next report is due: every ``interval_s``, or at once when asked (a relay
    opened) or when the worker stops. One event serves both, so the wait is one await."""

    def __init__(self, interval_s: float, stop: asyncio.Event) -> None:
        self._interval_s = interval_s
        self._stop = stop
        self._wake = asyncio.Event()

    def report_now(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._interval_s)
        self._wake.clear()


async def _report_forever(
    config: WorkerConfig,
    origin: Origin,
    service: StreamService,
    stop: asyncio.Event,
    clock: ReportClock,
) -> None:
    relays = service.relays
    failures = 0
    while not stop.is_set():
        await clock.wait()
        if os.getppid() != config.parent_pid:
            log.warning("stream worker %d: the server is gone; stopping", config.index)
            clock.stop()
            return
        if stop.is_set():
            return
        counts = relays.counts()
        opened = service.openings.take()
        try:
            answer = await report_once(
                origin, counts, opened, relays.figures(time.monotonic()), relays.people()
            )
        except RemovalsRefused as refused:  # the counts arrived; the removals wait
            failures = 0
            relays.removals.answers_refused += 1
            log.warning("stream worker %d: report answer refused: %s", config.index, refused)
        except (
            OSError, TimeoutError, ValueError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:  # fmt: skip
            failures += 1
            service.openings.put_back(opened)
            if failures in (1, 10) or failures % 60 == 0:
                log.warning("stream worker %d: count report failed: %r", config.index, exc)
        else:
            failures = 0
            if answer.status >= 300:
                log.warning(
                    "stream worker %d: count report answered %d", config.index, answer.status
                )
                service.openings.put_back(opened)
            else:
                cut = relays.apply_removed(counts, answer.removed)
                if cut:
                    log.info("stream worker %d: cut %d removed listener(s)", config.index, cut)
                cut_replaced(answer.replaced, relays.fanout)
                if service.openings:  # a crowd opened more than one report carries
                    clock.report_now()
        await asyncio.sleep(MIN_REPORT_GAP_S)


def listener_api(config: WorkerConfig, origin: Origin) -> ListenerApi:
    """The snapshot and join on the stream port (townhall.edge.listener_api), answered
    from the origin's snapshots and admission grants."""

    async def snapshot(space_id: str) -> OriginAnswer:
        return await call_origin(origin, "GET", f"/api/spaces/{space_id}")

    async def grant(space_id: str, want: int, joins: int, returned: int) -> OriginAnswer:
        body = json.dumps(
            {"space_id": space_id, "want": want, "joins": joins, "returned": returned}
        ).encode()
        headers = [("Content-Type", "application/json")]
        return await call_origin(origin, "POST", ADMISSIONS_PATH, body, headers)

    joins = WorkerJoins(
        origin.signer,
        grant,
        config.edge,
        config.port,
        config.host,
        config.public_url,
        opus=config.audio.opus_bitrate > 0,
    )
    trusted = TrustedProxies(config.trusted_proxies, config.forwarded_header)
    return ListenerApi(origin, SnapshotCache(snapshot), joins, trusted)


async def run_worker(config: WorkerConfig, secret: bytes) -> None:
    loop = asyncio.get_running_loop()
    origin = Origin(config.origin_host, config.origin_port, config.node_id, Signer(secret))
    relays = Relays(origin, config.audio, config.edge)
    gate = StreamGate(Signer(secret), Capacity(max_listeners=config.max_listeners))
    service = StreamService(
        gate, relays, config.edge, config.node_id, api=listener_api(config, origin)
    )
    sock = reuseport_socket(config.host, config.port)
    server = await loop.create_server(
        lambda: StreamProtocol(service), sock=sock, backlog=LISTEN_BACKLOG
    )
    stop = asyncio.Event()
    clock = ReportClock(config.edge.report_interval_s, stop)
    relays.on_opened = clock.report_now
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, clock.stop)
    log.info(
        "stream worker %d (pid %d) serving %s:%d, relaying from %s:%d",
        config.index, os.getpid(), config.host, config.port, config.origin_host, config.origin_port,
    )  # fmt: skip
    reporter = asyncio.create_task(_report_forever(config, origin, service, stop, clock))
    try:
        await stop.wait()
    finally:
        server.close()
        await relays.close()
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        with contextlib.suppress(OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            await report_once(origin, {})  # zero this worker's share at the origin
        await asyncio.sleep(SHUTDOWN_FLUSH_S)


def _read_secret(fd: int) -> bytes:
    chunks = []
    size = 0
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(MAX_SECRET_BYTES):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_SECRET_BYTES:
                raise SystemExit("stream worker: the secret is too long")
    return b"".join(chunks)


def parse_args(argv: list[str]) -> tuple[WorkerConfig, int]:
    parser = argparse.ArgumentParser(prog="townhall.edge.worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--origin-host", required=True)
    parser.add_argument("--origin-port", type=int, required=True)
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--audio", default="{}")
    parser.add_argument("--edge", default="{}")
    parser.add_argument("--max-listeners", type=int, default=0)
    parser.add_argument("--public-url", default="")
    parser.add_argument("--trusted-proxies", default="")
    parser.add_argument("--forwarded-header", default="x-forwarded-for")
    parser.add_argument("--secret-fd", type=int, required=True)
    args = parser.parse_args(argv)
    config = WorkerConfig(
        index=args.index,
        host=args.host,
        port=args.port,
        origin_host=args.origin_host,
        origin_port=args.origin_port,
        node_id=args.node_id,
        parent_pid=args.parent_pid,
        audio=AudioSettings(**json.loads(args.audio)),
        edge=EdgeSettings(**json.loads(args.edge)),
        max_listeners=args.max_listeners,
        public_url=args.public_url,
        trusted_proxies=tuple(cidr for cidr in args.trusted_proxies.split(",") if cidr),
        forwarded_header=args.forwarded_header,
    )
    return config, args.secret_fd


def main(argv: list[str] | None = None) -> int:
    config, secret_fd = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secret = _read_secret(secret_fd)
    limit = raise_open_file_limit()
    log.info("stream worker %d: open file limit %d", config.index, limit)
    started = time.monotonic()
    try:
        uvloop.run(run_worker(config, secret))
    except OSError as exc:
        log.error("stream worker %d cannot serve: %s", config.index, exc)
        return 1
    log.info("stream worker %d stopped after %.0f s", config.index, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
