"""Delivery through real parts: a running `townhall serve`, the live event stream read
by a real HTTP client (httpx streaming), and signed webhooks received by an HTTP
server this test starts on 127.0.0.1, which checks every signature with the standard
library on its own."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, start_server, stop_server
from http_helpers import sse_events
from townhall.service.webhooks import Webhooks, WebhookSettings

SECRET = "webhook-secret-for-the-test"
ADMIN_TOKEN = "operator-token-for-the-follows-test-0123456789"
REPLAY_WINDOW_S = 300
WAIT_S = 15.0


@dataclass
class Receiver:
    """An HTTP endpoint that fails its first `failures` requests with 500."""

    failures: int = 1
    received: list[dict] = field(default_factory=list)
    rejected: int = 0
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _signature_ok(headers: dict[str, str], body: bytes) -> bool:
    timestamp = headers.get("townhall-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > REPLAY_WINDOW_S:
        return False
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + expected.hexdigest(), headers.get("townhall-signature", ""))


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.attempts += 1
                if not _signature_ok(headers, body):
                    state.rejected += 1
                    status = 401
                elif state.failures > 0:
                    state.failures -= 1
                    status = 500
                else:
                    state.received.append({"headers": headers, "body": json.loads(body)})
                    status = 204
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{http.server_address[1]}/hook"
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture
def server(tmp_path: Path, receiver: tuple[Receiver, str]) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "server",
        TOWNHALL_NOTIFY_WEBHOOK_URL=receiver[1],
        TOWNHALL_NOTIFY_WEBHOOK_SECRET=SECRET,
        TOWNHALL_NOTIFY_WEBHOOK_FIRST_BACKOFF_S="0.2",
        TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    try:
        yield running
    finally:
        stop_server(running)


def _account(http: httpx.Client, name: str) -> tuple[str, dict[str, str]]:
    credentials = {"username": name, "password": "correct horse"}
    user_id = http.post("/api/users", json=credentials).json()["id"]
    token = http.post("/api/tokens", json=credentials).json()["token"]
    return user_id, {"authorization": f"Bearer {token}"}


def test_live_now_arrives_on_the_event_stream_and_as_a_signed_webhook(
    server: RunningServer, receiver: tuple[Receiver, str]
) -> None:
    hook, _ = receiver
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        host_id, host = _account(http, "famous")
        fan_id, fan = _account(http, "fan")
        assert http.post("/api/users/famous/follow", headers=fan).status_code == 200
        space_id = http.post("/api/spaces", json={"title": "Now"}, headers=host).json()["id"]
        with http.stream("GET", "/api/me/events", headers=fan) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream.iter_lines())
            assert next(events)[0] == "ready"
            started = http.post(f"/api/spaces/{space_id}/start", headers=host)
            assert started.status_code == 200
            kind, data = next(events)
        assert kind == "notification"
        told = json.loads(data)
        assert told["kind"] == "space_live" and told["space_id"] == space_id
        assert told["host"] == {"id": host_id, "username": "famous"}
        assert told["url"] == f"/s/{space_id}"

        deadline = time.monotonic() + WAIT_S
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.05)
        [delivered] = hook.received
        assert hook.rejected == 0 and hook.attempts == 2  # one 500, then a retry
        assert delivered["body"]["event"] == "space_live"
        assert delivered["body"]["recipients"] == [fan_id]
        assert delivered["body"]["notification"]["space_id"] == space_id
        assert delivered["headers"]["townhall-delivery"] == delivered["body"]["id"]

        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        deadline = time.monotonic() + WAIT_S
        while True:  # the log entry is written once the receiver's answer is read
            log = http.get("/api/admin/webhooks", headers=admin).json()
            if log["deliveries"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert log["enabled"] is True
        [entry] = log["deliveries"]
        assert entry["status"] == "delivered" and entry["attempts"] == 2
        assert entry["last_status_code"] == 204
        assert http.get("/api/admin/webhooks", headers=fan).status_code == 403
    assert "Traceback" not in server.log()


def test_a_signature_under_another_secret_or_an_old_timestamp_is_refused() -> None:
    """The receiver's own check (used above) is not a rubber stamp."""
    body = b'{"event": "space_live"}'
    now = str(int(time.time()))
    good = hmac.new(SECRET.encode(), now.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert _signature_ok({"townhall-timestamp": now, "townhall-signature": "v1=" + good}, body)
    assert not _signature_ok(
        {"townhall-timestamp": now, "townhall-signature": "v1=" + good}, body + b" "
    )
    old = str(int(time.time()) - REPLAY_WINDOW_S - 10)
    stale = hmac.new(SECRET.encode(), old.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert not _signature_ok({"townhall-timestamp": old, "townhall-signature": "v1=" + stale}, body)


async def test_a_receiver_that_keeps_failing_is_retried_with_backoff_then_logged(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    hook.failures = 99
    settings = WebhookSettings(
        url=url, secret=SECRET, attempts=3, first_backoff_s=0.1, queue_size=1, log_size=2
    )
    webhooks = Webhooks(settings)
    await webhooks.start()
    try:
        started = time.monotonic()
        webhooks.send("space_live", {"recipients": ["a"]})
        dropped = webhooks.send("space_live", {"recipients": ["b"]})
        assert dropped is not None and dropped.status == "dropped"  # the queue holds one
        while len(webhooks.deliveries()) < 2 and time.monotonic() - started < WAIT_S:
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
    finally:
        await webhooks.stop()
    log = {entry["status"]: entry for entry in webhooks.deliveries()}
    assert set(log) == {"failed", "dropped"}
    assert log["failed"]["attempts"] == 3 and log["failed"]["last_status_code"] == 500
    assert hook.attempts >= 3 and hook.rejected == 0  # every attempt signed correctly
    assert elapsed >= 0.1 + 0.2  # waited, doubling, between the attempts


def test_stopping_the_server_ends_open_event_streams_at_once(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        _, fan = _account(http, "fan")
        with http.stream("GET", "/api/me/events", headers=fan) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 3000"
            started = time.monotonic()
            stop_server(server)
            stopped_s = time.monotonic() - started
            rest = list(lines)  # the server ended the stream: iteration finishes
    assert "event: notification" not in rest
    assert stopped_s < 3.0, f"the open stream held the stop for {stopped_s:.1f} s"
    assert "Traceback" not in server.log()
