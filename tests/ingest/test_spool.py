"""The capture spool: what is put is read back in order, whatever the timing; a torn tail is
skipped; the checkpoint resumes reading and frees old segments; a failing disk holds
exchanges in memory (bounded) until it works again."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from tracetap.ingest import spool as spool_module
from tracetap.ingest.spool import Position, SpoolReader, SpoolWriter
from tracetap.model import Exchange


def _exchange(i: int, body: int = 100) -> Exchange:
    return Exchange(
        uid=f"ex-{i}",
        api="anthropic_messages",
        transport="sse",
        method="POST",
        scheme="http",
        host="h",
        path="/v1/messages",
        request_headers=[],
        request_body=b"x" * body,
        request_at=float(i),
    )


def _read_all(reader: SpoolReader) -> list[str]:
    return [item.uid for items, _ in reader.read(10**9) for item in items]


def _wait_written(writer: SpoolWriter, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while writer.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.held == 0


def test_everything_put_is_read_back_in_order_while_puts_race_the_writes(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, segment_bytes=20_000)  # many segments
    n = 2000

    def put(start: int) -> None:
        for i in range(start, n, 2):
            writer.put(_exchange(i))
            if i % 50 == 0:
                time.sleep(0.001)

    # one thread puts the even exchanges, then the odd: both race the writer thread
    evens = threading.Thread(target=put, args=(0,))
    evens.start()
    evens.join()
    put(1)
    writer.close()
    uids = _read_all(SpoolReader(tmp_path))
    assert uids == [f"ex-{i}" for i in range(0, n, 2)] + [f"ex-{i}" for i in range(1, n, 2)]


def test_a_torn_tail_is_skipped_and_a_new_start_writes_a_new_segment(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    for i in range(3):
        writer.put(_exchange(i))
    writer.close()
    (segment,) = tmp_path.glob("*.spool")
    with open(segment, "ab") as fh:  # a crash in the middle of a frame
        fh.write(b"\x00\x00\x10\x00partial")
    reader = SpoolReader(tmp_path)
    assert _read_all(reader) == ["ex-0", "ex-1", "ex-2"]  # the torn frame is not yet whole
    writer = SpoolWriter(tmp_path)
    writer.put(_exchange(3))
    writer.close()
    assert _read_all(reader) == ["ex-3"]  # a newer segment: the torn tail is passed over


def test_the_checkpoint_resumes_reading_and_frees_old_segments(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, segment_bytes=1000)
    for i in range(10):
        writer.put(_exchange(i, body=400))
        _wait_written(writer)
    writer.close()
    reader = SpoolReader(tmp_path)
    batches = list(reader.read(4))
    assert [i.uid for items, _ in batches for i in items] == ["ex-0", "ex-1", "ex-2", "ex-3"]
    reader.checkpoint(batches[-1][1])
    assert min(int(p.stem) for p in tmp_path.glob("*.spool")) == batches[-1][1].segment
    again = SpoolReader(tmp_path)  # a restarted ingest process
    assert _read_all(again) == [f"ex-{i}" for i in range(4, 10)]


def test_a_full_disk_holds_exchanges_until_it_has_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = threading.Event()
    full.set()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    writer = SpoolWriter(tmp_path, memory_bytes=1000, retry_interval=0.05)
    assert writer.put(_exchange(0, body=600))
    deadline = time.monotonic() + 5
    while writer.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.error is not None and "No space left" in writer.error
    assert writer.put(_exchange(1, body=300))  # still within the memory bound
    assert not writer.put(_exchange(2, body=300))  # past it: refused and counted
    assert writer.dropped == 1
    full.clear()  # room again
    _wait_written(writer)
    assert writer.error is None
    writer.close()
    assert _read_all(SpoolReader(tmp_path)) == ["ex-0", "ex-1"]


def test_one_spool_per_proxy(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    with pytest.raises(RuntimeError, match="in use by another tracetap process"):
        SpoolWriter(tmp_path)
    writer.close()


def test_position_orders_like_the_spool() -> None:
    assert Position(1, 900) < Position(2, 0)
