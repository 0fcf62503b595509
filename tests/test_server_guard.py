"""Below HTTP: slowloris connections are cut, per-address caps refuse politely."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from http_helpers import get_when_served

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_PER_ADDRESS = 4


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> RunningServer:
    running = start_server(
        tmp_path_factory.mktemp("guarded"),
        TOWNHALL_HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        TOWNHALL_HTTP_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        TOWNHALL_HTTP_MAX_CONNECTIONS_PER_ADDRESS=str(MAX_PER_ADDRESS),
    )
    yield running
    stop_server(running)


def _closed_after(sock: socket.socket, drip: bytes, limit_s: float) -> float | None:
    """Drips `drip` a byte at a time; returns when the server closed on us, or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    for byte in drip:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
        if time.monotonic() - started > limit_s:
            return None
    return None


def test_slow_headers_are_cut(guarded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        drip = b"GET /api/spaces HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        cut = _closed_after(sock, drip, limit_s=HEADER_TIMEOUT_S * 5)
    assert cut is not None, "a slowloris connection was kept open"
    assert HEADER_TIMEOUT_S * 0.8 <= cut <= HEADER_TIMEOUT_S * 4


def test_silent_connection_is_cut(guarded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.settimeout(HEADER_TIMEOUT_S * 5)
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT_S * 4


def test_slow_body_is_cut(guarded: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        cut = _closed_after(sock, b" " * 200, limit_s=BODY_TIMEOUT_S * 5)
    assert cut is not None
    time.sleep(0.5)  # the route sees the disconnect
    assert "Traceback" not in guarded.log(), "a cut body is not a bug to log"


def test_per_address_cap_and_others_unaffected(guarded: RunningServer) -> None:
    held = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(MAX_PER_ADDRESS)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", guarded.port)) as extra:
            extra.settimeout(3)
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"too_many_connections" in answer and b"Retry-After" in answer
        elsewhere = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with elsewhere:
            assert elsewhere.get(guarded.url + "/api/spaces", timeout=5).status_code == 200
    finally:
        for sock in held:
            sock.close()
    assert get_when_served(guarded.url + "/api/spaces").status_code == 200
