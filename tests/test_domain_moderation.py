"""The pure rules of moderation: the audit chain, the transparency figures, statements."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from townhall.domain.moderation import (
    GENESIS_HASH,
    Action,
    ActionKind,
    AuditEntry,
    AuditHead,
    ReportReason,
    audit_entry_text,
    chain_hash,
    check_against_head,
    transparency_report,
    transparency_rows,
    verify_chain,
)

T0 = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def _chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        text = audit_entry_text(T0, "operator", "suspend_user", f"user-{seq}", {"n": seq})
        entry = AuditEntry(seq, text, prev, chain_hash(seq, prev, text))
        entries.append(entry)
        prev = entry.hash
    return entries


def test_an_entry_is_canonical_json_whatever_the_order_of_its_details() -> None:
    one = audit_entry_text(T0, "a", "b", "c", {"x": 1, "y": "é"})
    two = audit_entry_text(T0, "a", "b", "c", {"y": "é", "x": 1})
    assert one == two
    assert '"y":"é"' in one


def test_the_hash_covers_the_position_the_link_and_the_text() -> None:
    base = chain_hash(2, "a" * 64, "{}")
    assert base != chain_hash(3, "a" * 64, "{}")
    assert base != chain_hash(2, "b" * 64, "{}")
    assert base != chain_hash(2, "a" * 64, "{ }")


def test_an_intact_chain_verifies_and_its_head_is_the_last_hash() -> None:
    chain = _chain(5)
    check = verify_chain(chain)
    assert check.ok and check.entries == 5 and check.head == chain[-1].hash
    assert verify_chain([]).head == GENESIS_HASH


def test_each_kind_of_tampering_is_named() -> None:
    chain = _chain(5)
    changed = [*chain[:2], replace(chain[2], entry=chain[2].entry.replace("3", "4")), *chain[3:]]
    assert verify_chain(changed).problem == "the entry was changed"
    assert verify_chain(changed).broken_at == 3
    assert verify_chain(chain[:1] + chain[2:]).problem == "an entry is missing"
    relinked = [*chain[:3], replace(chain[3], prev_hash=GENESIS_HASH), chain[4]]
    assert verify_chain(relinked).problem == "the link is broken"


def test_a_chain_whose_tail_was_removed_or_rewritten_fails_against_the_kept_head() -> None:
    chain = _chain(5)
    head = AuditHead(5, chain[-1].hash)
    intact = check_against_head(verify_chain(chain), head, chain[-1].hash)
    assert intact.ok and intact.checkpoint == head

    truncated = check_against_head(verify_chain(chain[:3]), head, None)
    assert verify_chain(chain[:3]).ok, "every remaining link holds: only the head tells"
    assert not truncated.ok and truncated.broken_at == 4
    assert truncated.problem == "entries 4 to 5 were removed from the end"
    emptied = check_against_head(verify_chain([]), head, None)
    assert not emptied.ok and emptied.broken_at == 1

    forged = audit_entry_text(T0, "operator", "restore_user", "user-5", {})
    link = chain[3].hash
    rewritten = [*chain[:4], AuditEntry(5, forged, link, chain_hash(5, link, forged))]
    check = check_against_head(verify_chain(rewritten), head, rewritten[-1].hash)
    assert not check.ok and check.broken_at == 5 and "rewritten" in (check.problem or "")


def test_a_longer_chain_than_the_kept_head_and_no_head_at_all_are_fine() -> None:
    """The head moves after the append commits: a chain may be ahead of it for a moment."""
    chain = _chain(5)
    ahead = check_against_head(verify_chain(chain), AuditHead(4, chain[3].hash), chain[3].hash)
    assert ahead.ok
    unknown = check_against_head(verify_chain(chain), None, None)
    assert unknown.ok and unknown.checkpoint is None
    assert unknown.to_json()["checkpoint"] is None
    broken = verify_chain(chain[:1] + chain[2:])
    assert check_against_head(broken, AuditHead(5, chain[-1].hash), chain[-1].hash) == replace(
        broken, checkpoint=AuditHead(5, chain[-1].hash)
    ), "the first break found is the one told"


def test_the_median_time_to_action_and_every_reason_listed() -> None:
    report = transparency_report({"spam": 3, "hate": 1}, {"end_space": 2}, [10.0, 30.0, 20.0, 40.0])
    assert report["median_time_to_action_s"] == 25.0
    assert report["reports_received"]["total"] == 4
    assert set(report["reports_received"]["by_reason"]) == {r.value for r in ReportReason}
    assert report["actions_taken"]["by_kind"]["suspend_user"] == 0
    empty = transparency_report({}, {}, [])
    assert empty["median_time_to_action_s"] is None
    assert ("median_time_to_action_s", "all", "") in transparency_rows(empty)


def test_a_statement_says_what_why_how_and_how_to_contest() -> None:
    action = Action("a1", ActionKind.END_SPACE, "s1", "u1", "operator", ReportReason.HATE,
                    "Slurs at 12:03.", T0, "r1")  # fmt: skip
    statement = action.statement()
    assert statement["decision"].startswith("Your space was ended")
    assert statement["ground"] == "hate" and statement["explanation"] == "Slurs at 12:03."
    assert statement["automated"] is False and "contest" in statement["redress"]
    assert statement["subject"] == "space" and statement["report_id"] == "r1"
