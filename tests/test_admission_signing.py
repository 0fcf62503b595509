"""Signed tokens: what one forged byte, a foreign key or a rotated key does to them."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import time
from base64 import urlsafe_b64encode

import pytest

from townhall.admission import InvalidToken, Signer
from townhall.admission.signing import MAC_BYTES, MAX_TOKEN_CHARS, _Mac, derive_key

SECRET = b"signing-test-secret-0123456789abcdef"


def reason(signer: Signer, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        signer.verify(token)
    return info.value.reason


@pytest.mark.parametrize("key_len", [1, 16, 32, 63, 64, 65, 200])
def test_the_hand_rolled_hmac_is_the_standard_one(key_len):
    key = bytes(range(256))[:key_len]
    for message in (b"", b"x", b"\x01t\x1fspace\x1flistener\x1f1700000000", bytes(1000)):
        assert _Mac(key).digest(message) == hmac.digest(key, message, hashlib.sha256)


def test_fields_round_trip_as_text_in_a_url_safe_token():
    signer = Signer(SECRET)
    token = signer.sign(("t", "sp_1", "héllo wörld", 1_700_000_300, -5))
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert signer.verify(token) == ("t", "sp_1", "héllo wörld", "1700000300", "-5")
    # Any node with the same secret verifies it: nothing but the key is shared.
    assert Signer(SECRET).verify(token) == signer.verify(token)


def test_every_single_character_change_is_refused():
    signer = Signer(SECRET)
    token = signer.sign(("q", "sp_1", 42, "n", 7, 100, 100))
    alphabet = "AQgw_-9z"
    refused = 0
    for i in range(len(token)):
        for replacement in alphabet:
            if replacement == token[i]:
                continue
            forged = token[:i] + replacement + token[i + 1 :]
            try:
                fields = signer.verify(forged)
            except InvalidToken as exc:
                assert exc.reason in ("bad_signature", "malformed", "unknown_key")
                refused += 1
                continue
            # Only the unused low bits of the last character may change without effect.
            assert i == len(token) - 1 and fields == signer.verify(token)
    assert refused >= len(token) * (len(alphabet) - 1) - len(alphabet)


def test_foreign_keys_garbage_and_huge_strings_are_refused_cheaply():
    signer = Signer(SECRET)
    token = signer.sign(("t", "sp_1", "l", 1))
    assert reason(Signer(b"another-secret-0123456789abcdef"), token) == "bad_signature"
    assert reason(Signer(SECRET, key_id=7), token) == "unknown_key"
    assert reason(signer, "") == "malformed"
    assert reason(signer, "abc") == "malformed"
    assert reason(signer, "a+b/" * 10) == "malformed"  # standard, not URL-safe, base64
    assert reason(signer, token + "====") == "malformed"
    assert reason(signer, "ünïcode") == "malformed"
    assert reason(signer, "A" * (MAX_TOKEN_CHARS + 1)) == "too_long"
    assert reason(signer, token[: -MAC_BYTES // 2]) in ("bad_signature", "malformed")


def test_keys_rotate_without_refusing_live_tokens():
    old_secret, new_secret = b"old-secret-0123456789abcdef", b"new-secret-0123456789abcdef"
    old = Signer(old_secret, key_id=1)
    old_token = old.sign(("t", "sp_1", "l", 1))
    rotated = Signer(new_secret, key_id=2, retired={1: old_secret})
    new_token = rotated.sign(("t", "sp_1", "l", 2))
    assert rotated.key_id == 2
    assert rotated.verify(old_token) == ("t", "sp_1", "l", "1")
    assert rotated.verify(new_token) == ("t", "sp_1", "l", "2")
    assert reason(old, new_token) == "unknown_key"
    retired_for_good = Signer(new_secret, key_id=2)
    assert reason(retired_for_good, old_token) == "unknown_key"


def test_the_secret_is_derived_not_used_raw():
    # A MAC made with the raw secret (as some other part of the app might) is not ours.
    signer = Signer(SECRET)
    body = b"\x00t\x1fsp\x1fl\x1f1"
    raw_mac = hmac.digest(SECRET, body, "sha256")[:MAC_BYTES]
    token = urlsafe_b64encode(body + raw_mac).rstrip(b"=").decode()
    assert reason(signer, token) == "bad_signature"
    assert derive_key(SECRET) != SECRET


def test_bad_arguments_are_refused_when_signing():
    with pytest.raises(ValueError):
        Signer(b"short")
    with pytest.raises(ValueError):
        Signer(SECRET, key_id=256)
    with pytest.raises(ValueError):
        Signer(SECRET).sign(())
    with pytest.raises(ValueError):
        Signer(SECRET).sign(("a\x1fb",))


def test_verify_costs_microseconds():
    signer = Signer(SECRET)
    token = signer.sign(("t", "sp_0123456789", "listener_0123456789", 1_700_000_300))
    n = 20_000
    started = time.process_time()
    for _ in range(n):
        signer.verify(token)
    per_verify = (time.process_time() - started) / n * 1e6
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    started = time.process_time()
    for _ in range(n):
        with contextlib.suppress(InvalidToken):
            signer.verify(forged)
    per_forged = (time.process_time() - started) / n * 1e6
    print(f"\nverify {per_verify:.2f} µs, refuse forged {per_forged:.2f} µs ({len(token)} chars)")
    assert per_verify < 200  # generous: a loaded 2-core machine, not a benchmark
