"""TraceLab rows -> the store, in bulk: the public dataset or any TraceLab JSONL becomes queryable.

Idempotent (a row's trace_key is its identity) and fast: Core executemany in large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import canonical, digest, encode
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import insert_statement
from tracetap.tracelab import TraceLabFormatError, check_row, parse_ts, read_rows

__all__ = ["Loaded", "import_rows", "import_tracelab", "load_rows"]

_BATCH = 2000
_PROVIDERS = ("claude", "codex", "openai")


@dataclass
class Loaded:
    """What an import did: rows read from the input, and new rounds stored (a row already in
    the store is not stored again)."""

    rows: int = 0
    stored: int = 0


def load_rows(
    db_url: str,
    rows: Iterable[dict[str, Any]],
    *,
    source: str,
    progress: Callable[[int], None] | None = None,
) -> Loaded:
    """Load TraceLab rows; returns how many were read and how many new rounds were stored.
    Raises TraceLabFormatError at the first row that breaks the format.

    `source` names where they came from (e.g. "tracelab", "log:claude-code"); `progress` is
    called with the number of rows handled after each batch.

    Example: load_rows("sqlite:///traces.db", read_rows("x.jsonl"), source="tracelab")
    """
    engine = make_engine(db_url)
    ensure_schema(engine)
    done = Loaded()
    sessions: dict[tuple[str, str], int] = {}
    last_at: dict[int, float] = {}
    batch: list[dict[str, Any]] = []
    try:
        for n, row in enumerate(rows, 1):
            problems = check_row(row)
            if problems:
                raise TraceLabFormatError(f"row {n}: " + "; ".join(problems))
            batch.append(row)
            done.rows = n
            if len(batch) >= _BATCH:
                done.stored += _write(engine, batch, source, sessions, last_at)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            done.stored += _write(engine, batch, source, sessions, last_at)
            if progress:
                progress(len(batch))
    finally:
        engine.dispose()
    return done


def import_rows(
    db_url: str,
    rows: Iterable[dict[str, Any]],
    *,
    source: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Load TraceLab rows (`load_rows`); returns how many new rounds were stored.

    Example: import_rows("sqlite:///traces.db", read_rows("x.jsonl"), source="tracelab")
    """
    return load_rows(db_url, rows, source=source, progress=progress).stored


def import_tracelab(
    db_url: str, path: str | Path, *, progress: Callable[[int], None] | None = None
) -> int:
    """Store the TraceLab rows of a .jsonl or .jsonl.gz file; returns how many new rounds were
    stored. Raises TraceLabFormatError at the first row that breaks the format.

    Example: import_tracelab("sqlite:///traces.db", "sessions.jsonl.gz")
    """
    return import_rows(db_url, read_rows(path), source="tracelab", progress=progress)


def _agent_session(row: dict[str, Any]) -> tuple[str, str]:
    provider = str(row["provider"])
    sid = str(row["session_id"])
    head, _, tail = sid.partition(":")
    return provider, tail if tail and head in _PROVIDERS else sid


def _write(
    engine: sa.Engine,
    rows: list[dict[str, Any]],
    source: str,
    sessions: dict[tuple[str, str], int],
    last_at: dict[int, float],
) -> int:
    dialect = engine.dialect.name
    with OrmSession(engine) as db, db.begin():
        uids = [
            "import:"
            + digest(str(r.get("trace_key") or f"{r['session_id']}:{r['round_id']}").encode())
            for r in rows
        ]
        seen: set[str] = set()
        for i in range(0, len(uids), 500):
            seen.update(
                db.scalars(sa.select(m.Round.uid).where(m.Round.uid.in_(uids[i : i + 500])))
            )
        projects: dict[tuple[str, str], str | None] = {}
        for r in rows:
            projects.setdefault(_agent_session(r), r.get("project"))
        keys = set(projects) - set(sessions)
        if keys:
            values = [
                {
                    "provider": p,
                    "agent_session_id": s,
                    "project": projects[(p, s)],
                    "session_source": "import",
                    "origin": f"import:{source}",
                }
                for p, s in keys
            ]
            db.execute(
                insert_statement(dialect, m.Session).on_conflict_do_nothing(
                    index_elements=["provider", "agent_session_id"]
                ),
                values,
            )
            for p, s in keys:
                sessions[(p, s)] = db.execute(
                    sa.select(m.Session.id).where(
                        m.Session.provider == p, m.Session.agent_session_id == s
                    )
                ).scalar_one()  # inserted above, or there already
        round_rows: list[dict[str, Any]] = []
        children: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        blobs: dict[str, bytes] = {}
        for uid, row in zip(uids, rows):
            if uid in seen:
                continue
            seen.add(uid)
            spk = sessions[_agent_session(row)]
            round_rows.append(_round(uid, row, spk, last_at))
            children.append(_children(row, blobs))
        if not round_rows:
            return 0
        if blobs:
            existing: set[str] = set()
            hashes = list(blobs)
            for i in range(0, len(hashes), 500):
                existing.update(
                    db.scalars(sa.select(m.Blob.hash).where(m.Blob.hash.in_(hashes[i : i + 500])))
                )
            new = []
            for h in hashes:
                if h not in existing:
                    codec, data = encode(blobs[h])
                    new.append({"hash": h, "size": len(blobs[h]), "codec": codec, "data": data})
            if new:
                db.execute(
                    insert_statement(dialect, m.Blob).on_conflict_do_nothing(
                        index_elements=["hash"]
                    ),
                    new,
                )
        # render_nulls: a None is sent as NULL rather than left out, so rows whose optional
        # fields differ still go in one executemany instead of a statement per row. The new
        # ids are read back by uid (RETURNING in parameter order is a statement per row on
        # SQLite).
        db.execute(sa.insert(m.Round).execution_options(render_nulls=True), round_rows)
        new_uids = [r["uid"] for r in round_rows]
        ids: dict[str, int] = {}
        for i in range(0, len(new_uids), 500):
            part = new_uids[i : i + 500]
            query = sa.select(m.Round.uid, m.Round.id).where(m.Round.uid.in_(part))
            ids.update((uid, pk) for uid, pk in db.execute(query))
        pks = [ids[uid] for uid in new_uids]
        tool_rows: list[dict[str, Any]] = []
        event_rows: list[dict[str, Any]] = []
        for pk, (tools, events) in zip(pks, children):
            tool_rows.extend(dict(t, round_pk=pk) for t in tools)
            event_rows.extend(dict(e, round_pk=pk) for e in events)
        if tool_rows:
            db.execute(sa.insert(m.ToolCall).execution_options(render_nulls=True), tool_rows)
        if event_rows:
            db.execute(sa.insert(m.TimingEvent).execution_options(render_nulls=True), event_rows)
        return len(pks)


def _round(uid: str, row: dict[str, Any], spk: int, last_at: dict[int, float]) -> dict[str, Any]:
    parsed = [parse_ts(e.get("timestamp")) for e in row.get("timing_events") or []]
    stamps = [t for t in parsed if t is not None]
    # Keep file order within a session even when a row has no events.
    at = max(min(stamps) if stamps else 0.0, last_at.get(spk, 0.0))
    last_at[spk] = at
    claude = row["provider"] == "claude"
    extra: dict[str, Any] = {"project": row.get("project"), "store": row.get("store")}
    users = row.get("current_user_message_count") or 0
    results = row.get("current_tool_result_count") or 0
    if row.get("current_input_event_count") not in (None, users + results):
        extra["current_input_event_count"] = row["current_input_event_count"]
    uchars = row.get("current_user_message_chars") or 0
    tchars = row.get("current_tool_result_chars") or 0
    if row.get("current_input_chars") not in (None, uchars + tchars):
        extra["current_input_chars"] = row["current_input_chars"]
    for key, value in row.items():
        if key.startswith("tt_") and key not in ("tt_kind",):
            extra[key] = value
    return {
        "uid": uid,
        "session_pk": spk,
        "kind": row.get("tt_kind") or "main",
        "provider": row["provider"],
        "api": "import",
        "transport": "import",
        "endpoint": "",
        "model": row.get("model"),
        "response_id": row["round_id"],
        "turn_id": row.get("turn_id"),
        "complete": True,
        "request_at": at,
        "input_tokens_total": row["input_tokens_total"],
        "cached_tokens": row["prefix_tokens"],
        "uncached_input_tokens": row.get("claude_uncached_input_tokens") if claude else None,
        "cache_creation_input_tokens": row.get("claude_cache_creation_input_tokens")
        if claude
        else None,
        "cache_read_input_tokens": row.get("claude_cache_read_input_tokens") if claude else None,
        "output_tokens": row["output_tokens"],
        "reasoning_tokens": row.get("reasoning_output_tokens"),
        "user_message_count": users,
        "tool_result_count": results,
        "user_message_chars": uchars,
        "tool_result_chars": tchars,
        "first_input_type": row.get("first_input_event_type"),
        "content_policy": "import",
        "msg_new": [],
        "headers": [],
        "extra": extra,
    }


def _children(
    row: dict[str, Any], blobs: dict[str, bytes]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tools = []
    for t in row.get("tools") or []:
        input_hash = None
        if "input" in t and t["input"] is not None:
            data = canonical(t["input"])
            input_hash = digest(data)
            blobs[input_hash] = data
        tools.append(
            {
                "tool_index": t["tool_index"],
                "call_id": t.get("tool_call_id") or "",
                "name": t.get("tool_name") or "",
                "kind": "import",
                "input_hash": input_hash,
                "input_chars": t.get("input_chars") or 0,
                "emitted_at": parse_ts(t.get("emitted_at")),
                "result_at": parse_ts(t.get("result_at")),
                "result_chars": t.get("result_chars"),
                "is_error": t.get("is_error"),
                "wall_latency_ms": t.get("tool_wall_latency_ms"),
                "internal_latency_ms": t.get("tool_internal_latency_ms"),
            }
        )
    events = []
    for i, e in enumerate(row.get("timing_events") or [], 1):
        etype = e.get("event_type")
        chars = e.get("result_chars") if etype == "tool_result" else e.get("content_chars")
        events.append(
            {
                "event_index": i,
                "event_type": etype,
                "ts": parse_ts(e.get("timestamp")) or 0.0,
                "source": e.get("source") or "",
                "tool_call_id": e.get("tool_call_id"),
                "tool_name": e.get("tool_name"),
                "tool_index": e.get("tool_index"),
                "chars": chars,
                "is_error": e.get("is_error"),
                "internal_latency_ms": None,
            }
        )
    return tools, events
