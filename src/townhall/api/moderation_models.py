"""Request and response bodies of moderation, blocks and transparency (api/moderation.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from townhall.api.models import ID_PATTERN, QueryParameters, RequestBody, ResponseBody
from townhall.domain.moderation import MAX_DETAILS_LENGTH, ActionKind, ReportReason

MAX_CLIP_ID_LENGTH = 64
"""Clip ids are the clip service's; the shape check stays loose but bounded."""
MAX_PAGE = 200
NO_NUL = r"^[^\x00]*$"
"""Free text without NUL characters, which PostgreSQL's text cannot hold."""
MAX_SEQ = 2**63 - 1
"""The audit log's sequence numbers are BIGINT (migration 7)."""
MAX_OFFSET = 100_000


class NewReport(RequestBody):
    """Name exactly one of `space_id` and `user_id`."""

    space_id: str | None = Field(default=None, pattern=ID_PATTERN)
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    reason: ReportReason
    details: str = Field(default="", max_length=MAX_DETAILS_LENGTH, pattern=NO_NUL)


class NewAction(RequestBody):
    """`target_id` is the space (end_space, remove_recording), the clip (remove_clip) or
    the user (suspend_user, restore_user)."""

    action: ActionKind
    target_id: str = Field(min_length=1, max_length=MAX_CLIP_ID_LENGTH, pattern=r"^[A-Za-z0-9_-]+$")
    ground: ReportReason
    explanation: str = Field(
        min_length=1, max_length=MAX_DETAILS_LENGTH, pattern=r"^[^\x00]*\S[^\x00]*$"
    )
    report_id: str | None = Field(default=None, pattern=ID_PATTERN)


class UserTarget(RequestBody):
    user_id: str = Field(pattern=ID_PATTERN)


class QueueQuery(QueryParameters):
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class AuditQuery(QueryParameters):
    after: int = Field(default=0, ge=0, le=MAX_SEQ, description="Entries after this number")
    limit: int = Field(default=MAX_PAGE, ge=1, le=1_000)
    format: Literal["json", "csv"] = "json"


class ExportQuery(QueryParameters):
    format: Literal["json", "csv"] = "json"


class ReportOut(ResponseBody):
    id: str
    reporter_id: str | None
    subject: str
    subject_id: str
    reason: ReportReason
    details: str
    created_at: str
    resolved_at: str | None
    action_id: str | None


class ReportReasons(ResponseBody):
    reasons: list[ReportReason]


class QueuedReportOut(ReportOut):
    subject_username: str | None = Field(
        description="The reported user's name (a user report whose user still exists)"
    )


class ReportQueue(ResponseBody):
    reports: list[QueuedReportOut]


class StatementOut(ResponseBody):
    """A statement of reasons (DSA art. 17)."""

    id: str
    action: ActionKind
    subject: str
    target_id: str
    decision: str
    ground: ReportReason
    explanation: str
    report_id: str | None
    automated: bool
    redress: str
    created_at: str


class Statements(ResponseBody):
    statements: list[StatementOut]


class AuditCheckpointOut(ResponseBody):
    seq: int
    hash: str


class ChainCheckOut(ResponseBody):
    ok: bool
    entries: int
    head: str
    broken_at: int | None
    problem: str | None
    checkpoint: AuditCheckpointOut | None = Field(
        description="The head kept outside the audit table that the tail was checked "
        "against; null until an entry is appended (a memory state starts without one)"
    )


class AuditEntryOut(ResponseBody):
    seq: int
    at: str
    actor: str
    action: str
    target: str
    details: dict[str, object]
    prev_hash: str
    hash: str


class AuditPage(ResponseBody):
    entries: list[AuditEntryOut]


class Transparency(ResponseBody):
    reports_received: dict[str, object]
    actions_taken: dict[str, object]
    reports_acted_on: int
    median_time_to_action_s: float | None


class Blocked(ResponseBody):
    blocked: list[str]


class Done(ResponseBody):
    ok: bool
