"""A real redis-server for the tests: Debian's binary on 127.0.0.1 and a private port,
no persistence, started once per session and stopped by its PID.

Each test gets its own database number (flushed), so tests never see each other's keys.
The server can be stopped and started again on the same port, to test what nodes do
while Redis is gone.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REDIS_BINARY = "redis-server"
DATABASES = 64
START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    directory: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    _databases: Iterator[int] = field(default_factory=lambda: itertools.cycle(range(DATABASES)))

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        command = [
            REDIS_BINARY,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--databases", str(DATABASES),
            "--dir", str(self.directory),
        ]  # fmt: skip
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def fresh_url(self) -> str:
        """A database of its own, emptied."""
        db = next(self._databases)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
            answer = b""
            while answer.count(b"\r\n") < 2:
                answer += sock.recv(64)
        return self.url(db)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which(REDIS_BINARY) is None:
        pytest.fail("redis-server is not installed (scripts/install-system-deps installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A flushed database of the session's redis-server, for one test."""
    return redis_server.fresh_url()


TEST_STATE_ENV = "TOWNHALL_TEST_STATE"
"""`TOWNHALL_TEST_STATE=redis` runs the API and end-to-end suites once more with the
servers under test keeping their shared state in the session's redis-server."""


@pytest.fixture(autouse=True)
def state_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `--state` URL of the servers under test ("memory" unless TOWNHALL_TEST_STATE=redis);
    set as TOWNHALL_STATE so `townhall serve` subprocesses inherit it."""
    if os.environ.get(TEST_STATE_ENV, "memory") != "redis":
        return "memory"
    url: str = request.getfixturevalue("redis_url")
    monkeypatch.setenv("TOWNHALL_STATE", url)
    return url
