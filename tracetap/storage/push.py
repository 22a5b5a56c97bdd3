"""Copy recorded (already scrubbed) rounds from one store into another, e.g. a contributor's
SQLite file into the team's PostgreSQL. Idempotent: rounds are identified by their uid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tracetap.storage import models as m
from tracetap.storage.db import check_schema, ensure_schema
from tracetap.storage.writer import insert_statement

__all__ = ["PushResult", "push"]

_CHUNK = 500

type _Rows = Sequence[sa.Row[*tuple[Any, ...]]]


@dataclass
class PushResult:
    sessions: int = 0
    rounds: int = 0
    skipped: int = 0
    blobs: int = 0
    side_requests: int = 0


def _round_tables() -> list[sa.Table]:
    """Every table keyed to a round (tool calls, timing events, token data ...)."""
    return [t for t in m.Base.metadata.sorted_tables if "round_pk" in t.c and t.name != "rounds"]


def _blob_refs(rows: _Rows, children: dict[str, _Rows]) -> set[str]:
    refs: set[str] = set()
    for r in rows:
        for col in ("envelope_hash", "system_hash", "tools_hash", "response_hash", "timeline_hash"):
            if r._mapping[col]:
                refs.add(r._mapping[col])
        refs.update(r.system_blocks or [])
        refs.update(r.msg_new or [])
    for t in children.get("tool_calls", []):
        if t.input_hash:
            refs.add(t.input_hash)
    return refs


def _copy_blobs(src: Connection, dst: Connection, hashes: set[str], dialect: str) -> int:
    copied = 0
    wanted = sorted(hashes)
    for i in range(0, len(wanted), _CHUNK):
        part = wanted[i : i + _CHUNK]
        have = set(dst.execute(sa.select(m.Blob.hash).where(m.Blob.hash.in_(part))).scalars())
        missing = [h for h in part if h not in have]
        if not missing:
            continue
        rows = [
            dict(r._mapping)
            for r in src.execute(sa.select(m.Blob.__table__).where(m.Blob.hash.in_(missing)))
        ]
        dst.execute(
            insert_statement(dialect, m.Blob).on_conflict_do_nothing(index_elements=["hash"]),
            sorted(rows, key=lambda r: r["hash"]),
        )
        copied += len(rows)
    return copied


def push(
    source: Engine, target: Engine, *, progress: Callable[[int, int], None] | None = None
) -> PushResult:
    """Copy what `target` lacks from `source`; `progress(done, total)` after each chunk."""
    if check_schema(source) != "current":
        raise ValueError("the source store is empty")
    ensure_schema(target)
    dialect = target.dialect.name
    result = PushResult()
    rounds_t = m.Round.__table__
    tables = _round_tables()
    with source.connect() as src:
        total = src.execute(sa.select(sa.func.count()).select_from(rounds_t)).scalar_one()
        if progress:
            progress(0, total)  # the total is known before the sessions are copied
        sessions = src.execute(sa.select(m.Session.__table__)).all()
        session_map: dict[int, int] = {}
        with target.begin() as dst:
            for s in sessions:
                values = {k: v for k, v in s._mapping.items() if k != "id"}
                dst.execute(
                    insert_statement(dialect, m.Session)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=["provider", "agent_session_id"])
                )
                session_map[s.id] = dst.execute(
                    sa.select(m.Session.id).where(
                        m.Session.provider == s.provider,
                        m.Session.agent_session_id == s.agent_session_id,
                    )
                ).scalar_one()
        result.sessions = len(sessions)
        done = 0
        last_id = 0
        while True:
            # in id order: a round's message-chain parent (an earlier round) goes first
            rows = src.execute(
                sa.select(rounds_t)
                .where(rounds_t.c.id > last_id)
                .order_by(rounds_t.c.id)
                .limit(_CHUNK)
            ).all()
            if not rows:
                break
            last_id = rows[-1].id
            done += len(rows)
            with target.begin() as dst:
                uids = [r.uid for r in rows]
                have = set(
                    dst.execute(sa.select(rounds_t.c.uid).where(rounds_t.c.uid.in_(uids))).scalars()
                )
                new = [r for r in rows if r.uid not in have]
                result.skipped += len(rows) - len(new)
                if new:
                    ids = [r.id for r in new]
                    children = {
                        t.name: src.execute(sa.select(t).where(t.c.round_pk.in_(ids))).all()
                        for t in tables
                    }
                    result.blobs += _copy_blobs(src, dst, _blob_refs(new, children), dialect)
                    round_values = []
                    for r in new:
                        v = {k: val for k, val in r._mapping.items() if k != "id"}
                        v["session_pk"] = session_map[r.session_pk]
                        round_values.append(v)
                    new_ids = list(
                        dst.execute(
                            rounds_t.insert().returning(
                                rounds_t.c.id, sort_by_parameter_order=True
                            ),
                            round_values,
                        ).scalars()
                    )
                    id_map = dict(zip(ids, new_ids))
                    for t in tables:
                        pk_auto = [
                            c.name
                            for c in t.primary_key.columns
                            if c.name != "round_pk" and c.autoincrement
                        ]
                        batch = []
                        for c in children[t.name]:
                            v = {k: val for k, val in c._mapping.items() if k not in pk_auto}
                            v["round_pk"] = id_map[c.round_pk]
                            batch.append(v)
                        if batch:
                            dst.execute(t.insert(), batch)
                    result.rounds += len(new)
            if progress:
                progress(done, total)
        side_t = m.SideRequest.__table__
        sides = src.execute(sa.select(side_t)).all()
        if sides:
            with target.begin() as dst:
                refs = {h for s in sides for h in (s.request_hash, s.response_hash) if h}
                result.blobs += _copy_blobs(src, dst, refs, dialect)
                side_values = []
                for s in sides:
                    v = {k: val for k, val in s._mapping.items() if k != "id"}
                    v["session_pk"] = session_map.get(s.session_pk) if s.session_pk else None
                    side_values.append(v)
                before = dst.execute(sa.select(sa.func.count()).select_from(side_t)).scalar_one()
                dst.execute(
                    insert_statement(dialect, m.SideRequest).on_conflict_do_nothing(
                        index_elements=["uid"]
                    ),
                    side_values,
                )
                after = dst.execute(sa.select(sa.func.count()).select_from(side_t)).scalar_one()
                result.side_requests = after - before
    return result
