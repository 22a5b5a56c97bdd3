"""The store: content stored once, idempotent writes, session kinds, reconstruction, pairing."""

from __future__ import annotations

import copy
import uuid

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from tests.storage.rounds import claude_session
from tracetap.content import canonical, load_json
from tracetap.exporters.tracelab import iter_rows
from tracetap.storage import models as m
from tracetap.storage.db import SchemaError, check_schema, ensure_schema, make_engine, upgrade
from tracetap.storage.writer import Writer


def _writer(url: str) -> Writer:
    engine = make_engine(url)
    ensure_schema(engine)
    return Writer(engine)


def test_migration_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), m.Base.metadata) == []
    assert check_schema(engine) == "current"


def test_unknown_schema_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    try:
        check_schema(engine)
    except SchemaError as exc:
        assert "unknown" in str(exc)
    else:
        raise AssertionError("a future schema must be refused")


def test_history_is_stored_once(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(40)
    raw = sum(
        len(canonical({"system": r.system, "tools": r.tools, "messages": r.messages}))
        for r in rounds
    )
    unique = {canonical(x) for r in rounds for x in [r.system, r.tools, *r.messages]}
    w.write(rounds)
    with Session(w.engine) as s:
        stored = s.scalar(sa.select(sa.func.sum(sa.func.length(m.Blob.data))))
        msg_refs = sum(len(r.msg_new) for r in s.scalars(sa.select(m.Round)))
    unique_bytes = sum(len(u) for u in unique)
    assert stored < 1.5 * unique_bytes and stored * 10 < raw
    # each round stores only the messages it added: 1 first + 2 per later round
    assert msg_refs == 1 + 2 * 39


def test_request_reconstructs_from_chain(db_url: str) -> None:
    from tracetap.storage.reconstruct import request_parts

    w = _writer(db_url)
    rounds = claude_session(6)
    w.write(rounds[:3])
    w.write(rounds[3:])
    with Session(w.engine) as s:
        last = s.scalar(sa.select(m.Round).where(m.Round.uid == rounds[5].uid))
        parts = request_parts(s, last)
    assert parts["messages"] == rounds[5].messages
    assert parts["system"] == rounds[5].system and parts["tools"] == rounds[5].tools


def test_writes_are_idempotent(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(5)
    assert w.write(rounds) == 5
    assert w.write(copy.deepcopy(rounds)) == 0
    w2 = _writer(db_url)  # a second process replaying the same journal
    assert w2.write(copy.deepcopy(rounds)) == 0
    with Session(w.engine) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(m.Round)) == 5
        assert s.scalar(sa.select(sa.func.count()).select_from(m.ToolCall)) == 5


def test_kinds_main_subagent_side(db_url: str) -> None:
    w = _writer(db_url)
    main = claude_session(3, session="S")
    sub = claude_session(
        2,
        session="S",
        t0=1_780_000_007.0,
        first_prompt="search the repo",
        system=[{"type": "text", "text": "You are a file search agent."}],
    )
    side = claude_session(1, session="S", t0=1_780_000_001.0, first_prompt="title please")[0]
    side.tools = []
    side.uid = str(uuid.uuid4())
    w.write(main + sub + [side])
    with Session(w.engine) as s:
        kinds = {r.uid: r.kind for r in s.scalars(sa.select(m.Round))}
        assert s.scalar(sa.select(sa.func.count()).select_from(m.Session)) == 1
    assert [kinds[r.uid] for r in main] == ["main"] * 3
    assert [kinds[r.uid] for r in sub] == ["subagent"] * 2
    assert kinds[side.uid] == "side"


def test_billing_header_noise_does_not_change_system_key(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(3)
    w.write(rounds)
    with Session(w.engine) as s:
        keys = set(s.scalars(sa.select(m.Round.system_key)))
        blocks = [r.system_blocks for r in s.scalars(sa.select(m.Round))]
    assert len(keys) == 1  # same prefix identity despite the changing billing line
    assert len({b[0] for b in blocks}) == 3 and len({b[1] for b in blocks}) == 1


def test_tool_calls_pair_with_later_results(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(4)
    w.write(rounds)
    rows = list(iter_rows(db_url))
    assert [r["round_index"] for r in rows] == [0, 1, 2, 3]
    for i, row in enumerate(rows):
        [tool] = row["tools"]
        assert tool["tool_call_id"] == f"toolu_sess-1_{i}"
        assert tool["input"] == '{"command":"make"}'
        if i < 3:  # result arrives with the next request, 3.6 s after the call completed
            assert tool["tool_wall_latency_ms"] == 3600 and tool["result_chars"] == 2000
        else:
            assert tool["result_at"] is None and tool["tool_wall_latency_ms"] is None
        assert row["input_tokens_total"] == row["prefix_tokens"] + row["newly_append_tokens"]
        assert row["trace_key"] == f"claude:claude:sess-1:msg_sess-1_{i}"
        stamps = [e["timestamp"] for e in row["timing_events"]]
        assert stamps == sorted(stamps)


def test_blob_roundtrip(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(2)
    w.write(rounds)
    with Session(w.engine) as s:
        r = s.scalar(sa.select(m.Round).where(m.Round.uid == rounds[1].uid))
        blob = s.get(m.Blob, r.response_hash)
        assert load_json(blob.codec, blob.data) == rounds[1].response


def test_stream_timeline_is_stored_to_the_microsecond(db_url: str) -> None:
    """Every stream event's arrival, in ms after the request, as the round's timeline."""
    w = _writer(db_url)
    [rnd] = claude_session(1)
    t0 = rnd.request_at
    rnd.stream_timeline = [
        (t0 + 0.3004567, "message_start"),
        (t0 + 0.5, "content_block_delta"),
        (t0 + 1.2345, "content_block_delta"),
        (t0 + 61.0000002, "message_stop"),
    ]
    w.write([rnd])
    with Session(w.engine) as s:
        h = s.scalar(sa.select(m.Round.timeline_hash).where(m.Round.uid == rnd.uid))
        blob = s.get(m.Blob, h)
    assert load_json(blob.codec, blob.data) == [
        [300.457, "message_start"],
        [500.0, "content_block_delta"],
        [1234.5, "content_block_delta"],
        [61000.0, "message_stop"],
    ]
