"""Files only the server's user may read: the ticket key, the database, recordings.

A file created with the default mode and tightened by chmod afterwards is readable
by anyone on the machine in between (and forever, if the process dies there), so
these files and their directories get their mode at creation: O_CREAT with 0600,
mkdir with 0700. The umask can only take permissions away, never add them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

PRIVATE_FILE_MODE: Final = 0o600
PRIVATE_DIR_MODE: Final = 0o700


def make_private_dir(path: Path) -> None:
    """`path` and any missing parents, created 0700; an existing directory is left as
    the operator made it."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def create_private_file(path: Path) -> int:
    """A new file at `path`, 0600, open for writing; FileExistsError if it is there.

    Returns the file descriptor (wrap it with `os.fdopen` or `open(fd, ...)`)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)


def ensure_private_file(path: Path) -> None:
    """Creates `path` empty and 0600 unless it exists, for a library (SQLite, FFmpeg)
    that opens the file itself: it then writes into a file whose mode is already set,
    and SQLite gives its journal and WAL files the database's mode."""
    with contextlib.suppress(FileExistsError):
        os.close(create_private_file(path))
