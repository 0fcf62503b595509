"""Bad input never reaches a 500: malformed JSON, wrong shapes, oversized bodies."""

from __future__ import annotations

import httpx

from http_helpers import assert_error, live_space, sign_up


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
