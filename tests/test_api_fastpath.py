"""The listener fast path answers exactly as the Starlette routes it stands in for.

Every case sends the same request twice, once through the fast path (the app as
served) and once straight to the wrapped Starlette app, over the same services, and
compares status, headers and body. Answers that carry something fresh per call (a
ticket, a place in line, a challenge) are compared field by field, the fresh fields
by shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import NO_LAG_DOOR
from http_helpers import Account, assert_error, live_space, sign_up
from townhall.admission.tickets import check_ticket
from townhall.api.fastpath import ListenerFastPath
from townhall.app import create_app
from townhall.audience.opus_rendition import OPUS_PLAYLIST_URI
from townhall.config import load_settings
from townhall.services import build_services

BASE = "http://testserver"
MAX_BODY = 1024
CHEAP = {"TOWNHALL_ARGON2_TIME_COST": "1", "TOWNHALL_ARGON2_MEMORY_KIB": "8192"}


@pytest.fixture
def settings(tmp_path, store_env):
    return load_settings(
        {
            **store_env,
            **NO_LAG_DOOR,
            **CHEAP,
            "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
            "TOWNHALL_HTTP_MAX_BODY_BYTES": str(MAX_BODY),
        },
        data_dir=tmp_path / "data",
    )


@dataclass
class Pair:
    """One app, two ways in: through the fast path, and straight to Starlette."""

    app: ListenerFastPath
    fast: httpx.AsyncClient
    starlette: httpx.AsyncClient

    async def both(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[httpx.Response, httpx.Response]:
        before = self.app.answered
        fast = await self.fast.request(method, url, **kwargs)
        assert self.app.answered == before + 1, "the fast path did not answer this itself"
        reference = await self.starlette.request(method, url, **kwargs)
        assert self.app.answered == before + 1
        return fast, reference

    async def same(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Both ways give the very same response (status, headers in order, body)."""
        fast, reference = await self.both(method, url, **kwargs)
        assert fast.status_code == reference.status_code, (fast.text, reference.text)
        assert fast.headers.raw == reference.headers.raw
        assert fast.content == reference.content
        return fast


async def _pair(settings, **transport: Any) -> AsyncIterator[Pair]:
    app = create_app(settings)
    assert isinstance(app, ListenerFastPath)
    async with app.router.lifespan_context(app):  # type: ignore[arg-type]
        fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        reference = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.app, **transport), base_url=BASE
        )
        async with fast, reference:
            yield Pair(app, fast, reference)


@pytest.fixture
async def pair(settings) -> AsyncIterator[Pair]:
    async for made in _pair(settings):
        yield made


def _without(answer: dict[str, Any], *volatile: str) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in volatile}


def _same_but_fresh(fast: httpx.Response, reference: httpx.Response) -> None:
    """Same status and headers (but the length) for answers with fresh contents."""
    assert fast.status_code == reference.status_code, (fast.text, reference.text)

    def heads(response: httpx.Response) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in response.headers.raw if k.lower() != b"content-length"]

    assert heads(fast) == heads(reference)
    assert int(fast.headers["content-length"]) == len(fast.content)


async def _ticket_for(pair: Pair, fast: httpx.Response, space_id: str) -> str:
    """The listener id a join's ticket was issued to; checks the URLs on the way."""
    answer = fast.json()
    assert set(answer) == {"ticket", "expires_at", "live_url", "hls_url", "hls_opus_url"}
    assert answer["live_url"] == f"/live/{space_id}.aac?ticket={answer['ticket']}"
    assert answer["hls_url"] == f"/hls/{space_id}/index.m3u8"
    assert answer["hls_opus_url"] == f"/hls/{space_id}/{OPUS_PLAYLIST_URI}"
    claims = check_ticket(pair.app.services.signer, answer["ticket"], space_id, time.time())
    return claims.listener_id


async def test_the_wrapper_is_the_app_tests_and_servers_see(pair: Pair) -> None:
    assert pair.app.router is pair.app.app.router
    assert pair.app.services.started, "the lifespan started the services"


async def test_snapshot_of_a_live_space_etag_and_head(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    url = f"/api/spaces/{space['id']}"
    full = await pair.same("GET", url)
    assert full.status_code == 200 and full.json()["state"] == "live"
    assert full.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"
    etag = full.headers["etag"]
    not_modified = await pair.same("GET", url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    listed = await pair.same("GET", url, headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    stale = await pair.same("GET", url, headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.content == full.content
    head = await pair.same("HEAD", url)
    assert head.status_code == 200


async def test_snapshot_follows_a_rebuild(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    url = f"/api/spaces/{space['id']}"
    before = await pair.same("GET", url)
    reacted = await pair.fast.post(f"{url}/reactions", json={"emoji": "👏"})
    assert reacted.status_code == 202
    await pair.app.services.spaces.tick()
    after = await pair.same("GET", url)
    assert after.headers["etag"] != before.headers["etag"]
    assert after.json()["reactions"] == {"👏": 1}


async def test_unknown_and_malformed_space_ids(pair: Pair) -> None:
    for space_id in ("abcdefghijkm", "not-an-id!", "x" * 300, "%20"):
        assert_error(await pair.same("GET", f"/api/spaces/{space_id}"), 404, "space_not_found")
        assert_error(
            await pair.same("POST", f"/api/spaces/{space_id}/join"), 404, "space_not_found"
        )


async def test_a_space_that_is_not_live(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    created = await pair.fast.post("/api/spaces", json={"title": "Later"}, headers=host.headers)
    url = f"/api/spaces/{created.json()['id']}"
    assert (await pair.same("GET", url)).json()["state"] == "scheduled"
    assert_error(await pair.same("POST", f"{url}/join"), 409, "space_not_live")
    await pair.fast.post(f"{url}/start", headers=host.headers)
    ended = await pair.fast.post(f"{url}/end", headers=host.headers)
    assert ended.status_code == 200
    assert (await pair.same("GET", url)).json()["state"] == "ended"
    assert_error(await pair.same("POST", f"{url}/join"), 409)


async def test_anonymous_join_gets_a_ticket(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    join = f"/api/spaces/{space['id']}/join"
    for body in ({}, {"content": b""}, {"json": {}}, {"content": b"  \n"}):
        fast, reference = await pair.both("POST", join, **body)
        _same_but_fresh(fast, reference)
        assert fast.headers["cache-control"] == "no-store"
        fast_listener = await _ticket_for(pair, fast, space["id"])
        reference_listener = await _ticket_for(pair, reference, space["id"])
        assert fast_listener.startswith("anon-") and reference_listener.startswith("anon-")
        assert fast_listener != reference_listener


async def test_signed_in_join_by_bearer_and_by_cookie(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    ann = await sign_up(pair.fast, "ann")
    space = await live_space(pair.fast, host)
    join = f"/api/spaces/{space['id']}/join"

    fast, reference = await pair.both("POST", join, headers=ann.headers)
    _same_but_fresh(fast, reference)
    assert await _ticket_for(pair, fast, space["id"]) == ann.id
    assert await _ticket_for(pair, reference, space["id"]) == ann.id

    session = await pair.starlette.post(
        "/api/sessions", json={"username": "ann", "password": "correct horse"}
    )
    cookie = {
        "Cookie": f"theme=dark; th_session={session.cookies['th_session']}",
        "Content-Type": "application/json",  # a cookie's unsafe request must say JSON (CSRF)
    }
    pair.starlette.cookies.clear()
    fast, reference = await pair.both("POST", join, headers=cookie)
    _same_but_fresh(fast, reference)
    assert await _ticket_for(pair, fast, space["id"]) == ann.id
    same_site = {**cookie, "Origin": BASE}
    fast, reference = await pair.both("POST", join, headers=same_site)
    _same_but_fresh(fast, reference)
    assert await _ticket_for(pair, fast, space["id"]) == ann.id
    cross_site = {**cookie, "Origin": "https://elsewhere.example"}
    assert_error(await pair.same("POST", join, headers=cross_site), 403, "bad_origin")

    stale = {"Cookie": "th_session=long-gone"}
    fast, reference = await pair.both("POST", join, headers=stale)
    _same_but_fresh(fast, reference)
    assert (await _ticket_for(pair, fast, space["id"])).startswith("anon-")


async def test_bad_credentials_are_refused_alike(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    join = f"/api/spaces/{space['id']}/join"
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert_error(await pair.same("POST", join, headers=bad_token), 401, "bad_token")
    for header in ("Basic abc", "Bearer ", "Bearer"):
        bad = {"Authorization": header}
        assert_error(await pair.same("POST", join, headers=bad), 401, "bad_authorization")


async def test_a_removed_user_is_refused(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    ann: Account = await sign_up(pair.fast, "ann")
    space = await live_space(pair.fast, host)
    base = f"/api/spaces/{space['id']}"
    removed = await pair.fast.post(
        f"{base}/removals", json={"user_id": ann.id}, headers=host.headers
    )
    assert removed.status_code == 200
    assert_error(await pair.same("POST", f"{base}/join", headers=ann.headers), 403, "removed")
    fast, reference = await pair.both("POST", f"{base}/join", headers=host.headers)
    _same_but_fresh(fast, reference)


async def test_bodies_that_are_too_big_or_not_json(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    join = f"/api/spaces/{space['id']}/join"
    too_big = b'{"token": "' + b"a" * MAX_BODY + b'"}'
    assert_error(await pair.same("POST", join, content=too_big), 413, "body_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * (MAX_BODY // 2)

    fast = await pair.fast.post(join, content=chunks())
    reference = await pair.starlette.post(join, content=chunks())
    assert "content-length" not in fast.request.headers, "the body went unannounced"
    assert_error(fast, 413, "body_too_large")
    assert (fast.status_code, fast.headers.raw, fast.content) == (
        reference.status_code,
        reference.headers.raw,
        reference.content,
    )
    declared = {"content-length": str(MAX_BODY + 1)}
    refused_unread = await pair.same("POST", join, content=b"{}", headers=declared)
    assert_error(refused_unread, 413, "body_too_large")
    bad_length = {"content-length": "abc"}
    assert_error(
        await pair.same("POST", join, content=b"{}", headers=bad_length), 400, "bad_content_length"
    )
    for body in (b"{", b"not json", b"\xff\xfe", b"[1, 2]", b'"string"', b"null"):
        assert_error(await pair.same("POST", join, content=body), 400, "bad_json")


async def test_queue_tokens_that_are_not_ours(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    join = f"/api/spaces/{space['id']}/join"
    assert_error(await pair.same("POST", join, json={"token": 7}), 422, "invalid_token")
    forged = assert_error(await pair.same("POST", join, json={"token": "AQ.forged"}), 403)
    assert forged["code"].startswith("queue_")


async def test_what_is_not_the_fast_paths_goes_to_starlette(pair: Pair) -> None:
    host = await sign_up(pair.fast, "host")
    space = await live_space(pair.fast, host)
    base = f"/api/spaces/{space['id']}"
    before = pair.app.answered
    for method, url, status in [
        ("POST", base, 405),
        ("DELETE", base, 405),
        ("GET", f"{base}/join", 405),
        ("GET", "/api/spaces", 200),
        ("GET", f"{base}/", 307),
        ("GET", f"{base}/me", 401),
        ("POST", f"{base}/join/", 307),
        ("GET", "/api/spaces/", 307),
    ]:
        fast = await pair.fast.request(method, url, follow_redirects=False)
        reference = await pair.starlette.request(method, url, follow_redirects=False)
        assert fast.status_code == reference.status_code == status, (method, url)
        assert fast.headers.raw == reference.headers.raw
    assert pair.app.answered == before


class TestStreamWorkersAndPublicUrl:
    """With stream workers the live URL names the stream port on the request's host (or
    the public URL's); the fast path remembers it per Host, so Hosts must not mix."""

    @pytest.fixture
    def settings(self, tmp_path, store_env):
        return load_settings(
            {
                **store_env,
            **NO_LAG_DOOR,
                **CHEAP,
                "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
                "TOWNHALL_EDGE_STREAM_WORKERS": "2",
            },
            data_dir=tmp_path / "data",
            port=8080,
        )

    async def test_live_url_on_the_stream_port_of_each_host(self, pair: Pair) -> None:
        host = await sign_up(pair.fast, "host")
        space = await live_space(pair.fast, host)
        join = f"/api/spaces/{space['id']}/join"
        for name in ("testserver", "other.example:9000", "[::1]:8080", "testserver"):
            fast, reference = await pair.both("POST", join, headers={"Host": name})
            _same_but_fresh(fast, reference)
            hostname = name.rsplit(":", 1)[0] if name[-1] != "]" else name
            base = f"http://{hostname}:8081/live/{space['id']}.aac?ticket="
            assert fast.json()["live_url"].startswith(base)
            assert reference.json()["live_url"].startswith(base)

    async def test_a_public_url_beyond_ascii(self, pair: Pair, settings) -> None:
        host = await sign_up(pair.fast, "host")
        space = await live_space(pair.fast, host)
        before = await pair.fast.post(f"/api/spaces/{space['id']}/join")
        assert before.json()["live_url"].startswith("http://testserver:8081/")
        public = "https://tównhall.example/"
        pair.app.services.settings = settings.with_overrides(public_url=public)
        fast, reference = await pair.both("POST", f"/api/spaces/{space['id']}/join")
        _same_but_fresh(fast, reference)
        assert _without(fast.json(), "ticket", "expires_at", "live_url") == {
            "hls_url": f"https://tównhall.example/hls/{space['id']}/index.m3u8",
            "hls_opus_url": f"https://tównhall.example/hls/{space['id']}/{OPUS_PLAYLIST_URI}",
        }
        assert "tównhall".encode() in fast.content, "JSON as Starlette writes it: UTF-8"
        live = f"https://tównhall.example:8081/live/{space['id']}.aac?ticket="
        assert fast.json()["live_url"].startswith(live)


class TestWaitingRoom:
    @pytest.fixture
    def settings(self, tmp_path, store_env):
        return load_settings(
            {
                **store_env,
            **NO_LAG_DOOR,
                **CHEAP,
                "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
                "TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": "1",
            },
            data_dir=tmp_path / "data",
        )

    async def test_a_place_in_line(self, pair: Pair) -> None:
        host = await sign_up(pair.fast, "host")
        space = await live_space(pair.fast, host)
        join = f"/api/spaces/{space['id']}/join"
        answers = [await pair.fast.post(join) for _ in range(3)]
        assert any("wait" in a.json() for a in answers), "the line never formed"
        fast, reference = await pair.both("POST", join)
        _same_but_fresh(fast, reference)
        fast_wait, reference_wait = fast.json()["wait"], reference.json()["wait"]
        assert set(fast.json()) == set(reference.json()) == {"wait"}
        assert set(fast_wait) == set(reference_wait)
        assert reference_wait["position"] == fast_wait["position"] + 1
        polled, polled_reference = await pair.both("POST", join, json={"token": fast_wait["token"]})
        _same_but_fresh(polled, polled_reference)
        assert polled.json()["wait"]["position"] <= fast_wait["position"]


class TestRefusalsWithRetryAfter:
    @pytest.fixture
    def settings(self, tmp_path, store_env):
        return load_settings(
            {
                **store_env,
            **NO_LAG_DOOR,
                **CHEAP,
                "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "1",
                "TOWNHALL_ADMISSION_POW_BITS": "8",
            },
            data_dir=tmp_path / "data",
        )

    async def test_rate_limited_alike(self, pair: Pair) -> None:
        host = await sign_up(pair.fast, "host")
        space = await live_space(pair.fast, host)
        join = f"/api/spaces/{space['id']}/join"
        for _ in range(20):
            if (await pair.fast.post(join)).status_code == 429:
                break
        limited = await pair.same("POST", join)
        error = assert_error(limited, 429, "rate_limited")
        assert limited.headers["retry-after"] == str(round(error["retry_after_s"]))
        assert int(limited.headers["retry-after"]) >= 1

    async def test_proof_of_work_challenge_alike(self, pair: Pair) -> None:
        host = await sign_up(pair.fast, "host")
        space = await live_space(pair.fast, host)
        pair.app.services.door.force_attack_mode(True)
        join = f"/api/spaces/{space['id']}/join"
        fast, reference = await pair.both("POST", join)
        _same_but_fresh(fast, reference)
        fast_error, reference_error = fast.json()["error"], reference.json()["error"]
        assert fast_error["code"] == "pow_required"
        assert _without(fast_error, "challenge") == _without(reference_error, "challenge")
        assert fast_error["challenge"] != reference_error["challenge"]


async def test_a_bug_is_the_same_json_500(settings, monkeypatch) -> None:
    """A bug in a service is answered as errors.py answers bugs (the reference transport
    would re-raise it otherwise)."""
    services = build_services(settings)

    async def bug(space_id: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services.spaces, "snapshot", bug)
    monkeypatch.setattr(services.spaces, "record", bug)
    app = create_app(settings, services=services)
    fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    reference = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app, raise_app_exceptions=False), base_url=BASE
    )
    async with fast, reference:
        space = "/api/spaces/abcdefghijkm"
        for method, url in [("GET", space), ("POST", f"{space}/join")]:
            answered, expected = (
                await fast.request(method, url),
                await reference.request(method, url),
            )
            assert_error(answered, 500, "internal")
            assert (answered.headers.raw, answered.content) == (
                expected.headers.raw,
                expected.content,
            )
    assert app.answered == 2
