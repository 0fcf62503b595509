"""Hashcash-style proof of work for anonymous joins in attack mode.

A person's browser spends a second or two of CPU once per join; a bot that
wants a hundred thousand joins spends a hundred thousand times that. The
server's side stays cheap and stateless: the challenge is a signed token
(random nonce, difficulty, expiry, optional scope), and checking an answer is
one HMAC plus one SHA-256.

The exact bytes (``web/static/pow.js`` does the same; keep them identical)::

    input    = ASCII bytes of  challenge_token + ":" + solution
    digest   = SHA-256(input)
    accepted iff the first `difficulty_bits` bits of digest are zero, reading
             bytes in order and each byte from its most significant bit

`solution` is 1 to 64 characters of ``[0-9A-Za-z_-]``; both solvers count
0, 1, 2, ... written in base 36 with lower-case letters, so for the same
challenge they find the same first answer.

Replay: a solved challenge stays valid until it expires (`DEFAULT_TTL_S`). To
make each solution buy exactly one join, pass a `SpentChallenges` (a bounded
set of nonces in memory) to `verify_solution`; on several nodes each node's
set bounds replay to one join per node per challenge, which is still a cost
per join.
"""

from __future__ import annotations

import hashlib
import os
import re
from base64 import urlsafe_b64encode
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from townhall.admission.refused import AdmissionRefused, refusal_code
from townhall.admission.signing import InvalidToken, Signer

KIND: Final = "w"
DEFAULT_BITS: Final = 16
"""65,536 hashes expected. Measured here: Chromium's WebCrypto ~140k hashes/s (about half a
second), CPython ~1M/s (~60 ms); native code would be ~10x faster still, so this is a cost
per join for bots, not a wall: the per-address and per-prefix buckets still apply."""
MAX_BITS: Final = 32
DEFAULT_TTL_S: Final = 120
"""Long enough to solve on a slow phone, short enough that a hoard of solutions goes stale."""
NONCE_BYTES: Final = 12
MAX_SOLUTION_CHARS: Final = 64
DEFAULT_MAX_SPENT: Final = 200_000
"""Nonces remembered (~30 MB at most); at the bound the oldest is forgotten and counted."""
_SOLUTION_RE: Final = re.compile(rf"[0-9A-Za-z_-]{{1,{MAX_SOLUTION_CHARS}}}")
_FIELDS: Final = 5
_PURGE_PER_SPEND: Final = 8
"""Expired nonces dropped per call: more than one, so the set drains faster than it fills."""
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


class ChallengeRefused(AdmissionRefused):
    """Codes: ``forged``, ``malformed``, ``expired``, ``wrong_scope``, ``too_easy``."""


@dataclass(frozen=True, slots=True)
class Challenge:
    token: str
    difficulty_bits: int
    expires_at: int
    nonce: str
    scope: str = ""


def issue_challenge(
    signer: Signer,
    now: float,
    difficulty_bits: int = DEFAULT_BITS,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    scope: str = "",
    nonce: bytes | None = None,
) -> Challenge:
    """A fresh challenge; `scope` (e.g. a space id) stops a solution serving elsewhere."""
    if not 0 <= difficulty_bits <= MAX_BITS:
        raise ValueError(f"difficulty_bits must be within 0..{MAX_BITS}")
    raw = os.urandom(NONCE_BYTES) if nonce is None else nonce
    nonce_text = urlsafe_b64encode(raw).rstrip(b"=").decode()
    expires_at = int(now + ttl_s)
    token = signer.sign((KIND, nonce_text, difficulty_bits, expires_at, scope))
    return Challenge(token, difficulty_bits, expires_at, nonce_text, scope)


def parse_challenge(
    signer: Signer,
    token: str,
    now: float,
    *,
    scope: str | None = None,
    min_bits: int = 0,
) -> Challenge:
    """The challenge inside `token` if it is ours, live, in scope and hard enough."""
    try:
        fields = signer.verify(token)
    except InvalidToken as exc:
        raise ChallengeRefused(refusal_code(exc.reason), "this challenge is not valid") from None
    if (
        len(fields) != _FIELDS
        or fields[0] != KIND
        or not fields[2].isdecimal()
        or not fields[3].isdecimal()
    ):
        raise ChallengeRefused("malformed", "this is not a proof-of-work challenge")
    _, nonce, bits_text, expiry, challenge_scope = fields
    bits, expires_at = int(bits_text), int(expiry)
    if now >= expires_at:
        raise ChallengeRefused("expired", "this challenge has expired; ask for a new one")
    if scope is not None and challenge_scope != scope:
        raise ChallengeRefused("wrong_scope", "this challenge was issued for something else")
    if bits < min_bits:
        raise ChallengeRefused("too_easy", "the required difficulty has risen; ask again")
    return Challenge(token, bits, expires_at, nonce, challenge_scope)


def solution_digest(challenge_token: str, solution: str) -> bytes:
    return hashlib.sha256(f"{challenge_token}:{solution}".encode("ascii")).digest()


def meets_difficulty(digest: bytes, bits: int) -> bool:
    return int.from_bytes(digest, "big") >> (len(digest) * 8 - bits) == 0


def verify_solution(
    signer: Signer,
    challenge_token: str,
    solution: str,
    now: float,
    *,
    scope: str | None = None,
    min_bits: int = 0,
    spent: SpentChallenges | None = None,
) -> bool:
    """True if `solution` solves a live challenge of ours (and, with `spent`, for the first time).

    Cheapest checks first: the solution's shape, then one HMAC, then one
    SHA-256; the spent set is touched only for a correct answer.
    """
    if not _SOLUTION_RE.fullmatch(solution):
        return False
    try:
        challenge = parse_challenge(signer, challenge_token, now, scope=scope, min_bits=min_bits)
    except ChallengeRefused:
        return False
    if not meets_difficulty(solution_digest(challenge_token, solution), challenge.difficulty_bits):
        return False
    return spent is None or spent.spend(challenge.nonce, challenge.expires_at, now)


def base36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, digit = divmod(n, 36)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))


def solve(challenge_token: str, bits: int, max_attempts: int = 1 << 26) -> str:
    """The first base-36 counter that solves the challenge (what pow.js finds too).

    For load tests and scripts; raises RuntimeError past `max_attempts`.
    """
    prefix = hashlib.sha256(f"{challenge_token}:".encode("ascii"))
    shift = 256 - bits
    for n in range(max_attempts):
        candidate = base36(n)
        h = prefix.copy()
        h.update(candidate.encode())
        if int.from_bytes(h.digest(), "big") >> shift == 0:
            return candidate
    raise RuntimeError(f"no solution within {max_attempts} attempts")


class SpentChallenges:
    """Nonces of challenges already used, kept until they expire, at most `max_entries`.

    Challenges share one lifetime, so insertion order is expiry order and
    expired nonces are dropped from the front as new ones arrive. Past the
    bound the oldest live nonce is forgotten (its challenge could be replayed
    until it expires) and counted in `evicted_live`.
    """

    __slots__ = ("_nonces", "evicted_live", "max_entries", "replays")

    def __init__(self, max_entries: int = DEFAULT_MAX_SPENT) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._nonces: OrderedDict[str, int] = OrderedDict()
        self.evicted_live = 0
        self.replays = 0

    def __len__(self) -> int:
        return len(self._nonces)

    def spend(self, nonce: str, expires_at: int, now: float) -> bool:
        """True the first time a nonce is spent, False for a replay."""
        nonces = self._nonces
        for _ in range(_PURGE_PER_SPEND):
            if not nonces:
                break
            oldest, oldest_expiry = next(iter(nonces.items()))
            if oldest_expiry > now:
                break
            del nonces[oldest]
        if nonce in nonces:
            self.replays += 1
            return False
        if len(nonces) >= self.max_entries:
            _, oldest_expiry = nonces.popitem(last=False)
            if oldest_expiry > now:
                self.evicted_live += 1
        nonces[nonce] = expires_at
        return True
