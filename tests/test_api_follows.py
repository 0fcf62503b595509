"""Follows, reminders and the in-app feed through the HTTP API (in-process app)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from http_helpers import Account, assert_error, live_space, sign_up

FEED_WAIT_S = 10.0


async def feed_of(
    client: httpx.AsyncClient, account: Account, count: int, **params: Any
) -> list[dict[str, Any]]:
    """The feed once it holds `count` entries: the fan-out runs in the background."""
    deadline = asyncio.get_running_loop().time() + FEED_WAIT_S
    while True:
        response = await client.get("/api/me/notifications", headers=account.headers, params=params)
        assert response.status_code == 200, response.text
        entries = response.json()["notifications"]
        if len(entries) >= count or asyncio.get_running_loop().time() > deadline:
            return entries
        await asyncio.sleep(0.05)


async def test_following_counts_and_refusals(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "famous")
    fan = await sign_up(client, "fan")
    followed = await client.post("/api/users/famous/follow", headers=fan.headers)
    assert followed.status_code == 200
    assert followed.json() == {
        "user": {"id": host.id, "username": "famous"},
        "following": True,
        "followers": 1,
    }
    status = await client.get("/api/users/famous/follow", headers=fan.headers)
    assert status.json()["following"] is True
    again = await client.post("/api/users/FAMOUS/follow", headers=fan.headers)
    assert again.json()["followers"] == 1
    assert_error(await client.post("/api/users/famous/follow"), 401)
    assert_error(
        await client.post("/api/users/nobody_here/follow", headers=fan.headers),
        404,
        "user_not_found",
    )
    assert_error(await client.post("/api/users/%2e%2e%2fx/follow", headers=fan.headers), 404)
    assert_error(
        await client.post("/api/users/fan/follow", headers=fan.headers), 422, "cannot_follow_self"
    )
    gone = await client.delete("/api/users/famous/follow", headers=fan.headers)
    assert gone.json()["following"] is False and gone.json()["followers"] == 0
    status = await client.get("/api/users/famous/follow", headers=fan.headers)
    assert status.json()["following"] is False


async def test_followers_and_reminded_people_hear_once_when_the_host_goes_live(
    client: httpx.AsyncClient,
) -> None:
    host = await sign_up(client, "famous")
    fan = await sign_up(client, "fan")
    stranger = await sign_up(client, "stranger")
    await client.post("/api/users/famous/follow", headers=fan.headers)
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = await client.post(
        "/api/spaces", json={"title": "Later", "scheduled_for": when}, headers=host.headers
    )
    space_id = created.json()["id"]
    [scheduled] = await feed_of(client, fan, 1)
    assert scheduled["kind"] == "space_scheduled" and scheduled["space_id"] == space_id
    assert scheduled["url"] == f"/s/{space_id}"

    asked = await client.get(f"/api/spaces/{space_id}/reminders", headers=fan.headers)
    assert asked.json() == {"space_id": space_id, "reminded": False}
    for person in (fan, stranger):
        reminded = await client.post(f"/api/spaces/{space_id}/reminders", headers=person.headers)
        assert reminded.json() == {"space_id": space_id, "reminded": True}
    asked = await client.get(f"/api/spaces/{space_id}/reminders", headers=fan.headers)
    assert asked.json()["reminded"] is True
    await client.post(f"/api/spaces/{space_id}/start", headers=host.headers)

    fan_feed = await feed_of(client, fan, 2)
    assert [entry["kind"] for entry in fan_feed] == ["space_live", "space_scheduled"]
    [told] = await feed_of(client, stranger, 1)
    assert told["kind"] == "space_live" and told["actor_id"] == host.id
    await asyncio.sleep(0.2)
    assert len(await feed_of(client, fan, 3)) == 2  # following and reminded: told once

    progress = await client.get(f"/api/spaces/{space_id}/notified", headers=host.headers)
    body = progress.json()
    assert body["followers"] == 1 and body["reminders"] == 2
    live = body["announcements"]["space_live"]
    assert live["notified"] == 2 and live["done"] is True and live["paced"] is True
    assert_error(await client.get(f"/api/spaces/{space_id}/notified", headers=fan.headers), 403)


async def test_reminders_only_for_spaces_not_started(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "famous")
    fan = await sign_up(client, "fan")
    space = await live_space(client, host)
    assert_error(
        await client.post(f"/api/spaces/{space['id']}/reminders", headers=fan.headers),
        409,
        "not_scheduled",
    )
    assert_error(await client.post("/api/spaces/not-an-id/reminders", headers=fan.headers), 404)


async def test_the_feed_pages_newest_first(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "famous")
    fan = await sign_up(client, "fan")
    await client.post("/api/users/famous/follow", headers=fan.headers)
    for _ in range(3):
        await live_space(client, host)
    entries = await feed_of(client, fan, 3)
    ids = [entry["id"] for entry in entries]
    assert ids == sorted(ids, reverse=True)
    page = await client.get("/api/me/notifications", headers=fan.headers, params={"limit": 2})
    assert [e["id"] for e in page.json()["notifications"]] == ids[:2]
    rest = await client.get(
        "/api/me/notifications",
        headers=fan.headers,
        params={"limit": 2, "before": page.json()["next_before"]},
    )
    assert [e["id"] for e in rest.json()["notifications"]] == ids[2:]
    assert_error(
        await client.get("/api/me/notifications", headers=fan.headers, params={"limit": 0}), 422
    )
    assert_error(await client.get("/api/me/notifications"), 401)
