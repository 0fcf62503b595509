"""Bad input never reaches a 500: malformed JSON, wrong shapes, oversized bodies."""

from __future__ import annotations

import socket
import time

import httpx

from conftest import RunningServer
from http_helpers import assert_error, live_space, sign_up
from townhall.api.models import MAX_SDP_BYTES


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    for body in [b"{", b"not json", b"\xff\xfe", b"[1, 2]", b'"string"', b"null"]:
        response = await client.post(
            "/api/users", content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "bad_json")
    assert_error(await client.post("/api/users"), 400, "missing_body")


async def test_oversized_body_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    huge = b'{"username": "' + b"a" * 200_000 + b'"}'
    assert_error(await client.post("/api/users", content=huge), 413, "body_too_large")

    async def chunks():
        for _ in range(100):
            yield b" " * 10_000

    streamed = await client.post("/api/users", content=chunks())
    assert_error(streamed, 413, "body_too_large")


async def test_oversized_sdp(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    response = await client.post(
        f"/api/spaces/{space['id']}/stage/offer",
        json={"type": "offer", "sdp": "a" * 100_000},
        headers=host.headers,
    )
    assert_error(response, 413, "body_too_large")


async def test_wrong_field_types(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    for body, code in [
        ({"title": ""}, "invalid_title"),
        ({"title": None}, "invalid_title"),
        ({"title": ["x"]}, "invalid_title"),
        ({"title": "x" * 500}, "invalid_title"),
        ({"title": "ok", "record": "yes"}, "invalid_record"),
        ({"title": "ok", "speak_policy": "nobody"}, "invalid_speak_policy"),
    ]:
        assert_error(await client.post("/api/spaces", json=body, headers=host.headers), 422, code)


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/nothing-here"), 404, "not_found")
    assert_error(await client.delete("/api/spaces"), 405, "method_not_allowed")
    assert_error(await client.get("/hls/abcdefghijkm/index.m3u8"), 404)
    assert_error(await client.get("/hls/abcdefghijkm/../../etc/passwd"), 404)


async def test_bad_content_length(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/users", content=b"{}", headers={"content-length": "abc"})
    assert response.status_code == 400


DEEP = 30_000
HOSTILE_JSON = {
    "deep array": b"[" * DEEP + b"]" * DEEP,
    "deep object": b'{"a":' * (DEEP // 3) + b"1" + b"}" * (DEEP // 3),
    "deep in a field": b'{"title":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "integer of 5,000 digits": b'{"title": ' + b"9" * 5_000 + b"}",
    "integer of 5,000 digits, unknown field": b'{"title": "t", "n": ' + b"9" * 5_000 + b"}",
    "lone surrogate": b'{"title": "\\ud800", "username": "\\udfffabc"}',
}


async def test_hostile_json_is_a_400_on_every_body_route(client: httpx.AsyncClient) -> None:
    """Deep nesting and huge numbers used to raise RecursionError / ValueError out of
    json.loads (500s with tracebacks); they are invalid JSON to us, like any other."""
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    paths = ["/api/users", "/api/tokens", "/api/sessions", "/api/spaces", f"{base}/join"]
    paths += [f"{base}/{tail}" for tail in ("reactions", "stage", "invitations", "removals")]
    paths.append(f"{base}/stage/offer")
    for path in paths:
        for name, body in HOSTILE_JSON.items():
            response = await client.post(path, content=body, headers=host.headers)
            if path.endswith("/offer") and len(body) > MAX_SDP_BYTES:
                assert_error(response, 413, "body_too_large")
                continue
            error = assert_error(response, 400, "bad_json")
            assert "JSON" in error["message"], (path, name)


async def test_a_wrong_field_is_named_with_the_reason(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    refused = await client.post("/api/spaces", json={"title": 7}, headers=host.headers)
    error = assert_error(refused, 422, "invalid_title")
    assert error["message"].startswith("title:") and "string" in error["message"]
    missing = await client.post("/api/users", json={"username": "ann_x"})
    error = assert_error(missing, 422, "invalid_password")
    assert error["message"] == "password: Field required"


async def test_malformed_path_ids_never_reach_the_services(client: httpx.AsyncClient) -> None:
    """A 60 KB id on /start or /end used to leave a lock behind in the service, per
    request, forever; it is now a 404 from the shape check alone."""
    host = await sign_up(client, "host")
    spaces = client._transport.app.services.spaces  # type: ignore[attr-defined]
    locks_before = len(spaces._locks)
    for n in range(20):
        made_up = f"{n}" + "x" * 60_000
        for action in ("start", "end"):
            refused = await client.post(f"/api/spaces/{made_up}/{action}", headers=host.headers)
            error = assert_error(refused, 404, "space_not_found")
            assert len(error["message"]) < 200, "a refusal does not echo a 60 KB id"
    assert len(spaces._locks) == locks_before
    for path in ("/api/spaces/%2e%2e%20/me", "/api/spaces/abcdefghijk%00/requests"):
        assert_error(await client.get(path, headers=host.headers), 404, "space_not_found")


def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(server: RunningServer) -> None:
    """Starlette raised ClientDisconnect out of the body read, a logged 500."""
    for path in ("/api/users", "/api/spaces", "/api/spaces/abcdefghijkm/reactions"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
            sock.sendall(head.encode() + b'{"title": ')
            time.sleep(0.1)
    assert httpx.get(server.url + "/api/health", timeout=5).status_code == 200
    time.sleep(0.3)
    assert "Traceback" not in server.log(), server.log()
