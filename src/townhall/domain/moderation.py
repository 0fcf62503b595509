"""Moderation as the Digital Services Act shapes it: pure rules, no I/O.

Reports carry a reason from a fixed list (so they can be counted in the
transparency report); every decision names its ground and is explained to the
person it affects (a statement of reasons, DSA art. 17); every moderation and host
action is written to an audit log whose entries are hash-chained, so a changed or
deleted entry is detectable by anyone who re-computes the chain.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from townhall.domain.errors import Forbidden

MAX_DETAILS_LENGTH = 2_000
"""Free text of a report or of a decision's explanation."""
GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first audit entry."""


class ReportReason(StrEnum):
    """What a report may be about: the grounds the transparency report counts."""

    ILLEGAL_CONTENT = "illegal_content"
    HATE = "hate"
    HARASSMENT = "harassment"
    VIOLENCE = "violence"
    SELF_HARM = "self_harm"
    SEXUAL_CONTENT = "sexual_content"
    MISINFORMATION = "misinformation"
    SPAM = "spam"
    IMPERSONATION = "impersonation"
    COPYRIGHT = "copyright"
    OTHER = "other"


class Subject(StrEnum):
    """What a report or an action is about."""

    SPACE = "space"
    USER = "user"
    RECORDING = "recording"
    CLIP = "clip"


class ActionKind(StrEnum):
    """The moderators' decisions (each sends a statement of reasons)."""

    END_SPACE = "end_space"
    REMOVE_RECORDING = "remove_recording"
    REMOVE_CLIP = "remove_clip"
    SUSPEND_USER = "suspend_user"
    RESTORE_USER = "restore_user"


ACTION_SUBJECT: dict[ActionKind, Subject] = {
    ActionKind.END_SPACE: Subject.SPACE,
    ActionKind.REMOVE_RECORDING: Subject.RECORDING,
    ActionKind.REMOVE_CLIP: Subject.CLIP,
    ActionKind.SUSPEND_USER: Subject.USER,
    ActionKind.RESTORE_USER: Subject.USER,
}
"""What each action's `target_id` names."""

STATEMENT_TEXT: dict[ActionKind, str] = {
    ActionKind.END_SPACE: "Your space was ended by a moderator.",
    ActionKind.REMOVE_RECORDING: "The recording of your space was removed by a moderator.",
    ActionKind.REMOVE_CLIP: "Your clip was removed by a moderator.",
    ActionKind.SUSPEND_USER: "Your account was suspended by a moderator: your live spaces "
    "were ended, and you cannot sign in, create spaces or speak until it is restored.",
    ActionKind.RESTORE_USER: "Your account was restored.",
}
REDRESS = (
    "You may contest this decision by replying to the operator of this server; "
    "the decision was taken by a person, not by automated means."
)


@dataclass(frozen=True)
class Report:
    id: str
    reporter_id: str | None
    subject: Subject
    subject_id: str
    reason: ReportReason
    details: str
    created_at: datetime
    resolved_at: datetime | None = None
    action_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reporter_id": self.reporter_id,
            "subject": self.subject.value,
            "subject_id": self.subject_id,
            "reason": self.reason.value,
            "details": self.details,
            "created_at": self.created_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "action_id": self.action_id,
        }


@dataclass(frozen=True)
class Action:
    """A moderation decision; shown to the affected user as their statement of reasons."""

    id: str
    kind: ActionKind
    target_id: str
    affected_user_id: str
    moderator: str
    """"operator" or the moderator's user id."""
    ground: ReportReason
    explanation: str
    created_at: datetime
    report_id: str | None = None

    def statement(self) -> dict[str, Any]:
        """The statement of reasons (DSA art. 17): the decision, its facts and ground,
        how it was taken, and how to contest it."""
        return {
            "id": self.id,
            "action": self.kind.value,
            "subject": ACTION_SUBJECT[self.kind].value,
            "target_id": self.target_id,
            "decision": STATEMENT_TEXT[self.kind],
            "ground": self.ground.value,
            "explanation": self.explanation,
            "report_id": self.report_id,
            "automated": False,
            "redress": REDRESS,
            "created_at": self.created_at.isoformat(),
        }


class Suspended(Forbidden):
    """A suspended account is refused, with the statement of reasons that suspended it."""

    code = "suspended"

    def __init__(self, statement: dict[str, Any]) -> None:
        super().__init__("this account is suspended; the statement of reasons says why")
        self.extra = {"statement": statement}


# -- the audit chain -------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    entry: str
    """The canonical JSON of what happened (see audit_entry_text)."""
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, Any]:
        return dict(json.loads(self.entry))


def audit_entry_text(
    at: datetime, actor: str, action: str, target: str, details: dict[str, Any]
) -> str:
    """One canonical JSON text per entry: the same bytes wherever it is recomputed."""
    document = {
        "at": at.isoformat(),
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(seq: int, prev_hash: str, entry: str) -> str:
    """SHA-256 over the position, the previous entry's hash and this entry's text."""
    return hashlib.sha256(f"{seq}\n{prev_hash}\n{entry}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditHead:
    """The chain's last entry as recorded outside the audit table (in the shared state):
    what a truncated or rewritten tail is checked against."""

    seq: int
    hash: str


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    entries: int
    head: str
    """The last entry's hash: keep it elsewhere to detect a truncated tail as well."""
    broken_at: int | None = None
    problem: str | None = None
    checkpoint: AuditHead | None = None
    """The head recorded outside the table that the chain was checked against (None:
    none recorded yet, so a removed tail would not show)."""

    def to_json(self) -> dict[str, Any]:
        checkpoint = self.checkpoint
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "broken_at": self.broken_at,
            "problem": self.problem,
            "checkpoint": None
            if checkpoint is None
            else {"seq": checkpoint.seq, "hash": checkpoint.hash},
        }


def verify_chain(entries: Iterable[AuditEntry], so_far: ChainCheck | None = None) -> ChainCheck:
    """Re-computes every hash in order: a changed entry breaks its own hash, a deleted
    one breaks the numbering and the next entry's link. `so_far` continues the check
    of the entries before these (a long log is read a page at a time)."""
    count = so_far.entries if so_far else 0
    expected_prev = so_far.head if so_far else GENESIS_HASH
    expected_seq = count + 1
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainCheck(False, count, expected_prev, entry.seq, "an entry is missing")
        if entry.prev_hash != expected_prev:
            return ChainCheck(False, count, expected_prev, entry.seq, "the link is broken")
        if chain_hash(entry.seq, entry.prev_hash, entry.entry) != entry.hash:
            return ChainCheck(False, count, expected_prev, entry.seq, "the entry was changed")
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    return ChainCheck(True, count, expected_prev)


def check_against_head(
    check: ChainCheck, head: AuditHead | None, hash_at_head_seq: str | None
) -> ChainCheck:
    """The whole chain's check, completed with the head kept outside the table: a chain
    that ends before the head lost its tail, and one whose entry at the head's place has
    another hash had its tail rewritten (re-hashed) after that point.
    `hash_at_head_seq` is the table's hash at `head.seq`, None if it has no such entry."""
    if head is None or not check.ok:
        return replace(check, checkpoint=head)
    if check.entries < head.seq:
        problem = f"entries {check.entries + 1} to {head.seq} were removed from the end"
        return replace(check, ok=False, broken_at=check.entries + 1, problem=problem,
                       checkpoint=head)  # fmt: skip
    if hash_at_head_seq != head.hash:
        problem = "the entry at the recorded head differs: the tail was rewritten"
        return replace(check, ok=False, broken_at=head.seq, problem=problem, checkpoint=head)
    return replace(check, checkpoint=head)


# -- transparency ----------------------------------------------------------------


def median_seconds(durations: Sequence[float]) -> float | None:
    return round(statistics.median(durations), 3) if durations else None


def transparency_report(
    reports_by_reason: dict[str, int],
    actions_by_kind: dict[str, int],
    seconds_to_action: Sequence[float],
) -> dict[str, Any]:
    """The DSA transparency figures: every reason and kind listed, zeros included."""
    return {
        "reports_received": {
            "total": sum(reports_by_reason.values()),
            "by_reason": {reason.value: reports_by_reason.get(reason.value, 0)
                          for reason in ReportReason},
        },
        "actions_taken": {
            "total": sum(actions_by_kind.values()),
            "by_kind": {kind.value: actions_by_kind.get(kind.value, 0) for kind in ActionKind},
        },
        "reports_acted_on": len(seconds_to_action),
        "median_time_to_action_s": median_seconds(seconds_to_action),
    }  # fmt: skip


def transparency_rows(report: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """The transparency report as (section, key, value) rows, for CSV."""
    rows: list[tuple[str, str, Any]] = [
        ("reports_received", reason, count)
        for reason, count in report["reports_received"]["by_reason"].items()
    ]
    rows.append(("reports_received", "total", report["reports_received"]["total"]))
    rows += [("actions_taken", kind, n) for kind, n in report["actions_taken"]["by_kind"].items()]
    rows.append(("actions_taken", "total", report["actions_taken"]["total"]))
    rows.append(("reports_acted_on", "total", report["reports_acted_on"]))
    median = report["median_time_to_action_s"]
    rows.append(("median_time_to_action_s", "all", "" if median is None else median))
    return rows
