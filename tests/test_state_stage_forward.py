"""Node-to-node offer forwarding: only a node holding the deployment's secret may speak
for a user, for one space, briefly."""

from __future__ import annotations

import time

import httpx
import pytest

from http_helpers import assert_error, live_space, sign_up
from townhall.admission.signing import Signer
from townhall.nodes.peers import (
    CLIP_AUDIO_KIND,
    CLIP_HEADER,
    CLIP_KIND,
    HEADER,
    TOKEN_TTL_S,
    ForwardRefused,
    check_token,
    issue_token,
)


def test_tokens_are_for_one_space_and_expire() -> None:
    ours, theirs = Signer(b"our deployment secret"), Signer(b"someone else entirely")
    now = time.time()
    token = issue_token(ours, "user1", "space1", now)
    assert check_token(ours, token, "space1", now) == "user1"
    for signer, space, at, code in (
        (theirs, "space1", now, "bad_signature"),
        (ours, "space2", now, "other_space"),
        (ours, "space1", now + TOKEN_TTL_S + 1, "expired"),
    ):
        with pytest.raises(ForwardRefused) as refused:
            check_token(signer, token, space, at)
        assert refused.value.code == code


JSON = "application/json"


def test_a_token_is_for_one_kind_of_call() -> None:
    """A speaker's offer token does not cut a clip, nor hand over a clip's file."""
    ours, now = Signer(b"our deployment secret"), time.time()
    offer = issue_token(ours, "user1", "space1", now)
    for kind in (CLIP_KIND, CLIP_AUDIO_KIND):
        with pytest.raises(ForwardRefused) as refused:
            check_token(ours, offer, "space1", now, kind)
        assert refused.value.code == "malformed"
    clip = issue_token(ours, "", "space1", now, CLIP_KIND)
    assert check_token(ours, clip, "space1", now, CLIP_KIND) == ""


async def test_forged_clip_requests_between_nodes_are_refused(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space_id = (await live_space(client, host))["id"]
    cut = f"/internal/spaces/{space_id}/clips"
    assert_error(await client.post(cut, json={"seconds": 5}), 403, "forward_refused")
    offer = issue_token(Signer(b"not our secret at all"), host.id, space_id, time.time())
    assert_error(await client.post(cut, json={"seconds": 5}, headers={CLIP_HEADER: offer}), 403)
    for method in ("GET", "DELETE"):
        answer = await client.request(method, "/internal/clips/abcdefghijkm")
        assert_error(answer, 403, "forward_refused")

    signer = client._transport.app.services.signer  # type: ignore[attr-defined]
    ours = {CLIP_HEADER: issue_token(signer, "", space_id, time.time(), CLIP_KIND)}
    for bad in (b'{"seconds": "many"}', b'{"seconds": true}', b"{}", b'{"seconds": 1e400}'):
        sent = await client.post(cut, content=bad, headers={**ours, "content-type": JSON})
        assert_error(sent, 422, "invalid_seconds")
    for bad in (b"[1]", b"not json", b'{"seconds": 5'):
        sent = await client.post(cut, content=bad, headers={**ours, "content-type": JSON})
        assert sent.status_code in (400, 422) and "error" in sent.json(), sent.text
    assert_error(await client.post(cut, json={"seconds": 99}, headers=ours), 422)
    # No audio has been spoken: the node that runs the space says so, as for a listener.
    assert_error(await client.post(cut, json={"seconds": 5}, headers=ours), 409,
                 "nothing_to_clip")  # fmt: skip


async def test_a_forged_forward_is_refused(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space_id = (await live_space(client, host))["id"]
    url = f"/internal/stage/{space_id}/offer"
    body = {"sdp": "v=0"}
    assert_error(await client.post(url, json=body), 403, "forward_refused")
    forged = issue_token(Signer(b"not our secret at all"), host.id, space_id, time.time())
    assert_error(await client.post(url, json=body, headers={HEADER: forged}), 403)
