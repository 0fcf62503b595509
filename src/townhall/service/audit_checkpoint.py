"""The audit chain's head, signed, in a file of the node's data dir.

The shared state keeps the head too (State.advance_audit_head), but an in-memory state
(the default, one node) forgets it on restart; this file does not. The head is signed
with the deployment's secret, so nobody without it can write a head of their choosing.
Someone who can write both the database and this file can still delete the file along
with the tail: the check then says no head was kept (ChainCheck.checkpoint is null),
which is itself a sign to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Final

from townhall.admission.signing import InvalidToken, Signer
from townhall.domain.moderation import AuditHead

log = logging.getLogger(__name__)

AUDIT_HEAD_FILE: Final = "audit-head"
"""Its name in the data dir."""
KIND: Final = "audit-head"
FIELDS: Final = 3
MAX_FILE_BYTES: Final = 1024


class AuditCheckpointFile:
    def __init__(self, path: Path, signer: Signer) -> None:
        self._path = path
        self._signer = signer
        self._writing = asyncio.Lock()

    async def advance(self, head: AuditHead) -> None:
        """Writes `head` unless the file already holds a later one (atomic replace)."""
        async with self._writing:
            await asyncio.to_thread(self._advance, head)

    def _advance(self, head: AuditHead) -> None:
        kept = self._read()
        if kept is not None and kept.seq >= head.seq:
            return
        token = self._signer.sign((KIND, head.seq, head.hash))
        temporary = self._path.with_name(self._path.name + ".tmp")
        temporary.write_text(token, encoding="ascii")
        os.replace(temporary, self._path)

    async def read(self) -> AuditHead | None:
        return await asyncio.to_thread(self._read)

    def _read(self) -> AuditHead | None:
        """The kept head; None if there is none, or none that this deployment signed."""
        with contextlib.suppress(FileNotFoundError):
            with self._path.open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
            try:
                if len(raw) > MAX_FILE_BYTES:
                    raise InvalidToken("too_long")
                fields = self._signer.verify(raw.decode("ascii").strip())
            except (InvalidToken, UnicodeDecodeError) as bad:
                log.warning("the audit head file %s is not ours (%s): ignored", self._path, bad)
                return None
            if len(fields) != FIELDS or fields[0] != KIND or not fields[1].isdecimal():
                log.warning("the audit head file %s is malformed: ignored", self._path)
                return None
            return AuditHead(int(fields[1]), fields[2])
        return None
