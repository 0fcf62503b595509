"""Node-to-node offer forwarding: only a node holding the deployment's secret may speak
for a user, for one space, briefly."""

from __future__ import annotations

import time

import httpx
import pytest

from http_helpers import assert_error, live_space, sign_up
from townhall.admission.signing import Signer
from townhall.nodes.peers import (
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


async def test_a_forged_forward_is_refused(client: httpx.AsyncClient) -> None:
    host = await sign_up(client, "host")
    space_id = (await live_space(client, host))["id"]
    url = f"/internal/stage/{space_id}/offer"
    body = {"sdp": "v=0"}
    assert_error(await client.post(url, json=body), 403, "forward_refused")
    forged = issue_token(Signer(b"not our secret at all"), host.id, space_id, time.time())
    assert_error(await client.post(url, json=body, headers={HEADER: forged}), 403)
