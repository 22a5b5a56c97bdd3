"""Batched, idempotent writes of normalized rounds (and side requests) into the store.

One transaction per batch; content goes to `blobs` once per hash; rounds already stored are skipped.
A record the database cannot store (its data, not the database, at fault) is isolated from its
batch and quarantined with its error; an outage still fails the batch, which is retried whole.
"""

from __future__ import annotations

import json
import logging
import operator
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Protocol, TypeGuard

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import canonical, digest, dumps, encode
from tracetap.identity import assign_identity, classify
from tracetap.model import Round as RoundRec
from tracetap.storage import models as m
from tracetap.storage.reconstruct import message_hashes

__all__ = [
    "BLOB_REF",
    "MAX_DEPTH",
    "PREFIX_REF",
    "PoisonError",
    "SideRecord",
    "Writer",
    "WriterExtension",
    "error_text",
    "insert_rows",
    "insert_statement",
    "is_blob_ref",
    "is_prefix_ref",
    "record_bytes",
]

log = logging.getLogger("tracetap.storage")

# {"$blob": hash} stands for content already journaled or stored (see ingest.pipeline).
BLOB_REF = "$blob"
# {"$prefix": [uid, n]}, only as a round's first message, stands for the first n messages of
# round `uid`, journaled earlier or stored (see ingest.normalize).
PREFIX_REF = "$prefix"


def is_blob_ref(obj: object) -> TypeGuard[dict[str, str]]:
    """True for {"$blob": hash}, content journaled or stored earlier."""
    return type(obj) is dict and len(obj) == 1 and BLOB_REF in obj


def is_prefix_ref(obj: object) -> bool:
    """True for {"$prefix": [uid, n]}, an earlier round's first n messages."""
    return type(obj) is dict and len(obj) == 1 and PREFIX_REF in obj


SideRecord = dict[str, Any]  # {"uid", "kind", "method", "host", "path", ...}


class PoisonError(ValueError):
    """A record the store cannot hold as it is (a count that is not a 64-bit integer, content
    nested too deeply to serialize): retrying cannot help, so it is quarantined."""


# The fields `Writer` sets on a round while writing it: put back when its transaction fails, so
# a retry sees the round as it came (`classify` keeps a kind already set, for one).
_SET_BY_WRITER = (
    "kind",
    "system_key",
    "thread_key",
    "project",
    "agent_session_id",
    "session_source",
)
_snapshot = operator.attrgetter(*_SET_BY_WRITER)

# PostgreSQL error classes (SQLSTATE's first two characters) that say the database is unwell
# or busy, not that a record is bad: connection, transaction rollback (deadlock, serialization),
# insufficient resources, object in use or lock not available, operator intervention, system
# and internal errors.
_OUTAGE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58", "XX"})


class WriterExtension(Protocol):
    """Stores extra per-round data (e.g. token segments) in the same transaction."""

    def after_rounds(self, session: OrmSession, rounds: list[RoundRec], pks: list[int]) -> None:
        """`rounds` were just inserted; `pks` are their ids, in the same order."""


def insert_statement(
    dialect: str, table: sa.Table | type[m.Base]
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for `table` in `dialect` that supports `on_conflict_do_nothing` (postgresql or
    sqlite)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


class _LRU[K, V](OrderedDict[K, V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass(slots=True)
class _SessionEntry:
    """What the writer keeps of a stored session (updated as its rounds name them)."""

    pk: int
    main_system_key: str | None
    project: str | None


class Writer:
    """Writes batches of records; keeps small caches (known blobs, sessions, recent histories)."""

    def __init__(self, engine: Engine, extensions: Iterable[WriterExtension] = ()) -> None:
        self.engine = engine
        self.extensions = list(extensions)
        self.dialect = engine.dialect.name
        self._blobs: _LRU[str, bool] = _LRU(200_000)
        self._sessions: _LRU[tuple[str, str | None], _SessionEntry] = _LRU(10_000)
        self._histories: dict[int, deque[tuple[str, list[str]]]] = {}
        # round uid -> its message hashes (for "$prefix")
        self._message_hashes: _LRU[str, list[str]] = _LRU(4096)
        self._uncommitted: list[str] = []
        # response id -> (system_key, thread_key) of its round, for continuations
        self._responses: _LRU[str, tuple[str | None, str | None]] = _LRU(50_000)
        self.quarantined = 0  # records this writer put in quarantine
        # the driver's own (the SQLite and COPY paths call it directly) and SQLAlchemy's wrappers
        dbapi: Any = engine.dialect.dbapi
        self._outage_errors: tuple[type[BaseException], ...] = (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            *(getattr(dbapi, name) for name in ("OperationalError", "InterfaceError") if dbapi),
        )

    # -- public -------------------------------------------------------------------------
    def write(self, records: Iterable[RoundRec | SideRecord], *, quarantine: bool = True) -> int:
        """Write a batch in one transaction; returns the number of new rounds stored.

        When the batch fails while the database is reachable (see `is_outage`), it is written
        again in halves, recursively: each record that fails on its own is quarantined (table
        `quarantine`, with its error), the others are stored, and this returns normally. An
        outage raises, as does any failure with `quarantine=False`: the caller keeps the batch
        and writes it again later (what was stored meanwhile is skipped then)."""
        batch = list(records)
        try:
            return self._write_batch(batch)
        except Exception as exc:
            if not quarantine or self.is_outage(exc):
                raise
            return self._isolate(batch, exc)

    def is_outage(self, exc: BaseException) -> bool:
        """True when `exc` says the database is unreachable or unwell rather than that the
        records are bad: a lost or refused connection, a lock, a timeout, a deadlock, a full disk
        (the driver's OperationalError and InterfaceError; on PostgreSQL, the error's class).
        Any other error is the records' only if the database then answers a trivial query."""
        if isinstance(exc, MemoryError | OSError | sa.exc.DisconnectionError | sa.exc.TimeoutError):
            return True
        if isinstance(exc, sa.exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            exc = exc.orig if exc.orig is not None else exc
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            if sqlstate[:2] in _OUTAGE_CLASSES:
                return True
        elif isinstance(exc, self._outage_errors):
            return True
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(m.Quarantine.id).limit(1))
        except Exception:
            return True
        return False

    # -- batches, isolation and quarantine ------------------------------------------------
    def _write_batch(self, batch: list[RoundRec | SideRecord]) -> int:
        """The batch in one transaction; on failure the writer's caches and the rounds are as
        they were before it."""
        rounds = [r for r in batch if isinstance(r, RoundRec)]
        sides = [r for r in batch if not isinstance(r, RoundRec)]
        before = list(map(_snapshot, rounds))
        self._uncommitted = []
        try:
            with OrmSession(self.engine) as session, session.begin():
                stored = self._write_rounds(session, rounds)
                self._write_sides(session, sides)
        except BaseException:
            self._sessions.clear()  # may hold rows of the rolled-back transaction
            self._histories.clear()
            for rnd, fields in zip(rounds, before):
                for name, value in zip(_SET_BY_WRITER, fields):
                    setattr(rnd, name, value)
            raise
        finally:
            uncommitted, self._uncommitted = self._uncommitted, []
        for h in uncommitted:
            self._blobs.put(h, True)
        return stored

    def _isolate(self, batch: list[RoundRec | SideRecord], exc: Exception) -> int:
        """Store what can be stored of a batch that failed with `exc`, halving it (in order:
        a "$prefix" names a round before it) until each record that fails alone is found and
        quarantined. An outage on the way raises."""
        if len(batch) == 1:
            self._quarantine(batch[0], exc)
            return 0
        mid = len(batch) // 2
        stored = 0
        for part in (batch[:mid], batch[mid:]):
            try:
                stored += self._write_batch(part)
            except Exception as failed:
                if self.is_outage(failed):
                    raise
                stored += self._isolate(part, failed)
        return stored

    def _quarantine(self, record: RoundRec | SideRecord, exc: Exception) -> None:
        """Keep `record` in the quarantine table with its error, once per uid until it is
        resolved (a batch is written again after an outage). Its content is stored first:
        records after it may name that content by hash, as the journal writes them."""
        raw_uid = record.uid if isinstance(record, RoundRec) else record.get("uid")
        kind = "round" if isinstance(record, RoundRec) else "side"
        uid = _text(raw_uid) if isinstance(raw_uid, str) else None
        error = error_text(exc)
        self._salvage(record, uid)
        packed = record_bytes(record)
        row: dict[str, Any] = {
            "uid": uid,
            "kind": kind,
            "error": error,
            "codec": packed[0] if packed else None,
            "record": packed[1] if packed else None,
            "created_at": time.time(),
            "retried_at": None,
            "resolved": False,
        }
        problem: Exception | None = None
        for attempt in (row, row | {"codec": None, "record": None}):
            try:
                with OrmSession(self.engine) as session, session.begin():
                    if uid is not None and session.scalar(
                        sa.select(m.Quarantine.id)
                        .where(
                            m.Quarantine.uid == uid,
                            m.Quarantine.kind == kind,
                            m.Quarantine.resolved.is_(False),
                        )
                        .limit(1)
                    ):
                        return  # quarantined already
                    session.execute(sa.insert(m.Quarantine), attempt)
                break
            except Exception as failed:
                if self.is_outage(failed):
                    raise
                problem = failed
        else:
            log.error(
                "%s %s cannot be stored nor quarantined, it is dropped: %s (%s)",
                kind,
                uid,
                error,
                error_text(problem) if problem else "",
            )
            return
        self.quarantined += 1
        log.error("%s %s quarantined, the database cannot store it: %s", kind, uid, error)

    def _salvage(self, record: RoundRec | SideRecord, uid: str | None) -> None:
        """Store the content of a quarantined record that can be stored, in its own
        transaction: the records journaled after it name content they share with it by hash."""
        pending: dict[str, bytes] = {}
        try:
            for obj in _contents(record):
                try:
                    self._blob(pending, obj)
                except Exception:  # e.g. nested too deeply: nothing names it by hash either
                    continue
        except Exception:  # a record of the wrong shape: keep what was gathered
            pass
        if not pending:
            return
        self._uncommitted = []
        try:
            with OrmSession(self.engine) as session, session.begin():
                self._flush_blobs(session, pending)
        except Exception as exc:
            if self.is_outage(exc):
                raise
            log.warning("the content of quarantined record %s is not stored: %s", uid, exc)
            return
        else:
            for h in self._uncommitted:
                self._blobs.put(h, True)
        finally:
            self._uncommitted = []

    # -- helpers ------------------------------------------------------------------------
    def _blob(self, pending: dict[str, bytes], obj: Any) -> str | None:
        if obj is None:
            return None
        if is_blob_ref(obj):
            return obj[BLOB_REF]  # content journaled or stored earlier
        try:
            data = canonical(obj)
        except RecursionError:  # orjson refuses deep nesting, json.dumps then runs out of stack
            raise PoisonError("content nested too deeply to serialize as JSON") from None
        if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _nested_deeper(obj, MAX_DEPTH):
            raise PoisonError(f"content nested more than {MAX_DEPTH} levels deep")
        h = digest(data)
        if h not in self._blobs:
            pending[h] = data
        return h

    def _flush_blobs(self, session: OrmSession, pending: dict[str, bytes]) -> None:
        if not pending:
            return
        hashes = list(pending)
        existing = stored_keys(session, m.Blob.__table__.c.hash, hashes)
        rows = []
        for h in sorted(hashes):  # one lock order for every writer: no deadlocks between proxies
            if h not in existing:
                codec, data = encode(pending[h])
                rows.append({"hash": h, "size": len(pending[h]), "codec": codec, "data": data})
        insert_rows(session, m.Blob.__table__, rows, conflict=("hash",))
        self._uncommitted.extend(hashes)  # known only once the transaction commits
        pending.clear()

    def knows(self, h: str) -> bool:
        """True when the blob is committed to the database (as far as this writer saw)."""
        return h in self._blobs

    def _session_pk(self, session: OrmSession, rnd: RoundRec, origin: str) -> _SessionEntry:
        """The pk, main system key and project of the round's session (created if new)."""
        key = (rnd.provider, rnd.agent_session_id)
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        stmt = (
            insert_statement(self.dialect, m.Session)
            .values(
                provider=rnd.provider,
                agent_session_id=rnd.agent_session_id,
                session_source=rnd.session_source,
                client=rnd.client,
                project=rnd.project,
                origin=origin,
            )
            .on_conflict_do_nothing(index_elements=["provider", "agent_session_id"])
        )
        session.execute(stmt)
        row = session.execute(
            sa.select(m.Session.id, m.Session.main_system_key, m.Session.project).where(
                m.Session.provider == rnd.provider,
                m.Session.agent_session_id == rnd.agent_session_id,
            )
        ).one()
        entry = _SessionEntry(row.id, row.main_system_key, row.project)
        self._sessions.put(key, entry)
        return entry

    def _inherit_identity(self, session: OrmSession, rnd: RoundRec) -> None:
        """A request that continues an earlier response (OpenAI `previous_response_id`, as
        Codex sends over a WebSocket) carries only new input: it belongs to that response's
        conversation, whatever its own (partial) content says."""
        prev = rnd.envelope.get("previous_response_id")
        if not prev:
            return
        keys = self._responses.get(prev)
        if keys is None:
            row = session.execute(
                sa.select(m.Round.system_key, m.Round.thread_key)
                .where(m.Round.response_id == prev)
                .limit(1)
            ).first()
            keys = (row[0], row[1]) if row is not None else None
        if keys is not None:
            rnd.system_key, rnd.thread_key = keys

    def _messages(self, session_pk: int, rnd: RoundRec, hashes: list[str]) -> dict[str, Any]:
        """Store the message list as (parent round, shared prefix length, new hashes)."""
        best_uid, best_len = None, 0
        history = self._histories.setdefault(session_pk, deque(maxlen=8))
        for uid, prev in reversed(history):  # newest first; ties go to the oldest
            if min(len(prev), len(hashes)) < max(best_len, 1):
                continue  # cannot reach the best so far
            if hashes[: len(prev)] == prev:
                n = len(prev)
            else:
                same = list(map(operator.eq, prev, hashes))
                n = same.index(False) if False in same else len(same)
            if n >= best_len and n:
                best_uid, best_len = uid, n
        history.append((rnd.uid, hashes))
        return {
            "msg_parent_uid": best_uid,
            "msg_prefix_len": best_len,
            "msg_new": hashes[best_len:],
            "msg_count": len(hashes),
        }

    def _hashes_of_messages(
        self, session: OrmSession, pending: dict[str, bytes], rnd: RoundRec
    ) -> list[str]:
        """The round's message hashes as stored (null messages left out), its leading
        {"$prefix": [uid, n]} resolved from the rounds written before (kept here, else read
        back from the store)."""
        messages = rnd.messages
        hashes: list[str] = []
        if messages and is_prefix_ref(messages[0]):
            uid, n = messages[0][PREFIX_REF]
            messages = messages[1:]
            earlier = self._message_hashes.get(uid)
            if earlier is None:
                row = session.scalar(sa.select(m.Round).where(m.Round.uid == uid))
                try:
                    earlier = message_hashes(session, row) if row is not None else []
                except LookupError:
                    earlier = []
            if len(earlier) < n:  # never journaled after its round: the journal was altered
                log.error(
                    "round %s continues the messages of round %s, which is not stored; "
                    "its first %d messages are lost",
                    rnd.uid,
                    uid,
                    n,
                )
            hashes = earlier[:n]
        hashes += [
            h
            for h in (
                msg[BLOB_REF] if is_blob_ref(msg) else self._blob(pending, msg) for msg in messages
            )
            if h
        ]  # refs: most
        self._message_hashes.put(rnd.uid, hashes)
        return hashes

    def _write_rounds(self, session: OrmSession, rounds: list[RoundRec]) -> int:
        if not rounds:
            return 0
        pending: dict[str, bytes] = {}
        # in the journal's order, which a "$prefix" follows: the round it names comes first
        resolved = [self._hashes_of_messages(session, pending, r) for r in rounds]
        seen = stored_keys(session, m.Round.__table__.c.uid, [r.uid for r in rounds])
        todo = sorted(
            ((r, h) for r, h in zip(rounds, resolved) if r.uid not in seen),
            key=lambda pair: pair[0].request_at,
        )
        if not todo:
            return 0
        rounds = [r for r, _ in todo]
        round_rows: list[dict[str, Any]] = []
        children: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        for rnd, hashes in todo:
            if rnd.system_key is None:
                assign_identity(rnd)
            origin = "proxy" if rnd.transport != "log" else "import"
            self._inherit_identity(session, rnd)
            entry = self._session_pk(session, rnd, origin)
            session_pk, main_key = entry.pk, entry.main_system_key
            kind, new_main = classify(rnd, main_key)
            if new_main != main_key:
                entry.main_system_key = new_main
                session.execute(
                    sa.update(m.Session)
                    .where(m.Session.id == session_pk)
                    .values(main_system_key=new_main)
                )
            if rnd.project and not entry.project:  # the first round that names the project
                entry.project = rnd.project
                session.execute(
                    sa.update(m.Session)
                    .where(m.Session.id == session_pk)
                    .values(project=rnd.project)
                )
            rnd.kind = kind
            if rnd.response_id:
                self._responses.put(rnd.response_id, (rnd.system_key, rnd.thread_key))
            row = _round_row(rnd, session_pk)
            row.update(self._messages(session_pk, rnd, hashes))
            row["envelope_hash"] = self._blob(pending, rnd.envelope)
            if isinstance(rnd.system, list):  # every row names both (one executemany)
                row["system_blocks"] = [self._blob(pending, b) for b in rnd.system]
                row["system_hash"] = None
            else:
                row["system_blocks"] = sa.null()  # SQL NULL, not JSON null
                row["system_hash"] = self._blob(pending, rnd.system)
            row["tools_hash"] = self._blob(pending, rnd.tools or None)
            row["response_hash"] = self._blob(pending, rnd.response)
            row["timeline_hash"] = self._blob(pending, _timeline(rnd))
            tools = [
                {
                    "tool_index": t.index,
                    "call_id": t.call_id,
                    "name": t.name,
                    "kind": t.kind,
                    "input_hash": self._blob(pending, t.arguments),
                    "input_chars": len(t.arguments) if t.input_chars is None else t.input_chars,
                    "emitted_at": t.emitted_at,
                }
                for t in rnd.tool_calls
            ]
            round_rows.append(row)
            children.append((tools, _timing_rows(rnd)))
        self._flush_blobs(session, pending)
        pks = insert_rows(session, m.Round.__table__, round_rows, ids_by="uid")
        tool_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        for pk, (tools, events) in zip(pks, children):
            tool_rows.extend(dict(t, round_pk=pk) for t in tools)
            event_rows.extend(dict(e, round_pk=pk) for e in events)
        insert_rows(session, m.ToolCall.__table__, tool_rows)
        insert_rows(session, m.TimingEvent.__table__, event_rows)
        for ext in self.extensions:
            ext.after_rounds(session, rounds, pks)
        return len(pks)

    def _write_sides(self, session: OrmSession, sides: list[SideRecord]) -> None:
        if not sides:
            return
        pending: dict[str, bytes] = {}
        rows = []
        columns = {c.name: _default(c) for c in m.SideRequest.__table__.columns if c.name != "id"}
        for side in sides:
            side = columns | side  # every row names every column (one executemany)
            side["input_tokens"] = _count(side["input_tokens"], "input_tokens")
            request, response = side.pop("request", None), side.pop("response", None)
            side["request_hash"] = self._blob(pending, request)
            side["response_hash"] = self._blob(pending, response)
            rows.append(side)
        self._flush_blobs(session, pending)
        stmt = insert_statement(self.dialect, m.SideRequest).on_conflict_do_nothing(
            index_elements=["uid"]
        )
        session.execute(stmt, rows)


def stored_keys(session: OrmSession, column: sa.Column[Any], keys: list[Any]) -> set[Any]:
    """Which of `keys` the column (a unique key) holds, in the session's transaction."""
    chunks = [keys[i : i + 500] for i in range(0, len(keys), 500)]
    if session.get_bind().dialect.name != "sqlite" or not RAW_ON_SQLITE:
        return {
            k
            for chunk in chunks
            for k in session.scalars(sa.select(column).where(column.in_(chunk)))
        }
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    name, table = quote(column.name), quote(column.table.name)
    found: set[Any] = set()
    cur = _driver(conn).cursor()
    try:
        for chunk in chunks:
            cur.execute(
                f"SELECT {name} FROM {table} WHERE {name} IN ({', '.join('?' * len(chunk))})", chunk
            )
            found.update(k for (k,) in cur.fetchall())
    finally:
        cur.close()
    return found


def _driver(conn: sa.Connection) -> Any:
    """The DBAPI driver's own connection (sqlite3's or psycopg's) under `conn`. SQLAlchemy
    types it Optional: a pooled connection has none once invalidated."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise sa.exc.InvalidRequestError("the connection has been invalidated")
    return driver


def insert_rows(
    session: OrmSession,
    table: sa.Table,
    rows: list[dict[str, Any]],
    *,
    ids_by: str | None = None,
    conflict: tuple[str, ...] = (),
) -> list[int]:
    """INSERT rows in the session's transaction; with `ids_by` (a unique column), returns the
    generated ids in row order; with `conflict` (a unique key), rows whose key is stored are
    skipped. SQLite gets the driver's executemany, PostgreSQL COPY (without `conflict`):
    SQLAlchemy's per-statement work on SQLite, and psycopg's per-value work on multi-row
    INSERTs of wide rows on PostgreSQL, would be a large share of each round's write; COPY
    avoids most of it. Both store what `table.insert()` stores (tested)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite" and RAW_ON_SQLITE:
        return _sqlite_insert(session, table, rows, ids_by, conflict)
    if conflict:
        stmt = insert_statement(dialect, table).on_conflict_do_nothing(
            index_elements=list(conflict)
        )
        session.execute(stmt, rows)
        return []
    if dialect == "postgresql" and COPY_ON_POSTGRESQL:
        _copy(session, table, rows)
        if ids_by is None:
            return []
        keys = [r[ids_by] for r in rows]
        found = dict(
            session.execute(
                sa.select(table.c[ids_by], table.c.id).where(table.c[ids_by].in_(keys))
            ).all()
        )
        return [found[k] for k in keys]
    if ids_by is None:
        session.execute(table.insert(), rows)
        return []
    returning = table.insert().returning(table.c.id, sort_by_parameter_order=True)
    return list(session.execute(returning, rows).scalars())


COPY_ON_POSTGRESQL = True  # tests compare both ways
RAW_ON_SQLITE = True  # likewise


def _default(column: sa.Column[Any]) -> Any:
    """What an INSERT without this column stores: its Python-side default, else SQL NULL
    (`sa.null()` for JSON, whose None means JSON null)."""
    d = column.default
    if d is None:
        return sa.null() if isinstance(column.type, sa.JSON) else None
    if not isinstance(d, sa.ColumnDefault):  # a Sequence or Identity: none in these models
        raise TypeError(f"{column} has no Python-side default")
    return d.arg(None) if d.is_callable else d.arg


def _columns(table: sa.Table, rows: list[dict[str, Any]]) -> list[sa.Column[Any]]:
    """The columns a bulk insert names: all but the generated id, unless a row gives it."""
    auto = table.autoincrement_column
    return [c for c in table.columns if c is not auto or any(c.name in r for r in rows)]


def _values(
    rows: list[dict[str, Any]],
    cols: list[sa.Column[Any]],
    convert: Sequence[Callable[[Any], Any] | None],
) -> list[list[Any]]:
    """Each row's values in `cols` order: column defaults for absent keys, `sa.null()` as SQL
    NULL, the rest through `convert` (one function or None per column). A row that names every
    column (as the writer's do) is read in one C call."""
    names = [c.name for c in cols]
    defaults = [_default(c) for c in cols]
    null = sa.null()  # a singleton
    conv_at = [(i, conv) for i, conv in enumerate(convert) if conv is not None]
    get = operator.itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)
    out = []
    for row in rows:
        try:
            values = list(get(row))
        except KeyError:
            values = [row.get(name, default) for name, default in zip(names, defaults)]
        nulls: Container[int] = ()
        if True in map(operator.is_, values, repeat(null)):
            nulls = {i for i, v in enumerate(values) if v is null}
            values = [None if v is null else v for v in values]
        for i, conv in conv_at:
            if i not in nulls:
                values[i] = conv(values[i])
        out.append(values)
    return out


def _sqlite_insert(
    session: OrmSession,
    table: sa.Table,
    rows: list[dict[str, Any]],
    ids_by: str | None,
    conflict: tuple[str, ...],
) -> list[int]:
    """The rows through sqlite3's own executemany, each value bound as SQLAlchemy binds it
    (the column type's bind processor: JSON serialized, booleans as integers)."""
    conn = session.connection()
    dialect = conn.dialect
    cols = _columns(table, rows)
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(k) for k in conflict)}) DO NOTHING"
    convert = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in cols]
    values = _values(rows, cols, convert)
    cur = _driver(conn).cursor()
    try:
        if ids_by is None:
            cur.executemany(sql, values)
            return []
        ids = []
        for v in values:  # one row a statement: its rowid is the id (no RETURNING needed)
            cur.execute(sql, v)
            ids.append(cur.lastrowid)
        return ids
    finally:
        cur.close()


def _copy(session: OrmSession, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """COPY rows into a PostgreSQL table, storing exactly what `table.insert()` would: column
    defaults for absent keys, JSON None as JSON null, `sa.null()` as SQL NULL."""
    conn = session.connection()
    dumps = getattr(conn.dialect, "_json_serializer", None) or json.dumps
    cols = _columns(table, rows)
    convert = [dumps if isinstance(c.type, sa.JSON) else None for c in cols]
    quote = conn.dialect.identifier_preparer.quote
    stmt = f"COPY {quote(table.name)} ({', '.join(quote(c.name) for c in cols)}) FROM STDIN"
    with _driver(conn).cursor() as cur, cur.copy(stmt) as copy:
        for values in _values(rows, cols, convert):
            copy.write_row(values)


def _contents(record: RoundRec | SideRecord) -> Iterable[Any]:
    """What the record stores in `blobs`: the content later records may name by hash."""
    if not isinstance(record, RoundRec):
        yield record.get("request")
        yield record.get("response")
        return
    yield from (msg for msg in record.messages if not is_prefix_ref(msg))
    yield record.envelope
    if isinstance(record.system, list):
        yield from record.system
    else:
        yield record.system
    yield record.tools or None
    yield record.response
    yield from (t.arguments for t in record.tool_calls)


def record_bytes(record: RoundRec | SideRecord) -> tuple[str, bytes] | None:
    """(codec, data): the record as the journal holds it, compact JSON through `content.encode`;
    None when it cannot be serialized (nested too deeply, say)."""
    try:
        return encode(dumps(record.to_dict() if isinstance(record, RoundRec) else record))
    except (RecursionError, TypeError, ValueError):
        return None


def error_text(exc: BaseException) -> str:
    """The exception's type and the first line of its message, as the quarantine keeps it."""
    lines = str(exc).splitlines()
    first = lines[0][:500] if lines else ""
    return _text(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _text(text: str) -> str:
    """`text` as any store's text column takes it: no NUL, no lone surrogate."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


_INT64 = range(-(2**63), 2**63)

# Content nested deeper than this is refused, whatever this Python's json module manages:
# orjson, which reads the store back, parses no deeper.
MAX_DEPTH = 1024


def _nested_deeper(obj: Any, limit: int) -> bool:
    """True when lists and dicts nest more than `limit` deep in `obj` (a loop, not recursion)."""
    stack = [(obj, 1)] if isinstance(obj, dict | list | tuple) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list | tuple))
    return False


def _count(value: Any, field: str) -> Any:
    """`value` when the store holds it exactly as a count: None or an integer of at most 64 bits
    (signed). Anything else is a PoisonError, never converted: a float, a string or a bool is
    not a count, and a larger integer is not clamped."""
    if value is None or (type(value) is int and value in _INT64):
        return value
    raise PoisonError(f"{field} = {_shown(value)}: a count must be an integer of at most 64 bits")


def _shown(value: Any) -> str:
    """`value` for an error message: short, and never a repr that fails or recurses."""
    if type(value) is int:
        return (
            str(value) if value.bit_length() <= 256 else f"an integer of {value.bit_length()} bits"
        )
    if isinstance(value, bool | float | str):
        text = repr(value)
        return (
            f"{text[:40]}... ({type(value).__name__})"
            if len(text) > 40
            else f"{text} ({type(value).__name__})"
        )
    return f"a {type(value).__name__}"


def _round_row(rnd: RoundRec, session_pk: int) -> dict[str, Any]:
    u = rnd.usage
    users = [e for e in rnd.inputs if e.type == "user_message"]
    results = [e for e in rnd.inputs if e.type == "tool_result"]
    return {
        "uid": rnd.uid,
        "session_pk": session_pk,
        "kind": rnd.kind,
        "provider": rnd.provider,
        "api": rnd.api,
        "transport": rnd.transport,
        "endpoint": rnd.endpoint,
        "client": rnd.client,
        "model": rnd.model,
        "model_requested": rnd.model_requested,
        "response_id": rnd.response_id,
        "turn_id": rnd.turn_id,
        "stream": rnd.stream,
        "status": rnd.status,
        "complete": rnd.complete,
        "truncated": rnd.truncated,
        "stop_reason": rnd.stop_reason,
        "error_type": rnd.error_type,
        "error_message": rnd.error_message,
        "retry_count": _count(rnd.retry_count, "retry_count"),
        "request_at": rnd.request_at,
        "upstream_first_byte_at": rnd.upstream_first_byte_at,
        "first_token_at": rnd.first_token_at,
        "last_token_at": rnd.last_token_at,
        "end_at": rnd.end_at,
        "input_tokens_total": _count(u.input_tokens_total, "usage.input_tokens_total"),
        "cached_tokens": _count(u.cached_tokens, "usage.cached_tokens"),
        "uncached_input_tokens": _count(u.uncached_input_tokens, "usage.uncached_input_tokens"),
        "cache_creation_input_tokens": _count(
            u.cache_creation_input_tokens, "usage.cache_creation_input_tokens"
        ),
        "cache_creation_5m_tokens": _count(
            u.cache_creation_5m_tokens, "usage.cache_creation_5m_tokens"
        ),
        "cache_creation_1h_tokens": _count(
            u.cache_creation_1h_tokens, "usage.cache_creation_1h_tokens"
        ),
        "cache_read_input_tokens": _count(
            u.cache_read_input_tokens, "usage.cache_read_input_tokens"
        ),
        "output_tokens": _count(u.output_tokens, "usage.output_tokens"),
        "reasoning_tokens": _count(u.reasoning_tokens, "usage.reasoning_tokens"),
        "user_message_count": len(users),
        "tool_result_count": len(results),
        "user_message_chars": sum(e.chars for e in users),
        "tool_result_chars": sum(e.chars for e in results),
        "first_input_type": rnd.inputs[0].type if rnd.inputs else None,
        "content_policy": rnd.content_policy,
        "system_key": rnd.system_key,
        "thread_key": rnd.thread_key,
        "headers": [list(h) for h in rnd.request_headers],
        "stream_events": len(rnd.stream_timeline),
        "request_bytes": rnd.request_bytes,
        "response_bytes": rnd.response_bytes,
        "extra": {"project": rnd.project} if rnd.project else {},
    }


def _timeline(rnd: RoundRec) -> list[list[Any]] | None:
    """The stream's events as [ms after the request, name], to the microsecond: whole
    microseconds over 1000, not `round(ms, 3)`, whose correctly rounded decimal conversion
    would run for each of a response's hundreds of events."""
    t0 = rnd.request_at
    return [[round((t - t0) * 1e6) / 1000, name] for t, name in rnd.stream_timeline] or None


def _timing_rows(rnd: RoundRec) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for e in rnd.inputs:
        rows.append(
            {
                "event_type": e.type,
                "ts": rnd.request_at,
                "source": e.source,
                "tool_call_id": e.tool_call_id,
                "tool_name": None,
                "tool_index": None,
                "chars": e.chars,
                "is_error": e.is_error if e.type == "tool_result" else None,
                "internal_latency_ms": e.internal_latency_ms,
            }
        )
    for o in sorted(rnd.outputs, key=lambda o: o.at):
        rows.append(
            {
                "event_type": o.type,
                "ts": o.at,
                "source": o.source,
                "tool_call_id": o.tool_call_id,
                "tool_name": o.tool_name,
                "tool_index": o.tool_index,
                "chars": o.chars,
                "is_error": None,
                "internal_latency_ms": None,
            }
        )
    for i, row in enumerate(rows, 1):
        row["event_index"] = i
    return rows
