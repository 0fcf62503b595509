"""Identifiers that are short enough for a link and too many to guess."""

from __future__ import annotations

import secrets

ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no look-alikes (l, 1, o, 0)
ID_LENGTH = 12  # 60 bits


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def looks_like_id(value: str) -> bool:
    """Cheap shape check so floods of random paths never reach the store."""
    return len(value) == ID_LENGTH and all(ch in ID_ALPHABET for ch in value)
