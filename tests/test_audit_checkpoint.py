"""The audit chain's head kept in a signed file of the data dir: it outlives a restart of
a node whose shared state is in memory, so a tail deleted while the node was down is
still found; a file someone else wrote is not believed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from conftest import start_server, stop_server
from townhall.admission.signing import Signer
from townhall.domain.moderation import AuditHead
from townhall.service.audit_checkpoint import AUDIT_HEAD_FILE, AuditCheckpointFile

ADMIN_TOKEN = "operator-token-of-the-checkpoint-test-0123456789"
OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_the_file_only_moves_forward_and_refuses_a_head_it_did_not_sign(
    tmp_path: Path,
) -> None:
    ours = AuditCheckpointFile(tmp_path / AUDIT_HEAD_FILE, Signer(b"our deployment secret"))
    assert await ours.read() is None
    await ours.advance(AuditHead(5, "e" * 64))
    await ours.advance(AuditHead(4, "d" * 64))  # a late writer of an older entry
    assert await ours.read() == AuditHead(5, "e" * 64)

    forger = AuditCheckpointFile(tmp_path / "forged", Signer(b"somebody else's secret"))
    await forger.advance(AuditHead(1, "a" * 64))
    (tmp_path / AUDIT_HEAD_FILE).write_bytes((tmp_path / "forged").read_bytes())
    assert await ours.read() is None, "a head signed with another secret is not ours"
    for junk in (b"\xff\xfe not text", b"x" * 5_000, b""):
        (tmp_path / AUDIT_HEAD_FILE).write_bytes(junk)
        assert await ours.read() is None


def test_a_tail_cut_while_the_node_was_down_is_found_after_its_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for name in ("ann", "bob", "cat"):
                user = http.post("/api/users", json={"username": name, "password": "pw-long-1"})
                action = {"action": "suspend_user", "target_id": user.json()["id"],
                          "ground": "spam", "explanation": "Spam."}  # fmt: skip
                taken = http.post("/api/moderation/actions", json=action, headers=OPERATOR)
                assert taken.status_code == 201, taken.text
            intact = http.get("/api/moderation/audit/verify", headers=OPERATOR).json()
            assert intact["ok"] is True and intact["checkpoint"]["seq"] == 3
    finally:
        stop_server(server)

    with sqlite3.connect(data / "townhall.sqlite3") as db:
        db.execute("DELETE FROM audit_log WHERE seq = 3")

    server = start_server(data, TOWNHALL_ADMIN_TOKEN=ADMIN_TOKEN)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            check = http.get("/api/moderation/audit/verify", headers=OPERATOR).json()
        assert check["ok"] is False and check["entries"] == 2 and check["broken_at"] == 3
        assert check["checkpoint"] == intact["checkpoint"], "the head from before the restart"
        assert "removed from the end" in check["problem"]
    finally:
        stop_server(server)
    assert "Traceback" not in server.log()
