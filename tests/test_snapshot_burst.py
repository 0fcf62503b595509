"""The snapshot never fails for a space that exists, whatever the crowd does."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

REQUESTS = 5_000
CONNECTIONS = 100
SOURCES = 20
"""Loopback addresses the connections come from (5 each): a crowd is many addresses,
and one address may hold only so many connections (TOWNHALL_HTTP_MAX_CONNECTIONS_PER_ADDRESS)."""
pytestmark = pytest.mark.slow


async def _hammer(
    port: int, path: str, count: int, statuses: list[int], etag: str, source: str
) -> None:
    """One keep-alive connection from `source` sending `count` GETs back to back, half
    of them conditional (what a polling page sends)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        for i in range(count):
            conditional = f"If-None-Match: {etag}\r\n" if i % 2 else ""
            writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n{conditional}\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            statuses.append(int(head.split(b" ", 2)[1]))
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
    finally:
        writer.close()


async def test_snapshot_burst_returns_no_error(server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        await http.post("/api/users", json={"username": "host", "password": "password123"})
        token = (
            await http.post("/api/tokens", json={"username": "host", "password": "password123"})
        ).json()
        headers = {"Authorization": f"Bearer {token['token']}"}
        space = (await http.post("/api/spaces", json={"title": "burst"}, headers=headers)).json()
        await http.post(f"/api/spaces/{space['id']}/start", headers=headers)
        etag = (await http.get(f"/api/spaces/{space['id']}")).headers["etag"]

    statuses: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *[
            _hammer(
                server.port,
                f"/api/spaces/{space['id']}",
                REQUESTS // CONNECTIONS,
                statuses,
                etag,
                source=f"127.0.0.{10 + n % SOURCES}",
            )
            for n in range(CONNECTIONS)
        ]
    )
    elapsed = time.perf_counter() - started
    print(
        f"\n{len(statuses)} snapshot requests over {CONNECTIONS} connections in {elapsed:.2f} s"
        f" ({len(statuses) / elapsed:.0f}/s, client and server on one 2-core machine)"
    )
    assert len(statuses) == REQUESTS
    assert set(statuses) <= {200, 304}, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(304) >= REQUESTS // 2 - CONNECTIONS
