"""The door over HTTP: waiting room, rate limits, proof of work, capacity, stats."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import NO_LAG_DOOR
from http_helpers import assert_error, live_space, sign_up
from townhall.admission.proof_of_work import solve
from townhall.config import load_settings

ADMIT_RATE = 5.0
ADMIN_TOKEN = "operator-secret-" + "x" * 32  # at least 32 characters


@pytest.fixture
def settings(tmp_path, store_env):
    return load_settings(
        {
            **store_env,
            **NO_LAG_DOOR,
            "TOWNHALL_ARGON2_TIME_COST": "1",
            "TOWNHALL_ARGON2_MEMORY_KIB": "8192",
            "TOWNHALL_ADMISSION_MAX_ADMISSIONS_PER_S": str(ADMIT_RATE),
            "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "0",
            "TOWNHALL_ADMISSION_POW_BITS": "8",
            "TOWNHALL_ADMIN_TOKEN": ADMIN_TOKEN,
        },
        data_dir=tmp_path / "data",
    )


async def test_waiting_room_admits_in_order_at_the_configured_rate(
    client: httpx.AsyncClient,
) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    join = f"/api/spaces/{space['id']}/join"
    # At once, as a crowd arrives: sent one after another on a loaded machine, the line
    # moved (an admission every 0.2 s) between two of them and the places restarted.
    answers = [r.json() for r in await asyncio.gather(*(client.post(join) for _ in range(20)))]
    admitted_now = [a for a in answers if "ticket" in a]
    waiting = sorted((a["wait"] for a in answers if "wait" in a), key=lambda w: w["position"])
    assert 1 <= len(admitted_now) <= ADMIT_RATE + 1
    assert [w["position"] for w in waiting] == list(range(1, len(waiting) + 1))
    assert all(w["retry_after_s"] >= 0.5 and w["eta_s"] > 0 for w in waiting)
    etas = [w["eta_s"] for w in waiting]
    assert etas == sorted(etas)

    started = asyncio.get_running_loop().time()
    admitted_at: dict[int, float] = {}
    tokens = {i: w["token"] for i, w in enumerate(waiting)}
    while tokens and asyncio.get_running_loop().time() - started < 10:
        await asyncio.sleep(0.1)
        for i, token in list(tokens.items()):
            answer = (await client.post(join, json={"token": token})).json()
            if "ticket" in answer:
                admitted_at[i] = asyncio.get_running_loop().time() - started
                del tokens[i]
            else:
                tokens[i] = answer["wait"]["token"]
    assert not tokens, "some listeners were never admitted"
    order = sorted(admitted_at, key=lambda i: (admitted_at[i], i))
    assert order == sorted(order), "admitted out of order"
    span = max(admitted_at.values())
    rate = (len(admitted_at) - 1) / span
    print(f"\nadmitted {len(admitted_at)} from the line at {rate:.1f}/s (configured {ADMIT_RATE})")
    assert ADMIT_RATE * 0.6 <= rate <= ADMIT_RATE * 1.6
    for i, actual in admitted_at.items():
        assert actual <= waiting[i]["eta_s"] + 1.5, "told a shorter wait than it was"


async def test_forged_queue_token_is_refused(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    forged = await client.post(f"/api/spaces/{space['id']}/join", json={"token": "AQ.forged"})
    assert forged.status_code == 403
    assert forged.json()["error"]["code"].startswith("queue_")


async def test_proof_of_work_in_attack_mode(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space = await live_space(client, host)
    join = f"/api/spaces/{space['id']}/join"
    switch = "/api/admin/attack-mode"
    assert_error(await client.post(switch, json={"mode": "on"}), 401)
    assert_error(
        await client.post(switch, json={"mode": "on"}, headers={"Authorization": "Bearer wrong"}),
        403,
    )
    on = await client.post(
        switch, json={"mode": "on"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert on.json()["attack_mode"] is True

    refused = assert_error(await client.post(join), 403, "pow_required")
    challenge, bits = refused["challenge"], refused["difficulty"]
    wrong = await client.post(join, json={"pow": {"challenge": challenge, "solution": "nope"}})
    assert_error(wrong, 403, "pow_required")
    solution = solve(challenge, bits)
    ok = await client.post(join, json={"pow": {"challenge": challenge, "solution": solution}})
    assert ok.status_code == 200 and ("ticket" in ok.json() or "wait" in ok.json())
    replay = await client.post(join, json={"pow": {"challenge": challenge, "solution": solution}})
    assert_error(replay, 403, "pow_required")
    signed_in = await client.post(join, headers=host.headers)
    assert signed_in.status_code == 200, "signed-in listeners skip the proof of work"
    stats = (await client.get("/api/stats")).json()
    assert stats["attack_mode"] is True


async def test_stats_report_the_vital_signs(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/api/stats")).json()
    for field in (
        "cpu_percent",
        "loop_lag_ms",
        "listeners",
        "max_listeners",
        "attack_mode",
        "admissions_per_s",
        "queues",
        "counts",
    ):
        assert field in stats


class TestRateLimits:
    @pytest.fixture
    def settings(self, tmp_path, store_env):
        return load_settings(
            {
                **store_env,
            **NO_LAG_DOOR,
                "TOWNHALL_ARGON2_TIME_COST": "1",
                "TOWNHALL_ARGON2_MEMORY_KIB": "8192",
                "TOWNHALL_ADMISSION_PER_ADDRESS_RATE": "2",
            },
            data_dir=tmp_path / "data",
        )

    async def test_one_address_is_slowed_down(self, client: httpx.AsyncClient) -> None:
        statuses = []
        for _ in range(30):
            response = await client.post("/api/users", json={"username": "x", "password": "y"})
            statuses.append(response.status_code)
        assert 429 in statuses
        limited = next(
            r for r in [await client.post("/api/users", json={})] if r.status_code == 429
        )
        assert int(limited.headers["retry-after"]) >= 1
        assert_error(limited, 429, "rate_limited")
        snapshot_listing = await client.get("/api/spaces")
        assert snapshot_listing.status_code == 200, "reads are not rate limited"
