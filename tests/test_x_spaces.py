"""The X-compatible read API: X's envelope and field names, from the snapshots."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from http_helpers import assert_error, live_space, sign_up
from townhall.domain.x_spaces import XInvalid, comma_list, x_space, x_time

X_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def test_times_are_written_as_x_writes_them() -> None:
    assert x_time("2026-03-01T12:30:15.123456Z") == "2026-03-01T12:30:15.123Z"
    assert x_time("2026-03-01T12:30:15Z") == "2026-03-01T12:30:15.000Z"
    assert x_time(None) is None


def test_only_fields_x_knows_are_accepted() -> None:
    assert comma_list("title,,title, state", "space.fields", ["title", "state"]) == [
        "title",
        "state",
    ]
    with pytest.raises(XInvalid) as refused:
        comma_list("title,colour", "space.fields", ["title"])
    body = refused.value.body()
    assert body["errors"][0]["parameters"] == {"space.fields": ["colour"]}
    assert body["type"].endswith("/invalid-request") and body["title"] == "Invalid Request"


def test_id_and_state_always_come_and_absent_values_are_left_out() -> None:
    snapshot: dict[str, Any] = {
        "id": "s1", "title": "T", "state": "scheduled", "host": {"id": "h", "username": "ann"},
        "stage": [{"user": {"id": "h", "username": "ann"}, "role": "host"}], "listeners": 0,
        "scheduled_for": "2026-03-01T12:00:00Z", "started_at": None, "ended_at": None,
        "created_at": "2026-02-01T12:00:00Z",
    }  # fmt: skip
    assert x_space(snapshot, []) == {"id": "s1", "state": "scheduled"}
    every = x_space(snapshot, ["title", "ended_at", "participant_count", "is_ticketed"])
    assert every == {"id": "s1", "state": "scheduled", "title": "T", "is_ticketed": False}


async def test_lookups_by_id_ids_creator_and_search(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "x_host")
    other = await sign_up(client, "x_other")
    live = await live_space(client, host, title="Open source audio rooms")
    later = await client.post("/api/spaces", json={"title": "Audio later"}, headers=host.headers)
    assert later.status_code == 201  # ready to start: "scheduled" until it goes live
    scheduled = later.json()
    theirs = await live_space(client, other, title="Something else")

    one = await client.get(f"/2/spaces/{live['id']}")
    assert one.status_code == 200 and one.headers["cache-control"] == "public, max-age=1"
    assert one.json() == {"data": {"id": live["id"], "state": "live"}}

    fields = ",".join(("title", "host_ids", "creator_id", "speaker_ids", "participant_count",
                       "started_at", "created_at", "is_ticketed", "lang"))  # fmt: skip
    full = (await client.get(f"/2/spaces/{live['id']}", params={
        "space.fields": fields, "expansions": "host_ids,creator_id", "user.fields": "username",
    })).json()  # fmt: skip
    data = full["data"]
    assert data["title"] == "Open source audio rooms"
    assert data["host_ids"] == [host.id] == data["speaker_ids"] and data["creator_id"] == host.id
    assert data["participant_count"] == 1 and data["is_ticketed"] is False
    assert "lang" not in data and "ended_at" not in data
    for moment in ("started_at", "created_at"):
        assert data[moment].endswith("Z") and len(data[moment]) == 24
    assert full["includes"] == {"users": [{"id": host.id, "name": "x_host", "username": "x_host"}]}

    missing = "abcdefghijkm"
    many = (await client.get("/2/spaces", params={"ids": f"{live['id']},{missing}"})).json()
    assert many["data"] == [{"id": live["id"], "state": "live"}]
    (error,) = many["errors"]
    assert error["resource_id"] == missing and error["parameter"] == "ids"
    assert error["type"] == "https://api.twitter.com/2/problems/resource-not-found"
    gone = (await client.get(f"/2/spaces/{missing}")).json()
    assert "data" not in gone and gone["errors"][0]["value"] == missing

    mine = (await client.get("/2/spaces/by/creator_ids", params={"user_ids": host.id})).json()
    assert {s["id"] for s in mine["data"]} == {live["id"], scheduled["id"]}
    assert mine["meta"] == {"result_count": 2}
    nobody = (await client.get("/2/spaces/by/creator_ids", params={"user_ids": "zzzz"})).json()
    assert nobody == {"meta": {"result_count": 0}}

    search = "/2/spaces/search"
    audio = (await client.get(search, params={"query": "AUDIO"})).json()
    assert {s["id"] for s in audio["data"]} == {live["id"], scheduled["id"]}
    live_only = (await client.get(search, params={"query": "audio", "state": "live"})).json()
    assert [s["id"] for s in live_only["data"]] == [live["id"]]
    words = (await client.get(search, params={"query": "rooms open"})).json()
    assert [s["id"] for s in words["data"]] == [live["id"]]
    assert theirs["id"] not in {s["id"] for s in audio["data"]}


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/2/spaces/{id}", {"space.fields": "title,colour"}, "space.fields"),
        ("/2/spaces/{id}", {"expansions": "everything"}, "expansions"),
        ("/2/spaces", {}, "ids"),
        ("/2/spaces", {"ids": ",".join(f"a{n}" for n in range(101))}, "ids"),
        ("/2/spaces", {"ids": "not-an-id!"}, "ids"),
        ("/2/spaces/by/creator_ids", {"user_ids": "x" * 5000}, "user_ids"),
        ("/2/spaces/search", {"query": " "}, "query"),
        ("/2/spaces/search", {"query": "a", "state": "ended"}, "state"),
        ("/2/spaces/search", {"query": "a", "max_results": "1000"}, "max_results"),
    ],
)
async def test_what_x_would_refuse_is_a_400_in_both_shapes(
    client: httpx.AsyncClient, path: str, params: dict[str, str], parameter: str
) -> None:
    response = await client.get(path.replace("{id}", "abcdefghijkm"), params=params)
    assert_error(response, 400, "invalid_request")
    body = response.json()
    assert parameter in body["errors"][0]["parameters"]
    assert body["title"] == "Invalid Request"


async def test_the_listener_path_never_waits_on_the_database(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "x_quiet")
    live = await live_space(client, host, title="Quiet")
    store = client._transport.app.services.store  # type: ignore[attr-defined]
    calls: list[str] = []
    for name in ("get_space", "list_spaces", "get_user"):
        original = getattr(store, name)

        async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return await _original(*args)

        setattr(store, name, counted)
    await client.get("/2/spaces/search", params={"query": "quiet"})
    calls.clear()
    for _ in range(20):
        assert (await client.get(f"/2/spaces/{live['id']}")).status_code == 200
        assert (await client.get("/2/spaces", params={"ids": live["id"]})).status_code == 200
        search = await client.get("/2/spaces/search", params={"query": "quiet"})
        assert search.json()["meta"] == {"result_count": 1}
    assert calls.count("list_spaces") <= 4, calls  # at most once a second per state
    assert "get_space" not in calls and "get_user" not in calls
