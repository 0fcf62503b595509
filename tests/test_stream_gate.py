"""One decision, "may this ticket stream here?", unit-tested and then held to on both
servers of the live stream: the origin's route and a stream worker (issue 6, section 2).

On the old code a worker started with ``TOWNHALL_ADMISSION_MAX_LISTENERS=5`` served 20
listeners, and one ticket ran 20 streams at once on either server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from townhall.admission.capacity import Capacity
from townhall.admission.signing import Signer
from townhall.admission.stream_gate import StreamDenied, StreamGate
from townhall.admission.tickets import issue_ticket

SECRET = "stream-gate-secret-0123456789abcdef"
CAP = 5
CROWD = 20
WAIT_S = 15.0

# -- the decision itself ------------------------------------------------------------------


def _gate(max_listeners: int = CAP) -> tuple[StreamGate, Signer]:
    signer = Signer(SECRET.encode())
    return StreamGate(signer, Capacity(max_listeners=max_listeners)), signer


def _denied(gate: StreamGate, token: str, **where) -> str:  # type: ignore[no-untyped-def]
    where = {"removed": (), "listeners": 0, "streaming": (), **where}
    with pytest.raises(StreamDenied) as denied:
        gate.admit(token, "sp", 100.0, **where)
    return denied.value.code


def test_the_gate_checks_ticket_removal_capacity_and_lets_a_reconnect_replace() -> None:
    gate, signer = _gate()
    token = issue_ticket(signer, "sp", "anon-a", 100.0, 60).token
    claims = gate.admit(token, "sp", 100.0, removed=(), listeners=CAP - 1, streaming=())
    assert claims.listener_id == "anon-a"
    assert _denied(gate, "") == "ticket_required"
    assert _denied(gate, token + "x") == "forged"
    assert _denied(gate, issue_ticket(signer, "other", "anon-a", 100.0, 60).token) == (
        "wrong_space"
    )
    assert _denied(gate, issue_ticket(signer, "sp", "anon-a", 0.0, 60).token) == "expired"
    assert _denied(gate, token, removed={"anon-a"}) == "removed"
    assert _denied(gate, token, listeners=CAP) == "over_capacity"
    # Full, but this ticket already streams here: the new connection replaces the old.
    gate.admit(token, "sp", 100.0, removed=(), listeners=CAP, streaming={"anon-a"})
    assert _denied(gate, token, listeners=CAP, streaming={"anon-a"}, removed={"anon-a"}) == (
        "removed"
    )


# -- both servers hold to it ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("gate"),
        TOWNHALL_SECRET=SECRET,
        TOWNHALL_EDGE_STREAM_WORKERS="1",
        TOWNHALL_ADMISSION_MAX_LISTENERS=str(CAP),
    )
    try:
        _wait_for_worker(server.port + 1)
        yield server
    finally:
        stop_server(server)


def _wait_for_worker(port: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the stream worker did not start")


@pytest.fixture
def origin_only(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path / "origin", TOWNHALL_SECRET=SECRET, TOWNHALL_ADMISSION_MAX_LISTENERS=str(CAP)
    )
    try:
        yield server
    finally:
        stop_server(server)


async def _live_space(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        login = {"username": "host", "password": "password123"}
        await http.post("/api/users", json=login)
        token = (await http.post("/api/tokens", json=login)).json()["token"]
        host = {"Authorization": f"Bearer {token}"}
        space = (await http.post("/api/spaces", json={"title": "gate"}, headers=host)).json()
        assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).is_success
        return space["id"]


class Stream:
    """One raw connection to the live path: its status, then audio until the server ends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.head = b""

    @classmethod
    async def open(cls, port: int, space_id: str, ticket: str) -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path = f"/live/{space_id}.aac?ticket={ticket}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        stream = cls(reader, writer)
        stream.head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        stream.status = int(stream.head.split()[1])
        return stream

    async def ended_within(self, seconds: float) -> bool:
        """Whether the server closes this stream within ``seconds`` (reads what comes)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if not await asyncio.wait_for(self.reader.read(65536), remaining):
                    return True
            except TimeoutError:
                return False
            except ConnectionError:
                return True
        return False

    def close(self) -> None:
        self.writer.close()


def _tickets(n: int, space_id: str) -> list[str]:
    signer = Signer(SECRET.encode())
    return [issue_ticket(signer, space_id, f"anon-{i}", time.time(), 300).token for i in range(n)]


async def _crowd_is_capped(port: int, space_id: str) -> None:
    streams = []
    try:
        for ticket in _tickets(CROWD, space_id):
            streams.append(await Stream.open(port, space_id, ticket))
        statuses = [s.status for s in streams]
        assert statuses.count(200) == CAP, statuses
        refused = [s for s in streams if s.status != 200]
        for stream in refused:
            assert stream.status == 503
            assert b"retry-after" in stream.head.lower()
            assert b'"over_capacity"' in await asyncio.wait_for(stream.reader.read(), WAIT_S)
    finally:
        for stream in streams:
            stream.close()


async def _one_stream_per_ticket(port: int, space_id: str) -> None:
    ticket = _tickets(1, space_id)[0]
    first = await Stream.open(port, space_id, ticket)
    try:
        assert first.status == 200
        second = await Stream.open(port, space_id, ticket)
        try:
            assert second.status == 200, "a reconnect with the same ticket is served"
            assert await first.ended_within(5.0), "the earlier stream of the ticket must end"
            assert not await second.ended_within(1.5), "the reconnect keeps streaming"
        finally:
            second.close()
    finally:
        first.close()


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_ice")]


async def test_a_stream_worker_holds_its_listener_cap(gated_server: RunningServer) -> None:
    space_id = await _live_space(gated_server.url)
    await _crowd_is_capped(gated_server.port + 1, space_id)


async def test_one_ticket_one_stream_on_a_stream_worker(gated_server: RunningServer) -> None:
    space_id = await _live_space(gated_server.url)
    await _one_stream_per_ticket(gated_server.port + 1, space_id)


async def test_the_origin_holds_the_same_cap_and_one_stream_per_ticket(
    origin_only: RunningServer,
) -> None:
    space_id = await _live_space(origin_only.url)
    await _crowd_is_capped(origin_only.port, space_id)
    await asyncio.sleep(2.0)  # the capped crowd has left (the node counts once a second)
    await _one_stream_per_ticket(origin_only.port, space_id)
