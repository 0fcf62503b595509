"""Spam costs its sender: per-address and per-account allowances on sign-up, sign-in,
space creation and reactions; a cap on one host's open spaces; and a listing where
live spaces cannot be pushed out by upcoming ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from http_helpers import Account, assert_error, live_space, sign_up
from townhall.config import WriteLimits
from townhall.domain.errors import TooManyRequests
from townhall.service.write_limits import WriteLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_sign_ins_are_limited_per_account_from_any_address() -> None:
    clock = Clock()
    limiter = WriteLimiter(replace(WriteLimits(), sign_ins_per_account_per_minute=3), clock)
    for n in range(3):
        limiter.sign_in(f"10.0.{n}.1", "Victim")
    with pytest.raises(TooManyRequests) as refused:
        limiter.sign_in("10.9.9.9", "victim")
    assert refused.value.retry_after_s >= 1 and "account" in refused.value.message
    limiter.sign_in("10.9.9.9", "someone_else")
    clock.now += 20.0  # a third of a minute: one more try
    limiter.sign_in("10.9.9.9", "victim")


def test_a_refusal_takes_nothing_from_the_other_allowance() -> None:
    clock = Clock()
    limits = replace(WriteLimits(), spaces_per_account_per_hour=1, spaces_per_address_per_hour=2)
    limiter = WriteLimiter(limits, clock)
    limiter.create_space("10.0.0.1", "ann")
    with pytest.raises(TooManyRequests):
        limiter.create_space("10.0.0.1", "ann")
    limiter.create_space("10.0.0.1", "bob"), "ann's refusal did not spend the address's"
    with pytest.raises(TooManyRequests):
        limiter.create_space("10.0.0.1", "cid")


def test_zero_disables_a_limit() -> None:
    limiter = WriteLimiter(replace(WriteLimits(), reactions_per_address_per_minute=0), Clock())
    for _ in range(1_000):
        limiter.react("10.0.0.1", None)


@pytest.fixture
def settings(settings):
    return replace(
        settings,
        limits=replace(
            settings.limits,
            sign_ups_per_address_per_hour=4,
            spaces_per_account_per_hour=5,
            reactions_per_address_per_minute=5,
            open_spaces_per_host=3,
        ),
    )


async def test_sign_ups_from_one_address_are_limited(client: httpx.AsyncClient) -> None:
    for n in range(4):
        await client.post("/api/users", json={"username": f"user_{n}", "password": "long enough"})
    refused = await client.post(
        "/api/users", json={"username": "user_9", "password": "long enough"}
    )
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1


async def test_reactions_from_one_address_are_limited(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    statuses = [
        (
            await client.post(f"/api/spaces/{space['id']}/reactions", json={"emoji": "🔥"})
        ).status_code
        for _ in range(8)
    ]
    assert statuses == [202] * 5 + [429] * 3


async def test_a_host_has_a_few_open_spaces_at_most(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    made = [
        await client.post("/api/spaces", json={"title": f"t{n}"}, headers=host.headers)
        for n in range(4)
    ]
    assert [response.status_code for response in made] == [201, 201, 201, 409]
    assert_error(made[-1], 409, "too_many_spaces")
    first = made[0].json()["id"]
    await client.post(f"/api/spaces/{first}/start", headers=host.headers)
    await client.post(f"/api/spaces/{first}/end", headers=host.headers)
    again = await client.post("/api/spaces", json={"title": "again"}, headers=host.headers)
    assert again.status_code == 201, "an ended space frees its place"
    too_fast = await client.post("/api/spaces", json={"title": "fifth"}, headers=host.headers)
    assert_error(too_fast, 429, "rate_limited")


async def _upcoming(client: httpx.AsyncClient, host: Account, days: float) -> str:
    when = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    created = await client.post(
        "/api/spaces",
        json={"title": f"in {days} days", "scheduled_for": when},
        headers=host.headers,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def test_upcoming_spam_does_not_push_live_spaces_out(client: httpx.AsyncClient) -> None:
    hosts = [await sign_up(client, f"host_{n}") for n in range(3)]
    live = [(await live_space(client, host))["id"] for host in hosts[:2]]
    soonest_first = []
    for n, host in enumerate(hosts):
        for days in (5 - n, 2 + n / 10):
            soonest_first.append((days, await _upcoming(client, host, days)))
    soonest_first = [space_id for _, space_id in sorted(soonest_first)]
    listing = (await client.get("/api/spaces", params={"limit": 2})).json()
    assert [space["id"] for space in listing["live"]] == live[::-1], "newest start first"
    assert listing["next_live_offset"] is None
    assert [space["id"] for space in listing["upcoming"]] == soonest_first[:2]
    seen = []
    offset: int | None = 0
    while offset is not None:
        page = (
            await client.get("/api/spaces", params={"limit": 2, "upcoming_offset": offset})
        ).json()
        seen += [space["id"] for space in page["upcoming"]]
        offset = page["next_upcoming_offset"]
    assert seen == soonest_first
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"live_offset": -1}):
        response = await client.get("/api/spaces", params=bad)
        assert_error(response, 422, "invalid_" + next(iter(bad)))
