"""The one error body, `{"error": {"code", "message", ...}}`, as bytes.

Every server of the node writes its refusals with it: Starlette's handlers and the
listener fast path (api/errors.py), the live stream (api/live.py), the connection
guard below HTTP (server.py) and the stream workers' raw protocol (edge/protocol.py).
Kept free of Starlette so the stream workers import no framework.
"""

from __future__ import annotations

import json
from typing import Any

ERROR_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""Starlette's JSONResponse rendering, so every error body has the same bytes."""


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """`{"error": {"code", "message", ...extra}}` as bytes."""
    return ERROR_ENCODER.encode({"error": {"code": code, "message": message, **extra}}).encode()
