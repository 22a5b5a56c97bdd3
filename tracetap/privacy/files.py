"""Recorded content stays private to the user who records it: the recording processes create
files 0600 and directories 0700.

The proxy process, the ingest process and its normalizer processes call `private_files()` first
thing, so the database, SQLite's -wal/-shm files, the journal and anything else they create is
neither readable nor listable by other local users, whatever umask they were started with.
"""

from __future__ import annotations

import os

__all__ = ["PRIVATE_UMASK", "private_files"]

PRIVATE_UMASK = 0o077  # no permission bits for group and others


def private_files() -> int:
    """Make this process (and the processes it starts) create files 0600 and directories 0700;
    a umask that is already stricter is kept. Returns the previous umask."""
    old = os.umask(PRIVATE_UMASK)
    if old & ~PRIVATE_UMASK:  # the caller also withheld some of the owner's bits: keep them
        os.umask(old | PRIVATE_UMASK)
    return old
