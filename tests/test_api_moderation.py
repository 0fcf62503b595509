"""Moderation over HTTP: reports, the queue, decisions and their statements of reasons,
suspensions, hosts' blocks, the audit chain and the transparency export."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import NO_LAG_DOOR
from http_helpers import Account, assert_error, live_space, sign_up
from townhall.config import load_settings
from townhall.domain.moderation import ReportReason, audit_entry_text, chain_hash
from townhall.service.moderation import REPORTS_PER_HOUR
from townhall.store.moderation import SqlModerationStore

ADMIN_TOKEN = "operator-secret-" + "m" * 32
OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "correct horse"


@pytest.fixture
def settings(tmp_path, store_env, state_backend):
    env = {
        **store_env,
            **NO_LAG_DOOR,
        "TOWNHALL_ARGON2_TIME_COST": "1",
        "TOWNHALL_ARGON2_MEMORY_KIB": "8192",
        "TOWNHALL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TOWNHALL_STAGE_ICE_HOST_ADDRESSES": "127.0.0.1",
    }
    return load_settings(env, data_dir=tmp_path / "data", port=0, state=state_backend)


def _app(client: httpx.AsyncClient) -> Any:
    return client._transport.app  # type: ignore[attr-defined]


async def _moderator(client: httpx.AsyncClient, name: str = "mod") -> Account:
    account = await sign_up(client, name)
    granted = await client.post(
        "/api/moderation/moderators", json={"user_id": account.id}, headers=OPERATOR
    )
    assert granted.status_code == 201, granted.text
    return account


async def _act(
    client: httpx.AsyncClient, headers: dict[str, str], action: str, target_id: str, **extra: Any
) -> httpx.Response:
    body = {"action": action, "target_id": target_id, "ground": "harassment",
            "explanation": "Repeated abuse of other listeners, see report.", **extra}  # fmt: skip
    return await client.post("/api/moderation/actions", json=body, headers=headers)


async def test_a_report_needs_a_reason_from_the_list(client: httpx.AsyncClient) -> None:
    ann = await sign_up(client, "ann")
    bad = await client.post("/api/reports", json={"user_id": ann.id, "reason": "boring"})
    error = assert_error(bad, 422, "invalid_reason")
    for reason in ReportReason:
        assert f"'{reason.value}'" in error["message"]
    both = {"user_id": ann.id, "space_id": ann.id, "reason": "spam"}
    assert_error(await client.post("/api/reports", json=both), 422, "invalid_subject")
    assert_error(await client.post("/api/reports", json={"reason": "spam"}), 422, "invalid_subject")
    nobody = {"user_id": "a" * 12, "reason": "spam"}
    assert_error(await client.post("/api/reports", json=nobody), 404, "user_not_found")
    long = {"user_id": ann.id, "reason": "spam", "details": "x" * 2001}
    assert_error(await client.post("/api/reports", json=long), 422, "invalid_details")
    nul = {"user_id": ann.id, "reason": "spam", "details": "a\u0000b"}
    assert_error(await client.post("/api/reports", json=nul), 422, "invalid_details")
    filed = await client.post(
        "/api/reports", json={"user_id": ann.id, "reason": "spam", "details": "buy now"}
    )
    assert filed.status_code == 201, filed.text
    assert filed.json()["reason"] == "spam" and filed.json()["reporter_id"] is None


async def test_reports_from_one_address_are_bounded(client: httpx.AsyncClient) -> None:
    ann = await sign_up(client, "ann")
    body = {"user_id": ann.id, "reason": "spam"}
    for _ in range(REPORTS_PER_HOUR):
        assert (await client.post("/api/reports", json=body)).status_code == 201
    refused = await client.post("/api/reports", json=body)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1


async def test_only_moderators_and_the_operator_see_the_queue(client: httpx.AsyncClient) -> None:
    ann = await sign_up(client, "ann")
    await client.post(
        "/api/reports", json={"user_id": ann.id, "reason": "hate"}, headers=ann.headers
    )
    assert_error(await client.get("/api/moderation/reports"), 401)
    assert_error(await client.get("/api/moderation/reports", headers=ann.headers), 403,
                 "not_a_moderator")  # fmt: skip
    wrong = {"Authorization": "Bearer " + "w" * 48}
    assert_error(await client.get("/api/moderation/reports", headers=wrong), 403, "forbidden")
    mod = await _moderator(client)
    for headers in (mod.headers, OPERATOR):
        queue = await client.get("/api/moderation/reports", headers=headers)
        assert queue.status_code == 200, queue.text
        [report] = queue.json()["reports"]
        assert report["reason"] == "hate" and report["reporter_id"] == ann.id
        assert report["subject_username"] == "ann", "the moderator sees whom it is about"
    assert_error(
        await client.post("/api/moderation/moderators", json={"user_id": ann.id},
                          headers=mod.headers), 403)  # fmt: skip
    revoked = await client.delete(f"/api/moderation/moderators/{mod.id}", headers=OPERATOR)
    assert revoked.status_code == 204
    assert_error(await client.get("/api/moderation/reports", headers=mod.headers), 403)


async def test_ending_a_space_sends_its_host_a_statement_of_reasons(
    client: httpx.AsyncClient,
) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    report = await client.post("/api/reports", json={"space_id": space["id"], "reason": "hate"})
    mod = await _moderator(client)
    acted = await _act(client, mod.headers, "end_space", space["id"],
                       report_id=report.json()["id"])  # fmt: skip
    assert acted.status_code == 201, acted.text
    assert (await client.get(f"/api/spaces/{space['id']}")).json()["state"] == "ended"
    inbox = (await client.get("/api/me/statements", headers=host.headers)).json()["statements"]
    [statement] = inbox
    assert statement["action"] == "end_space" and statement["target_id"] == space["id"]
    assert statement["ground"] == "harassment" and statement["report_id"] == report.json()["id"]
    assert statement["explanation"].startswith("Repeated abuse")
    assert statement["automated"] is False and "contest" in statement["redress"]
    queue = await client.get("/api/moderation/reports", headers=mod.headers)
    assert queue.json()["reports"] == []
    assert (await client.get("/api/me/statements", headers=mod.headers)).json() == {
        "statements": []
    }
    again = await _act(client, mod.headers, "end_space", space["id"])
    assert_error(again, 409, "already_ended")


async def test_a_suspended_user_is_signed_out_cannot_sign_in_and_is_told_why(
    client: httpx.AsyncClient,
) -> None:
    ann, other = await sign_up(client, "ann"), await sign_up(client, "other")
    hosting = await live_space(client, ann)
    speaking = await live_space(client, other, title="Ann speaks here")
    seat = {"user_id": ann.id, "role": "speaker"}
    await client.post(f"/api/spaces/{speaking['id']}/stage", json=seat, headers=other.headers)
    suspended = await _act(client, OPERATOR, "suspend_user", ann.id)
    assert suspended.status_code == 201, suspended.text
    assert (await client.get(f"/api/spaces/{hosting['id']}")).json()["state"] == "ended"
    stage = (await client.get(f"/api/spaces/{speaking['id']}")).json()["stage"]
    assert [seat["user"]["id"] for seat in stage] == [other.id]
    assert_error(await client.post("/api/spaces", json={"title": "x"}, headers=ann.headers), 401)
    sign_in = await client.post("/api/tokens", json={"username": "ann", "password": PASSWORD})
    error = assert_error(sign_in, 403, "suspended")
    assert error["statement"]["action"] == "suspend_user"
    assert error["statement"]["id"] == suspended.json()["id"]
    assert_error(await _act(client, OPERATOR, "suspend_user", ann.id), 409, "already_suspended")
    restored = await _act(client, OPERATOR, "restore_user", ann.id)
    assert restored.status_code == 201, restored.text
    token = await client.post("/api/tokens", json={"username": "ann", "password": PASSWORD})
    assert token.status_code == 201
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    inbox = (await client.get("/api/me/statements", headers=headers)).json()["statements"]
    assert [s["action"] for s in inbox] == ["restore_user", "suspend_user"]
    assert_error(await _act(client, OPERATOR, "restore_user", ann.id), 409, "not_suspended")


async def test_a_blocked_user_cannot_join_any_of_the_hosts_spaces(
    client: httpx.AsyncClient,
) -> None:
    host, ann, other = [await sign_up(client, name) for name in ("host", "ann", "other")]
    live = await live_space(client, host)
    join = f"/api/spaces/{live['id']}/join"
    assert (await client.post(join, headers=ann.headers)).status_code == 200
    blocked = await client.post("/api/me/blocks", json={"user_id": ann.id}, headers=host.headers)
    assert blocked.status_code == 201, blocked.text
    assert blocked.json() == {"blocked": [ann.id]}
    assert_error(await client.post(join, headers=ann.headers), 403, "removed")
    await client.post(f"/api/spaces/{live['id']}/end", headers=host.headers)
    later = await live_space(client, host, title="The next one")
    later_join = f"/api/spaces/{later['id']}/join"
    assert_error(await client.post(later_join, headers=ann.headers), 403, "removed")
    assert (await client.post(later_join, headers=other.headers)).status_code == 200
    elsewhere = await live_space(client, other, title="Someone else's")
    assert (
        await client.post(f"/api/spaces/{elsewhere['id']}/join", headers=ann.headers)
    ).status_code == 200
    assert_error(
        await client.post("/api/me/blocks", json={"user_id": host.id}, headers=host.headers),
        422, "cannot_block_self")  # fmt: skip
    unblocked = await client.delete(f"/api/me/blocks/{ann.id}", headers=host.headers)
    assert unblocked.status_code == 204
    await client.post(f"/api/spaces/{later['id']}/end", headers=host.headers)
    third = await live_space(client, host, title="Third")
    assert (
        await client.post(f"/api/spaces/{third['id']}/join", headers=ann.headers)
    ).status_code == 200


async def test_removing_a_clip_goes_through_the_clip_service(client: httpx.AsyncClient) -> None:
    host, ann = await sign_up(client, "host"), await sign_up(client, "ann")
    space = await live_space(client, host)
    await asyncio.sleep(1.5)  # the program has made some audio to clip
    made = await client.post(
        f"/api/spaces/{space['id']}/clips", json={"seconds": 1}, headers=ann.headers
    )
    assert made.status_code == 201, made.text
    clip = made.json()
    assert (await client.get(clip["url"])).status_code == 200
    removed = await _act(client, OPERATOR, "remove_clip", clip["id"])
    assert removed.status_code == 201, removed.text
    assert (await client.get(clip["url"])).status_code == 404
    inbox = (await client.get("/api/me/statements", headers=ann.headers)).json()["statements"]
    assert [(s["action"], s["target_id"]) for s in inbox] == [("remove_clip", clip["id"])]
    assert_error(await _act(client, OPERATOR, "remove_clip", clip["id"]), 404, "clip_not_found")


async def test_removing_a_recording(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host, record=True)
    await asyncio.sleep(1.5)
    await client.post(f"/api/spaces/{space['id']}/end", headers=host.headers)
    recording = f"/api/spaces/{space['id']}/recording"
    assert (await client.get(recording)).status_code == 200
    removed = await _act(client, OPERATOR, "remove_recording", space["id"])
    assert removed.status_code == 201, removed.text
    assert_error(await client.get(recording), 404, "no_recording")
    inbox = (await client.get("/api/me/statements", headers=host.headers)).json()["statements"]
    assert [s["action"] for s in inbox] == ["remove_recording"]
    assert_error(await _act(client, OPERATOR, "remove_recording", space["id"]), 404)


async def test_the_audit_log_records_every_action_and_detects_tampering(
    client: httpx.AsyncClient,
) -> None:
    host, ann = await sign_up(client, "host"), await sign_up(client, "ann")
    mod = await _moderator(client)
    space = await live_space(client, host)
    await client.post(f"/api/spaces/{space['id']}/join", headers=ann.headers)
    seat = {"user_id": ann.id, "role": "speaker"}
    await client.post(f"/api/spaces/{space['id']}/stage", json=seat, headers=host.headers)
    await client.post(f"/api/spaces/{space['id']}/stage/{ann.id}/mute", headers=host.headers)
    removal = {"user_id": ann.id}
    await client.post(f"/api/spaces/{space['id']}/removals", json=removal, headers=host.headers)
    await client.post("/api/me/blocks", json={"user_id": ann.id}, headers=host.headers)
    await client.post(f"/api/spaces/{space['id']}/end", headers=host.headers)
    await _act(client, mod.headers, "suspend_user", ann.id)

    page = await client.get("/api/moderation/audit", headers=mod.headers)
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("operator", "grant_moderator"),
        (host.id, "start_space"),
        (host.id, "put_on_stage"),
        (host.id, "mute"),
        (host.id, "remove_from_space"),
        (host.id, "block_user"),
        (host.id, "end_space"),
        (mod.id, "suspend_user"),
    ]
    assert entries[2]["details"] == {"user_id": ann.id, "role": "speaker"}
    assert entries[4]["details"] == {"user_id": ann.id}
    assert [e["prev_hash"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    as_csv = await client.get("/api/moderation/audit?format=csv", headers=mod.headers)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [row["hash"] for row in rows] == [e["hash"] for e in entries]
    verified = (await client.get("/api/moderation/audit/verify", headers=mod.headers)).json()
    checkpoint = {"seq": 8, "hash": entries[-1]["hash"]}
    assert verified == {"ok": True, "entries": 8, "head": entries[-1]["hash"],
                        "broken_at": None, "problem": None,
                        "checkpoint": checkpoint}  # fmt: skip

    store = _app(client).services.store
    await store.run(
        lambda db: db.execute(
            text("UPDATE audit_log SET entry = replace(entry, :a, :b) WHERE seq = 7"),
            {"a": "end_space", "b": "start_space"},
        )
    )
    broken = (await client.get("/api/moderation/audit/verify", headers=mod.headers)).json()
    assert broken["ok"] is False and broken["broken_at"] == 7


async def test_a_removed_or_rewritten_tail_of_the_audit_log_is_detected(
    client: httpx.AsyncClient,
) -> None:
    """Deleting the last entries, or re-hashing them, leaves a chain whose links all hold:
    only the head kept outside the table (in the shared state) tells."""
    mod = await _moderator(client)
    for name in ("ann", "bob", "cat"):
        await _act(client, mod.headers, "suspend_user", (await sign_up(client, name)).id)
    store = _app(client).services.store

    async def verify() -> dict[str, object]:
        answer = await client.get("/api/moderation/audit/verify", headers=mod.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    assert (await verify())["ok"] is True
    entries = (await client.get("/api/moderation/audit", headers=mod.headers)).json()["entries"]
    last = entries[-1]
    at = datetime.fromisoformat(last["at"])
    text_of = audit_entry_text(at, last["actor"], last["action"], "someone-else", {})
    rehashed = chain_hash(4, entries[-2]["hash"], text_of)
    await store.run(
        lambda db: db.execute(
            text("UPDATE audit_log SET entry = :e, hash = :h WHERE seq = 4"),
            {"e": text_of, "h": rehashed},
        )
    )
    rewritten = await verify()
    assert rewritten["ok"] is False and rewritten["broken_at"] == 4, rewritten
    assert "rewritten" in str(rewritten["problem"])

    await store.run(lambda db: db.execute(text("DELETE FROM audit_log WHERE seq >= 3")))
    truncated = await verify()
    assert truncated["ok"] is False and truncated["entries"] == 2, truncated
    assert truncated["broken_at"] == 3 and "removed" in str(truncated["problem"])
    assert truncated["checkpoint"] == {"seq": 4, "hash": entries[-1]["hash"]}


async def test_the_transparency_export_counts_reports_actions_and_time_to_action(
    client: httpx.AsyncClient,
) -> None:
    ann, bob = await sign_up(client, "ann"), await sign_up(client, "bob")
    first = await client.post("/api/reports", json={"user_id": ann.id, "reason": "spam"})
    await client.post("/api/reports", json={"user_id": bob.id, "reason": "spam"})
    await client.post("/api/reports", json={"user_id": bob.id, "reason": "hate"})
    await _act(client, OPERATOR, "suspend_user", ann.id, report_id=first.json()["id"])
    report = (await client.get("/api/transparency")).json()
    assert report["reports_received"]["total"] == 3
    assert report["reports_received"]["by_reason"]["spam"] == 2
    assert report["reports_received"]["by_reason"]["hate"] == 1
    assert report["reports_received"]["by_reason"]["copyright"] == 0
    assert report["actions_taken"]["by_kind"]["suspend_user"] == 1
    assert report["actions_taken"]["total"] == 1
    assert report["reports_acted_on"] == 1
    assert 0 < report["median_time_to_action_s"] < 60
    exported = await client.get("/api/transparency?format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = {
        (r["section"], r["key"]): r["value"] for r in csv.DictReader(io.StringIO(exported.text))
    }
    assert rows[("reports_received", "spam")] == "2"
    assert rows[("actions_taken", "suspend_user")] == "1"
    assert float(rows[("median_time_to_action_s", "all")]) == report["median_time_to_action_s"]


async def test_a_suspension_binds_at_once_where_the_token_is_still_cached(
    client: httpx.AsyncClient,
) -> None:
    """Another node suspends (its store write): this node's token cache still names the
    user, yet creating, starting and taking the stage are refused."""
    host, ann = await sign_up(client, "host"), await sign_up(client, "ann")
    ready = await client.post("/api/spaces", json={"title": "Ready"}, headers=ann.headers)
    live = await live_space(client, host)
    assert (await client.get("/api/me", headers=ann.headers)).status_code == 200  # cached
    elsewhere = SqlModerationStore(_app(client).services.store.run)
    await elsewhere.suspend(ann.id, "a" * 12, datetime.now(UTC))
    assert (await client.get("/api/me", headers=ann.headers)).status_code == 200  # still cached
    refusals = [
        await client.post("/api/spaces", json={"title": "x"}, headers=ann.headers),
        await client.post(f"/api/spaces/{ready.json()['id']}/start", headers=ann.headers),
        await client.post(f"/api/spaces/{live['id']}/speak-requests", headers=ann.headers),
        await client.post(f"/api/spaces/{live['id']}/stage",
                          json={"user_id": ann.id, "role": "speaker"}, headers=host.headers),
    ]  # fmt: skip
    for refused in refusals:
        assert_error(refused, 403, "suspended")


def test_the_routes_built_by_constructor_are_the_documented_ones() -> None:
    """For the composition root of issue 7: `routes(...)` binds the same operations."""
    from townhall.api import moderation as moderation_api

    built = moderation_api.routes(None)  # type: ignore[arg-type]
    documented = [(op.path, op.method, op.operation_id) for op in moderation_api.OPERATIONS]
    assert [(r.path, *sorted(r.methods - {"HEAD"}), r.name) for r in built] == documented
