"""Write-ahead journal and pipeline recovery: nothing recorded is lost when the process dies."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import zstandard

from tests.storage.rounds import claude_session
from tracetap.ingest.pipeline import Pipeline
from tracetap.model import Exchange, StreamEvent
from tracetap.storage import journal as journal_module
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.journal import Journal, JournalLockedError


def test_append_pending_commit(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append([{"n": 1}, {"n": 2}])
    j.append([{"n": 3}])
    assert [r["n"] for batch in j.pending(batch=2) for r in batch] == [1, 2, 3]
    j.commit()
    assert list(j.pending()) == [] and j.clean
    j.append([{"n": 4}])
    j.close()
    j2 = Journal(tmp_path)  # reopened after a crash: only the uncommitted record is pending
    assert [r["n"] for batch in j2.pending() for r in batch] == [4]
    j2.close()


def test_torn_tail_is_dropped(tmp_path: Path) -> None:
    """An append is one frame: torn by a crash before its fsync, it is dropped whole (it was
    never durable); the appends before it are intact and later ones readable."""
    j = Journal(tmp_path)
    j.append([{"n": 1}])
    j.append([{"n": 2}, {"n": 3}])
    j.close()
    path = tmp_path / "journal.bin"
    path.write_bytes(path.read_bytes()[:-3])  # killed in the middle of the last write
    j2 = Journal(tmp_path)
    assert [r["n"] for batch in j2.pending() for r in batch] == [1]
    j2.append([{"n": 4}])
    assert [r["n"] for batch in j2.pending() for r in batch] == [1, 4]
    j2.close()


def test_a_big_append_spans_frames_and_tears_from_the_frame_torn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "FRAME_BYTES", 100)
    j = Journal(tmp_path)
    j.append([{"n": i, "text": "x" * 40} for i in range(6)])  # 2 records a frame
    j.close()
    path = tmp_path / "journal.bin"
    raw = path.read_bytes()
    frames = []
    pos = 0
    while pos < len(raw):
        size = int.from_bytes(raw[pos : pos + 4], "big")
        frames.append(raw[pos : pos + 4 + size])
        pos += 4 + size
    assert len(frames) == 3
    # the last frame complete in length but not zstd (a crash left zeros): cut, with it
    path.write_bytes(b"".join(frames[:2]) + frames[2][:4] + bytes(len(frames[2]) - 4))
    j2 = Journal(tmp_path)
    assert [r["n"] for batch in j2.pending() for r in batch] == [0, 1, 2, 3]
    j2.append([{"n": 9}])
    assert [r["n"] for batch in j2.pending() for r in batch] == [0, 1, 2, 3, 9]
    j2.close()


def test_a_journal_of_one_record_a_frame_is_replayed(tmp_path: Path) -> None:
    """Journals written before 2026-12-02 hold one record per frame."""
    frames = b""
    for rec in ({"n": 1}, {"n": 2, "text": "line\nbreak"}):
        data = zstandard.ZstdCompressor(level=1).compress(json.dumps(rec).encode())
        frames += len(data).to_bytes(4, "big") + data
    (tmp_path / "journal.bin").write_bytes(frames)
    j = Journal(tmp_path)
    j.recover()
    assert [r for batch in j.pending() for r in batch] == [
        {"n": 1},
        {"n": 2, "text": "line\nbreak"},
    ]
    j.close()


def test_one_process_per_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    with pytest.raises(JournalLockedError):
        Journal(tmp_path)
    j.close()


def test_rotation_after_commit(tmp_path: Path) -> None:
    j = Journal(tmp_path, rotate_bytes=1000)
    j.append([{"x": os.urandom(4000).hex()}])
    j.commit()
    assert (tmp_path / "journal.bin").stat().st_size == 0 and j.clean
    j.close()


def _exchange(i: int) -> Exchange:
    body = {
        "model": "m",
        "stream": True,
        "tools": [{"name": "Bash"}],
        "messages": [{"role": "user", "content": f"task {i}"}],
    }
    ev = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{i}",
                    "model": "m",
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "ok"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_stop", {"type": "message_stop"}),
    ]
    now = time.time()
    return Exchange(
        uid=f"uid-{i}",
        api="anthropic_messages",
        transport="sse",
        method="POST",
        scheme="http",
        host="h",
        path="/v1/messages",
        request_headers=[
            ("x-api-key", "sk-ant-api03-secret"),
            ("x-claude-code-session-id", f"s{i % 2}"),
        ],
        request_body=json.dumps(body).encode(),
        request_at=now,
        status=200,
        end_at=now + 0.1,
        events=[StreamEvent(now, n, json.dumps(d)) for n, d in ev],
    )


def _count(url: str) -> int:
    with make_engine(url).connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(m.Round)).scalar_one()


def test_pipeline_writes_and_drops_credentials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    ensure_schema(engine)
    p = Pipeline(engine, tmp_path / "j", linger=0.01)
    p.start()
    for i in range(30):
        p.submit(_exchange(i))
    p.stop()
    assert _count(url) == 30 and p.stats.rounds_recorded == 30
    raw = (tmp_path / "db.sqlite").read_bytes() + (tmp_path / "j" / "journal.bin").read_bytes()
    assert b"sk-ant-api03-secret" not in raw
    with engine.connect() as c:
        headers = c.execute(sa.select(m.Round.headers)).scalars().first()
    assert ["x-claude-code-session-id", "s0"] in headers
    assert not any(h[0] == "x-api-key" for h in headers)


def test_journal_replayed_after_kill(tmp_path: Path) -> None:
    """Records journaled but never committed (process killed) reach the DB on the next start."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    ensure_schema(engine)
    j = Journal(tmp_path / "j")
    j.append([{"t": "round", "r": r.to_dict()} for r in claude_session(7)])
    j.close()  # no commit: as if SIGKILL hit before the database write
    p = Pipeline(engine, tmp_path / "j")
    p.start()
    p.stop()
    assert _count(url) == 7
    p2 = Pipeline(engine, tmp_path / "j")  # and a second start writes nothing twice
    p2.start()
    p2.stop()
    assert _count(url) == 7


def test_database_outage_buffers_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    url = f"sqlite:///{db}"
    engine = make_engine(url, sqlite_busy_ms=100)
    ensure_schema(engine)
    p = Pipeline(engine, tmp_path / "j", linger=0.01, retry_interval=0.1)
    p.start()
    with engine.connect() as lock:  # an exclusive lock makes every write fail: an outage
        lock.exec_driver_sql("PRAGMA busy_timeout=0")
        lock.exec_driver_sql("BEGIN EXCLUSIVE")
        engine.pool.dispose()
        for i in range(10):
            p.submit(_exchange(i))
        deadline = time.time() + 60
        while p.stats.db_healthy and time.time() < deadline:
            time.sleep(0.05)
        assert not p.stats.db_healthy and p.journal.backlog_bytes > 0
        lock.exec_driver_sql("ROLLBACK")
    deadline = time.time() + 60
    while not p.journal.clean and time.time() < deadline:
        time.sleep(0.05)
    p.stop()
    assert _count(url) == 10 and p.stats.db_healthy


def _session_exchanges(n: int) -> list[Exchange]:
    """A session whose requests re-send the whole history (as agents do)."""
    out, messages = [], [{"role": "user", "content": "start " + "x" * 500}]
    for i in range(n):
        ex = _exchange(i)
        body = json.loads(ex.request_body)
        body["messages"] = list(messages)
        body["system"] = [
            {"type": "text", "text": f"x-anthropic-billing-header: cch={i};"},
            {"type": "text", "text": "You are an agent. " * 100},
        ]
        ex.request_body = json.dumps(body).encode()
        ex.request_headers = [("x-claude-code-session-id", "S")]
        out.append(ex)
        messages += [
            {"role": "assistant", "content": [{"type": "text", "text": f"step {i}"}]},
            {"role": "user", "content": [{"type": "text", "text": os.urandom(300).hex()}]},
        ]
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_deduplicated_journal_replays_in_a_new_process(tmp_path: Path, workers: int) -> None:
    """The journal stores repeated history as references (with workers, a round's re-sent
    messages as one reference to an earlier round's); a fresh process resolves them, also
    against rounds that an earlier process stored before the database went down."""
    from sqlalchemy.orm import Session

    from tracetap.storage.reconstruct import request_body

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url, sqlite_busy_ms=50)
    ensure_schema(engine)
    exchanges = _session_exchanges(12)
    expected = [json.loads(ex.request_body) for ex in exchanges]
    p = Pipeline(
        engine,
        tmp_path / "j",
        linger=0.01,
        retry_interval=30,
        workers=workers,
        worker_steps=list if workers > 1 else None,
    )
    p.start()
    for ex in exchanges[:5]:
        p.submit(ex)
    deadline = time.time() + 60
    while p.stats.rounds_recorded < 5 and time.time() < deadline:
        time.sleep(0.05)
    assert _count(url) == 5
    journaled = (tmp_path / "j" / "journal.bin").stat().st_size
    with engine.connect() as lock:  # then the database is down for the rest of the run
        lock.exec_driver_sql("BEGIN EXCLUSIVE")
        for ex in exchanges[5:]:
            p.submit(ex)
        p.stop()
        lock.exec_driver_sql("ROLLBACK")
    assert _count(url) == 5
    journal_bytes = (tmp_path / "j" / "journal.bin").stat().st_size - journaled
    raw_bytes = sum(len(ex.request_body) for ex in exchanges[5:])
    assert journal_bytes < raw_bytes / 3  # history is journaled once, not once per request
    left = Journal(tmp_path / "j")
    records = [rec for chunk in left.pending() for rec in chunk]
    left.close()
    assert len(records) == 7
    continued = [rec["r"]["messages"][0].get("$prefix") for rec in records]
    if workers > 1:  # each continues the one before, the first one a round stored already
        assert continued == [[ex.uid, 1 + 2 * i] for i, ex in enumerate(exchanges[4:11], 4)]
    else:
        assert continued == [None] * 7
    fresh = Pipeline(make_engine(url), tmp_path / "j")
    fresh.start()
    fresh.stop()
    assert _count(url) == 12
    with Session(make_engine(url)) as s:
        rounds = list(s.scalars(sa.select(m.Round).order_by(m.Round.request_at)))
        bodies = [request_body(s, r) for r in rounds]
    assert [b["messages"] for b in bodies] == [e["messages"] for e in expected]
    assert [b["system"] for b in bodies] == [e["system"] for e in expected]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lone_surrogate_is_recorded_not_fatal(tmp_path: Path, workers: int) -> None:
    """JSON.stringify sends a broken emoji (a lone surrogate) as a \\u escape, which is valid
    JSON with no UTF-8: its round is hashed, journaled and stored, and the ingest goes on."""
    from sqlalchemy.orm import Session

    from tracetap.ingest.steps import build_steps, build_transforms
    from tracetap.storage.reconstruct import request_body

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    ensure_schema(engine)
    exchanges = _session_exchanges(4)
    exchanges[1].request_body = exchanges[1].request_body.replace(b'"start ', b'"start \\ud83d ')
    expected = [json.loads(ex.request_body)["messages"] for ex in exchanges]
    assert "\ud83d" in expected[1][0]["content"]
    transforms, extensions = build_transforms()
    p = Pipeline(
        engine,
        tmp_path / "j",
        transforms=transforms,
        extensions=extensions,
        workers=workers,
        worker_steps=build_steps if workers > 1 else None,
    )
    p.start()
    for ex in exchanges:
        p.submit(ex)
    p.stop()
    assert _count(url) == 4 and p.stats.rounds_recorded == 4
    with Session(engine) as s:
        rounds = list(s.scalars(sa.select(m.Round).order_by(m.Round.request_at)))
        assert [request_body(s, r)["messages"] for r in rounds] == expected
