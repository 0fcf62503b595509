"""``python -m bench.argon2_signins``: what password guessing costs the server.

Starts ``townhall serve`` with the production argon2 settings (per-address and, unless
``--with-write-limits``, per-account sign-in limits off, to measure the hashing
alone), signs one account up, then:

- 40 concurrent sign-ins with a wrong password: wall time until the last answer and
  the server's CPU seconds meanwhile (CPU / wall > 1 means more than one core);
- answer times, one request at a time, for a wrong password and for a user that does
  not exist (equal times tell no one which usernames exist).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Final

import httpx

from bench.procstat import cpu_seconds

START_TIMEOUT_S: Final = 30.0
PASSWORD: Final = "the-right-password"
TIMED_TRIES: Final = 15
SAMPLE_S: Final = 0.005
NO_LIMITS: Final = ("ACCOUNT", "ADDRESS")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _sign_in(http: httpx.AsyncClient, username: str, password: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = await http.post("/api/tokens", json={"username": username, "password": password})
    return response.status_code, time.perf_counter() - started


def _running_threads(pid: int) -> int:
    """Threads of `pid` running or ready to run (state R): the cores it wants now."""
    running = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R":
                running += 1
    return running


async def _peak_running(pid: int, until: asyncio.Event) -> int:
    peak = 0
    while not until.is_set():
        peak = max(peak, _running_threads(pid))
        await asyncio.sleep(SAMPLE_S)
    return peak


async def measure(url: str, pid: int, concurrent: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
        account = {"username": "victim", "password": PASSWORD}
        assert (await http.post("/api/users", json=account)).status_code == 201
        await _sign_in(http, "victim", "warm-up-wrong")
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        done = asyncio.Event()
        sampler = asyncio.create_task(_peak_running(pid, done))
        answers = await asyncio.gather(
            *(_sign_in(http, "victim", f"wrong-{n:04d}") for n in range(concurrent))
        )
        wall = time.perf_counter() - wall_before
        done.set()
        peak = await sampler
        cpu = cpu_seconds(pid) - cpu_before
        statuses = Counter(status for status, _ in answers)
        print(
            f"{concurrent} concurrent wrong sign-ins: wall {wall:.2f} s, server CPU {cpu:.2f} s "
            f"({cpu / wall:.2f} cores), answers {dict(statuses)}, "
            f"slowest {max(t for _, t in answers):.2f} s, "
            f"peak server threads running at once {peak}"
        )
        await asyncio.sleep(1.0)
        wrong, nobody = [], []
        for _ in range(TIMED_TRIES):  # interleaved, so load on the machine hits both alike
            wrong.append((await _sign_in(http, "victim", "wrong-pass"))[1])
            nobody.append((await _sign_in(http, "nobody_here", "wrong-pass"))[1])
        print(
            f"answer time, median of {TIMED_TRIES}: wrong password "
            f"{statistics.median(wrong) * 1000:.1f} ms, unknown user "
            f"{statistics.median(nobody) * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument(
        "--with-write-limits", action="store_true", help="keep the per-account sign-in limits"
    )
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0"}
        if not args.with_write_limits:
            env |= {f"TOWNHALL_LIMITS_SIGN_INS_PER_{per}_PER_MINUTE": "0" for per in NO_LIMITS}
        command = [sys.executable, "-m", "townhall", "serve", "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--data-dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            asyncio.run(measure(url, server.pid, args.concurrent))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
