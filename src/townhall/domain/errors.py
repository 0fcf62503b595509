"""Domain errors carry a stable code and a human message.

The HTTP layer maps each kind to one status; the domain never knows about HTTP,
but it does know *why* something is refused, and says so.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every refusal the domain can explain to the caller."""

    code = "invalid"

    def __init__(self, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra: dict[str, Any] = extra
        """More fields for the caller (a proof-of-work challenge and its difficulty)."""


class Invalid(DomainError):
    """The request is well formed but a value is not acceptable."""

    code = "invalid"


class NotFound(DomainError):
    code = "not_found"


class Unauthorized(DomainError):
    """The caller must sign in (or sent bad credentials)."""

    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    code = "forbidden"


class Conflict(DomainError):
    """The action clashes with the current state (taken name, full stage, ended space)."""

    code = "conflict"


class Unavailable(DomainError):
    """Not now: a bounded resource is full; `retry_after_s` says when to come back."""

    code = "unavailable"

    def __init__(
        self, message: str, retry_after_s: float, code: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message, code, **extra)
        self.retry_after_s = retry_after_s


class TooManyRequests(DomainError):
    """The caller has used up an allowance; `retry_after_s` says when there is more."""

    code = "rate_limited"

    def __init__(
        self, message: str, retry_after_s: float, code: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message, code, **extra)
        self.retry_after_s = retry_after_s
