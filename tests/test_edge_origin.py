"""The origin's side of the stream workers, in process: the count report's answer
names who was removed from the reported spaces, and only to a stream worker; and
the streams a worker must cut because a newer one of the ticket opened on another
worker of the node (townhall.edge.one_stream)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from townhall.app import create_app
from townhall.edge import issue_relay_token
from townhall.edge.one_stream import MAX_OPENED_PER_REPORT
from townhall.edge.relay_token import HEADER

PASSWORD = "password123"


@contextlib.asynccontextmanager
async def _served(
    settings, *node_ids: str
) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, str]]]]:
    """The app over ASGI, and the header each named stream worker of this node sends."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        now = time.time()
        relays = [{HEADER: issue_relay_token(app.services.signer, node, now)} for node in node_ids]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, relays


@pytest.fixture
async def origin(settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with _served(settings, "edge-test-0") as (http, relays):
        yield http, relays[0]


@pytest.fixture
async def two_workers(settings) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, str]]]]:
    async with _served(settings, "edge-test-0", "edge-test-1") as served:
        yield served


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


async def test_the_report_answer_names_the_older_streams_of_a_ticket(two_workers) -> None:
    http, (relay, other) = two_workers

    async def report(headers: dict[str, str], opened: object) -> httpx.Response:
        body = {"counts": {"sp": 1}, "opened": opened}
        return await http.post("/internal/listeners", json=body, headers=headers)

    first = await report(relay, {"sp": [["anon-a", 10.0], ["anon-b", 10.0]]})
    assert first.json() == {"removed": {}}
    newer = await report(other, {"sp": [["anon-a", 11.5]]})
    assert newer.json() == {"removed": {}}, "the newer stream stays"
    told = await report(relay, {})
    assert told.json() == {"removed": {}, "replaced": {"sp": [["anon-a", 11.5]]}}
    assert (await report(relay, {})).json() == {"removed": {}}, "told once"
    late = await report(other, {"sp": [["anon-b", 9.0]]})  # older than edge-test-0's
    assert late.json() == {"removed": {}, "replaced": {"sp": [["anon-b", 10.0]]}}

    for bad in ({"sp": "anon-a"}, {"sp": [["anon-a", "soon"]]}, [["sp", "anon-a", 1.0]]):
        refused = await report(relay, bad)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "bad_report"
    too_many = {"sp": [[f"anon-{i}", 1.0] for i in range(MAX_OPENED_PER_REPORT + 1)]}
    assert (await report(relay, too_many)).status_code == 422
