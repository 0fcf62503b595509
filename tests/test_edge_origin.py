"""The origin's side of the stream workers, in process: the count report's answer
names who was removed from the reported spaces, and only to a stream worker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from townhall.app import create_app
from townhall.edge import issue_relay_token
from townhall.edge.relay_token import HEADER

PASSWORD = "password123"


@pytest.fixture
async def origin(settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app over ASGI, and the header a stream worker of this node would send."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        relay = {HEADER: issue_relay_token(app.services.signer, "edge-test-0", time.time())}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, relay


async def _user(http: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    created = await http.post("/api/users", json={"username": name, "password": PASSWORD})
    token = await http.post("/api/tokens", json={"username": name, "password": PASSWORD})
    return created.json()["id"], {"Authorization": f"Bearer {token.json()['token']}"}


async def test_the_report_answer_names_the_removed_of_reported_spaces(origin) -> None:
    http, relay = origin
    _, host = await _user(http, "originhost")
    guest_id, _ = await _user(http, "originguest")
    spaces = []
    for title in ("with a removal", "without"):
        space = (await http.post("/api/spaces", json={"title": title}, headers=host)).json()
        assert (await http.post(f"/api/spaces/{space['id']}/start", headers=host)).is_success
        spaces.append(space["id"])
    removed_from, untouched = spaces

    async def report(counts: dict[str, int]) -> httpx.Response:
        return await http.post("/internal/listeners", json={"counts": counts}, headers=relay)

    answer = await report({removed_from: 2})
    assert answer.status_code == 200 and answer.json() == {"removed": {}}

    removal = await http.post(
        f"/api/spaces/{removed_from}/removals", json={"user_id": guest_id}, headers=host
    )
    assert removal.status_code == 200, removal.text
    answer = await report({removed_from: 2, untouched: 1, "notaspace123": 0})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json() == {"removed": {removed_from: [guest_id]}}

    # Only the spaces a report names: a worker that does not serve the space hears nothing.
    answer = await report({untouched: 1})
    assert answer.json() == {"removed": {}}

    stranger = await http.post("/internal/listeners", json={"counts": {removed_from: 1}})
    assert stranger.status_code == 403
    assert stranger.json()["error"]["code"] == "relay_refused"
