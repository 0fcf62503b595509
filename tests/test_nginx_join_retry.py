"""nginx in front of edges: a join that an edge dies under is answered by another edge,
not with a 502 (found by the cluster rehearsal, bench.cluster_rehearsal: six 502s at the
instant an edge was SIGKILLed, each a waiting listener's poll on a kept-alive upstream
connection that the kill reset). nginx retries only idempotent requests by default; a
join is safe to send again (a queue token's answer is the same ticket on any node, a
ticket re-join is renewed anywhere, a fresh join that reached the dying node costs one
dead number), so the template lets joins, and only joins (other writes are not
idempotent), go to the next upstream.

The dying edge is a socket server that resets every connection once a request is in,
as a SIGKILLed process's kernel does; the other answers every request with 200."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nginx_server import HAS_NGINX, running_nginx

pytestmark = pytest.mark.skipif(not HAS_NGINX, reason="needs Debian's nginx")
RESET = struct.pack("ii", 1, 0)
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
          b'Connection: close\r\n\r\n{"ok":true}')  # fmt: skip


def _serve(sock: socket.socket, reset: bool, seen: list[bytes]) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            request = conn.recv(65536)
            seen.append(request.split(b" ", 2)[1] if request else b"")
            if reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
            else:
                conn.sendall(ANSWER)


@pytest.fixture
def edges() -> Iterator[tuple[str, str, list[bytes]]]:
    """(dying "host:port", healthy "host:port", the paths the dying one was sent)."""
    sockets, seen = [], []
    for reset in (True, False):
        sock = socket.create_server(("127.0.0.1", 0))
        sockets.append(sock)
        threading.Thread(target=_serve, args=(sock, reset, seen if reset else []),
                         daemon=True).start()  # fmt: skip
    try:
        yield (*(f"127.0.0.1:{s.getsockname()[1]}" for s in sockets), seen)  # type: ignore[misc]
    finally:
        for sock in sockets:
            sock.close()


def test_a_join_is_answered_by_another_edge_when_one_dies_under_it(
    tmp_path: Path, edges: tuple[str, str, list[bytes]]
) -> None:
    dying, healthy, seen = edges
    with running_nginx(tmp_path / "nginx", [dying, healthy]) as url:
        seen.clear()
        with httpx.Client(base_url=url, timeout=10) as http:
            joins = [http.post("/api/spaces/abc123/join", json={}) for _ in range(6)]
    assert b"/api/spaces/abc123/join" in seen, "the dying edge was never tried"
    assert [answer.status_code for answer in joins] == [200] * 6
