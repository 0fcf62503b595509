"""Fuzzing the raw listener ports: the main port (uvicorn + our protocol) and a stream
worker's port (townhall.edge.protocol), with a seeded generator of malformed request
lines, huge and odd headers, bad framing and slow bodies.

Every case must end in an answer below 500 or a closed connection, within a bound;
afterwards both ports still answer a normal request, the worker is the same process
(the supervisor restarts a crashed one, which would hide a crash), and the server
log holds no traceback.
"""

from __future__ import annotations

import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from http_helpers import Account

SEED = 20261126
CASES_PER_PORT = 500
PARALLEL = 8
"""Below the per-address connection cap (32), so no case is refused for the crowd."""
TIMEOUT_S = 1.0
"""Header and body deadlines of both ports in this test: a slow case is cut by then."""
CASE_LIMIT_S = TIMEOUT_S * 4 + 2
"""A case that neither answers nor closes by then is a hang."""
TOTAL_LIMIT_S = 120.0
SLOW_SHARE = 0.04


@dataclass(frozen=True)
class Case:
    kind: str
    data: bytes
    slow_tail: bytes = b""
    """Sent a byte every 0.3 s after `data`, as long as the server listens."""


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int | None
    """The first answer's status; None when the server closed without one."""
    seconds: float
    hung: bool


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("fuzz"),
        args=("--stream-workers", "1"),
        TOWNHALL_HTTP_HEADER_TIMEOUT_S=str(TIMEOUT_S),
        TOWNHALL_HTTP_BODY_TIMEOUT_S=str(TIMEOUT_S),
        TOWNHALL_EDGE_HEADER_TIMEOUT_S=str(TIMEOUT_S),
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0",
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def space_id(server: RunningServer) -> str:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        account = {"username": "fuzzhost", "password": "password123"}
        http.post("/api/users", json=account)
        token = http.post("/api/tokens", json=account).json()["token"]
        host = Account("", "fuzzhost", token)
        space = http.post("/api/spaces", json={"title": "fuzz"}, headers=host.headers).json()
        http.post(f"/api/spaces/{space['id']}/start", headers=host.headers)
        return space["id"]


# -- the generator ----------------------------------------------------------------------

METHODS = [b"GET", b"POST", b"HEAD", b"OPTIONS", b"DELETE", b"PUT", b"PATCH", b"CONNECT",
           b"TRACE", b"PRI", b"get", b"G\x00T", b"", b"GET GET", b"\xff\xfe", b"A" * 300]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.1 extra", b"",
            b"FOO", b"HTTP/1", b"http/1.1", b"HTTP/1.1\x00"]
EOLS = [b"\r\n", b"\n", b"\r", b"\r\r\n"]


def _targets(space: str) -> list[bytes]:
    s = space.encode()
    return [
        b"/", b"/api/spaces", b"/api/spaces/" + s, b"/api/spaces/" + s + b"/join",
        b"/live/" + s + b".aac", b"/live/" + s + b".aac?ticket=forged",
        b"/live/" + s + b".aac?ticket=" + b"A" * 5000, b"/healthz", b"/hls/" + s + b"/index.m3u8",
        b"*", b"http://evil.example/x", b"/%", b"/%zz", b"/\xff\xfe", b"//", b"/../../etc/passwd",
        b"?", b"/api/spaces/%00", b"/api/spaces/" + b"a" * 5000, b"/" + b"a" * 20_000,
        b"/api/spaces/" + s + b"/join?x=" + b"%ff" * 100, b"/s/" + s, b"/\t/", b"/ /",
    ]


ODD_HEADERS = [
    b"NoColonHere", b": empty-name", b"Bad Name: v", b"X-Fold: a\r\n  folded", b"X-Nul: a\x00b",
    b"X-Ctl: \x01\x02\x7f", b"X-Latin: \xe9\xff", b"Host:", b"Host: [::1", b"Host: " + b"h" * 300,
    b"Host: evil.example:99999", b"Host: a\r\nHost: b", b"Content-Length: -1",
    b"Content-Length: 99999999999999999999", b"Content-Length: 1\r\nContent-Length: 2",
    b"Content-Length: \xb2", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5", b"Expect: 100-continue",
    b"Connection: upgrade\r\nUpgrade: websocket", b"Connection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c", b"Cookie: th_session=" + b"x" * 200, b"Cookie: th_session=\x01",
    b"Authorization: Bearer", b"Authorization: Bearer \x01\x02", b"Authorization: Basic ???",
    b"X-Forwarded-For: 1.2.3.4, ::1, garbage", b"Forwarded: for=\"[::1\"",
    b"Origin: null", b"Content-Type: text/plain", b"Content-Type: application/json; x",
    b"If-None-Match: " + b"\"" * 100, b"Range: bytes=-1-2", b"X-Big: " + b"b" * 40_000,
]


BAD_CHUNKS = [
    b"zz\r\nabc\r\n0\r\n\r\n", b"ffffffffffffffff\r\n", b"5\r\nab\r\n", b"-1\r\n",
    b"3;ext=\x00\r\nabc\r\n0\r\n\r\n", b"0\r\nTrailer: \x01\r\n\r\n",
]


def _head(rng: random.Random, space: str, headers: list[bytes]) -> bytes:
    method = rng.choice([b"GET", b"POST", b"HEAD"])
    line = method + b" " + rng.choice(_targets(space)) + b" HTTP/1.1\r\n"
    return line + b"Host: 127.0.0.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def _random_bytes(rng: random.Random, space: str) -> Case:
    return Case("random bytes", rng.randbytes(rng.randint(1, 3000)))


def _bad_request_line(rng: random.Random, space: str) -> Case:
    eol = rng.choice(EOLS)
    line = b" ".join(
        [rng.choice(METHODS), rng.choice(_targets(space)), rng.choice(VERSIONS)]
    )
    return Case("request line", line + eol + b"Host: x" + eol + eol)


def _odd_headers(rng: random.Random, space: str) -> Case:
    headers = rng.sample(ODD_HEADERS, rng.randint(1, 4))
    body = rng.randbytes(rng.randint(0, 64)) if rng.random() < 0.5 else b""
    return Case("odd headers", _head(rng, space, headers) + body)


def _many_headers(rng: random.Random, space: str) -> Case:
    count = rng.choice([100, 1000, 5000])
    headers = [b"X-H%d: %d" % (n, n) for n in range(count)]
    return Case("many headers", _head(rng, space, headers))


def _bad_chunks(rng: random.Random, space: str) -> Case:
    chunks = rng.choice(BAD_CHUNKS)
    head = _head(rng, space, [b"Transfer-Encoding: chunked", b"Content-Type: application/json"])
    return Case("bad chunks", head.replace(b"GET ", b"POST ").replace(b"HEAD ", b"POST ") + chunks)


def _pipelined(rng: random.Random, space: str) -> Case:
    good = b"GET /api/spaces HTTP/1.1\r\nHost: x\r\n\r\n"
    return Case("pipelined", good + _bad_request_line(rng, space).data + good)


def _slow_body(rng: random.Random, space: str) -> Case:
    target = rng.choice([b"/api/spaces/" + space.encode() + b"/join", b"/api/users", b"/"])
    head = (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n{")
    return Case("slow body", head, slow_tail=b" " * 40)


def _slow_head(rng: random.Random, space: str) -> Case:
    return Case("slow head", b"GET /healthz HTTP/1.1\r\n", slow_tail=b"X-Slow: " + b"s" * 40)


GENERATORS: list[Callable[[random.Random, str], Case]] = [
    _random_bytes, _bad_request_line, _bad_request_line, _odd_headers, _odd_headers,
    _odd_headers, _many_headers, _bad_chunks, _pipelined,
]


def fuzz_cases(seed: int, count: int, space: str) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        slow = rng.random() < SLOW_SHARE
        make = rng.choice([_slow_body, _slow_head]) if slow else rng.choice(GENERATORS)
        cases.append(make(rng, space))
    return cases


# -- running a case ----------------------------------------------------------------------


def _status(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1."):
        return None
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def run_case(port: int, case: Case) -> Outcome:
    started = time.monotonic()
    answer = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_LIMIT_S) as sock:
        try:
            sock.sendall(case.data)
            for byte in case.slow_tail:
                time.sleep(0.3)
                sock.sendall(bytes([byte]))
            if not case.slow_tail:
                sock.shutdown(socket.SHUT_WR)  # nothing more: the server must finish
        except OSError:  # broken pipe, reset, not connected: the server stopped listening
            pass  # to us, which is fine: read what it said
        while time.monotonic() - started < CASE_LIMIT_S:
            sock.settimeout(max(0.05, CASE_LIMIT_S - (time.monotonic() - started)))
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError) as stop:
                closed = isinstance(stop, ConnectionResetError)
                break
            if not data:
                closed = True
                break
            answer += data
            if len(answer) > 1_000_000:
                break  # it is answering (a stream, say): enough
    seconds = time.monotonic() - started
    status = _status(answer)
    return Outcome(case.kind, status, seconds, hung=not closed and status is None)


def fuzz_port(port: int, cases: list[Case]) -> list[Outcome]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda case: run_case(port, case), cases))


def _worker_pid(server: RunningServer, wait_s: float = 20.0) -> int:
    """The stream worker's pid, once it answers (it starts after the main port)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            answer = httpx.get(f"http://127.0.0.1:{server.port + 1}/healthz", timeout=5)
        except httpx.ConnectError:
            assert time.monotonic() < deadline, "the stream worker never answered"
            time.sleep(0.1)
            continue
        assert answer.status_code == 200
        return answer.json()["pid"]


def test_fuzzing_the_listener_ports_crashes_nothing(server: RunningServer, space_id) -> None:
    worker_before = _worker_pid(server)
    started = time.monotonic()
    report = []
    for name, port in (("main", server.port), ("stream worker", server.port + 1)):
        outcomes = fuzz_port(port, fuzz_cases(SEED, CASES_PER_PORT, space_id))
        statuses = Counter(o.status or "closed" for o in outcomes)
        report.append(f"{name}: {len(outcomes)} cases, {dict(sorted(statuses.items(), key=str))}")
        server_errors = [o for o in outcomes if o.status is not None and o.status >= 500]
        hangs = [o for o in outcomes if o.hung]
        assert not server_errors, server_errors[:5]
        assert not hangs, hangs[:5]
        assert max(o.seconds for o in outcomes) < CASE_LIMIT_S + 1
    elapsed = time.monotonic() - started
    print(f"\nseed {SEED}, {elapsed:.1f} s\n" + "\n".join(report))
    assert elapsed < TOTAL_LIMIT_S

    assert server.process.poll() is None
    assert _worker_pid(server) == worker_before, "the stream worker was restarted"
    assert httpx.get(server.url + f"/api/spaces/{space_id}", timeout=5).status_code == 200
    forged = httpx.get(
        f"http://127.0.0.1:{server.port + 1}/live/{space_id}.aac?ticket=forged", timeout=5
    )
    assert forged.status_code == 403 and forged.json()["error"]["code"]
    log = server.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 500 :][:3000]
