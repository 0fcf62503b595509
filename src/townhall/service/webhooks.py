"""Signed outgoing webhooks, so a deployment can bridge notifications to e-mail or
push services.

Each delivery is a JSON POST carrying:
- `Townhall-Timestamp`: seconds since the epoch when it was signed; a receiver
  refuses one older than a few minutes (a captured request cannot be replayed later);
- `Townhall-Signature`: `v1=` + hex HMAC-SHA256 of `"{timestamp}." + body` under the
  shared secret (the timestamp is signed with the body, so it cannot be swapped);
- `Townhall-Delivery`: the delivery's id, the same on every retry (receivers dedupe).

A failed attempt (no answer, or not 2xx) is retried with exponential backoff and
re-signed with a fresh timestamp. The queue and the delivery log are bounded: a
receiver that is down for hours costs a fixed amount of memory, and what is dropped
is counted and shown in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "Townhall-Timestamp"
SIGNATURE_HEADER = "Townhall-Signature"
DELIVERY_HEADER = "Townhall-Delivery"
SIGNATURE_VERSION = "v1"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(
    secret: bytes, timestamp: str, body: bytes, presented: str, now: float, tolerance_s: float
) -> bool:
    """What a receiver checks: a fresh timestamp and a matching signature."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), presented)


@dataclass(frozen=True)
class WebhookSettings:
    url: str = ""
    """Where to POST; empty turns webhooks off."""
    secret: str = ""
    attempts: int = 5
    first_backoff_s: float = 1.0
    """Wait before the second attempt; doubled after each failure."""
    max_backoff_s: float = 60.0
    timeout_s: float = 5.0
    queue_size: int = 1_000
    """Deliveries waiting to be sent; past it new ones are dropped (and logged)."""
    log_size: int = 200
    """Finished deliveries remembered for GET /api/admin/webhooks."""


@dataclass
class Delivery:
    id: str
    event: str
    status: str = "pending"
    """pending, delivered, failed or dropped."""
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str = ""
    created_at: float = 0.0
    finished_at: float | None = None


class Webhooks:
    def __init__(
        self,
        settings: WebhookSettings,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._secret = settings.secret.encode()
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._clock = clock
        self._queue: asyncio.Queue[tuple[Delivery, bytes]] = asyncio.Queue(settings.queue_size)
        self._log: deque[Delivery] = deque(maxlen=settings.log_size)
        self._ids = itertools.count(1)
        self._prefix = f"{int(clock())}"
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._deliver_forever(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    def send(self, event: str, payload: dict[str, Any]) -> Delivery | None:
        """Queues one delivery; never waits. None when webhooks are off."""
        if not self.enabled:
            return None
        delivery = Delivery(f"{self._prefix}-{next(self._ids)}", event, created_at=self._clock())
        body = json.dumps({"id": delivery.id, "event": event, **payload}).encode()
        try:
            self._queue.put_nowait((delivery, body))
        except asyncio.QueueFull:
            delivery.status = "dropped"
            delivery.finished_at = self._clock()
            self._log.append(delivery)
            log.warning("webhook queue full: delivery %s (%s) dropped", delivery.id, event)
        return delivery

    def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        return [asdict(delivery) for delivery in reversed(self._log)]

    async def _deliver_forever(self) -> None:
        while True:
            delivery, body = await self._queue.get()
            await self._deliver(delivery, body)
            self._log.append(delivery)

    async def _deliver(self, delivery: Delivery, body: bytes) -> None:
        backoff = self.settings.first_backoff_s
        for attempt in range(1, self.settings.attempts + 1):
            delivery.attempts = attempt
            if await self._attempt(delivery, body):
                delivery.status = "delivered"
                break
            if attempt < self.settings.attempts:
                await asyncio.sleep(backoff)
                backoff = min(self.settings.max_backoff_s, backoff * 2)
        else:
            delivery.status = "failed"
            log.warning("webhook %s failed after %d attempts", delivery.id, delivery.attempts)
        delivery.finished_at = self._clock()

    async def _attempt(self, delivery: Delivery, body: bytes) -> bool:
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(self._secret, timestamp, body),
            DELIVERY_HEADER: delivery.id,
        }
        try:
            response = await self._client.post(self.settings.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            delivery.last_error = f"{type(error).__name__}: {error}"[:200]
            return False
        delivery.last_status_code = response.status_code
        delivery.last_error = ""
        return 200 <= response.status_code < 300
