"""The capture spool: the proxy process appends every captured exchange to it (written and fsynced
by a thread, off the event loop) before ingest sees it, and ingest reads it from a checkpoint.

A dead or restarted ingest process therefore loses nothing: it resumes where its checkpoint
says. Segments are files of length-prefixed frames, each a pickled batch of exchanges; a
segment is deleted once ingest has journaled everything in it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Position", "SpoolFullError", "SpoolReader", "SpoolWriter"]

log = logging.getLogger("tracetap.ingest")

_HEADER = struct.Struct(">I")
_SUFFIX = ".spool"


class Position(NamedTuple):
    """A place in the spool: a segment's number and a byte offset in it."""

    segment: int
    offset: int


class SpoolFullError(RuntimeError):
    """The spool cannot take more: its disk is full or its bound is reached."""


def _size(item: Any) -> int:
    """The bytes an exchange holds in memory, roughly: its request and kept response."""
    return len(getattr(item, "request_body", b"") or b"") + sum(
        len(chunk) for _, chunk in getattr(item, "wire_chunks", ()) or ()
    )


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())


def _segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}{_SUFFIX}"


class SpoolWriter:
    """Appends captured exchanges; `put` only queues (safe on the event loop), a thread writes.

    Each start writes to a new segment, so nothing is ever appended after a tail a crash may
    have torn. Exchanges wait in memory while a write fails (a full disk): up to
    `memory_bytes` of request and response bytes; past that, and past `max_bytes` on disk,
    new exchanges are refused and counted in `dropped` (what is already held is kept).
    `on_written(position)` is called after each fsync with the end of what is on disk.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        max_bytes: int = 8 * 1024 * 1024 * 1024,
        memory_bytes: int = 512 * 1024 * 1024,
        on_written: Callable[[Position], None] | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_file = open(self.dir / "spool.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(
                f"spool {self.dir} is in use by another tracetap process; "
                "give each proxy its own --journal-dir"
            ) from None
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.on_written = on_written
        self.retry_interval = retry_interval
        self.dropped = 0
        self.error: str | None = None  # why the last write failed, until one works again
        self._held: list[Any] = []
        self._callbacks: list[Callable[[], None] | None] = []  # one per held exchange
        self._held_bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._close_by = 0.0
        existing = _segments(self.dir)
        self._segment = (existing[-1] + 1) if existing else 1
        self._fh = open(_segment_path(self.dir, self._segment), "ab")
        self._offset = 0
        self._thread = threading.Thread(target=self._run, name="tracetap-spool", daemon=True)
        self._thread.start()

    @property
    def position(self) -> Position:
        """The end of what is written and fsynced."""
        return Position(self._segment, self._offset)

    @property
    def held(self) -> int:
        """Exchanges taken and not yet on disk."""
        with self._cond:
            return len(self._held)

    def disk_bytes(self) -> int:
        total = 0
        for number in _segments(self.dir):
            try:
                total += _segment_path(self.dir, number).stat().st_size
            except FileNotFoundError:
                pass
        return total

    def put(self, item: Any, written: Callable[[], None] | None = None) -> bool:
        """Queue an exchange for the disk; False (and counted) when it cannot be kept.
        `written` is called from the writer thread once the exchange is fsynced, or when a
        write fails (the exchange then waits in memory for the disk)."""
        size = _size(item)
        with self._cond:
            if self._held and self._held_bytes + size > self.memory_bytes:
                self.dropped += 1
                return False
            self._held.append(item)
            self._callbacks.append(written)
            self._held_bytes += size
            self._cond.notify()
        return True

    def _run(self) -> None:
        last_log = 0.0
        while True:
            with self._cond:
                while not self._held and not self._closing:
                    self._cond.wait()
                if not self._held and self._closing:
                    return
                batch = list(self._held)  # put() may append while this batch is written
                callbacks = self._callbacks[: len(batch)]
            try:
                self._write(batch)
            except Exception as exc:  # a full or failing disk: keep the batch, try again
                self.error = f"spool write failed: {type(exc).__name__}: {exc}"
                with self._cond:  # nobody waits for a write that may take long: release them
                    waiting = [w for w in self._callbacks if w is not None]
                    self._callbacks = [None] * len(self._callbacks)
                for release in waiting:
                    release()
                now = time.monotonic()
                if now - last_log >= 60:
                    log.error("%s; %d exchanges held in memory", self.error, len(batch))
                    last_log = now
                with self._cond:
                    if self._closing and time.monotonic() >= self._close_by:
                        return
                    self._cond.wait(self.retry_interval)
                continue
            if self.error is not None:
                log.warning("spool writes work again")
                self.error = None
                last_log = 0.0
            with self._cond:
                del self._held[: len(batch)]
                del self._callbacks[: len(batch)]
                self._held_bytes -= sum(map(_size, batch))
            for callback in callbacks:
                if callback is not None:
                    callback()
            if self.on_written is not None:
                self.on_written(self.position)

    def _write(self, batch: list[Any]) -> None:
        if self.max_bytes and self.disk_bytes() >= self.max_bytes:
            raise SpoolFullError(
                f"the spool holds {self.max_bytes} bytes that ingest has not taken yet"
            )
        data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _HEADER.pack(len(data)) + data
        if self._offset and self._offset + len(frame) > self.segment_bytes:
            self._fh.close()
            self._segment += 1
            self._fh = open(_segment_path(self.dir, self._segment), "ab")
            self._offset = 0
        start = self._fh.tell()
        try:
            self._fh.write(frame)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except BaseException:
            self._fh.truncate(start)  # no partial frame stays to be taken for a torn one
            self._fh.seek(start)
            raise
        self._offset = start + len(frame)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is held (trying until `timeout`), then stop."""
        with self._cond:
            self._closing = True
            self._close_by = time.monotonic() + timeout
            self._cond.notify()
        self._thread.join(timeout + 1)
        if self._held:
            log.error("%d captured exchanges could not be written to the spool", len(self._held))
        self._fh.close()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()


class SpoolReader:
    """Reads the spool from its checkpoint (the ingest side). `checkpoint(position)` records that
    everything before it is journaled and deletes the segments wholly before it."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ckpt = self.dir / "checkpoint"
        self.position = self._read_checkpoint()

    def _read_checkpoint(self) -> Position:
        try:
            segment, offset = self._ckpt.read_text().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            existing = _segments(self.dir)
            return Position(existing[0] if existing else 1, 0)

    def checkpoint(self, position: Position) -> None:
        tmp = self._ckpt.with_suffix(".tmp")
        tmp.write_text(f"{position.segment} {position.offset}")
        os.replace(tmp, self._ckpt)
        for number in _segments(self.dir):
            if number < position.segment:
                _segment_path(self.dir, number).unlink(missing_ok=True)

    def read(self, max_items: int = 256) -> Iterator[tuple[list[Any], Position]]:
        """The batches written after the current position, each with the position after it;
        the position moves on as they are yielded (the checkpoint does not). A frame not yet
        whole is left for a later call, unless a newer segment exists (then it was torn by a
        crash and never reported written, and the next segment is read)."""
        taken = 0
        while taken < max_items:
            path = _segment_path(self.dir, self.position.segment)
            frame = self._frame(path, self.position.offset)
            if frame is None:
                later = [n for n in _segments(self.dir) if n > self.position.segment]
                if not later:
                    return
                self.position = Position(later[0], 0)
                continue
            items, end = frame
            self.position = Position(self.position.segment, end)
            taken += len(items)
            yield items, self.position

    @staticmethod
    def _frame(path: Path, offset: int) -> tuple[list[Any], int] | None:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                head = fh.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    return None
                (size,) = _HEADER.unpack(head)
                data = fh.read(size)
        except FileNotFoundError:
            return None
        if len(data) < size:
            return None
        try:
            items = pickle.loads(data)
        except Exception:  # a torn or damaged frame
            return None
        return items, offset + _HEADER.size + size
