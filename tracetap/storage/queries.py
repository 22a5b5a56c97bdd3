"""Read-side queries: session summaries (`sessions`) and one session's rounds in detail (`show`).

Functions take an ORM session first and return plain data; only callers open sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.storage import models as m

__all__ = [
    "RoundDetail",
    "SessionSummary",
    "SessionView",
    "find_session",
    "session_rounds",
    "sessions",
    "show",
    "summary_dict",
]


@dataclass
class SessionSummary:
    pk: int
    provider: str
    agent_session_id: str
    project: str | None
    rounds: int
    by_kind: dict[str, int]
    tool_calls: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    first_at: float | None
    last_at: float | None


def sessions(
    db: OrmSession, *, provider: str | None = None, limit: int | None = None
) -> list[SessionSummary]:
    """Recorded sessions with their round, tool-call and token totals, newest first; `limit`
    keeps the newest N (None or 0: all).

    Example: sessions(db, provider="claude", limit=50)
    """
    tools = (
        sa.select(m.ToolCall.round_pk, sa.func.count().label("n"))
        .group_by(m.ToolCall.round_pk)
        .subquery()
    )
    q = (
        sa.select(
            m.Session.id,
            m.Session.provider,
            m.Session.agent_session_id,
            m.Session.project,
            m.Round.kind,
            sa.func.count(m.Round.id),
            sa.func.coalesce(sa.func.sum(tools.c.n), 0),
            sa.func.coalesce(sa.func.sum(m.Round.input_tokens_total), 0),
            sa.func.coalesce(sa.func.sum(m.Round.cached_tokens), 0),
            sa.func.coalesce(sa.func.sum(m.Round.output_tokens), 0),
            sa.func.min(m.Round.request_at),
            sa.func.max(sa.func.coalesce(m.Round.end_at, m.Round.request_at)),
        )
        .join(m.Round, m.Round.session_pk == m.Session.id)
        .outerjoin(tools, tools.c.round_pk == m.Round.id)
        .group_by(
            m.Session.id,
            m.Session.provider,
            m.Session.agent_session_id,
            m.Session.project,
            m.Round.kind,
        )
    )
    if provider:
        q = q.where(m.Session.provider == provider)
    out: dict[int, SessionSummary] = {}
    for pk, prov, sid, project, kind, n, ntools, tin, tcached, tout, first, last in db.execute(q):
        s = out.get(pk)
        if s is None:
            s = out[pk] = SessionSummary(pk, prov, sid, project, 0, {}, 0, 0, 0, 0, first, last)
        s.rounds += n
        s.by_kind[kind] = n
        s.tool_calls += int(ntools)
        s.input_tokens += int(tin)
        s.cached_tokens += int(tcached)
        s.output_tokens += int(tout)
        s.first_at = min(x for x in (s.first_at, first) if x is not None) if first else s.first_at
        s.last_at = max(x for x in (s.last_at, last) if x is not None) if last else s.last_at
    ordered = sorted(out.values(), key=lambda s: (s.first_at or 0, s.pk), reverse=True)
    return ordered[:limit] if limit else ordered


def find_session(db: OrmSession, ref: str) -> m.Session:
    """A session by `provider:id`, its id, or a unique prefix of its id."""
    head, sep, tail = ref.partition(":")
    q = sa.select(m.Session)
    if sep and head in ("claude", "codex", "openai"):
        q = q.where(m.Session.provider == head, m.Session.agent_session_id.startswith(tail))
    else:
        q = q.where(m.Session.agent_session_id.startswith(ref))
    found = list(db.scalars(q.limit(5)))
    exact = [s for s in found if s.agent_session_id in (ref, tail)]
    if len(exact) == 1:
        return exact[0]
    if not found:
        raise LookupError(f"no session matches {ref!r} (see `tracetap sessions`)")
    if len(found) > 1:
        raise LookupError(
            f"{ref!r} matches several sessions: "
            + ", ".join(f"{s.provider}:{s.agent_session_id}" for s in found)
        )
    return found[0]


@dataclass
class RoundDetail:
    round: m.Round
    tools: list[m.ToolCall] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)  # call id -> result arrival


def session_rounds(db: OrmSession, session_pk: int) -> list[RoundDetail]:
    rounds = list(
        db.scalars(
            sa.select(m.Round)
            .where(m.Round.session_pk == session_pk)
            .order_by(m.Round.request_at, m.Round.id)
        )
    )
    by_pk = {r.id: RoundDetail(r) for r in rounds}
    if not by_pk:
        return []
    for t in db.scalars(
        sa.select(m.ToolCall)
        .where(m.ToolCall.round_pk.in_(list(by_pk)))
        .order_by(m.ToolCall.round_pk, m.ToolCall.tool_index)
    ):
        by_pk[t.round_pk].tools.append(t)
    results: dict[str, float] = {}
    for call_id, ts in db.execute(
        sa.select(m.TimingEvent.tool_call_id, sa.func.min(m.TimingEvent.ts))
        .where(m.TimingEvent.round_pk.in_(list(by_pk)), m.TimingEvent.event_type == "tool_result")
        .group_by(m.TimingEvent.tool_call_id)
    ):
        if call_id is not None:  # tool calls always have an id; unpaired events cannot match
            results[call_id] = ts
    for d in by_pk.values():
        for t in d.tools:
            if t.result_at is not None:
                d.results[t.call_id] = t.result_at
            elif t.call_id in results:
                d.results[t.call_id] = results[t.call_id]
    return list(by_pk.values())


def summary_dict(s: SessionSummary) -> dict[str, Any]:
    return {
        "provider": s.provider,
        "session": s.agent_session_id,
        "project": s.project,
        "rounds": s.rounds,
        "by_kind": s.by_kind,
        "tool_calls": s.tool_calls,
        "input_tokens": s.input_tokens,
        "cached_tokens": s.cached_tokens,
        "output_tokens": s.output_tokens,
        "first_at": s.first_at,
        "last_at": s.last_at,
    }


@dataclass
class SessionView:
    """One session and its rounds in order, as `tracetap show` lists them."""

    session: m.Session
    rounds: list[RoundDetail]

    @property
    def name(self) -> str:
        """`provider:agent_session_id`."""
        return f"{self.session.provider}:{self.session.agent_session_id}"

    def as_dict(self, prefix: Mapping[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The session as JSON-able data; `prefix` adds each round's prefix-reuse figures (by
        round id, as tokens.report.round_prefix_info gives them)."""
        prefix = prefix or {}
        rounds = []
        for d in self.rounds:
            r = d.round
            rounds.append(
                {
                    "kind": r.kind,
                    "model": r.model,
                    "status": r.status,
                    "complete": r.complete,
                    "error_type": r.error_type,
                    "request_at": r.request_at,
                    "upstream_ttfb_ms": None
                    if r.upstream_first_byte_at is None
                    else (r.upstream_first_byte_at - r.request_at) * 1000,
                    "ttft_ms": None
                    if r.first_token_at is None
                    else (r.first_token_at - r.request_at) * 1000,
                    "end_ms": None if r.end_at is None else (r.end_at - r.request_at) * 1000,
                    "input_tokens_total": r.input_tokens_total,
                    "cached_tokens": r.cached_tokens,
                    "output_tokens": r.output_tokens,
                    "reasoning_tokens": r.reasoning_tokens,
                    "prefix": prefix.get(r.id),
                    "tools": [
                        {
                            "name": t.name,
                            "call_id": t.call_id,
                            "emitted_at": t.emitted_at,
                            "result_at": d.results.get(t.call_id),
                        }
                        for t in d.tools
                    ],
                }
            )
        return {"session": self.name, "project": self.session.project, "rounds": rounds}


def show(db: OrmSession, ref: str) -> SessionView:
    """One session (by `provider:id`, id or unique id prefix) with its rounds, tool calls and
    tool result times; raises LookupError when `ref` matches no session or several.

    Example: show(db, "claude:4f1c2a").rounds[0].round.model
    """
    found = find_session(db, ref)
    return SessionView(found, session_rounds(db, found.id))
