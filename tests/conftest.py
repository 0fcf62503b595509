"""Fixtures shared by the suite: an in-process app for API tests and a real
`townhall serve` subprocess for end-to-end tests (audio, browser, crashes)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from townhall.app import create_app
from townhall.config import AdmissionSettings, load_settings
from townhall.stage.ice import use_host_addresses

pytest_plugins = [
    "redis_server",  # redis_server, redis_url, state_backend (TOWNHALL_TEST_STATE=redis)
    "pg_server",  # a real PostgreSQL; `--store postgresql://` runs on it
    "browser",  # browser_server, new_page (headless Chromium against `townhall serve`)
]

CHEAP_ARGON2 = {"TOWNHALL_ARGON2_TIME_COST": "1", "TOWNHALL_ARGON2_MEMORY_KIB": "8192"}
LOOPBACK_ICE = {"TOWNHALL_STAGE_ICE_HOST_ADDRESSES": "127.0.0.1"}
NO_CAPTIONS = {"TOWNHALL_CAPTIONS_ENABLED": "0"}
"""A recognizer process per live space is the product default; tests that are not about
captions spare the shared cores (test_captions_* pass TOWNHALL_CAPTIONS_ENABLED=1)."""
NO_LAG_DOOR = {"TOWNHALL_ADMISSION_MAX_LOOP_LAG_MS": "0"}
"""For tests about something other than the door's loop-lag guard. In process, the test
client runs on the server's own loop: its requests, sent back to back without a pause,
keep the door's lag probe from waking, so the door read the client's own work as server
lag and queued the very first listener (CI: "assert 1 <= 0" admitted at once). Across
processes on a shared 2-core machine under load, the server's lag passes 50 ms often
enough to do the same. 0 disables only that guard; tests/test_admission_capacity.py,
tests/test_service_door.py and tests/test_door_overload_lull.py cover it. `settings` and
`start_server` apply it by default (a forgotten opt-out queued the first listener of
test_state_outage and test_space_details under load); pass LAG_DOOR to keep the guard."""
LAG_DOOR = {"TOWNHALL_ADMISSION_MAX_LOOP_LAG_MS": str(AdmissionSettings().max_loop_lag_ms)}
"""The door's loop-lag guard at its default, for a subprocess server whose test is about it."""
SERVER_START_TIMEOUT_S = 90.0
"""Generous: at load 24 on the shared 2-core machine, starting took more than 30 s."""


SERVER_PORTS = range(20_000, 32_000)
"""Below the kernel's ephemeral range (32768-60999 here), where no outgoing connection
can take a port between its pick and its use: a node's stream workers default to its
port + 1, which an ephemeral client port once held (the fuzz test's worker could not
bind in CI)."""
_handed_out: set[int] = set()
_pick = random.SystemRandom()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free now, and its next one too, never handed out before in this run."""
    for _ in range(1_000):
        port = _pick.choice(SERVER_PORTS)
        if {port, port + 1} & _handed_out or not (_bindable(port) and _bindable(port + 1)):
            continue
        _handed_out.update((port, port + 1))
        return port
    raise RuntimeError("no free pair of ports below the ephemeral range")


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    """aiortc peers in this process offer 127.0.0.1 (aioice skips loopback by default)."""
    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses([])


@pytest.fixture
def settings(tmp_path: Path, store_env: dict[str, str], state_backend: str):
    env = {**CHEAP_ARGON2, **LOOPBACK_ICE, **NO_CAPTIONS, **NO_LAG_DOOR, **store_env}
    return load_settings(env, data_dir=tmp_path / "data", port=0, state=state_backend)


@pytest.fixture
async def client(settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process, lifespan included, over httpx's ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@dataclass
class RunningServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_hard(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def start_server(
    data_dir: Path, port: int | None = None, args: tuple[str, ...] = (), **env: str
) -> RunningServer:
    """`townhall serve` on 127.0.0.1 with `args` added to its command line (flags such
    as --stream-workers) and `env` to its environment (NO_LAG_DOOR unless `env` says
    otherwise, e.g. **LAG_DOOR)."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    full_env = {**os.environ, **CHEAP_ARGON2, **LOOPBACK_ICE, **NO_CAPTIONS, **NO_LAG_DOOR, **env}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "townhall",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", port, data_dir, process, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(server.url + "/api/spaces", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start in {SERVER_START_TIMEOUT_S} s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)



@contextlib.contextmanager
def running_servers(data_dirs: Sequence[Path], **env: str) -> Iterator[list[RunningServer]]:
    """`townhall serve` on each data dir (several may share one), started in order with
    the same `env`; every one started is stopped, last first, however the block ends."""
    with contextlib.ExitStack() as started:
        servers = []
        for data_dir in data_dirs:
            server = start_server(data_dir, **env)
            started.callback(stop_server, server)
            servers.append(server)
        yield servers

@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "server")
    try:
        yield running
    finally:
        stop_server(running)


FAKE_MIC_HZ = 440.0
"""Chromium's fake microphone plays this tone for every page that turns a mic on."""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """Headless Debian Chromium (Playwright), one per test module; its fake microphone
    plays FAKE_MIC_HZ."""
    from browser import running_chromium, write_tone_wav

    tone = write_tone_wav(tmp_path_factory.mktemp("fake-mic") / "tone.wav", FAKE_MIC_HZ)
    with running_chromium(tone) as browser:
        yield browser
