"""Cross-site request forgery: a browser sends the session cookie along with a form or
a fetch from any site, so a cookie-authenticated request that changes something must
come from our own pages: no foreign or "null" Origin (sandboxed frames, data: URLs,
some redirects send "null"), and a JSON body (a cross-site form can only send
text/plain, form-urlencoded or multipart without a CORS preflight)."""

from __future__ import annotations

import httpx
import pytest

from http_helpers import assert_error, sign_up

SAME_ORIGIN = "http://testserver"
JSON = "application/json"


@pytest.fixture
async def browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client signed in by cookie, as a browser is."""
    await sign_up(client, "ann")
    signed_in = await client.post(
        "/api/sessions", json={"username": "ann", "password": "correct horse"}
    )
    assert signed_in.status_code == 201
    return client


async def _create(
    http: httpx.AsyncClient,
    content_type: str | None,
    origin: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    if content_type is not None:
        sent["content-type"] = content_type
    if origin is not None:
        sent["origin"] = origin
    return await http.post("/api/spaces", content=b'{"title": "t"}', headers=sent)


async def test_our_own_page_is_accepted(browser: httpx.AsyncClient) -> None:
    assert (await _create(browser, JSON, SAME_ORIGIN)).status_code == 201
    assert (await _create(browser, "application/json; charset=utf-8", None)).status_code == 201


@pytest.mark.parametrize("origin", ["null", "https://evil.example", "http://testserver.evil"])
async def test_a_foreign_or_null_origin_is_refused(browser, origin: str) -> None:
    assert_error(await _create(browser, JSON, origin), 403, "bad_origin")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
     "text/plain; application/json"],
)
async def test_a_body_a_form_could_send_is_refused(browser, content_type: str | None) -> None:
    assert_error(await _create(browser, content_type, SAME_ORIGIN), 415, "json_required")
    assert_error(await _create(browser, content_type, None), 415, "json_required")


async def test_nothing_was_created_by_the_refused_ones(browser: httpx.AsyncClient) -> None:
    await _create(browser, "text/plain", None)
    await _create(browser, JSON, "null")
    listing = (await browser.get("/api/spaces")).json()
    assert listing["live"] == [] and listing["upcoming"] == []


async def test_a_bearer_token_is_not_a_browser(client: httpx.AsyncClient) -> None:
    """Scripts hold their token themselves: no site can make a browser send it."""
    ann = await sign_up(client, "bob")
    answer = await _create(client, "text/plain", "null", headers=ann.headers)
    assert answer.status_code == 201, answer.text


async def test_the_fast_path_join_by_cookie_obeys_the_same_rule(browser) -> None:
    space = (await _create(browser, JSON, None)).json()
    started = await browser.post(f"/api/spaces/{space['id']}/start", json={})
    assert started.status_code == 200, started.text
    join = f"/api/spaces/{space['id']}/join"
    assert_error(await browser.post(join, headers={"origin": "null"}, json={}), 403, "bad_origin")
    assert_error(await browser.post(join, content=b"{}"), 415, "json_required")
    assert (await browser.post(join, json={})).status_code == 200
