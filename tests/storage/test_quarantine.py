"""Poison isolation: a record the store cannot hold is quarantined, the rest of its batch stored.

An outage still fails the batch (the pipeline keeps it in its journal); 64-bit counts migrate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session

from tests.storage.rounds import claude_session
from tracetap.content import canonical, decode, digest
from tracetap.model import Round
from tracetap.storage import models as m
from tracetap.storage.db import check_schema, current_revision, ensure_schema, make_engine, upgrade
from tracetap.storage.quarantine import quarantine, retry_quarantine
from tracetap.storage.reconstruct import request_body
from tracetap.storage.writer import Writer, record_bytes


def _writer(url: str, **kwargs: Any) -> Writer:
    engine = make_engine(url, **kwargs)
    ensure_schema(engine)
    return Writer(engine)


def _nested(levels: int) -> Any:
    obj: Any = "deep"
    for _ in range(levels):
        obj = [obj]
    return obj


def _deep_message(rnd: Round) -> None:
    rnd.messages.append({"role": "user", "content": _nested(1_100)})


def _usage(value: Any) -> Callable[[Round], None]:
    def poison(rnd: Round) -> None:
        rnd.usage.output_tokens = value

    return poison


POISONS = {
    "2**63": (_usage(2**63), "usage.output_tokens = 9223372036854775808"),
    "10**30": (_usage(10**30), "usage.output_tokens = 1000000000000000000000000000000"),
    "1e30": (_usage(1e30), "usage.output_tokens = 1e+30 (float)"),
    "float": (_usage(50.0), "usage.output_tokens = 50.0 (float)"),
    "string": (_usage("50"), "usage.output_tokens = '50' (str)"),
    "bool": (_usage(True), "usage.output_tokens = True (bool)"),
    "nested 1100 deep": (_deep_message, "nested more than 1024 levels"),
}


def _uids(engine: sa.Engine) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(sa.select(m.Round.uid)))


def _quarantined(engine: sa.Engine) -> list[m.Quarantine]:
    with Session(engine) as s:
        return list(s.scalars(sa.select(m.Quarantine).order_by(m.Quarantine.id)))


@pytest.mark.parametrize("poison", list(POISONS))
def test_a_poison_round_is_quarantined_and_its_batch_stored(db_url: str, poison: str) -> None:
    make_poison, message = POISONS[poison]
    w = _writer(db_url)
    rounds = claude_session(7)
    bad = rounds[3]
    make_poison(bad)
    assert w.write(rounds) == 6  # returns normally: the pipeline commits its journal
    good = {r.uid for r in rounds} - {bad.uid}
    assert _uids(w.engine) == good
    [q] = _quarantined(w.engine)
    assert (q.uid, q.kind, q.resolved, q.retried_at) == (bad.uid, "round", False, None)
    assert q.error.startswith("PoisonError: ") and message in q.error
    assert q.record is not None and q.codec is not None
    kept = Round.from_dict(json.loads(decode(q.codec, q.record)))  # exact, as the retry reads it
    assert kept.uid == bad.uid and kept.usage == bad.usage and kept.messages == bad.messages
    assert w.quarantined == 1
    with Session(w.engine) as s:  # the rounds after the poison one are whole
        stored = list(s.scalars(sa.select(m.Round).order_by(m.Round.request_at)))
        assert [request_body(s, r)["messages"] for r in stored] == [
            r.messages for r in rounds if r is not bad
        ]
    later = claude_session(3, session="sess-2", t0=1_790_000_000.0)
    assert w.write(later) == 3  # the next batch is stored normally
    assert _uids(w.engine) == good | {r.uid for r in later}
    assert len(_quarantined(w.engine)) == 1


def test_several_poison_records_and_sides_in_one_batch(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(9)
    rounds[0].usage.input_tokens_total = 2**64
    rounds[5].retry_count = 2**63
    rounds[8].usage.cache_creation_1h_tokens = -(2**63) - 1
    side_ok = {"uid": "side-ok", "kind": "count_tokens", "method": "POST", "host": "h"}
    side_ok |= {"path": "/v1/messages/count_tokens", "request_at": 1.0, "input_tokens": 2**40}
    side_bad = side_ok | {"uid": "side-bad", "input_tokens": 1e30}
    assert w.write([*rounds[:4], side_bad, *rounds[4:], side_ok]) == 6
    assert _uids(w.engine) == {r.uid for i, r in enumerate(rounds) if i not in (0, 5, 8)}
    found = {(q.uid, q.kind): q.error for q in _quarantined(w.engine)}
    assert set(found) == {
        (rounds[0].uid, "round"),
        (rounds[5].uid, "round"),
        (rounds[8].uid, "round"),
        ("side-bad", "side"),
    }
    assert "usage.input_tokens_total = 18446744073709551616" in found[(rounds[0].uid, "round")]
    assert "retry_count = 9223372036854775808" in found[(rounds[5].uid, "round")]
    assert "input_tokens = 1e+30 (float)" in found[("side-bad", "side")]
    with Session(w.engine) as s:
        assert s.scalars(sa.select(m.SideRequest.input_tokens)).all() == [2**40]


def test_counts_at_the_64_bit_limits_are_stored_exactly(db_url: str) -> None:
    w = _writer(db_url)
    [a, b] = claude_session(2)
    a.usage.output_tokens, a.usage.input_tokens_total = 2**63 - 1, 2**31
    b.usage.output_tokens, b.retry_count = -(2**63), 2**40
    assert w.write([a, b]) == 2 and _quarantined(w.engine) == []
    with Session(w.engine) as s:
        rows = s.execute(
            sa.select(
                m.Round.output_tokens, m.Round.input_tokens_total, m.Round.retry_count
            ).order_by(m.Round.request_at)
        ).all()
    assert [tuple(r) for r in rows] == [(2**63 - 1, 2**31, None), (-(2**63), 1000 * 2, 2**40)]


def test_a_value_the_database_refuses_is_quarantined_with_its_error(db_url: str) -> None:
    """Not only what the writer checks: any error but an outage isolates the record."""
    w = _writer(db_url)
    rounds = claude_session(3)
    rounds[1].status = 2**63  # not a count: the database itself refuses it
    assert w.write(rounds) == 2
    [q] = _quarantined(w.engine)
    assert q.uid == rounds[1].uid and q.record is not None
    assert q.error.split(":")[0] in ("OverflowError", "NumericValueOutOfRange", "DataError")
    assert w.write(claude_session(2, session="sess-2", t0=1_790_000_000.0)) == 2


def test_content_a_poison_round_shares_with_later_rounds_is_stored(db_url: str) -> None:
    """The journal names content it holds already by hash: a round after the poison one may
    refer to the poison round's messages, which must then be in `blobs`."""
    w = _writer(db_url)
    rounds = claude_session(4)
    rounds[1].usage.output_tokens = 2**63
    shared = rounds[1].messages[-1]
    later = rounds[2]
    at = later.messages.index(shared)
    later.messages[at] = {"$blob": digest(canonical(shared))}
    assert w.write(rounds) == 3
    with Session(w.engine) as s:
        row = s.scalars(sa.select(m.Round).where(m.Round.uid == later.uid)).one()
        assert request_body(s, row)["messages"][at] == shared


def test_a_record_too_deep_to_serialize_is_quarantined_without_its_data(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(3)
    rounds[1].messages.append({"role": "user", "content": _nested(100_000)})
    assert record_bytes(rounds[1]) is None
    assert w.write(rounds) == 2
    [q] = _quarantined(w.engine)
    assert q.uid == rounds[1].uid and q.record is None and q.codec is None
    assert q.error.startswith("PoisonError: content nested too deeply")
    [entry] = quarantine(w.engine)
    assert not entry.kept
    result = retry_quarantine(w.engine)  # nothing to write again: it stays, untouched
    assert [e.id for e in result.failed] == [q.id] and not result.resolved
    assert result.failed[0].retried_at is None


def test_a_batch_written_again_is_quarantined_once(db_url: str) -> None:
    """After an outage the pipeline writes the whole batch again: stored rounds are skipped and
    a poison one already quarantined is not added twice."""
    w = _writer(db_url)
    rounds = claude_session(4)
    rounds[2].usage.output_tokens = 10**30
    assert w.write(rounds) == 3
    again = [Round.from_dict(r.to_dict()) for r in rounds]
    assert Writer(w.engine).write(again) == 0
    assert len(_quarantined(w.engine)) == 1


def test_write_without_quarantine_raises(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(2)
    rounds[1].usage.output_tokens = 2**63
    with pytest.raises(ValueError, match="usage.output_tokens"):
        w.write(rounds, quarantine=False)
    assert _uids(w.engine) == set() and _quarantined(w.engine) == []


def _hold(url: str) -> sa.Connection:
    """A connection holding the store so that every write fails as in an outage."""
    conn = make_engine(url).connect()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA busy_timeout=0")
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
    else:
        for table in ("sessions", "rounds", "blobs", "quarantine"):
            conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn


def test_an_outage_raises_and_quarantines_nothing(db_url: str) -> None:
    """A locked database (SQLite: BEGIN EXCLUSIVE elsewhere; PostgreSQL: tables locked, with a
    lock timeout) is an outage: the batch fails whole, the pipeline keeps it in its journal."""
    kwargs: dict[str, Any] = {"sqlite_busy_ms": 100}
    if db_url.startswith("postgresql"):
        kwargs = {"connect_args": {"options": "-c lock_timeout=200"}}
    w = _writer(db_url, **kwargs)
    rounds = claude_session(4)
    rounds[1].usage.output_tokens = 2**63  # poison too: the outage still wins
    lock = _hold(db_url)
    try:
        w.engine.pool.dispose()
        with pytest.raises(sa.exc.OperationalError):
            w.write(rounds)
        assert w.quarantined == 0
    finally:
        lock.rollback()
        lock.close()
    assert _uids(w.engine) == set() and _quarantined(w.engine) == []
    assert w.write(rounds) == 3  # the database is back: the retry isolates the poison
    assert [q.uid for q in _quarantined(w.engine)] == [rounds[1].uid]


def test_retry_keeps_poison_and_stores_what_the_store_now_takes(db_url: str) -> None:
    w = _writer(db_url)
    rounds = claude_session(3)
    rounds[0].usage.output_tokens = 2**63
    assert w.write(rounds[:1]) == 0
    # As an older tracetap quarantined it (32-bit columns on PostgreSQL): storable now.
    fixed = rounds[1]
    fixed.usage.output_tokens = 2**40
    codec, data = record_bytes(fixed) or ("", b"")
    with Session(w.engine) as s, s.begin():
        s.add(
            m.Quarantine(
                uid=fixed.uid,
                kind="round",
                error="DataError: integer out of range",
                codec=codec,
                record=data,
                created_at=1.0,
            )
        )
    result = retry_quarantine(w.engine)
    assert [e.uid for e in result.resolved] == [fixed.uid]
    assert [e.uid for e in result.failed] == [rounds[0].uid]
    assert result.failed[0].error.startswith("PoisonError: usage.output_tokens")
    assert result.failed[0].retried_at is not None and result.resolved[0].retried_at is not None
    assert [q.uid for q in quarantine(w.engine)] == [rounds[0].uid]
    assert len(quarantine(w.engine, resolved=True)) == 2
    with Session(w.engine) as s:
        assert s.scalars(sa.select(m.Round.output_tokens)).all() == [2**40]
    assert retry_quarantine(w.engine).resolved == []  # resolved ones are not written again


def test_a_store_at_0002_upgrades_and_holds_64_bit_counts(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0002_tokens")
    before = claude_session(3)
    Writer(engine).write(before)  # the writer's rows fit 0002's tables
    assert current_revision(engine) == "0002_tokens"
    upgrade(engine, "0003_quarantine")
    assert current_revision(engine) == "0003_quarantine"
    upgrade(engine)
    assert current_revision(engine) == m.SCHEMA_VERSION
    assert check_schema(engine) == "current"
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), m.Base.metadata) == []
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    with Session(engine) as s:  # what 0002 held is intact
        stored = list(s.scalars(sa.select(m.Round).order_by(m.Round.request_at)))
        assert [r.uid for r in stored] == [r.uid for r in before]
        assert [request_body(s, r)["messages"] for r in stored] == [r.messages for r in before]
        assert s.scalar(sa.select(sa.func.count()).select_from(m.ToolCall)) == 3
    [big] = claude_session(1, session="big", t0=1_790_000_000.0)
    big.usage.input_tokens_total = big.usage.cached_tokens = 2**40
    big.usage.output_tokens = 2**40 + 1
    assert Writer(engine).write([big]) == 1
    with Session(engine) as s:
        row = s.scalars(sa.select(m.Round).where(m.Round.uid == big.uid)).one()
        assert (row.input_tokens_total, row.cached_tokens, row.output_tokens) == (
            2**40,
            2**40,
            2**40 + 1,
        )
        assert type(row.output_tokens) is int


def test_a_round_id_is_kept_as_text_any_store_takes(db_url: str) -> None:
    w = _writer(db_url)
    [rnd] = claude_session(1)
    rnd.uid = f"uid-\x00-{uuid.uuid4()}"  # PostgreSQL text holds no NUL
    rnd.usage.output_tokens = 2**63
    assert w.write([rnd]) == 0
    [q] = _quarantined(w.engine)
    assert q.uid == rnd.uid.replace("\x00", "\\x00")
