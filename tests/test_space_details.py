"""The space itself: the host edits title, description, pinned link and topics; mutes
everyone at once; listeners see it all in the snapshot, on every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest

from http_helpers import assert_error, live_space, sign_up
from test_store_contract import T0, _host, _space
from townhall.domain.errors import Forbidden, Invalid
from townhall.domain.space_details import check_pinned_url, check_topics, edit_details
from townhall.domain.spaces import Space, SpaceState, User
from townhall.domain.stage import Role, Stage
from townhall.state.codec import space_from_json, space_to_json
from townhall.store import SqlStore


def test_only_web_links_can_be_pinned() -> None:
    assert check_pinned_url(" https://example.org/a?b=1 ") == "https://example.org/a?b=1"
    assert check_pinned_url(None) is None and check_pinned_url("") is None
    for bad in ("javascript:alert(1)", "data:text/html,x", "ftp://x.org", "https://", "//x.org",
                "https://exa mple.org", 42):  # fmt: skip
        with pytest.raises(Invalid):
            check_pinned_url(bad)


def test_topics_are_short_distinct_and_few() -> None:
    assert check_topics(["Music", " jazz  age ", "music", "C++"]) == ("Music", "jazz age", "C++")
    for bad in (["a,b"], [""], ["x" * 33], [f"t{n}" for n in range(6)], "music", [3]):
        with pytest.raises(Invalid):
            check_topics(bad)


def test_only_the_host_edits_and_not_after_the_end() -> None:
    host = User("h", "host")
    space = Space("s", "Old", host, SpaceState.LIVE, T0)
    edited = edit_details(space, "h", title="  New   title ", topics=["a"], pinned_url=None)
    assert (edited.title, edited.topics, edited.description) == ("New title", ("a",), "")
    with pytest.raises(Forbidden):
        edit_details(space, "someone", title="Mine")
    with pytest.raises(Exception, match="ended"):
        edit_details(space.end(T0), "h", title="Late")


def test_mute_all_mutes_whom_the_actor_may_mute() -> None:
    stage = Stage(host_id="h")
    stage.put_on_stage("h", "c", Role.COHOST)
    for speaker in ("s1", "s2"):
        stage.put_on_stage("h", speaker, Role.SPEAKER)
    assert stage.mute_all("c") == 2  # a co-host: the speakers only
    assert not stage.is_muted("h") and not stage.is_muted("c")
    assert stage.mute_all("h") == 1 and stage.is_muted("c") and not stage.is_muted("h")
    with pytest.raises(Forbidden):
        stage.mute_all("s1")


def test_the_details_survive_the_shared_state() -> None:
    space = Space("s", "T", User("h", "host"), SpaceState.LIVE, T0, description="About",
                  pinned_url="https://x.org", topics=("a", "b"))  # fmt: skip
    assert space_from_json(space_to_json(space)) == space


async def test_the_details_survive_the_store(store: SqlStore) -> None:
    host = await _host(store)
    space = replace(_space("s1", host, SpaceState.LIVE), description="Line one\nline two",
                    pinned_url="https://example.org", topics=("jazz", "C++"))  # fmt: skip
    await store.save_space(space)
    assert await store.get_space("s1") == space
    cleared = replace(space, pinned_url=None, topics=())
    await store.save_space(cleared)
    assert await store.get_space("s1") == cleared


async def test_the_host_edits_the_space_and_listeners_see_it(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "detail_host")
    guest = await sign_up(client, "detail_guest")
    space = await live_space(client, host, title="First title")
    url = f"/api/spaces/{space['id']}"
    edit = {
        "title": "Better title",
        "description": "What we talk about",
        "pinned_url": "https://example.org/agenda",
        "topics": ["Audio", "Open source"],
    }
    edited = await client.patch(url, json=edit, headers=host.headers)
    assert edited.status_code == 200, edited.text
    assert edited.headers["cache-control"] == "no-store"
    seen = (await client.get(url)).json()
    for name, value in edit.items():
        assert seen[name] == value
    unpinned = await client.patch(url, json={"pinned_url": None}, headers=host.headers)
    assert unpinned.json()["pinned_url"] is None
    assert unpinned.json()["topics"] == ["Audio", "Open source"]  # what was not sent stays

    assert_error(await client.patch(url, json={"title": "Mine"}, headers=guest.headers), 403)
    assert_error(await client.patch(url, json={"title": "Mine"}), 401)
    for bad, code in (
        ({"pinned_url": "javascript:alert(1)"}, "invalid_pinned_url"),
        ({"topics": ["a,b"]}, "invalid_topics"),
        ({"topics": ["x" * 40]}, "invalid_topics"),
        ({"title": ""}, "invalid_title"),
        ({"title": None}, "invalid_title"),
        ({"description": "x" * 1001}, "invalid_description"),
    ):
        assert_error(await client.patch(url, json=bad, headers=host.headers), 422, code)
    await client.post(f"{url}/end", headers=host.headers)
    assert_error(await client.patch(url, json={"title": "Late"}, headers=host.headers), 409)


async def test_the_host_mutes_every_speaker_at_once(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "mute_host")
    speakers = [await sign_up(client, f"mute_speaker_{n}") for n in range(2)]
    space = await live_space(client, host)
    url = f"/api/spaces/{space['id']}"
    for speaker in speakers:
        placed = await client.post(f"{url}/stage", json={"user_id": speaker.id, "role": "speaker"},
                                   headers=host.headers)  # fmt: skip
        assert placed.status_code == 200, placed.text
    assert_error(await client.post(f"{url}/mute-all", headers=speakers[0].headers), 403)
    muted = await client.post(f"{url}/mute-all", headers=host.headers)
    assert muted.status_code == 200, muted.text
    seats = {seat["user"]["username"]: seat["muted"] for seat in muted.json()["stage"]}
    assert seats == {"mute_host": False, "mute_speaker_0": True, "mute_speaker_1": True}


async def _listen(http: httpx.AsyncClient, space_id: str, headers: dict[str, str]) -> None:
    """Joins and reads the live stream, as a player does, until cancelled."""
    joined = await http.post(f"/api/spaces/{space_id}/join", json={}, headers=headers)
    assert joined.status_code == 200 and "ticket" in joined.json(), joined.text
    async with http.stream("GET", joined.json()["live_url"]) as response:
        assert response.status_code == 200
        async for _ in response.aiter_raw():
            pass


@pytest.mark.slow
async def test_the_host_sees_signed_in_listeners_by_name_and_others_counted(server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        host = await sign_up(http, "list_host")
        ann = await sign_up(http, "ann_listens")
        bob = await sign_up(http, "bob_listens")
        space = await live_space(http, host)
        players = [
            asyncio.create_task(_listen(http, space["id"], headers))
            for headers in (ann.headers, bob.headers, {}, {}, {})
        ]
        url = f"/api/spaces/{space['id']}/listeners"
        for _ in range(50):  # the count reaches the snapshot at the next tick (1 s)
            found = await http.get(url, headers=host.headers)
            assert found.status_code == 200, found.text
            if found.json()["listeners"] == 5:
                break
            await asyncio.sleep(0.2)
        assert found.json() == {
            "listeners": 5,
            "signed_in": [{"id": ann.id, "username": "ann_listens"},
                          {"id": bob.id, "username": "bob_listens"}],
            "signed_in_count": 2,
            "anonymous": 3,
        }  # fmt: skip
        assert_error(await http.get(url, headers=ann.headers), 403)
        assert_error(await http.get(url), 401)
        for player in players:
            player.cancel()
        await asyncio.gather(*players, return_exceptions=True)
