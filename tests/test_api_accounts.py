"""Accounts over HTTP: sign-up, tokens, cookie sessions."""

from __future__ import annotations

import httpx

from http_helpers import assert_error, sign_up


async def test_sign_up_and_token(client: httpx.AsyncClient) -> None:
    ann = await sign_up(client, "ann")
    me = await client.get("/api/me", headers=ann.headers)
    assert me.json() == {"id": ann.id, "username": "ann"}


async def test_username_taken_case_insensitively(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ann")
    again = await client.post("/api/users", json={"username": "ANN", "password": "whatever1"})
    assert_error(again, 409, "username_taken")


async def test_invalid_usernames_and_passwords(client: httpx.AsyncClient) -> None:
    for body, code in [
        ({"username": "a", "password": "long enough"}, "invalid_username"),
        ({"username": "has space", "password": "long enough"}, "invalid_username"),
        ({"username": 42, "password": "long enough"}, "invalid_username"),
        ({"username": "bob", "password": "short"}, "invalid_password"),
        ({"username": "bob", "password": "x" * 300}, "invalid_password"),
        ({"username": "bob"}, "invalid_password"),
    ]:
        assert_error(await client.post("/api/users", json=body), 422, code)


async def test_wrong_password_is_refused(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ann")
    wrong = await client.post("/api/tokens", json={"username": "ann", "password": "not it!!"})
    assert_error(wrong, 401, "bad_credentials")
    nobody = await client.post("/api/tokens", json={"username": "nobody", "password": "whatever1"})
    assert_error(nobody, 401, "bad_credentials")


async def test_password_is_stored_hashed_with_argon2(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ann", password="correct horse")
    store = client._transport.app.services.store  # type: ignore[attr-defined]
    _, hashed = await store.credentials("ann")
    assert hashed.startswith("$argon2id$") and "correct horse" not in hashed


async def test_bad_tokens(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/me"), 401, "sign_in_required")
    bad = await client.get("/api/me", headers={"Authorization": "Bearer nope"})
    assert_error(bad, 401, "bad_token")
    odd = await client.get("/api/me", headers={"Authorization": "Basic abc"})
    assert_error(odd, 401, "bad_authorization")


async def test_cookie_session_sign_in_and_out(client: httpx.AsyncClient) -> None:
    await sign_up(client, "ann")
    signed_in = await client.post(
        "/api/sessions", json={"username": "ann", "password": "correct horse"}
    )
    assert signed_in.status_code == 201
    cookie = signed_in.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert (await client.get("/api/me")).json()["username"] == "ann"
    created = await client.post("/api/spaces", json={"title": "from the browser"})
    assert created.status_code == 201
    cross_site = await client.post(
        "/api/spaces", json={"title": "csrf"}, headers={"Origin": "https://evil.example"}
    )
    assert_error(cross_site, 403, "bad_origin")
    assert (await client.delete("/api/sessions")).status_code == 204
    assert_error(await client.get("/api/me"), 401)
