"""Spaces over HTTP: scheduling, lifecycle, listing, snapshot caching, reactions, join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from http_helpers import assert_error, live_space, sign_up


async def test_create_ready_then_start_and_end(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    created = await client.post(
        "/api/spaces", json={"title": "  Launch   day "}, headers=host.headers
    )
    assert created.status_code == 201
    space = created.json()
    assert space["title"] == "Launch day"
    assert space["state"] == "scheduled" and space["scheduled_for"] is None
    assert space["host"] == {"id": host.id, "username": "host"}
    assert space["stage"][0]["role"] == "host"
    started = await client.post(f"/api/spaces/{space['id']}/start", headers=host.headers)
    assert started.json()["state"] == "live" and started.json()["started_at"]
    assert_error(
        await client.post(f"/api/spaces/{space['id']}/start", headers=host.headers),
        409,
        "already_live",
    )
    ended = await client.post(f"/api/spaces/{space['id']}/end", headers=host.headers)
    assert ended.json()["state"] == "ended" and ended.json()["ended_at"]
    assert_error(
        await client.post(f"/api/spaces/{space['id']}/start", headers=host.headers),
        409,
        "space_ended",
    )
    assert_error(
        await client.post(f"/api/spaces/{space['id']}/end", headers=host.headers),
        409,
        "space_ended",
    )


async def test_schedule_window(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    now = datetime.now(UTC)
    soon = (now + timedelta(days=3)).isoformat()
    ok = await client.post(
        "/api/spaces", json={"title": "t", "scheduled_for": soon}, headers=host.headers
    )
    assert ok.status_code == 201 and ok.json()["scheduled_for"].startswith(soon[:16])
    for when in [
        (now - timedelta(minutes=1)).isoformat(),
        (now + timedelta(days=15)).isoformat(),
        "next tuesday",
        12,
    ]:
        refused = await client.post(
            "/api/spaces", json={"title": "t", "scheduled_for": when}, headers=host.headers
        )
        assert_error(refused, 422, "invalid_scheduled_for")


async def test_listing_live_and_upcoming(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    live = await live_space(client, host, title="On now")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    upcoming = await client.post(
        "/api/spaces", json={"title": "Later", "scheduled_for": later}, headers=host.headers
    )
    listing = (await client.get("/api/spaces")).json()
    assert [s["id"] for s in listing["live"]] == [live["id"]]
    assert upcoming.json()["id"] in [s["id"] for s in listing["upcoming"]]


async def test_only_host_starts_and_ends(client: httpx.AsyncClient) -> None:
    host, other = await sign_up(client, "host"), await sign_up(client, "other")
    space = (await client.post("/api/spaces", json={"title": "t"}, headers=host.headers)).json()
    assert_error(
        await client.post(f"/api/spaces/{space['id']}/start", headers=other.headers),
        403,
        "forbidden",
    )
    assert_error(await client.post(f"/api/spaces/{space['id']}/start"), 401)
    await client.post(f"/api/spaces/{space['id']}/start", headers=host.headers)
    assert_error(await client.post(f"/api/spaces/{space['id']}/end", headers=other.headers), 403)


async def test_snapshot_etag_and_cache_headers(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    first = await client.get(f"/api/spaces/{space['id']}")
    assert first.status_code == 200
    assert "max-age=1" in first.headers["cache-control"]
    assert "stale-while-revalidate" in first.headers["cache-control"]
    etag = first.headers["etag"]
    again = await client.get(f"/api/spaces/{space['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


async def test_unknown_space_everywhere(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    for method, path in [
        ("GET", "/api/spaces/{}"),
        ("POST", "/api/spaces/{}/start"),
        ("POST", "/api/spaces/{}/join"),
        ("GET", "/api/spaces/{}/recording"),
        ("POST", "/api/spaces/{}/speak-requests"),
    ]:
        for space_id in ("abcdefghijkm", "not-even-an-id", "x" * 500):
            response = await client.request(method, path.format(space_id), headers=host.headers)
            assert_error(response, 404, "space_not_found")


async def test_reactions_are_aggregated(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    for emoji in ["🔥", "🔥", "👏"]:
        sent = await client.post(f"/api/spaces/{space['id']}/reactions", json={"emoji": emoji})
        assert sent.status_code == 202
    assert_error(
        await client.post(f"/api/spaces/{space['id']}/reactions", json={"emoji": "💩"}),
        422,
        "invalid_emoji",
    )
    await client._transport.app.services.spaces.tick()  # type: ignore[attr-defined]
    snapshot = (await client.get(f"/api/spaces/{space['id']}")).json()
    assert snapshot["reactions"] == {"🔥": 2, "👏": 1}


async def test_join_gives_a_ticket_for_live_spaces_only(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    draft = (await client.post("/api/spaces", json={"title": "t"}, headers=host.headers)).json()
    assert_error(await client.post(f"/api/spaces/{draft['id']}/join"), 409, "space_not_live")
    space = await live_space(client, host)
    joined = await client.post(f"/api/spaces/{space['id']}/join")
    assert joined.status_code == 200
    body = joined.json()
    assert body["ticket"] and body["ticket"] in body["live_url"]
    assert body["hls_url"].endswith(f"/hls/{space['id']}/index.m3u8")


async def test_live_stream_refuses_missing_forged_and_foreign_tickets(
    client: httpx.AsyncClient,
) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    other = await live_space(client, host, title="other")
    path = f"/live/{space['id']}.aac"
    assert_error(await client.get(path), 401, "ticket_required")
    forged = await client.get(path, params={"ticket": "AAAA.forged"})
    assert forged.status_code == 403 and forged.json()["error"]["message"]
    foreign = (await client.post(f"/api/spaces/{other['id']}/join")).json()["ticket"]
    wrong_space = await client.get(path, params={"ticket": foreign})
    assert wrong_space.status_code == 403


async def test_pages_are_served(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    for path in ["/", f"/s/{space['id']}", f"/s/{space['id']}/studio", f"/s/{space['id']}/replay"]:
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
