"""Proof of work: a correct answer is accepted once, anything else is refused."""

from __future__ import annotations

import hashlib
import time

import pytest

from townhall.admission import (
    ChallengeRefused,
    Signer,
    SpentChallenges,
    issue_challenge,
    parse_challenge,
    verify_solution,
)
from townhall.admission.proof_of_work import base36, meets_difficulty, solution_digest, solve

SECRET = b"pow-test-secret-0123456789abcdef"
BITS = 10  # small: tests stay fast, every property is the same at 16


def python_solve(token: str, bits: int) -> str:
    """An independent solver, written the slow obvious way."""
    for n in range(1 << (bits + 8)):
        candidate = base36(n)
        digest = hashlib.sha256((token + ":" + candidate).encode()).digest()
        if bin(int.from_bytes(digest, "big"))[2:].zfill(256).startswith("0" * bits):
            return candidate
    raise AssertionError("no solution found")


def test_a_solution_is_accepted_and_a_wrong_one_refused():
    signer = Signer(SECRET)
    challenge = issue_challenge(signer, now=1_000.0, difficulty_bits=BITS, scope="sp_1")
    solution = python_solve(challenge.token, BITS)
    assert solve(challenge.token, BITS) == solution  # the module's solver finds the same
    assert verify_solution(signer, challenge.token, solution, 1_001.0, scope="sp_1")
    # Wrong answers: the first few non-solutions, a neighbour, garbage.
    wrong = [
        base36(n)
        for n in range(200)
        if not meets_difficulty(solution_digest(challenge.token, base36(n)), BITS)
    ]
    assert len(wrong) > 150
    for answer in [*wrong[:50], solution + "0", "", "x" * 65, "no spaces", "ünï", "a:b"]:
        assert not verify_solution(signer, challenge.token, answer, 1_001.0)


def test_leading_zero_bits_are_counted_from_the_most_significant_bit():
    assert meets_difficulty(bytes([0x00, 0x7F]) + bytes(30), 9)
    assert not meets_difficulty(bytes([0x00, 0x80]) + bytes(30), 9)
    assert meets_difficulty(bytes([0x0F]) + bytes(31), 4)
    assert not meets_difficulty(bytes([0x10]) + bytes(31), 4)
    assert meets_difficulty(b"\xff" * 32, 0)
    for n in range(2_000):
        digest = hashlib.sha256(str(n).encode()).digest()
        zeros = 256 - int.from_bytes(digest, "big").bit_length()
        assert meets_difficulty(digest, zeros)
        assert not meets_difficulty(digest, zeros + 1)


def test_the_challenge_itself_cannot_be_forged_stretched_or_moved():
    signer = Signer(SECRET)
    challenge = issue_challenge(signer, 1_000.0, BITS, ttl_s=120, scope="sp_1")
    solution = solve(challenge.token, BITS)
    # Expired: the solution is worthless after the challenge's expiry.
    assert not verify_solution(signer, challenge.token, solution, 1_120.0)
    with pytest.raises(ChallengeRefused, match="expired"):
        parse_challenge(signer, challenge.token, 1_120.0)
    # Another space, or a difficulty raised since the challenge was issued.
    assert not verify_solution(signer, challenge.token, solution, 1_001.0, scope="sp_2")
    assert not verify_solution(signer, challenge.token, solution, 1_001.0, min_bits=BITS + 1)
    # Forged: an easy challenge signed by someone else, and a tampered one.
    easy = issue_challenge(Signer(b"attacker-secret-0123456789abcdef"), 1_000.0, 0)
    assert not verify_solution(signer, easy.token, "0", 1_001.0)
    with pytest.raises(ChallengeRefused) as info:
        parse_challenge(signer, easy.token, 1_001.0)
    assert info.value.code == "forged"
    # A ticket or a queue token is not a challenge.
    ticket = signer.sign(("t", "sp_1", "listener", 2_000))
    with pytest.raises(ChallengeRefused) as info:
        parse_challenge(signer, ticket, 1_001.0)
    assert info.value.code == "malformed"


def test_a_solution_buys_one_join_with_a_spent_set():
    signer = Signer(SECRET)
    spent = SpentChallenges()
    challenge = issue_challenge(signer, 1_000.0, BITS)
    solution = solve(challenge.token, BITS)
    assert verify_solution(signer, challenge.token, solution, 1_001.0, spent=spent)
    assert not verify_solution(signer, challenge.token, solution, 1_002.0, spent=spent)
    assert spent.replays == 1
    # A wrong answer does not burn the challenge.
    other = issue_challenge(signer, 1_000.0, BITS)
    assert not verify_solution(signer, other.token, "zzzzzz", 1_001.0, spent=spent)
    assert verify_solution(signer, other.token, solve(other.token, BITS), 1_001.0, spent=spent)


def test_spent_set_is_bounded_and_forgets_expired_nonces_first():
    spent = SpentChallenges(max_entries=3)
    assert spent.spend("a", expires_at=10, now=0.0)
    assert spent.spend("b", expires_at=10, now=0.0)
    assert not spent.spend("a", expires_at=10, now=1.0)
    assert spent.spend("c", expires_at=20, now=1.0)
    assert spent.spend("d", expires_at=20, now=2.0)  # full: "a" forgotten while live
    assert (len(spent), spent.evicted_live) == (3, 1)
    assert spent.spend("e", expires_at=30, now=15.0)  # "b" expired: dropped, not evicted
    assert (len(spent), spent.evicted_live) == (3, 1)
    for i in range(1_000):
        spent.spend(f"n{i}", expires_at=100, now=50.0)
    assert len(spent) == 3


def test_difficulty_limits():
    with pytest.raises(ValueError):
        issue_challenge(Signer(SECRET), 0.0, 33)
    zero = issue_challenge(Signer(SECRET), 0.0, 0)
    assert verify_solution(Signer(SECRET), zero.token, "anything", 1.0)


def test_verification_is_one_hmac_and_one_hash():
    signer = Signer(SECRET)
    challenge = issue_challenge(signer, 1_000.0, BITS)
    solution = solve(challenge.token, BITS)
    n = 5_000
    started = time.process_time()
    for _ in range(n):
        assert verify_solution(signer, challenge.token, solution, 1_001.0)
    per_verify = (time.process_time() - started) / n * 1e6
    started = time.process_time()
    answer = solve(issue_challenge(signer, 1_000.0, 16).token, 16)
    solve_ms = (time.process_time() - started) * 1e3
    print(f"\nverify {per_verify:.1f} µs; 16-bit solve {solve_ms:.0f} ms in CPython ({answer})")
    assert per_verify < 500
