"""Small helpers for talking to the API in tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from aiortc.mediastreams import MediaStreamTrack

from tones import ToneClient

SERVED_WITHIN_S = 10.0
"""How long a server may take to count closed connections out, on a loaded machine."""


def get_when_served(url: str, within_s: float = SERVED_WITHIN_S) -> httpx.Response:
    """GETs `url` until it answers 200, or `within_s` is up (then the last answer): a server
    frees a closed connection's place only once it has read the close, which on a loaded
    machine takes longer than any fixed pause a test could choose."""
    deadline = time.monotonic() + within_s
    while True:
        answer = httpx.get(url, timeout=5)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@dataclass
class Account:
    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(
    client: httpx.AsyncClient, username: str, password: str = "correct horse"
) -> Account:
    created = await client.post("/api/users", json={"username": username, "password": password})
    assert created.status_code == 201, created.text
    token = await client.post("/api/tokens", json={"username": username, "password": password})
    assert token.status_code == 201, token.text
    return Account(created.json()["id"], username, token.json()["token"])


async def live_space(client: httpx.AsyncClient, host: Account, **fields: Any) -> dict[str, Any]:
    created = await client.post(
        "/api/spaces", json={"title": "Town hall", **fields}, headers=host.headers
    )
    assert created.status_code == 201, created.text
    started = await client.post(f"/api/spaces/{created.json()['id']}/start", headers=host.headers)
    assert started.status_code == 200, started.text
    return started.json()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """A refusal: the status, a JSON error body with a code and a readable message."""
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert isinstance(error["message"], str) and len(error["message"]) > 5
    if code is not None:
        assert error["code"] == code, error
    return error


async def speak_over_http(
    http: httpx.AsyncClient, space_id: str, headers: dict[str, str], tone: MediaStreamTrack
) -> ToneClient:
    """An aiortc speaker that joins the stage through the real signalling route."""
    client = await ToneClient.offer_with(tone)
    answer = await http.post(
        f"/api/spaces/{space_id}/stage/offer",
        json={"type": "offer", "sdp": client.offer},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    await client.accept(answer.json()["sdp"])
    return client


def sse_events(lines: Iterator[str], within_s: float | None = None) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream, read line by line. With `within_s`,
    a stream that has sent no event by then fails (checked at each line: the server's
    heartbeats keep a silent stream's reads from timing out)."""
    deadline = None if within_s is None else time.monotonic() + within_s
    event, data = "message", ""
    for line in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise AssertionError(f"no event within {within_s} s")
        if line == "":
            if data:
                yield event, data
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
