"""A user's standing as other services need it: whom a host blocked, whether a user
is suspended (and the statement that says why), and the audit log hosts' actions go to.

Spaces and Accounts are built with it (townhall.services); Moderation, which needs
Spaces to carry its decisions out, is built after them on the same Standing. Before
issue 7 Moderation assigned these as callbacks into Spaces and Accounts once all three
existed; they only need the moderation store, so they are built first and passed in.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

from townhall.domain.moderation import AuditHead, Suspended, audit_entry_text
from townhall.domain.spaces import User
from townhall.service.audit_checkpoint import AuditCheckpointFile
from townhall.state.base import State, StateUnavailable
from townhall.store.moderation import ModerationStore

log = logging.getLogger(__name__)

MAX_BLOCKS_PER_HOST: Final = 10_000
"""Blocks a host may keep: every new stage of theirs carries them all."""
MAX_STATEMENTS: Final = 100


class Standing:
    def __init__(
        self,
        store: ModerationStore,
        state: State,
        checkpoint: AuditCheckpointFile | None = None,
    ) -> None:
        """`checkpoint`: where the audit head is also kept across restarts (the shared
        state may be in memory)."""
        self._store = store
        self._state = state
        self._checkpoint = checkpoint

    async def blocked_by(self, host_id: str) -> set[str]:
        """The users a host blocked: a new stage starts with them removed, so the removal
        path (join, fast path, stream workers) keeps them out."""
        return await self._store.blocked_by(host_id, MAX_BLOCKS_PER_HOST)

    async def suspension_statement(self, user_id: str) -> dict[str, Any] | None:
        """The statement of reasons that suspended a user, or None: a suspended user
        cannot sign in, and is told why."""
        action_id = await self._store.suspension(user_id)
        if action_id is None:
            return None
        for action in await self._store.statements_for(user_id, MAX_STATEMENTS):
            if action.id == action_id:
                return action.statement()
        return {"id": action_id}

    async def refuse_if_suspended(self, user_id: str) -> None:
        """Asked, from the store, before anyone creates or starts a space or takes the
        stage, so a suspension binds on every node at once, whatever a node's token
        cache still holds."""
        statement = await self.suspension_statement(user_id)
        if statement is not None:
            raise Suspended(statement)

    async def audit(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        """Appends to the chain, then moves the head kept in the shared state forward
        (Moderation.verify checks the table's tail against it)."""
        entry = await self._store.append_audit(
            audit_entry_text(datetime.now(UTC), actor, action, target, details or {})
        )
        head = AuditHead(entry.seq, entry.hash)
        try:
            await self._state.advance_audit_head(head)
        except StateUnavailable:  # the entry is written; the next append moves the head
            log.warning("audit entry %d written; the shared state missed its head", entry.seq)
        if self._checkpoint is not None:
            try:
                await self._checkpoint.advance(head)
            except OSError as failed:
                log.warning("audit entry %d written; its head file was not: %s", entry.seq, failed)

    async def audit_head(self) -> AuditHead | None:
        """The furthest head kept outside the table: the shared state's, or the file's
        (which outlives an in-memory state's restart)."""
        heads = [await self._state.audit_head()]
        if self._checkpoint is not None:
            heads.append(await self._checkpoint.read())
        known = [head for head in heads if head is not None]
        return max(known, key=lambda head: head.seq) if known else None

    async def host_action(
        self, host: User, action: str, space_id: str, details: dict[str, Any]
    ) -> None:
        """A host's action (end, remove), for the audit log."""
        await self.audit(host.id, action, space_id, details)
