"""Reports, moderators' decisions, hosts' blocks and the audit log that records them.

Each decision is carried out through the service that owns its subject (Spaces ends
a space, the clip service removes a clip, the store revokes a suspended user's
tokens), recorded as the affected user's statement of reasons (their inbox,
`GET /api/me/statements`), and appended to the hash-chained audit log along with
every host action (ending a space, removing or blocking someone).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from townhall.admission.token_bucket import KeyedBuckets
from townhall.domain.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests
from townhall.domain.moderation import (
    Action,
    ActionKind,
    ChainCheck,
    Report,
    ReportReason,
    Subject,
    check_against_head,
    transparency_report,
    verify_chain,
)
from townhall.domain.spaces import SpaceState, User
from townhall.service.accounts import Accounts
from townhall.service.ids import new_id
from townhall.service.spaces import Spaces
from townhall.service.standing import MAX_BLOCKS_PER_HOST, MAX_STATEMENTS, Standing
from townhall.store.base import Store
from townhall.store.moderation import ModerationStore

OPERATOR: Final = "operator"
"""The actor name of a request that bore TOWNHALL_ADMIN_TOKEN."""
REPORTS_PER_HOUR: Final = 20
"""Reports one address (and one account) may file per hour: the queue cannot be flooded."""
MAX_RATE_KEYS: Final = 50_000
AUDIT_PAGE: Final = 1_000
TRANSPARENCY_TTL_S: Final = 10.0
AUDIT_CSV_COLUMNS: Final = (
    "seq",
    "at",
    "actor",
    "action",
    "target",
    "details",
    "prev_hash",
    "hash",
)


class ClipRemover(Protocol):
    """What the clip service provides for moderation (it is built elsewhere)."""

    async def remove_for_moderation(self, clip_id: str) -> str:
        """Deletes the clip for good; returns its maker's user id. NotFound if none."""


def _now() -> datetime:
    return datetime.now(UTC)


class Moderation:
    def __init__(
        self,
        store: ModerationStore,
        users: Store,
        spaces: Spaces,
        accounts: Accounts,
        standing: Standing,
        clips: ClipRemover | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._users = users
        self._spaces = spaces
        self._accounts = accounts
        self._standing = standing
        self.clips = clips
        self._clock = clock
        per_s = REPORTS_PER_HOUR / 3600
        self._reports_by_address = KeyedBuckets(per_s, REPORTS_PER_HOUR, MAX_RATE_KEYS)
        self._reports_by_account = KeyedBuckets(per_s, REPORTS_PER_HOUR, MAX_RATE_KEYS)
        self._transparency: tuple[float, dict[str, Any]] | None = None
        """(good until, the report)."""

    # -- reports -------------------------------------------------------------

    def _take_report_allowance(self, address: str, reporter: User | None) -> None:
        now = self._clock()
        checks = [(self._reports_by_address, address)]
        if reporter is not None:
            checks.append((self._reports_by_account, reporter.id))
        for buckets, key in checks:
            if buckets.wait_s(key, now) > 0:
                wait = max(1.0, round(buckets.wait_s(key, now)))
                raise TooManyRequests("too many reports; try again later", wait)
        for buckets, key in checks:
            buckets.take(key, now)

    async def report(
        self,
        reporter: User | None,
        address: str,
        subject: Subject,
        subject_id: str,
        reason: ReportReason,
        details: str,
    ) -> Report:
        if subject is Subject.SPACE:
            await self._spaces.record(subject_id)  # NotFound for a space that is not there
        elif await self._users.get_user(subject_id) is None:
            raise NotFound(f"there is no user with id {subject_id!r}", code="user_not_found")
        self._take_report_allowance(address, reporter)
        report = Report(
            id=new_id(),
            reporter_id=reporter.id if reporter else None,
            subject=subject,
            subject_id=subject_id,
            reason=reason,
            details=details,
            created_at=_now(),
        )
        await self._store.add_report(report)
        return report

    async def queue(self, limit: int, offset: int) -> list[tuple[Report, str | None]]:
        """Open reports, oldest first, each with the reported user's name (a user report)
        so the moderator sees whom it is about."""
        reports = await self._store.open_reports(limit, offset)
        names: dict[str, str | None] = {}
        for report in reports:
            if report.subject is Subject.USER and report.subject_id not in names:
                user = await self._users.get_user(report.subject_id)
                names[report.subject_id] = user.username if user else None
        return [(report, names.get(report.subject_id)) for report in reports]

    # -- who moderates -----------------------------------------------------------

    async def require_moderator(self, user: User) -> str:
        """The actor name for the audit log; Forbidden unless the operator granted it."""
        if not await self._store.is_moderator(user.id):
            raise Forbidden("only moderators can do this", code="not_a_moderator")
        return user.id

    async def grant(self, user_id: str) -> None:
        if await self._users.get_user(user_id) is None:
            raise NotFound(f"there is no user with id {user_id!r}", code="user_not_found")
        await self._store.grant_moderator(user_id, _now())
        await self.audit(OPERATOR, "grant_moderator", user_id)

    async def revoke(self, user_id: str) -> None:
        await self._store.revoke_moderator(user_id)
        await self.audit(OPERATOR, "revoke_moderator", user_id)

    # -- decisions ---------------------------------------------------------------

    async def act(
        self,
        moderator: str,
        kind: ActionKind,
        target_id: str,
        ground: ReportReason,
        explanation: str,
        report_id: str | None = None,
    ) -> Action:
        if report_id is not None and await self._store.get_report(report_id) is None:
            raise NotFound(f"there is no report with id {report_id!r}", code="report_not_found")
        affected = await self._carry_out(kind, target_id)
        action = Action(
            id=new_id(),
            kind=kind,
            target_id=target_id,
            affected_user_id=affected,
            moderator=moderator,
            ground=ground,
            explanation=explanation,
            created_at=_now(),
            report_id=report_id,
        )
        if kind is ActionKind.SUSPEND_USER:
            await self._store.suspend(affected, action.id, action.created_at)
            self._accounts.forget_user(affected)
            for space_id in await self._store.live_spaces_of(affected):
                await self._spaces.end_for_moderation(space_id)  # a suspended host stops now
            await self._spaces.leave_every_stage(affected)
        elif kind is ActionKind.RESTORE_USER:
            await self._store.restore(affected)
        await self._store.add_action(action)
        details = {"action_id": action.id, "ground": ground.value, "report_id": report_id,
                   "affected_user_id": affected}  # fmt: skip
        await self.audit(moderator, kind.value, target_id, details)
        return action

    async def _carry_out(self, kind: ActionKind, target_id: str) -> str:
        """Does what `kind` says to `target_id`; returns the affected user's id."""
        if kind is ActionKind.END_SPACE:
            space = await self._spaces.record(target_id)
            if space.state is SpaceState.ENDED:
                raise Conflict("this space has already ended", code="already_ended")
            await self._spaces.end_for_moderation(target_id)
            return space.host.id
        if kind is ActionKind.REMOVE_RECORDING:
            space = await self._spaces.record(target_id)
            path = await self._spaces.recording_path(target_id)  # NotFound if none
            path.unlink(missing_ok=True)
            return space.host.id
        if kind is ActionKind.REMOVE_CLIP:
            if self.clips is None:
                raise Conflict("clips are not available on this server", code="no_clips")
            return await self.clips.remove_for_moderation(target_id)
        user = await self._users.get_user(target_id)
        if user is None:
            raise NotFound(f"there is no user with id {target_id!r}", code="user_not_found")
        suspended = await self._store.suspension(target_id) is not None
        if kind is ActionKind.SUSPEND_USER and suspended:
            raise Conflict("this user is already suspended", code="already_suspended")
        if kind is ActionKind.RESTORE_USER and not suspended:
            raise Conflict("this user is not suspended", code="not_suspended")
        return user.id

    async def statements(self, user: User) -> list[dict[str, Any]]:
        return [
            action.statement()
            for action in await self._store.statements_for(user.id, MAX_STATEMENTS)
        ]

    async def refuse_if_suspended(self, user_id: str) -> None:
        await self._standing.refuse_if_suspended(user_id)

    async def suspension_statement(self, user_id: str) -> dict[str, Any] | None:
        return await self._standing.suspension_statement(user_id)

    # -- blocks (hosts) ------------------------------------------------------------

    async def block(self, host: User, user_id: str) -> None:
        if user_id == host.id:
            raise Invalid("you cannot block yourself", code="cannot_block_self")
        if await self._users.get_user(user_id) is None:
            raise NotFound(f"there is no user with id {user_id!r}", code="user_not_found")
        if await self._store.count_blocks(host.id) >= MAX_BLOCKS_PER_HOST:
            raise Conflict(
                f"you cannot block more than {MAX_BLOCKS_PER_HOST} people", code="too_many_blocks"
            )
        await self._store.block(host.id, user_id, _now())
        for space_id in await self._store.live_spaces_of(host.id):
            await self._spaces.bar(host, space_id, user_id)
        await self.audit(host.id, "block_user", user_id)

    async def unblock(self, host: User, user_id: str) -> None:
        """Takes effect from the host's next space (a live one keeps its removals)."""
        await self._store.unblock(host.id, user_id)
        await self.audit(host.id, "unblock_user", user_id)

    async def blocked(self, host: User) -> list[str]:
        return sorted(await self._store.blocked_by(host.id, MAX_BLOCKS_PER_HOST))

    # -- the audit log and transparency ----------------------------------------------

    async def audit(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        await self._standing.audit(actor, action, target, details)

    async def audit_page(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        entries = await self._store.audit_entries(after_seq, limit)
        return [
            {"seq": e.seq, **e.fields(), "prev_hash": e.prev_hash, "hash": e.hash} for e in entries
        ]

    async def audit_csv(self, after_seq: int, limit: int) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(AUDIT_CSV_COLUMNS)
        for row in await self.audit_page(after_seq, limit):
            row["details"] = json.dumps(row["details"], sort_keys=True)
            writer.writerow([row[column] for column in AUDIT_CSV_COLUMNS])
        return out.getvalue()

    async def verify(self) -> ChainCheck:
        """Re-computes the whole chain, a page at a time, and checks its tail against the
        head kept in the shared state (a removed or re-hashed tail breaks no link)."""
        head = await self._standing.audit_head()  # before the walk: appends may race it
        check = verify_chain([])
        while check.ok and (page := await self._store.audit_entries(check.entries, AUDIT_PAGE)):
            check = verify_chain(page, check)
        hash_at_head = None
        if head is not None:
            at_head = await self._store.audit_entries(head.seq - 1, 1)
            hash_at_head = at_head[0].hash if at_head and at_head[0].seq == head.seq else None
        return check_against_head(check, head, hash_at_head)

    async def transparency(self) -> dict[str, Any]:
        """Recomputed at most every TRANSPARENCY_TTL_S: the export is public, and its
        aggregates read every report and action."""
        now = self._clock()
        if self._transparency is None or self._transparency[0] <= now:
            by_reason, by_kind, seconds = await self._store.transparency()
            report = transparency_report(by_reason, by_kind, seconds)
            self._transparency = (now + TRANSPARENCY_TTL_S, report)
        return self._transparency[1]
