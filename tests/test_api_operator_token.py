"""The operator token: long enough not to be guessed, compared in constant time, and
an address that keeps guessing is throttled (429) before it can try again."""

from __future__ import annotations

import httpx
import pytest

from conftest import CHEAP_ARGON2
from http_helpers import assert_error
from townhall.app import create_app
from townhall.config import load_settings

SWITCH = "/api/admin/attack-mode"
GOOD_TOKEN = "o" * 32
WRONG_TRIES_ALLOWED = 5


def _app(tmp_path, token: str):
    env = {**CHEAP_ARGON2, "TOWNHALL_ADMIN_TOKEN": token}
    return create_app(load_settings(env, data_dir=tmp_path / "data"))


async def _post(app, token: str, client: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(client, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.post(
            SWITCH, json={"mode": "auto"}, headers={"Authorization": f"Bearer {token}"}
        )


async def test_a_short_token_turns_the_operator_endpoints_off(tmp_path) -> None:
    short = "operator-secret"
    app = _app(tmp_path, short)
    async with app.router.lifespan_context(app):
        error = assert_error(await _post(app, short), 403, "admin_token_too_short")
    assert "32" in error["message"]


async def test_the_right_token_works(tmp_path) -> None:
    app = _app(tmp_path, GOOD_TOKEN)
    async with app.router.lifespan_context(app):
        answer = await _post(app, GOOD_TOKEN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["forced"] is None


async def test_guessing_is_throttled_per_address(tmp_path) -> None:
    app = _app(tmp_path, GOOD_TOKEN)
    async with app.router.lifespan_context(app):
        for n in range(WRONG_TRIES_ALLOWED):
            assert_error(await _post(app, f"guess-{n}" + "x" * 32), 403, "forbidden")
        throttled = await _post(app, GOOD_TOKEN)  # even the right one, until it cools down
        assert_error(throttled, 429, "too_many_attempts")
        assert int(throttled.headers["retry-after"]) >= 1
        elsewhere = await _post(app, GOOD_TOKEN, client="192.0.2.9")
        assert elsewhere.status_code == 200, elsewhere.text


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer "])
async def test_no_token_is_401(tmp_path, header: str) -> None:
    app = _app(tmp_path, GOOD_TOKEN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"Authorization": header} if header else {}
            answer = await http.post(SWITCH, json={"mode": "on"}, headers=headers)
    assert_error(answer, 401)
