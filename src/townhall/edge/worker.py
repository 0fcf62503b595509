"""One stream worker process: the stream port's HTTP, relays and count reports.

Started by the supervisor as ``python -m townhall.edge.worker``; everything it
needs arrives on the command line except the secret, which it reads from an
inherited pipe (never an argument, which any local user can read in ``ps``).
It binds the stream port with SO_REUSEPORT beside its siblings, so the kernel
spreads new connections over the workers, and exits when told (SIGTERM), when
its parent is gone, or when it cannot bind.
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

from townhall.admission.signing import Signer
from townhall.config import AudioSettings, EdgeSettings
from townhall.edge.limits import raise_open_file_limit
from townhall.edge.protocol import StreamProtocol, StreamService
from townhall.edge.relay import Origin, Relays, parse_head

log = logging.getLogger(__name__)

LISTEN_BACKLOG: Final = 65_535
"""Accept queue per worker, capped by the kernel at net.core.somaxconn (4096 by default;
raise it on a node that expects a flash crowd). A reconnect storm lands all at once,
and a full queue costs a listener a 1 s SYN retransmit, or a dropped request that
comes back only after TCP's retransmission backoff."""
REPORT_PATH: Final = "/internal/listeners"
REPORT_TIMEOUT_S: Final = 2.0
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

    def to_args(self) -> list[str]:
        return [
            "--index", str(self.index), "--host", self.host, "--port", str(self.port),
            "--origin-host", self.origin_host, "--origin-port", str(self.origin_port),
            "--node-id", self.node_id, "--parent-pid", str(self.parent_pid),
            "--audio", json.dumps(_as_dict(self.audio)), "--edge", json.dumps(_as_dict(self.edge)),
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


async def report_once(origin: Origin, counts: dict[str, int]) -> int:
    """POST this worker's counts to the origin; returns the HTTP status."""
    body = json.dumps({"counts": counts}).encode()
    async with asyncio.timeout(REPORT_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(origin.host, origin.port)
        try:
            writer.write(origin.request("POST", REPORT_PATH, body))
            status, _ = parse_head(await reader.readuntil(b"\r\n\r\n"))
        finally:
            writer.close()
    return status


async def _report_forever(
    config: WorkerConfig, origin: Origin, relays: Relays, stop: asyncio.Event
) -> None:
    failures = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.edge.report_interval_s)
        if os.getppid() != config.parent_pid:
            log.warning("stream worker %d: the server is gone; stopping", config.index)
            stop.set()
            return
        if stop.is_set():
            return
        try:
            status = await report_once(origin, relays.counts())
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            status, failures = 0, failures + 1
            if failures in (1, 10) or failures % 60 == 0:
                log.warning("stream worker %d: count report failed: %r", config.index, exc)
        else:
            failures = 0
            if status >= 300:
                log.warning("stream worker %d: count report answered %d", config.index, status)


async def run_worker(config: WorkerConfig, secret: bytes) -> None:
    loop = asyncio.get_running_loop()
    origin = Origin(config.origin_host, config.origin_port, config.node_id, Signer(secret))
    relays = Relays(origin, config.audio, config.edge)
    service = StreamService(Signer(secret), relays, config.edge, config.node_id)
    sock = reuseport_socket(config.host, config.port)
    server = await loop.create_server(
        lambda: StreamProtocol(service), sock=sock, backlog=LISTEN_BACKLOG
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "stream worker %d (pid %d) serving %s:%d, relaying from %s:%d",
        config.index, os.getpid(), config.host, config.port, config.origin_host, config.origin_port,
    )  # fmt: skip
    reporter = asyncio.create_task(_report_forever(config, origin, relays, stop))
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
