"""Every stage rule enforced over HTTP, with the reason in the refusal."""

from __future__ import annotations

import httpx

from http_helpers import Account, assert_error, live_space, sign_up


async def _people(client: httpx.AsyncClient, *names: str) -> list[Account]:
    return [await sign_up(client, name) for name in names]


def _roles(snapshot: dict) -> dict[str, str]:
    return {seat["user"]["username"]: seat["role"] for seat in snapshot["stage"]}


async def test_request_approve_decline_flow(client: httpx.AsyncClient) -> None:
    host, ann, bob = await _people(client, "host", "ann", "bob")
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    assert (await client.post(f"{base}/speak-requests", headers=ann.headers)).status_code == 202
    assert (await client.post(f"{base}/speak-requests", headers=bob.headers)).status_code == 202
    assert_error(await client.post(f"{base}/speak-requests"), 401)
    queue = (await client.get(f"{base}/requests", headers=host.headers)).json()["requests"]
    assert [r["username"] for r in queue] == ["ann", "bob"]
    assert_error(await client.get(f"{base}/requests", headers=ann.headers), 403)
    approved = await client.post(
        f"{base}/stage", json={"user_id": ann.id, "role": "speaker"}, headers=host.headers
    )
    assert _roles(approved.json()) == {"host": "host", "ann": "speaker"}
    declined = await client.delete(f"{base}/speak-requests/{bob.id}", headers=host.headers)
    assert declined.status_code == 204
    assert (await client.get(f"{base}/requests", headers=host.headers)).json()["requests"] == []
    me = (await client.get(f"{base}/me", headers=ann.headers)).json()
    assert me["role"] == "speaker"


async def test_invite_cohost_and_limits(client: httpx.AsyncClient) -> None:
    host, *others = await _people(client, "host", "cat", "cid", "cob")
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    for person in others[:2]:
        ok = await client.post(
            f"{base}/stage", json={"user_id": person.id, "role": "cohost"}, headers=host.headers
        )
        assert ok.status_code == 200
    full = await client.post(
        f"{base}/stage", json={"user_id": others[2].id, "role": "cohost"}, headers=host.headers
    )
    assert_error(full, 409, "stage_full")
    by_cohost = await client.post(
        f"{base}/stage", json={"user_id": others[2].id, "role": "cohost"}, headers=others[0].headers
    )
    assert_error(by_cohost, 403)
    as_speaker = await client.post(
        f"{base}/stage",
        json={"user_id": others[2].id, "role": "speaker"},
        headers=others[0].headers,
    )
    assert as_speaker.status_code == 200


async def test_mute_remove_and_self_unmute(client: httpx.AsyncClient) -> None:
    host, ann, co = await _people(client, "host", "ann", "coh")
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    await client.post(
        f"{base}/stage", json={"user_id": ann.id, "role": "speaker"}, headers=host.headers
    )
    await client.post(
        f"{base}/stage", json={"user_id": co.id, "role": "cohost"}, headers=host.headers
    )
    muted = await client.post(f"{base}/stage/{ann.id}/mute", headers=co.headers)
    assert [s["muted"] for s in muted.json()["stage"] if s["user"]["id"] == ann.id] == [True]
    assert_error(
        await client.post(f"{base}/stage/{ann.id}/unmute", headers=host.headers), 403, "forbidden"
    )
    unmuted = await client.post(f"{base}/stage/{ann.id}/unmute", headers=ann.headers)
    assert [s["muted"] for s in unmuted.json()["stage"] if s["user"]["id"] == ann.id] == [False]
    assert_error(await client.post(f"{base}/stage/{host.id}/mute", headers=co.headers), 403)
    removed = await client.delete(f"{base}/stage/{ann.id}", headers=co.headers)
    assert "ann" not in _roles(removed.json())
    assert_error(
        await client.delete(f"{base}/stage/{ann.id}", headers=co.headers), 404, "not_on_stage"
    )
    assert_error(await client.delete(f"{base}/stage/{co.id}", headers=ann.headers), 403)


async def test_removed_listener_cannot_rejoin(client: httpx.AsyncClient) -> None:
    host, ann, co = await _people(client, "host", "ann", "coh")
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    await client.post(
        f"{base}/stage", json={"user_id": co.id, "role": "cohost"}, headers=host.headers
    )
    assert (await client.post(f"{base}/join", headers=ann.headers)).status_code == 200
    assert_error(
        await client.post(f"{base}/removals", json={"user_id": ann.id}, headers=co.headers), 403
    )
    removed = await client.post(f"{base}/removals", json={"user_id": ann.id}, headers=host.headers)
    assert removed.status_code == 200
    assert_error(await client.post(f"{base}/join", headers=ann.headers), 403, "removed")
    assert_error(await client.post(f"{base}/speak-requests", headers=ann.headers), 403, "removed")
    assert (await client.get(f"{base}/me", headers=ann.headers)).json()["removed"] is True


async def test_invited_only_requests(client: httpx.AsyncClient) -> None:
    host, ann, bob = await _people(client, "host", "ann", "bob")
    space = await live_space(client, host, speak_policy="invited")
    base = f"/api/spaces/{space['id']}"
    assert_error(
        await client.post(f"{base}/speak-requests", headers=ann.headers), 403, "not_invited"
    )
    invited = await client.post(
        f"{base}/invitations", json={"username": "ann"}, headers=host.headers
    )
    assert invited.status_code == 201 and invited.json()["invited"]["id"] == ann.id
    nobody = await client.post(
        f"{base}/invitations", json={"username": "zed"}, headers=host.headers
    )
    assert_error(nobody, 404, "user_not_found")
    assert (await client.post(f"{base}/speak-requests", headers=ann.headers)).status_code == 202
    assert_error(
        await client.post(f"{base}/invitations", json={"user_id": ann.id}, headers=bob.headers), 403
    )


async def test_offer_requires_a_seat_and_a_valid_sdp(client: httpx.AsyncClient) -> None:
    host, ann = await _people(client, "host", "ann")
    space = await live_space(client, host)
    offer = f"/api/spaces/{space['id']}/stage/offer"
    assert_error(
        await client.post(offer, json={"type": "offer", "sdp": "v=0"}, headers=ann.headers), 403
    )
    assert_error(
        await client.post(offer, json={"type": "answer", "sdp": "v=0"}, headers=host.headers),
        422,
        "bad_sdp",
    )
    assert_error(
        await client.post(offer, json={"type": "offer", "sdp": "garbage"}, headers=host.headers),
        422,
        "bad_sdp",
    )
    assert_error(
        await client.post(offer, json={"type": "offer"}, headers=host.headers), 422, "bad_sdp"
    )


async def test_stage_actions_on_ended_space(client: httpx.AsyncClient) -> None:
    host, ann = await _people(client, "host", "ann")
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    await client.post(f"{base}/end", headers=host.headers)
    for method, path, body in [
        ("POST", f"{base}/speak-requests", None),
        ("POST", f"{base}/stage", {"user_id": ann.id, "role": "speaker"}),
        ("POST", f"{base}/reactions", {"emoji": "🔥"}),
        ("POST", f"{base}/join", None),
        ("POST", f"{base}/stage/offer", {"type": "offer", "sdp": "v=0"}),
    ]:
        who = ann if "speak" in path else host
        response = await client.request(method, path, json=body, headers=who.headers)
        assert_error(response, 409, "space_ended")


async def test_unknown_user_ids(client: httpx.AsyncClient) -> None:
    host = (await _people(client, "host"))[0]
    space = await live_space(client, host)
    base = f"/api/spaces/{space['id']}"
    for body in [{"user_id": "nobody", "role": "speaker"}, {"user_id": 7, "role": "speaker"}]:
        response = await client.post(f"{base}/stage", json=body, headers=host.headers)
        assert response.status_code in (404, 422)
        assert response.json()["error"]["message"]
    bad_role = await client.post(
        f"{base}/stage", json={"user_id": host.id, "role": "king"}, headers=host.headers
    )
    assert_error(bad_role, 422, "invalid_role")
    assert_error(
        await client.post(f"{base}/stage/nobody/mute", headers=host.headers), 404, "not_on_stage"
    )
