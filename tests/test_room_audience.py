"""The audience every listener sees: signed-in listeners' faces and how many others.

Public (ids and usernames only), bounded (the state keeps at most AUDIENCE_REPORT_MAX
faces per space), following joins and leaves within a couple of ticks, and served from
the snapshot: names are looked up once per user per node, never per listener poll.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from http_helpers import live_space, sign_up
from test_space_details import _listen
from townhall.audience.snapshot import audience_json
from townhall.domain.spaces import User
from townhall.service.ids import signed_in_ids
from townhall.service.listener_names import ListenerNames

FOLLOW_TIMEOUT_S = 15.0
"""Generous: the snapshot follows at the next tick (1 s); a loaded CI machine is slower."""


def test_people_on_stage_are_not_counted_twice_and_the_rest_are_others() -> None:
    ann, bob = User("u1", "ann"), User("u2", "bob")
    assert audience_json([ann, bob], stage_ids=["u2"], listeners=5) == {
        "people": [{"id": "u1", "username": "ann"}],
        "others": 4,
    }
    assert audience_json([], stage_ids=[], listeners=0) == {"people": [], "others": 0}


class CountingUsers:
    """A store that knows two users and counts how often it is asked."""

    def __init__(self) -> None:
        self.asked = 0
        self.users = {"abcdefghijkm": User("abcdefghijkm", "ann")}

    async def get_user(self, user_id: str) -> User | None:
        self.asked += 1
        return self.users.get(user_id)


async def test_each_user_is_looked_up_once_and_anonymous_ids_never() -> None:
    store = CountingUsers()
    names = ListenerNames(store)  # type: ignore[arg-type]
    ids = ["anon-7f3a", "abcdefghijkm", "zzzzzzzzzzzz"]
    signed_in = signed_in_ids(ids, scan_at_most=10)
    assert signed_in == ["abcdefghijkm", "zzzzzzzzzzzz"]
    for _ in range(5):
        assert await names.people(signed_in, limit=24) == [User("abcdefghijkm", "ann")]
    assert store.asked == 2, "one lookup per id, the unknown one remembered too"
    assert await names.people(signed_in, limit=0) == []


async def _audience_when(
    http: httpx.AsyncClient, space_id: str, done: Any
) -> dict[str, Any]:
    """Polls the public snapshot (no account) until `done(audience)` holds."""
    deadline = asyncio.get_running_loop().time() + FOLLOW_TIMEOUT_S
    while True:
        snapshot = (await http.get(f"/api/spaces/{space_id}")).json()
        if done(snapshot["audience"]) or asyncio.get_running_loop().time() > deadline:
            return dict(snapshot["audience"])
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_everyone_sees_signed_in_listeners_and_a_count_of_the_others(server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        host = await sign_up(http, "aud_host")
        ann = await sign_up(http, "aud_ann")
        bob = await sign_up(http, "aud_bob")
        space = await live_space(http, host)
        assert (await http.get(f"/api/spaces/{space['id']}")).json()["audience"] == {
            "people": [],
            "others": 0,
        }
        anns = asyncio.create_task(_listen(http, space["id"], ann.headers))
        others = [
            asyncio.create_task(_listen(http, space["id"], headers))
            for headers in (bob.headers, {}, {})
        ]
        try:
            seen = await _audience_when(
                http, space["id"], lambda audience: len(audience["people"]) == 2
            )
            assert sorted(seen["people"], key=lambda p: p["username"]) == [
                {"id": ann.id, "username": "aud_ann"},
                {"id": bob.id, "username": "aud_bob"},
            ]
            assert seen["others"] == 2, seen
            anns.cancel()
            seen = await _audience_when(
                http, space["id"], lambda audience: len(audience["people"]) == 1
            )
            assert seen == {"people": [{"id": bob.id, "username": "aud_bob"}], "others": 2}
        finally:
            for player in (anns, *others):
                player.cancel()
            await asyncio.gather(anns, *others, return_exceptions=True)
