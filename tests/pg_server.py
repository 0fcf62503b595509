"""A real PostgreSQL for the tests: Debian's initdb + postgres in a temp dir.

One server per session (as the `postgres` user when run as root: PostgreSQL refuses
to run as root), on 127.0.0.1 and a private free port, its unix socket in the temp
dir, fsync off (a test database need not survive a power cut). Each test that asks
gets a fresh database, dropped after it. The server is stopped by its PID.

`pytest --store postgresql://` makes the suite's servers (the `settings` fixture and
`start_server` subprocesses) use such a fresh database instead of SQLite.

The store contract tests (test_store_*.py) ask for `store` (or `store_url`): one
fixture, run on each backend in turn, an empty database every time.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port
from townhall.store import SqlStore


def _pg_bin() -> Path:
    """Debian's newest installed PostgreSQL (scripts/install-system-deps installs one)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"
PG_START_TIMEOUT_S = 30.0
PG_STOP_TIMEOUT_S = 15.0
STORE_OPTION = "--store"
POSTGRESQL_STORE = "postgresql://"
STORE_BACKENDS = ("sqlite", "postgresql")


def _run_as() -> str | None:
    """The OS user to run PostgreSQL as: `postgres` when we are root, else ourselves."""
    return PG_USER if os.geteuid() == 0 else None


@dataclass
class PostgresServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def admin_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str) -> None:
        subprocess.run(
            [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", self.admin_url, "-c", sql],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def create_database(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are cut, nothing more is written."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=PG_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def restart(self) -> None:
        """Start again on the same data dir and port (after `stop`)."""
        self.process = _spawn_postgres(self.root, self.port)
        _wait_until_ready(self)


def _spawn_postgres(root: Path, port: int) -> subprocess.Popen[bytes]:
    log = (root / "postgres.log").open("ab")
    return subprocess.Popen(
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(root / "data"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        user=_run_as(),
    )


def _wait_until_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + PG_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.is_running():
            log = (server.root / "postgres.log").read_text(errors="replace")
            raise RuntimeError(f"postgres exited early:\n{log}")
        ready = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port)],
            check=False,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"postgres did not start in {PG_START_TIMEOUT_S} s")


def start_postgres() -> PostgresServer:
    root = Path(tempfile.mkdtemp(prefix="townhall-pg-"))
    user = _run_as()
    if user is not None:
        owner = pwd.getpwnam(user)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    subprocess.run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        user=user,
        cwd=root,
        timeout=120,
    )
    port = free_port()
    server = PostgresServer(root, port, _spawn_postgres(root, port))
    _wait_until_ready(server)
    return server


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        STORE_OPTION,
        default="",
        choices=["", "sqlite", POSTGRESQL_STORE],
        help="store the suite's servers use: sqlite (default) or postgresql:// "
        "(a PostgreSQL started by the tests, a fresh database per test)",
    )


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of its own (start_postgres), stopped and its directory removed on exit."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL."""
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        if postgres.is_running():
            postgres.drop_database(name)


@pytest.fixture(autouse=True)
def store_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """TOWNHALL_STORE for this test's servers: empty (SQLite under the data dir) unless
    the run says `--store postgresql://`. It is also set in os.environ so that
    `start_server` subprocesses inherit it."""
    if request.config.getoption(STORE_OPTION) != POSTGRESQL_STORE:
        return {}
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("TOWNHALL_STORE", url)
    return {"TOWNHALL_STORE": url}


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each store backend in turn: a new SQLite file under the
    test's tmp dir, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'townhall.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """The store opened (migrated) on that database, closed after the test."""
    opened = await SqlStore(store_url).open()
    try:
        yield opened
    finally:
        await opened.close()
