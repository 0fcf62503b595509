"""Compact signed tokens: the server's memory, held by the client.

Admission stays O(1) on the server because everything per listener (ticket,
place in the queue, proof-of-work challenge) travels in a token the client
holds and the server merely checks. Checking must be cheap enough for the hot
path of a flash crowd and must not touch shared state, so it is one HMAC over
a few dozen bytes and nothing else.

Byte layout (the token is the unpadded URL-safe base64 of it)::

    key_id (1 byte) || payload || mac (16 bytes)
    payload = the fields, each as UTF-8 (ints in decimal), joined by 0x1F
    mac     = HMAC-SHA256(key[key_id], key_id || payload), first 16 bytes

A 128-bit truncated HMAC-SHA256 is plenty for tokens that live minutes (RFC
2104 §5 and NIST SP 800-107 allow truncation to half the output). The key id
lets keys rotate: sign with the newest, keep verifying with the retired ones
until every token they signed has expired.

The token string is not an identity: decoders accept a few spellings of the
same bytes, so callers key anything (spent sets, dedupe) by verified fields,
never by the raw string.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

MAC_BYTES: Final = 16
"""Truncated MAC length: 128 bits against forgery for tokens that live minutes."""
MAX_TOKEN_CHARS: Final = 512
"""Longer strings are refused before any decoding: a forged megabyte costs nothing."""
MIN_SECRET_BYTES: Final = 16
SEPARATOR: Final = "\x1f"
"""ASCII unit separator between fields; fields may not contain it."""
_SEP_BYTE: Final = SEPARATOR.encode()
_BLOCK: Final = 64  # SHA-256 block size, for the precomputed HMAC pads
_DERIVATION_LABEL: Final = b"townhall admission tokens v1"


class InvalidToken(Exception):
    """A token that must not be trusted; `reason` says why, for counters and logs.

    Reasons: ``too_long``, ``malformed`` (not base64, too short, not UTF-8),
    ``unknown_key`` (a key id we do not hold), ``bad_signature``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Mac:
    """HMAC-SHA256 with the key pads hashed once (RFC 2104 done by hand).

    The stdlib's one-shot `hmac.digest` re-hashes both pads on every call;
    copying precomputed states is about twice as fast, which matters when a
    flash crowd polls at tens of thousands of requests per second.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def derive_key(secret: bytes) -> bytes:
    """The token key, separate from whatever else the same secret signs."""
    return hmac.digest(secret, _DERIVATION_LABEL, "sha256")


class Signer:
    """Signs and verifies field tuples with the current key; verifies with retired ones too.

    `key_id` (0-255) names the current key inside every token it signs;
    `retired` maps older key ids to their secrets so their tokens still verify
    during a rotation.
    """

    __slots__ = ("_current", "_key_id", "_macs")

    def __init__(
        self,
        secret: bytes,
        *,
        key_id: int = 0,
        retired: Mapping[int, bytes] | None = None,
    ) -> None:
        if not 0 <= key_id <= 255:
            raise ValueError("key_id must fit in one byte")
        macs: dict[int, _Mac] = {}
        for kid, key in {**(retired or {}), key_id: secret}.items():
            if len(key) < MIN_SECRET_BYTES:
                raise ValueError(f"secrets must be at least {MIN_SECRET_BYTES} bytes")
            if not 0 <= kid <= 255:
                raise ValueError("key ids must fit in one byte")
            macs[kid] = _Mac(derive_key(key))
        self._macs = macs
        self._key_id = bytes((key_id,))
        self._current = macs[key_id]

    @property
    def key_id(self) -> int:
        return self._key_id[0]

    def sign(self, fields: tuple[str | int, ...]) -> str:
        if not fields:
            raise ValueError("a token needs at least one field")
        parts = []
        for field in fields:
            text = str(field)
            if SEPARATOR in text:
                raise ValueError("token fields may not contain the 0x1F separator")
            parts.append(text)
        body = self._key_id + SEPARATOR.join(parts).encode()
        raw = body + self._current.digest(body)[:MAC_BYTES]
        return binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_TO_URLSAFE).decode()

    def verify(self, token: str) -> tuple[str, ...]:
        """The signed fields (ints come back as their decimal text); raises InvalidToken."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("too_long")
        try:
            data = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed") from None
        if data.translate(None, _URLSAFE_ALPHABET):  # anything left is not base64url
            raise InvalidToken("malformed")
        try:
            raw = binascii.a2b_base64(
                data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4), strict_mode=True
            )
        except binascii.Error:
            raise InvalidToken("malformed") from None
        if len(raw) < 1 + MAC_BYTES:
            raise InvalidToken("malformed")
        mac = self._macs.get(raw[0])
        if mac is None:
            raise InvalidToken("unknown_key")
        body = raw[:-MAC_BYTES]
        if not hmac.compare_digest(mac.digest(body)[:MAC_BYTES], raw[-MAC_BYTES:]):
            raise InvalidToken("bad_signature")
        try:
            return tuple(body[1:].decode().split(SEPARATOR))
        except UnicodeDecodeError:  # only a signer of ours could have made it; still refuse
            raise InvalidToken("malformed") from None


_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_URLSAFE_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
