"""Starts, watches and stops the stream workers of one node.

Runs inside the main server process, in one small thread: it spawns each worker
as ``python -m townhall.edge.worker`` with the secret written into an inherited
pipe, restarts a worker that dies (at most once per ``restart_backoff_s`` per
slot, so a worker that cannot start does not spin), and on stop sends SIGTERM,
waits, then SIGKILLs what is left. Only the PIDs it started are ever signalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from townhall.config import Settings
from townhall.edge.worker import WorkerConfig

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 0.25
STOP_TIMEOUT_S: Final = 5.0
"""Workers get this long after SIGTERM to close their streams before SIGKILL."""
WILDCARD_HOSTS: Final = {"", "0.0.0.0", "::"}
DEFERRED_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT/SIGTERM that reach the default handler inside this block are noted, not
    acted on, and raised again once it ends (after the workers are stopped).

    uvicorn handles both signals while it runs and re-raises the one it caught when it
    returns; without this the process would die by it before stopping its workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: object) -> None:
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in dict.fromkeys(reversed(noted)):
        signal.raise_signal(signum)


@dataclass
class WorkerSlot:
    index: int
    config: WorkerConfig
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0


def origin_address(settings: Settings) -> tuple[str, int]:
    """Where workers reach the origin: its own address, or loopback when it listens on all."""
    if settings.host in WILDCARD_HOSTS:
        return ("::1" if settings.host == "::" else "127.0.0.1"), settings.port
    return settings.host, settings.port


class Supervisor:
    def __init__(self, settings: Settings, secret: bytes, node_prefix: str = "edge") -> None:
        edge = settings.edge
        if edge.stream_workers < 0:
            raise ValueError("stream_workers must be >= 0")
        if not settings.port and not edge.stream_port:
            raise ValueError("stream workers need a fixed port (or an explicit stream_port)")
        self.stream_port = edge.resolved_stream_port(settings.port)
        origin_host, origin_port = origin_address(settings)
        self._secret = secret
        self._backoff_s = edge.restart_backoff_s
        self._slots = [
            WorkerSlot(
                index,
                WorkerConfig(
                    index=index,
                    host=settings.host,
                    port=self.stream_port,
                    origin_host=origin_host,
                    origin_port=origin_port,
                    node_id=f"{node_prefix}-{self.stream_port}-{index}",
                    parent_pid=os.getpid(),
                    audio=settings.audio,
                    edge=edge,
                    max_listeners=settings.admission.max_listeners,
                    public_url=settings.public_url,
                    trusted_proxies=settings.http.trusted_proxies,
                    forwarded_header=settings.http.forwarded_header,
                ),
            )
            for index in range(edge.stream_workers)
        ]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [s.process.pid for s in self._slots if s.process and s.process.poll() is None]

    @property
    def restarts(self) -> int:
        return sum(slot.restarts for slot in self._slots)

    def start(self) -> None:
        with self._lock:
            for slot in self._slots:
                self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="stream-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_INTERVAL_S * 4)
        with self._lock:
            running = [s.process for s in self._slots if s.process and s.process.poll() is None]
            for process in running:
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for process in running:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("stream worker pid %d ignored SIGTERM; killing it", process.pid)
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT_S)

    def _spawn(self, slot: WorkerSlot) -> None:
        read_fd, write_fd = os.pipe()
        try:
            # The secret is far below a pipe's buffer, so this write never blocks.
            os.write(write_fd, self._secret)
        finally:
            os.close(write_fd)
        try:
            slot.process = subprocess.Popen(
                [
                    sys.executable, "-m", "townhall.edge.worker",
                    *slot.config.to_args(), "--secret-fd", str(read_fd),
                ],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(read_fd)
        slot.started_at = time.monotonic()
        log.info("stream worker %d started (pid %d)", slot.index, slot.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                for slot in self._slots:
                    process = slot.process
                    if process is None or process.poll() is None:
                        continue
                    if time.monotonic() - slot.started_at < self._backoff_s:
                        continue
                    log.warning(
                        "stream worker %d (pid %d) exited with %s; restarting",
                        slot.index, process.pid, process.returncode,
                    )  # fmt: skip
                    slot.restarts += 1
                    self._spawn(slot)
