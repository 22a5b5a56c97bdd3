"""Read queries behind the web UI: the newest sessions a filter matches, with their totals, and
the store's newest round id (what a live page polls to learn that something was written).

Functions take an ORM session first and return plain data; only callers open sessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.pricing import CostTotal, load_table, usage_of
from tracetap.storage import models as m
from tracetap.storage.filters import Filter

__all__ = ["SessionRow", "as_dict", "latest_round", "session_rows", "tool_result_errors"]


@dataclass
class SessionRow:
    """One session's totals over the rounds a filter lets through.

    `models` maps each model to its round count and token sums (input, cached, output);
    `cost` prices each round (tracetap.pricing); `prompt_tokens` and `reusable_tokens` are
    tracetap's measured prompt and prefix reuse over the rounds it tokenized (0: none).
    """

    pk: int
    provider: str
    agent_session_id: str
    project: str | None
    rounds: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    models: dict[str, dict[str, int]] = field(default_factory=dict)
    tool_calls: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    prompt_tokens: int = 0
    reusable_tokens: int = 0
    first_at: float | None = None
    last_at: float | None = None
    last_round: int = 0
    cost: CostTotal = field(default_factory=CostTotal)

    @property
    def ref(self) -> str:
        """`provider:agent_session_id`, as every command takes a session."""
        return f"{self.provider}:{self.agent_session_id}"

    @property
    def measured_reuse(self) -> float | None:
        """Share of the measured prompt tokens that repeat the previous round's prefix."""
        return self.reusable_tokens / self.prompt_tokens if self.prompt_tokens else None


def latest_round(db: OrmSession) -> int:
    """The newest round's id (0 for an empty store): it grows with every round written."""
    return int(db.scalar(sa.select(sa.func.max(m.Round.id))) or 0)


def tool_result_errors(db: OrmSession, round_pks: Sequence[int]) -> dict[str, bool]:
    """Per tool call id, whether its result (a `tool_result` event of a later request of these
    rounds) was flagged an error; ids whose result carried no flag are left out."""
    out: dict[str, bool] = {}
    pks = list(round_pks)
    for i in range(0, len(pks), 500):
        q = sa.select(m.TimingEvent.tool_call_id, m.TimingEvent.is_error).where(
            m.TimingEvent.round_pk.in_(pks[i : i + 500]),
            m.TimingEvent.event_type == "tool_result",
            m.TimingEvent.is_error.is_not(None),
        )
        for call_id, error in db.execute(q):
            if call_id is not None:
                out[call_id] = out.get(call_id, False) or bool(error)
    return out


def _newest_sessions(db: OrmSession, flt: Filter, limit: int) -> dict[int, int]:
    """The `limit` sessions with the newest rounds `flt` lets through: {session id: newest
    round id}, newest first."""
    by_session = flt.session_conditions()
    by_round = Filter(since=flt.since, until=flt.until, models=flt.models).conditions()
    if by_session:
        candidates = list(db.scalars(sa.select(m.Session.id).where(*by_session).limit(limit + 1)))
        if len(candidates) <= limit:  # few enough to sum up through the session index
            newest = sa.func.max(m.Round.id).label("newest")
            q = (
                sa.select(m.Round.session_pk, newest)
                .where(m.Round.session_pk.in_(candidates), *by_round)
                .group_by(m.Round.session_pk)
                .order_by(newest.desc())
            )
            return {spk: rid for spk, rid in db.execute(q)}
    # Rounds newest first until `limit` sessions are seen: the primary key's order, read only
    # as far as it takes, rather than a pass over every round.
    pick = sa.select(m.Round.session_pk, m.Round.id).where(*by_round).order_by(m.Round.id.desc())
    if by_session:
        # `+ 0` keeps the planner from reading the session index and sorting every match
        wanted = sa.select(m.Session.id).where(*by_session)
        pick = pick.where((m.Round.session_pk + 0).in_(wanted))
    chosen: dict[int, int] = {}
    rows = db.execute(pick.execution_options(yield_per=1000))
    for spk, rid in rows:
        if spk not in chosen:
            chosen[spk] = rid
            if len(chosen) >= limit:
                break
    rows.close()
    return chosen


def session_rows(db: OrmSession, flt: Filter, *, limit: int = 100) -> list[SessionRow]:
    """The `limit` sessions with the most recently written rounds among those `flt` lets
    through, newest first, each with its totals over those rounds.

    Only the chosen sessions' rounds are read and summed.

    Example: session_rows(db, Filter(agents=("claude",)), limit=50)[0].rounds
    """
    conditions = flt.conditions()
    chosen = _newest_sessions(db, flt, limit)
    if not chosen:
        return []
    out: dict[int, SessionRow] = {
        s.id: SessionRow(s.id, s.provider, s.agent_session_id, s.project, last_round=chosen[s.id])
        for s in db.scalars(sa.select(m.Session).where(m.Session.id.in_(list(chosen))))
    }
    tools = (
        sa.select(m.ToolCall.round_pk, sa.func.count().label("n"))
        .join(m.Round, m.Round.id == m.ToolCall.round_pk)
        .where(m.Round.session_pk.in_(list(chosen)))
        .group_by(m.ToolCall.round_pk)
        .subquery()
    )
    totals = (
        sa.select(
            m.Round.session_pk,
            m.Round.kind,
            m.Round.model,
            sa.func.count(m.Round.id),
            sa.func.coalesce(sa.func.sum(tools.c.n), 0),
            sa.func.coalesce(sa.func.sum(m.Round.input_tokens_total), 0),
            sa.func.coalesce(sa.func.sum(m.Round.cached_tokens), 0),
            sa.func.coalesce(sa.func.sum(m.Round.output_tokens), 0),
            sa.func.coalesce(sa.func.sum(m.RoundTokens.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(m.RoundTokens.reuse_prev_tokens), 0),
            sa.func.min(m.Round.request_at),
            sa.func.max(sa.func.coalesce(m.Round.end_at, m.Round.request_at)),
        )
        .join(m.Session, m.Session.id == m.Round.session_pk)
        .outerjoin(tools, tools.c.round_pk == m.Round.id)
        .outerjoin(m.RoundTokens, m.RoundTokens.round_pk == m.Round.id)
        .where(m.Round.session_pk.in_(list(chosen)), *conditions)
        .group_by(m.Round.session_pk, m.Round.kind, m.Round.model)
    )
    for spk, kind, model, n, ntools, tin, tcached, tout, prompt, reuse, first, last in db.execute(
        totals
    ):
        row = out[spk]
        row.rounds += n
        row.by_kind[kind] = row.by_kind.get(kind, 0) + n
        per = row.models.setdefault(
            model or "?", {"rounds": 0, "input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}
        )
        per["rounds"] += n
        per["input_tokens"] += int(tin)
        per["cached_tokens"] += int(tcached)
        per["output_tokens"] += int(tout)
        row.tool_calls += int(ntools)
        row.input_tokens += int(tin)
        row.cached_tokens += int(tcached)
        row.output_tokens += int(tout)
        row.prompt_tokens += int(prompt)
        row.reusable_tokens += int(reuse)
        row.first_at = first if row.first_at is None else min(row.first_at, first)
        row.last_at = last if row.last_at is None else max(row.last_at, last)
    _price(db, out, conditions)
    return sorted(out.values(), key=lambda r: r.last_round, reverse=True)


# The Round columns a round's price is computed from.
_USAGE = (
    "input_tokens_total",
    "cached_tokens",
    "uncached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_5m_tokens",
    "cache_creation_1h_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def _price(db: OrmSession, rows: dict[int, SessionRow], conditions: list[Any]) -> None:
    """Add each round's cost to its session's row (a model with no price counts unpriced)."""
    table = load_table()
    columns = [getattr(m.Round, name) for name in _USAGE]
    q = (
        sa.select(m.Round.session_pk, m.Round.model, *columns)
        .join(m.Session, m.Session.id == m.Round.session_pk)
        .where(m.Round.session_pk.in_(list(rows)), *conditions)
    )
    for spk, model, *usage in db.execute(q):
        rows[spk].cost.add(table.cost(model, usage_of(dict(zip(_USAGE, usage)))))


def as_dict(row: SessionRow) -> dict[str, Any]:
    """A `SessionRow` as JSON-able data."""
    return {
        "ref": row.ref,
        "provider": row.provider,
        "session": row.agent_session_id,
        "project": row.project,
        "rounds": row.rounds,
        "by_kind": row.by_kind,
        "models": row.models,
        "tool_calls": row.tool_calls,
        "input_tokens": row.input_tokens,
        "cached_tokens": row.cached_tokens,
        "output_tokens": row.output_tokens,
        "prompt_tokens": row.prompt_tokens,
        "reusable_tokens": row.reusable_tokens,
        "measured_reuse": row.measured_reuse,
        "cost_usd": row.cost.as_dict()["cost_usd"],
        "unpriced_rounds": row.cost.unpriced,
        "first_at": row.first_at,
        "last_at": row.last_at,
    }
