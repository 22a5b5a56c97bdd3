"""Write-ahead journal: records reach disk before the database, and are replayed after a crash.

Length-prefixed zstd frames of JSON records in one file; a checkpoint file holds the committed
offset.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from tracetap.content import dumps, loads

__all__ = ["Journal", "JournalLockedError"]

_HEADER = struct.Struct(">I")
FRAME_BYTES = 16 * 1024 * 1024  # of JSON per frame at most (one record may be bigger)
_ZC = zstandard.ZstdCompressor(level=1)
_ZD = zstandard.ZstdDecompressor()


class JournalLockedError(RuntimeError):
    """Another tracetap process is using this journal directory."""


class Journal:
    """Append-only record log with a committed-offset checkpoint.

    `append` writes and fsyncs; `commit` marks everything appended so far as stored;
    `pending` yields what was appended but never committed (after a crash or a DB outage).
    """

    def __init__(self, directory: str | Path, *, rotate_bytes: int = 64 * 1024 * 1024) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = open(self.dir / "journal.lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalLockedError(
                f"journal directory {self.dir} is in use by another tracetap process; "
                "give each proxy its own --journal-dir"
            ) from None
        self.path = self.dir / "journal.bin"
        self._ckpt = self.dir / "journal.checkpoint"
        self.rotate_bytes = rotate_bytes
        self.rotations = 0
        self._fh = open(self.path, "ab")
        self._end = self._fh.tell()
        committed = self._read_checkpoint()
        self._committed = committed if committed <= self._end else self._end

    def _read_checkpoint(self) -> int:
        try:
            return int(self._ckpt.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_checkpoint(self, offset: int) -> None:
        tmp = self._ckpt.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self._ckpt)

    @property
    def end(self) -> int:
        return self._end

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def backlog_bytes(self) -> int:
        return self._end - self._committed

    @property
    def clean(self) -> bool:
        return self._end == self._committed

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write the records and fsync: one zstd frame of JSON lines (JSON never holds a raw
        newline) per `FRAME_BYTES` of them, each length-prefixed. A frame is read back whole
        or not at all, so an append torn by a crash is dropped from the first frame it tore."""
        if not records:
            return
        buf = bytearray()
        lines: list[bytes] = []
        size = 0
        for i, rec in enumerate(records):
            line = dumps(rec)
            lines.append(line)
            size += len(line) + 1
            if size >= FRAME_BYTES or i == len(records) - 1:
                data = _ZC.compress(b"\n".join(lines))
                buf += _HEADER.pack(len(data))
                buf += data
                lines, size = [], 0
        self._fh.write(buf)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._end += len(buf)

    def commit(self, upto: int | None = None) -> None:
        """Records up to offset `upto` (default: all appended) are in the database."""
        self._committed = self._end if upto is None else max(self._committed, upto)
        if self._committed == self._end and self._end >= self.rotate_bytes:
            self.rotations += 1
            self._fh.truncate(0)
            self._fh.seek(0)
            self._end = self._committed = 0
        self._write_checkpoint(self._committed)

    def recover(self) -> None:
        """At start-up: cut a torn final record (the process died mid-write)."""
        for _ in self.pending():
            pass

    def pending(self, batch: int = 500, upto: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Uncommitted records (up to offset `upto`) in batches.

        Without `upto` (start-up only), a torn final record is cut off the file.
        """
        end = self._end if upto is None else upto
        with open(self.path, "rb") as fh:
            fh.seek(self._committed)
            out: list[dict[str, Any]] = []
            pos = self._committed
            while pos < end:
                head = fh.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    break
                (size,) = _HEADER.unpack(head)
                data = fh.read(size)
                if len(data) < size:
                    break
                try:  # a frame of JSON lines (older journals: one record a frame)
                    out.extend([loads(line) for line in _ZD.decompress(data).split(b"\n")])
                except (zstandard.ZstdError, ValueError):
                    break
                pos += _HEADER.size + size
                if len(out) >= batch:
                    yield out
                    out = []
            if out:
                yield out
            if upto is None and pos < self._end:  # torn tail: cut it so appends stay readable
                self._fh.truncate(pos)
                self._fh.seek(pos)
                self._end = pos

    def close(self) -> None:
        self._fh.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()
