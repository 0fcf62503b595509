"""Password hashing is bounded: one core at most, a short line, then 503; an unknown
username costs the same hash as a wrong password."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest

from http_helpers import assert_error, sign_up
from townhall.app import create_app
from townhall.service.passwords import PasswordLimits, Passwords, PasswordsBusy

CHEAP = PasswordLimits(time_cost=1, memory_kib=8192)


async def test_hashes_verify_and_use_one_lane() -> None:
    passwords = Passwords(CHEAP)
    try:
        hashed = await passwords.hash("correct horse")
        assert hashed.startswith("$argon2id$") and ",p=1$" in hashed
        assert await passwords.verify(hashed, "correct horse")
        assert not await passwords.verify(hashed, "wrong horse")
        assert not await passwords.verify("not a hash", "correct horse")
    finally:
        passwords.close()


async def test_the_line_is_bounded_and_past_it_is_busy() -> None:
    passwords = Passwords(replace(CHEAP, max_in_flight=1, max_waiting=3))
    try:
        hashed = await passwords.hash("correct horse")
        tries = [passwords.verify(hashed, f"wrong {n}") for n in range(10)]
        results = await asyncio.gather(*tries, return_exceptions=True)
        assert results[:4] == [False] * 4
        assert all(isinstance(result, PasswordsBusy) for result in results[4:])
        assert len(passwords._pool._threads) == 1, "one hash at a time, on one thread"
        assert await passwords.verify(hashed, "correct horse"), "the line drains"
    finally:
        passwords.close()


async def test_an_unknown_user_waits_for_a_hash_like_a_wrong_password() -> None:
    """No hash to check still means one hash's work: with the one slot taken and no
    room in line, an unknown user is turned away exactly as a known one is."""
    passwords = Passwords(replace(CHEAP, max_in_flight=1, max_waiting=0))
    try:
        hashed = await passwords.hash("correct horse")
        await passwords.verify(None, "warm the dummy hash")
        busy = asyncio.create_task(passwords.verify(hashed, "wrong"))
        await asyncio.sleep(0)
        with pytest.raises(PasswordsBusy):
            await passwords.verify(None, "anything")
        with pytest.raises(PasswordsBusy):
            await passwords.verify(hashed, "anything")
        assert await busy is False
        assert await passwords.verify(None, "correct horse") is False
    finally:
        passwords.close()


async def test_a_crowd_of_sign_ins_gets_503_with_retry_after(settings) -> None:
    crowded = replace(settings, argon2_max_waiting=2)
    app = create_app(crowded)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await sign_up(http, "ann")
            guesses = [
                http.post("/api/tokens", json={"username": "ann", "password": f"guess-{n:03d}"})
                for n in range(12)
            ]
            answers = await asyncio.gather(*guesses)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(401) >= 3 and statuses.count(503) >= 1, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert_error(answer, 503, "busy")
            assert int(answer.headers["retry-after"]) >= 1
