"""The load generator's own HTTP/1.1 client against a small asyncio server started here.

The server writes its answers in awkward pieces (byte by byte, chunk
extensions, trailers, close-delimited bodies) because that is what the
parser must survive; it records peers and connections so reuse and source
binding are checked from the server's side.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from townhall.loadtest.client import HttpClient, RequestError
from townhall.loadtest.http11 import ProtocolError, ResponseParser

CHUNKED_BODY = b"Wikipedia in\r\n\r\nchunks."
CHUNKED_WIRE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n"
)


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.peers: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.eof_seen = asyncio.Event()
        self.extra = b""
        self.extra_sent = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peers.append(writer.get_extra_info("peername")[0])
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.eof_seen.set()
                    return
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append((method, target, headers, body))
                if not await self._answer(target, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _answer(self, target: str, writer: asyncio.StreamWriter) -> bool:
        """Write the answer for ``target``; False closes the connection afterwards."""
        if target == "/length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
        elif target == "/echo":
            method, _, headers, body = self.requests[-1]
            answer = json.dumps({"method": method, "ctype": headers.get("content-type"),
                                 "body": body.decode()}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(answer), answer))
        elif target == "/chunked":
            for i in range(len(CHUNKED_WIRE)):
                writer.write(CHUNKED_WIRE[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0)
        elif target == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"the end")
            return False
        elif target == "/304":
            writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n')
        elif target == "/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                         b"Content-Length: 2\r\n\r\nok")
        elif target == "/then-close":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            return False  # like a server whose keep-alive timeout just fired
        elif target == "/never":
            await asyncio.sleep(30)
        elif target == "/big":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000)
        elif target == "/garbage":
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        elif target.startswith("/stream"):
            chunked = target == "/stream-chunked"
            framing = b"Transfer-Encoding: chunked" if chunked else b"Connection: close"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/aac\r\n%s\r\n\r\n" % framing)
            await writer.drain()
            await asyncio.sleep(0.1)
            for _ in range(5):
                data = b"\xff\xf1" + b"a" * 98
                writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                await writer.drain()
                await asyncio.sleep(0.01)
            return False
        elif target == "/forbidden":
            body = b'{"error":{"code":"forged","message":"no"}}'
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
        elif target == "/hold":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n\xff\xf1")
            await writer.drain()
            for _ in range(300):
                if writer.transport.is_closing():
                    break
                if self.extra:
                    writer.write(self.extra)
                    await writer.drain()
                    self.extra = b""
                    self.extra_sent.set()
                await asyncio.sleep(0.1)
        return True


@pytest.fixture
async def server():
    s = Server()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def client(server: Server):
    c = HttpClient("127.0.0.1", server.port)
    yield c
    await c.aclose()


async def test_keep_alive_reuses_one_connection(server: Server, client: HttpClient):
    for _ in range(3):
        response = await client.request("GET", "/length")
        assert response.status == 200 and response.body == b"hello world"
    assert server.connections == 1 and client.connections_reused == 2
    assert response.first_body_at is not None
    assert response.started_at <= response.first_body_at <= response.ended_at


async def test_json_post(server: Server, client: HttpClient):
    response = await client.request("POST", "/echo", json_body={"token": "q1"})
    assert response.json() == {"method": "POST", "ctype": "application/json",
                               "body": '{"token":"q1"}'}
    empty = await client.request("POST", "/echo")  # a POST always says its length
    assert empty.json()["body"] == ""


async def test_chunked_body_written_byte_by_byte(server: Server, client: HttpClient):
    response = await client.request("GET", "/chunked")
    assert response.body == CHUNKED_BODY
    assert (await client.request("GET", "/length")).body == b"hello world"
    assert server.connections == 1  # the trailer was consumed: the connection stayed usable


async def test_close_delimited_body_is_not_reused(server: Server, client: HttpClient):
    response = await client.request("GET", "/close")
    assert response.body == b"until the end"
    await client.request("GET", "/length")
    assert server.connections == 2


async def test_no_body_statuses_and_interim_answers(server: Server, client: HttpClient):
    not_modified = await client.request("GET", "/304")
    assert not_modified.status == 304 and not_modified.body == b""
    assert not_modified.headers["etag"] == '"x"'
    created = await client.request("GET", "/continue")
    assert created.status == 201 and created.body == b"ok"
    assert server.connections == 1


@pytest.mark.parametrize("pause_s", [0.0, 0.05])
async def test_server_closing_idle_connection(server: Server, client: HttpClient, pause_s: float):
    """Whether or not the pool noticed the close, the next request succeeds (a retry)."""
    assert (await client.request("GET", "/then-close")).body == b"ok"
    await asyncio.sleep(pause_s)
    assert (await client.request("GET", "/length")).body == b"hello world"
    assert server.connections == 2


async def test_failures_have_kinds(server: Server, client: HttpClient):
    with pytest.raises(RequestError) as timeout:
        await client.request("GET", "/never", timeout=0.2)
    assert timeout.value.kind == "timeout:response"
    with pytest.raises(RequestError) as too_big:
        await client.request("GET", "/big", body_limit=1000)
    assert too_big.value.kind == "protocol:body_too_large"
    with pytest.raises(RequestError) as garbage:
        await client.request("GET", "/garbage")
    assert garbage.value.kind == "protocol"
    closed_port = HttpClient("127.0.0.1", 9)
    with pytest.raises(RequestError) as refused:
        await closed_port.request("GET", "/")
    assert refused.value.kind == "conn:refused"
    await closed_port.aclose()


@pytest.mark.parametrize("path", ["/stream-chunked", "/stream-close"])
async def test_stream_first_byte_and_counting(server: Server, client: HttpClient, path: str):
    loop = asyncio.get_running_loop()
    sent = loop.time()
    stream = await client.stream(path)
    assert stream.status == 200 and stream.headers["content-type"] == "audio/aac"
    first = await asyncio.wait_for(stream.first_byte, 2)
    assert first - sent >= 0.09  # the server waited 0.1 s before the first byte
    assert stream.prefix.startswith(b"\xff\xf1")  # chunk framing is not audio
    reason = await asyncio.wait_for(stream.ended, 2)
    assert reason == "eof"
    if path == "/stream-close":
        assert stream.bytes_received == 500
    else:  # after the first piece bytes are counted raw, framing included
        assert 500 <= stream.bytes_received <= 500 + 5 * 8 + 5
    stream.close()


async def test_stream_refused_reads_error_body(server: Server, client: HttpClient):
    stream = await client.stream("/forbidden")
    assert stream.status == 403 and json.loads(stream.body)["error"]["code"] == "forged"


async def test_close_ends_streams_and_the_server_sees_it(server: Server):
    client = HttpClient("127.0.0.1", server.port)
    stream = await client.stream("/hold")
    await asyncio.wait_for(stream.first_byte, 2)
    server.extra = b"x" * 1000  # below the coalescing threshold: waits unread in the kernel
    await server.extra_sent.wait()
    await asyncio.sleep(0.1)
    assert stream.bytes_received == 2
    stream.close()
    assert stream.bytes_received == 1002  # counted at close, from the kernel's buffer
    stream = await client.stream("/hold")
    await asyncio.wait_for(stream.first_byte, 2)
    assert client.open_connections == 1
    await client.aclose()
    assert await asyncio.wait_for(stream.ended, 2) == "closed"
    assert client.open_connections == 0


async def test_source_address_binding(server: Server, client: HttpClient):
    await client.request("GET", "/length", local_addr="127.0.0.7")
    await client.request("GET", "/length", local_addr="127.3.2.1")
    await client.request("GET", "/length", local_addr="127.0.0.7")  # pooled per address
    assert server.peers == ["127.0.0.7", "127.3.2.1"]


def test_parser_survives_every_split_point():
    for split in range(1, len(CHUNKED_WIRE)):
        pieces: list[bytes] = []
        done: list[bool] = []
        parser = ResponseParser(lambda head: None, pieces.append, lambda d=done: d.append(True))
        parser.feed(CHUNKED_WIRE[:split])
        parser.feed(CHUNKED_WIRE[split:])
        assert b"".join(pieces) == CHUNKED_BODY and done == [True] and parser.reusable


def test_parser_rejects_truncation_and_bad_framing():
    parser = ResponseParser(lambda h: None, lambda b: None, lambda: None)
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ProtocolError):
        parser.feed_eof()
    bad = ResponseParser(lambda h: None, lambda b: None, lambda: None)
    with pytest.raises(ProtocolError):
        bad.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    huge = ResponseParser(lambda h: None, lambda b: None, lambda: None)
    with pytest.raises(ProtocolError):
        huge.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000)
