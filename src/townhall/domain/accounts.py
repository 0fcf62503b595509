"""Rules for usernames and passwords, checked before anything is stored."""

from __future__ import annotations

import re

from townhall.domain.errors import Invalid

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_]{3,32}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
"""argon2 accepts any length, but hashing megabytes is a cheap way to burn our CPU."""


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME_PATTERN.match(username):
        raise Invalid(
            "username must be 3 to 32 letters, digits or underscores", code="invalid_username"
        )
    return username


def check_password(password: object) -> str:
    if not isinstance(password, str):
        raise Invalid("password must be a string", code="invalid_password")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise Invalid(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            code="invalid_password",
        )
    return password
