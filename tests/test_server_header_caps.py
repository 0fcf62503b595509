"""The main port with its default settings: request heads are capped (431), one
address may hold only so many connections, and unfinished giant headers cost the
server almost nothing."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from http_helpers import get_when_served
from townhall.admission.connection_caps import DEFAULT_MAX_PER_ADDRESS
from townhall.config import HttpLimits

MIB = 1024 * 1024
HEAD_CAP = HttpLimits().max_header_bytes


@pytest.fixture(scope="module")
def defaults(tmp_path_factory) -> RunningServer:
    running = start_server(tmp_path_factory.mktemp("defaults"))
    yield running
    stop_server(running)


def _peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM): it catches what was held for
    a moment, even if it was freed before we looked."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _send_until_closed(sock: socket.socket, data: bytes, chunk: int = 256 * 1024) -> int:
    """Sends `data` until the server stops taking it; returns the bytes it took."""
    sent = 0
    sock.settimeout(5)
    try:
        while sent < len(data):
            sent += sock.send(data[sent : sent + chunk])
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    try:
        return sock.recv(4096)
    except (ConnectionResetError, TimeoutError):
        return b""


def test_an_8_mib_header_is_refused_with_431(defaults: RunningServer) -> None:
    head = b"GET /api/spaces HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * MIB) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", defaults.port)) as sock:
        taken = _send_until_closed(sock, head)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"code": "header_too_large"' in answer or b'"code":"header_too_large"' in answer
    assert taken < len(head)
    assert httpx.get(defaults.url + "/api/spaces", timeout=5).status_code == 200


def test_a_head_just_under_the_cap_is_served(defaults: RunningServer) -> None:
    filler = b"a" * (HEAD_CAP - 200)
    answer = httpx.get(defaults.url + "/api/spaces", headers={"x-pad": filler.decode()}, timeout=5)
    assert answer.status_code == 200


def test_four_unfinished_50_mib_headers_hold_little_memory(defaults: RunningServer) -> None:
    before = _peak_rss_bytes(defaults.process.pid)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (50 * MIB)  # never finished
    socks = [socket.create_connection(("127.0.0.1", defaults.port)) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as senders:
            taken = list(senders.map(lambda sock: _send_until_closed(sock, head), socks))
        grown = _peak_rss_bytes(defaults.process.pid) - before
    finally:
        for sock in socks:
            sock.close()
    print(
        f"\n4 unfinished 50 MiB headers: the server's peak RSS grew {grown / MIB:.1f} MiB; "
        f"it took {[round(t / MIB, 2) for t in taken]} MiB of each"
    )
    assert grown < 16 * MIB
    assert all(t < 50 * MIB for t in taken)


def test_default_per_address_connection_cap(defaults: RunningServer) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(40):
            held.append(socket.create_connection(("127.0.0.1", defaults.port)))
        time.sleep(0.3)
        refused = 0
        for sock in held[DEFAULT_MAX_PER_ADDRESS:]:
            if _answer(sock).startswith(b"HTTP/1.1 503"):
                refused += 1
        assert refused == 40 - DEFAULT_MAX_PER_ADDRESS
        elsewhere = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with elsewhere:
            assert elsewhere.get(defaults.url + "/api/spaces", timeout=5).status_code == 200
    finally:
        for sock in held:
            sock.close()
    assert get_when_served(defaults.url + "/api/spaces").status_code == 200
    assert "Traceback" not in defaults.log()


@pytest.fixture(scope="module")
def stream_worker(tmp_path_factory) -> tuple[int, int]:
    """A server with one stream worker: the worker's port and pid."""
    running = start_server(tmp_path_factory.mktemp("worker"), args=("--stream-workers", "1"))
    port = running.port + 1
    deadline = time.monotonic() + 20
    while True:
        try:
            pid = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["pid"]
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "the stream worker never answered"
            time.sleep(0.1)
    yield port, pid
    stop_server(running)


def test_the_stream_port_caps_heads_too(stream_worker: tuple[int, int]) -> None:
    port, pid = stream_worker
    before = _peak_rss_bytes(pid)
    big = b"GET /live/x.aac HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * MIB) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        _send_until_closed(sock, big)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    unfinished = b"GET /live/x.aac HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (50 * MIB)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as senders:
            taken = list(senders.map(lambda sock: _send_until_closed(sock, unfinished), socks))
    finally:
        for sock in socks:
            sock.close()
    grown = _peak_rss_bytes(pid) - before
    print(f"\nstream worker: 4 unfinished 50 MiB headers, peak RSS grew {grown / MIB:.1f} MiB")
    assert grown < 16 * MIB and all(t < 50 * MIB for t in taken)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["pid"] == pid
