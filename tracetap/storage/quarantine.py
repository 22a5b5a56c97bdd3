"""The quarantine: records the writer could not store, kept with their error out of the way of the
rest; listing them, and storing them again with the current writer (`tracetap db quarantine`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import decode
from tracetap.model import Round
from tracetap.storage import models as m
from tracetap.storage.writer import SideRecord, Writer, WriterExtension, error_text

__all__ = ["Quarantined", "RetryResult", "quarantine", "retry_quarantine"]


@dataclass(frozen=True, slots=True)
class Quarantined:
    """One quarantined record: what `tracetap db quarantine` lists."""

    id: int
    uid: str | None
    kind: str  # round | side
    error: str
    created_at: float
    retried_at: float | None
    resolved: bool
    kept: bool  # False: the record could not be serialized, only its uid and error are known

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uid": self.uid,
            "kind": self.kind,
            "error": self.error,
            "created_at": self.created_at,
            "retried_at": self.retried_at,
            "resolved": self.resolved,
            "kept": self.kept,
        }


@dataclass(slots=True)
class RetryResult:
    """What `retry_quarantine` did: records stored now, and records that still fail."""

    resolved: list[Quarantined] = field(default_factory=list)
    failed: list[Quarantined] = field(default_factory=list)


def _columns() -> tuple[Any, ...]:
    q = m.Quarantine
    return (
        q.id,
        q.uid,
        q.kind,
        q.error,
        q.created_at,
        q.retried_at,
        q.resolved,
        q.record.is_not(None).label("kept"),
    )


def _entry(row: sa.Row[Any]) -> Quarantined:
    return Quarantined(
        row.id,
        row.uid,
        row.kind,
        row.error,
        row.created_at,
        row.retried_at,
        bool(row.resolved),
        bool(row.kept),
    )


def quarantine(engine: Engine, *, resolved: bool = False) -> list[Quarantined]:
    """The quarantined records, oldest first: those not resolved yet, or every one with
    `resolved=True`.

    Example: [q.uid for q in quarantine(engine)]
    """
    stmt = sa.select(*_columns()).order_by(m.Quarantine.id)
    if not resolved:
        stmt = stmt.where(m.Quarantine.resolved.is_(False))
    with OrmSession(engine) as session:
        return [_entry(row) for row in session.execute(stmt)]


def _record(kind: str, codec: str, data: bytes) -> Round | SideRecord:
    """The journal record a quarantine row keeps, as the writer takes it. Parsed by json, not
    orjson: orjson reads an integer beyond 64 bits as a float, and such a number may well be why
    the record is here."""
    obj = json.loads(decode(codec, data))
    if kind == "round":
        return Round.from_dict(obj)
    if not isinstance(obj, dict):
        raise TypeError(f"a side record is a JSON object, not {type(obj).__name__}")
    return obj


def retry_quarantine(engine: Engine, extensions: Iterable[WriterExtension] = ()) -> RetryResult:
    """Write each unresolved quarantined record again, oldest first, with a writer of this
    tracetap (and `extensions`, as the proxy's pipeline has them): one that is stored now (or was
    stored meanwhile) is marked resolved; one that fails keeps its place, with this attempt's
    error. A record that could not be serialized cannot be retried. An outage raises.

    Example: retry_quarantine(engine, [TokenStore()]).resolved
    """
    writer = Writer(engine, extensions)
    q = m.Quarantine
    result = RetryResult()
    with OrmSession(engine) as session:
        rows = session.execute(
            sa.select(q.id, q.kind, q.codec, q.record).where(q.resolved.is_(False)).order_by(q.id)
        ).all()
    for row in rows:
        update: dict[str, Any] = {"retried_at": time.time()}
        if row.record is None or row.codec is None:
            update = {}  # nothing to write again
        else:
            try:
                writer.write([_record(row.kind, row.codec, row.record)], quarantine=False)
            except Exception as exc:
                if writer.is_outage(exc):
                    raise
                update["error"] = error_text(exc)
            else:
                update["resolved"] = True
        with OrmSession(engine) as session, session.begin():
            if update:
                session.execute(sa.update(q).where(q.id == row.id).values(**update))
            entry = _entry(session.execute(sa.select(*_columns()).where(q.id == row.id)).one())
        (result.resolved if entry.resolved else result.failed).append(entry)
    return result
