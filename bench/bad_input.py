"""``python -m bench.bad_input``: hostile bodies and paths against a real server.

Starts ``townhall serve`` on a free loopback port, signs up one account, makes one
live space, then sends each case of CASES (bounded: one request per case and
target) and counts the answers by status, the 500s, and the tracebacks the server
wrote to its log. Used for the before/after figures of issue 6 section 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Final

import httpx

START_TIMEOUT_S: Final = 30.0
DEEP: Final = 30_000
BIG_INT: Final = "9" * 5_000
CHEAP_ARGON2: Final = {"TOWNHALL_ARGON2_TIME_COST": "1", "TOWNHALL_ARGON2_MEMORY_KIB": "8192"}
NO_LIMITS: Final = {"TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0"}

BODIES: Final[dict[str, bytes]] = {
    "deep array": b"[" * DEEP + b"]" * DEEP,
    "deep object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep in a field": b'{"title":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "big integer": b'{"title": ' + BIG_INT.encode() + b"}",
    "big integer field": b'{"username": "abc", "password": ' + BIG_INT.encode() + b"}",
    "big exponent": b'{"title": "x", "seconds": 1e999999}',
    "lone surrogate title": b'{"title": "\\ud800"}',
    "lone surrogate name": b'{"username": "\\ud800abc", "password": "\\udfffpassword"}',
    "lone surrogate password": b'{"username": "abc_def", "password": "\\ud800password"}',
    "nan": b'{"title": NaN}',
    "utf-16": '{"title": "x"}'.encode("utf-16"),
}
FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "/api/users": ("username", "password"),
    "/api/tokens": ("username", "password"),
    "/api/spaces": ("title", "scheduled_for", "record", "speak_policy"),
    "/api/spaces/{id}/join": ("token", "pow"),
    "/api/spaces/{id}/reactions": ("emoji",),
    "/api/spaces/{id}/stage": ("user_id", "username", "role"),
    "/api/spaces/{id}/stage/offer": ("type", "sdp"),
}
WRONG_VALUES: Final = [
    None, 0, -1, 10**30, 1.5e308, True, [], {}, "", "\x00", "x" * 20_000,
    "9999-99-99T99:99", "0001-01-01T00:00:00+23:59", {"challenge": 1, "solution": []},
]  # fmt: skip
TARGETS: Final = [
    "/api/users",
    "/api/tokens",
    "/api/sessions",
    "/api/spaces",
    "/api/spaces/{id}/join",
    "/api/spaces/{id}/reactions",
    "/api/spaces/{id}/stage",
    "/api/spaces/{id}/invitations",
    "/api/spaces/{id}/removals",
    "/api/spaces/{id}/stage/offer",
]
BAD_IDS: Final = ["x" * 60_000, "y" * 8_000, "%F0%9F%94%A5" * 10, "..", "abcdefghijk%00"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _drop_mid_body(port: int, path: str) -> None:
    """A client that promises 1,000 bytes, sends 10 and hangs up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f'content-length: 1000\r\n\r\n{{"title": '.encode()
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _send(http: httpx.AsyncClient, method: str, path: str, **kwargs: object) -> str:
    """The answer's status, or "closed" when the server hung up without one."""
    try:
        response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError:
        return "closed"
    return str(response.status_code)


async def probe(url: str, port: int) -> Counter[str]:
    statuses: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        account = {"username": "prober", "password": "prober-password"}
        await http.post("/api/users", json=account)
        token = (await http.post("/api/tokens", json=account)).json()["token"]
        auth = {"authorization": f"Bearer {token}"}
        space = (await http.post("/api/spaces", json={"title": "probe"}, headers=auth)).json()
        await http.post(f"/api/spaces/{space['id']}/start", headers=auth)
        for target in TARGETS:
            path = target.replace("{id}", space["id"])
            for name, body in BODIES.items():
                status = await _send(
                    http,
                    "POST",
                    path,
                    content=body,
                    headers={**auth, "content-type": "application/json"},
                )
                statuses[status] += 1
                if status[0] in "5c":
                    print(f"{status}: {name} on {target}")
            await _drop_mid_body(port, path)
        for target, names in FIELDS.items():
            path = target.replace("{id}", space["id"])
            for name in names:
                for value in WRONG_VALUES:
                    body = {"title": "t", "username": "u_x", "password": "pw-pw-pw", name: value}
                    status = await _send(http, "POST", path, json=body, headers=auth)
                    statuses[status] += 1
                    if status[0] in "5c":
                        print(f"{status}: {name}={str(value)[:30]!r} on {target}")
        for bad in BAD_IDS:
            for suffix in ("", "/start", "/end", "/join", "/me", "/reactions"):
                method = "GET" if suffix in ("", "/me") else "POST"
                status = await _send(
                    http, method, f"/api/spaces/{bad}{suffix}", headers=auth, json={}
                )
                statuses[status] += 1
                if status[0] in "5c":
                    print(f"{status}: id {bad[:20]!r} on {suffix or '/'}")
    return statuses


LONG_IDS: Final = 500
"""Distinct 60 KB ids sent to /start: what a server keeps per made-up id shows in RSS."""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def long_ids(url: str, pid: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        account = {"username": "long_ids", "password": "prober-password"}
        await http.post("/api/users", json=account)
        token = (await http.post("/api/tokens", json=account)).json()["token"]
        auth = {"authorization": f"Bearer {token}"}
        for n in range(20):  # warm up allocators and caches before the baseline
            await http.post(f"/api/spaces/w{n}{'x' * 60_000}/start", headers=auth)
        before = _rss_kib(pid)
        for n in range(LONG_IDS):
            await http.post(f"/api/spaces/{n}{'x' * 60_000}/start", headers=auth)
        grown = _rss_kib(pid) - before
    print(f"{LONG_IDS} distinct 60 KB ids on /start: RSS grew {grown} KiB "
          f"({grown / LONG_IDS:.1f} KiB per request)")  # fmt: skip


def main() -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        env = {**os.environ, **CHEAP_ARGON2, **NO_LIMITS}
        command = [sys.executable, "-m", "townhall", "serve", "--port", str(port)]
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [*command, "--data-dir", tmp], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            statuses = asyncio.run(probe(url, port))
            asyncio.run(long_ids(url, server.pid))
            time.sleep(0.5)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=15)
        text = log_path.read_text(errors="replace")
    total = sum(statuses.values())
    print(f"requests: {total}; by status: {dict(sorted(statuses.items()))}")
    print(f"answered 5xx: {sum(n for s, n in statuses.items() if s.startswith('5'))}")
    print(f"tracebacks in the server log: {text.count('Traceback')}")


if __name__ == "__main__":
    main()
