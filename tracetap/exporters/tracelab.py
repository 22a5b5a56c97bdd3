"""Store -> TraceLab rows: one private row per round, with tool calls paired to their results.

Streams session by session (constant memory); `export` writes them, `source_rows` feeds exports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.elements import ColumnElement

from tracetap.content import load_json
from tracetap.exporters.public import Pseudonymizer, sanitize_row
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.storage.filters import Filter
from tracetap.tracelab import format_ts, read_rows, write_rows

__all__ = [
    "KINDS",
    "count_rows",
    "export",
    "filter_rows",
    "iter_rows",
    "rows_from_engine",
    "selected_conditions",
    "source_rows",
]

# --kind choices: which round kinds a TraceLab export contains.
KINDS: dict[str, tuple[str, ...]] = {
    "main": ("main",),
    "agent": ("main", "subagent", "compaction"),
    "all": ("main", "subagent", "compaction", "side"),
}
_SESSION_CHUNK = 100


def iter_rows(
    db_url: str, *, flt: Filter | None = None, kind: str = "agent"
) -> Iterator[dict[str, Any]]:
    """Private TraceLab rows (with tools[].input and tt_* extras), ordered by session, round.

    Example: iter_rows("sqlite:///traces.db", flt=Filter(agents=("claude",)), kind="main")
    """
    engine = make_engine(db_url)
    try:
        yield from rows_from_engine(engine, flt=flt, kind=kind)
    finally:
        engine.dispose()


def selected_conditions(flt: Filter | None, kind: str) -> list[ColumnElement[bool]]:
    """SQL conditions on m.Round joined to m.Session for the rounds an export writes: the
    filter's, the kind's, and only rounds the model answered (fully or until the client went
    away); imported rounds always count."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    answered = sa.or_(
        m.Round.transport == "import",
        sa.and_(
            sa.or_(m.Round.status.is_(None), m.Round.status < 400),
            sa.or_(
                sa.and_(m.Round.response_id.is_not(None), m.Round.response_id != ""),
                m.Round.output_tokens.is_not(None),
            ),
        ),
    )
    return [m.Round.kind.in_(KINDS[kind]), answered, *(flt or Filter()).conditions()]


def count_rows(engine: Engine, *, flt: Filter | None = None, kind: str = "agent") -> int:
    """How many rows `rows_from_engine` yields for the same filter and kind (one COUNT query).

    Example: count_rows(engine, flt=Filter(sessions=("3f2a",)))
    """
    q = (
        sa.select(sa.func.count(m.Round.id))
        .join(m.Session, m.Round.session_pk == m.Session.id)
        .where(*selected_conditions(flt, kind))
    )
    with engine.connect() as con:
        return int(con.execute(q).scalar_one())


def rows_from_engine(
    engine: Engine,
    *,
    flt: Filter | None = None,
    kind: str = "agent",
    since: float | None = None,
    until: float | None = None,
) -> Iterator[dict[str, Any]]:
    """TraceLab rows of the rounds that pass `flt` and `kind`, session by session in order of
    each session's first selected round; `since`/`until` (epoch seconds) narrow `flt`'s time
    range. A tool call is paired with its result from any round of the session, selected or
    not."""
    flt = flt or Filter()
    if since is not None or until is not None:
        lo = [t for t in (since, flt.since) if t is not None]
        hi = [t for t in (until, flt.until) if t is not None]
        flt = replace(flt, since=max(lo) if lo else None, until=min(hi) if hi else None)
    where = selected_conditions(flt, kind)
    with OrmSession(engine) as db:
        q = (
            sa.select(m.Session.id)
            .join(m.Round, m.Round.session_pk == m.Session.id)
            .where(*where)
            .group_by(m.Session.id)
            .order_by(sa.func.min(m.Round.request_at), m.Session.id)
        )
        session_pks = list(db.scalars(q))
        for i in range(0, len(session_pks), _SESSION_CHUNK):
            yield from _chunk_rows(db, session_pks[i : i + _SESSION_CHUNK], where)


def _chunk_rows(
    db: OrmSession, session_pks: Sequence[int], where: list[ColumnElement[bool]]
) -> Iterator[dict[str, Any]]:
    sessions = {
        s.id: s for s in db.scalars(sa.select(m.Session).where(m.Session.id.in_(session_pks)))
    }
    rounds = list(
        db.scalars(
            sa.select(m.Round)
            .where(m.Round.session_pk.in_(session_pks))
            .order_by(m.Round.session_pk, m.Round.request_at, m.Round.id)
        )
    )
    chosen = set(
        db.scalars(
            sa.select(m.Round.id)
            .join(m.Session, m.Round.session_pk == m.Session.id)
            .where(m.Round.session_pk.in_(session_pks), *where)
        )
    )
    pks = [r.id for r in rounds]
    tools: dict[int, list[m.ToolCall]] = defaultdict(list)
    events: dict[int, list[m.TimingEvent]] = defaultdict(list)
    for i in range(0, len(pks), 5000):
        part = pks[i : i + 5000]
        for t in db.scalars(
            sa.select(m.ToolCall)
            .where(m.ToolCall.round_pk.in_(part))
            .order_by(m.ToolCall.round_pk, m.ToolCall.tool_index)
        ):
            tools[t.round_pk].append(t)
        for e in db.scalars(
            sa.select(m.TimingEvent)
            .where(m.TimingEvent.round_pk.in_(part))
            .order_by(m.TimingEvent.round_pk, m.TimingEvent.event_index)
        ):
            events[e.round_pk].append(e)
    inputs = _load_blobs(db, [t.input_hash for ts in tools.values() for t in ts if t.input_hash])
    by_session: dict[int, list[m.Round]] = defaultdict(list)
    for r in rounds:
        by_session[r.session_pk].append(r)
    for spk in session_pks:
        srounds = by_session.get(spk, [])
        # Tool results seen in any request of the session: call id -> first arrival.
        results: dict[str, tuple[float, m.TimingEvent]] = {}
        for r in srounds:
            for e in events.get(r.id, []):
                if e.event_type == "tool_result" and e.tool_call_id:
                    if e.tool_call_id not in results or e.ts < results[e.tool_call_id][0]:
                        results[e.tool_call_id] = (e.ts, e)
        selected = [r for r in srounds if r.id in chosen]
        turn_counts: dict[str, int] = defaultdict(int)
        extras = _token_extras(db, [r.id for r in selected])
        for index, r in enumerate(selected):
            row = _row(
                sessions[spk],
                r,
                index,
                tools.get(r.id, []),
                events.get(r.id, []),
                results,
                inputs,
                turn_counts,
            )
            row.update(extras.get(r.id, {}))
            yield row


def _token_extras(db: OrmSession, round_pks: list[int]) -> dict[int, dict[str, Any]]:
    """tt_measured_prefix_tokens, tt_segments, tt_block_hashes, tt_block_size per round
    (from the tokenizer step; absent for rounds recorded without it)."""
    from tracetap.tokens.report import rows_extras

    return rows_extras(db, round_pks) if round_pks else {}


def _load_blobs(db: OrmSession, hashes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unique = list(set(hashes))
    for i in range(0, len(unique), 500):
        for b in db.scalars(sa.select(m.Blob).where(m.Blob.hash.in_(unique[i : i + 500]))):
            out[b.hash] = load_json(b.codec, b.data)
    return out


def _ms(t: float | None) -> int | None:
    return None if t is None else round(t * 1000)


def _event(e: m.TimingEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_type": e.event_type,
        "timestamp": format_ts(e.ts),
        "source": e.source,
    }
    if e.event_type in ("user_message", "reasoning", "text"):
        if e.chars is not None:
            out["content_chars"] = e.chars
    elif e.event_type == "tool_result":
        out["tool_call_id"] = e.tool_call_id
        for key, value in (("result_chars", e.chars), ("is_error", e.is_error)):
            if value is not None:  # imported rows may lack them; keep them absent
                out[key] = value
    elif e.event_type == "tool_call":
        out.update(tool_call_id=e.tool_call_id, tool_name=e.tool_name, tool_index=e.tool_index)
    return out


def _tool(
    t: m.ToolCall,
    imported: bool,
    results: dict[str, tuple[float, m.TimingEvent]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    if imported:
        result_at, result_chars, is_error = t.result_at, t.result_chars, t.is_error
        wall, internal = t.wall_latency_ms, t.internal_latency_ms
    else:
        hit = results.get(t.call_id)
        if hit is not None and t.emitted_at is not None and hit[0] + 0.0005 < t.emitted_at:
            hit = None  # a result older than the call is not its result
        result_at = hit[0] if hit else None
        result_chars = hit[1].chars if hit else None
        is_error = bool(hit[1].is_error) if hit else False
        internal = hit[1].internal_latency_ms if hit else None
        wall = (
            _ms(result_at) - _ms(t.emitted_at)  # type: ignore[operator]
            if result_at is not None and t.emitted_at is not None
            else None
        )
    out: dict[str, Any] = {
        "tool_index": t.tool_index,
        "tool_name": t.name,
        "tool_call_id": t.call_id,
        "emitted_at": format_ts(t.emitted_at),
        "result_at": format_ts(result_at),
    }
    if t.input_hash and t.input_hash in inputs:
        out["input"] = inputs[t.input_hash]
    out.update(
        input_chars=t.input_chars,
        result_chars=result_chars,
        tool_wall_latency_ms=wall,
        tool_internal_latency_ms=internal,
        is_error=is_error if imported else bool(is_error),
    )
    return out


def _row(
    s: m.Session,
    r: m.Round,
    index: int,
    tools: list[m.ToolCall],
    events: list[m.TimingEvent],
    results: dict[str, tuple[float, m.TimingEvent]],
    inputs: dict[str, Any],
    turn_counts: dict[str, int],
) -> dict[str, Any]:
    imported = r.transport == "import"
    extra = r.extra or {}
    provider = s.provider
    session_id = f"{provider}:{s.agent_session_id}"
    if imported or provider != "codex" or not r.turn_id:
        round_id = r.response_id or r.uid
    else:
        round_id = f"{r.turn_id}:{turn_counts[r.turn_id]}"
        turn_counts[r.turn_id] += 1
    total = r.input_tokens_total or 0
    prefix = r.cached_tokens or 0
    claude = provider == "claude"
    ordered = sorted(events, key=lambda e: (e.ts, e.event_index))
    row: dict[str, Any] = {"provider": provider}
    project = extra.get("project") or s.project  # continuation rounds: the session's
    if project or not imported:  # imported rows without a project keep it absent
        row["project"] = project or "unknown"
    row.update(session_id=session_id, round_index=index, round_id=round_id)
    if r.turn_id is not None:
        row["turn_id"] = r.turn_id
    row.update(
        {
            "model": r.model,
            "input_tokens_total": total,
            "prefix_tokens": prefix,
            "newly_append_tokens": total - prefix,
            "claude_uncached_input_tokens": r.uncached_input_tokens if claude else None,
            "claude_cache_creation_input_tokens": r.cache_creation_input_tokens if claude else None,
            "claude_cache_read_input_tokens": r.cache_read_input_tokens if claude else None,
            "output_tokens": r.output_tokens or 0,
            "reasoning_output_tokens": r.reasoning_tokens,
            "timing_events": [_event(e) for e in ordered],
            "tools": [_tool(t, imported, results, inputs) for t in tools],
            "current_input_event_count": extra.get(
                "current_input_event_count", r.user_message_count + r.tool_result_count
            ),
            "current_user_message_count": r.user_message_count,
            "current_tool_result_count": r.tool_result_count,
            "current_user_message_chars": r.user_message_chars,
            "current_tool_result_chars": r.tool_result_chars,
            "current_input_chars": extra.get(
                "current_input_chars", r.user_message_chars + r.tool_result_chars
            ),
            "first_input_event_type": r.first_input_type,
            "store": extra.get("store", "tracetap"),
            "trace_key": f"{provider}:{session_id}:{round_id}",
        }
    )
    ttft = (r.first_token_at - r.request_at) if r.first_token_at else None
    decode = (r.last_token_at - r.first_token_at) if r.first_token_at and r.last_token_at else None
    row.update(
        {
            "tt_kind": r.kind,
            "tt_round_uid": r.uid,
            "tt_transport": r.transport,
            "tt_status": r.status,
            "tt_complete": r.complete,
            "tt_error_type": r.error_type,
            "tt_request_at": format_ts(r.request_at) if not imported else None,
            "tt_upstream_ttfb_ms": _round_ms(r.upstream_first_byte_at, r.request_at),
            "tt_ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "tt_decode_ms": None if decode is None else round(decode * 1000, 3),
            "tt_end_ms": _round_ms(r.end_at, r.request_at),
            "tt_retry_count": r.retry_count,
            "tt_cache_creation_5m_tokens": r.cache_creation_5m_tokens,
            "tt_cache_creation_1h_tokens": r.cache_creation_1h_tokens,
        }
    )
    for key, value in extra.items():
        if key.startswith("tt_"):
            row[key] = value
    return row


def _round_ms(t: float | None, t0: float) -> float | None:
    return None if t is None else round((t - t0) * 1000, 3)


def source_rows(
    db_url: str,
    input_path: Path | None = None,
    *,
    flt: Filter | None = None,
    kind: str = "agent",
) -> Iterator[dict[str, Any]]:
    """TraceLab rows from the store at `db_url` or, given `input_path`, from that TraceLab file,
    filtered alike (a file row's time is its first timing event). Raises ValueError for an
    unknown kind and FileNotFoundError for a missing file before any row is read.

    Example: source_rows("sqlite:///traces.db", flt=Filter(agents=("claude",)), kind="main")
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if input_path is None:
        return iter_rows(db_url, flt=flt, kind=kind)
    if not input_path.exists():
        raise FileNotFoundError(f"{input_path} does not exist")
    return filter_rows(read_rows(input_path), flt=flt, kind=kind)


def filter_rows(
    rows: Iterable[dict[str, Any]], *, flt: Filter | None = None, kind: str = "agent"
) -> Iterator[dict[str, Any]]:
    """The rows of a TraceLab file that pass `flt` (Filter.matches_row) and `kind` (a row's
    tt_kind, "main" when it has none), by the rules `rows_from_engine` applies to the store.

    Example: filter_rows(read_rows("rounds.jsonl"), flt=Filter(sessions=("3f2a",)))
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    kinds, flt = KINDS[kind], flt or Filter()
    for row in rows:
        if row.get("tt_kind", "main") in kinds and flt.matches_row(row):
            yield row


def export(
    rows: Iterable[dict[str, Any]],
    out: IO[str],
    *,
    extended: bool = False,
    pseudonymizer: Pseudonymizer | None = None,
) -> int:
    """Write TraceLab JSONL rows to `out`; returns how many. Without `extended` the `tt_*`
    fields are dropped; with a `pseudonymizer` rows are sanitized (no text, keyed pseudonyms).

    Example: export(source_rows(url), sys.stdout, pseudonymizer=Pseudonymizer(load_key()))
    """
    if not extended:
        rows = ({k: v for k, v in r.items() if not k.startswith("tt_")} for r in rows)
    if pseudonymizer is not None:
        ps = pseudonymizer
        rows = (sanitize_row(r, ps) for r in rows)
    return write_rows(rows, out)
