"""Read-side queries: session summaries (`sessions`), one session's rounds in detail (`show`),
their cost, and a round's content as the store holds it (`round_content`).

Functions take an ORM session first and return plain data; only callers open sessions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import load_json
from tracetap.pricing import CostTotal, PriceTable, load_table, usage_of
from tracetap.storage import models as m
from tracetap.storage.filters import Filter

__all__ = [
    "AmbiguousSession",
    "ContentPart",
    "RoundContent",
    "RoundDetail",
    "SessionSummary",
    "SessionView",
    "count_sessions",
    "find_session",
    "round_content",
    "session_costs",
    "session_rounds",
    "sessions",
    "show",
    "summary_dict",
]

# The Round columns a price needs.
_USAGE_COLUMNS = (
    m.Round.model,
    m.Round.input_tokens_total,
    m.Round.cached_tokens,
    m.Round.uncached_input_tokens,
    m.Round.cache_creation_input_tokens,
    m.Round.cache_creation_5m_tokens,
    m.Round.cache_creation_1h_tokens,
    m.Round.cache_read_input_tokens,
    m.Round.output_tokens,
)


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
    cost: CostTotal = field(default_factory=CostTotal)


def sessions(
    db: OrmSession,
    *,
    flt: Filter | None = None,
    provider: str | None = None,
    limit: int | None = None,
    prices: PriceTable | None = None,
) -> list[SessionSummary]:
    """Recorded sessions with their round, tool-call, token and cost totals over the rounds
    `flt` lets through, newest first; `limit` keeps the newest N (None or 0: all).

    Example: sessions(db, flt=Filter(agents=("claude",)), limit=50)
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
    if flt is not None:
        q = q.where(*flt.conditions())
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
    kept = ordered[:limit] if limit else ordered
    costs = session_costs(db, [s.pk for s in kept], flt=flt, prices=prices)
    for summary in kept:
        summary.cost = costs.get(summary.pk, CostTotal())
    return kept


def count_sessions(db: OrmSession, *, flt: Filter | None = None) -> int:
    """How many sessions have a round `flt` lets through (`sessions` without its limit).

    Example: count_sessions(db, flt=Filter(projects=("tracetap",)))
    """
    q = sa.select(sa.func.count(sa.distinct(m.Round.session_pk))).join(
        m.Session, m.Round.session_pk == m.Session.id
    )
    if flt is not None:
        q = q.where(*flt.conditions())
    return int(db.scalar(q) or 0)


def session_costs(
    db: OrmSession,
    session_pks: list[int],
    *,
    flt: Filter | None = None,
    prices: PriceTable | None = None,
) -> dict[int, CostTotal]:
    """The cost of each session's rounds (those `flt` lets through), by session pk.

    Example: session_costs(db, [1, 2])[1].usd
    """
    prices = prices or load_table()
    out: dict[int, CostTotal] = {}
    for i in range(0, len(session_pks), 500):
        part = session_pks[i : i + 500]
        q = (
            sa.select(m.Round.session_pk, *_USAGE_COLUMNS)
            .join(m.Session, m.Round.session_pk == m.Session.id)
            .where(m.Round.session_pk.in_(part))
        )
        if flt is not None:
            q = q.where(*flt.conditions())
        for row in db.execute(q):
            usage = row._mapping
            total = out.setdefault(row.session_pk, CostTotal())
            total.add(prices.cost(row.model, usage_of(usage)))
    return out


class AmbiguousSession(LookupError):
    """A session reference that is the prefix of several sessions' ids."""


def find_session(db: OrmSession, ref: str) -> m.Session:
    """A session by `provider:id`, its id, or a unique prefix of its id. Raises LookupError
    (a message listing up to five candidates) when `ref` matches none or several."""
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
        raise AmbiguousSession(
            f"{ref!r} matches several sessions: "
            + ", ".join(f"{s.provider}:{s.agent_session_id}" for s in found)
            + (" ..." if len(found) == 5 else "")
            + " — give more of the id"
        )
    return found[0]


@dataclass
class RoundDetail:
    round: m.Round
    tools: list[m.ToolCall] = field(default_factory=list)
    results: dict[str, float] = field(default_factory=dict)  # call id -> result arrival
    cost: float | None = None  # USD; None: the model has no price or the round no usage


def session_rounds(
    db: OrmSession, session_pk: int, *, prices: PriceTable | None = None
) -> list[RoundDetail]:
    rounds = list(
        db.scalars(
            sa.select(m.Round)
            .where(m.Round.session_pk == session_pk)
            .order_by(m.Round.request_at, m.Round.id)
        )
    )
    prices = prices or load_table()
    by_pk = {r.id: RoundDetail(r, cost=prices.cost(r.model, usage_of(r))) for r in rounds}
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
        "cost_usd": round(s.cost.usd, 6) if s.cost.priced else None,
        "unpriced_rounds": s.cost.unpriced,
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

    @property
    def cost(self) -> CostTotal:
        """The session's cost over its priced rounds, and how many rounds have no price."""
        total = CostTotal()
        for d in self.rounds:
            total.add(d.cost)
        return total

    def round_dict(
        self, index: int, prefix: Mapping[int, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Round `index` (0-based, in request order) as JSON-able data."""
        d = self.rounds[index]
        r = d.round
        return {
            "index": index,
            "uid": r.uid,
            "kind": r.kind,
            "model": r.model,
            "status": r.status,
            "complete": r.complete,
            "error_type": r.error_type,
            "request_at": r.request_at,
            "upstream_ttfb_ms": _ms(r.request_at, r.upstream_first_byte_at),
            "ttft_ms": _ms(r.request_at, r.first_token_at),
            "end_ms": _ms(r.request_at, r.end_at),
            "input_tokens_total": r.input_tokens_total,
            "cached_tokens": r.cached_tokens,
            "uncached_input_tokens": r.uncached_input_tokens,
            "cache_creation_5m_tokens": r.cache_creation_5m_tokens,
            "cache_creation_1h_tokens": r.cache_creation_1h_tokens,
            "cache_read_input_tokens": r.cache_read_input_tokens,
            "output_tokens": r.output_tokens,
            "reasoning_tokens": r.reasoning_tokens,
            "cost_usd": None if d.cost is None else round(d.cost, 6),
            "content_policy": r.content_policy,
            "prefix": (prefix or {}).get(r.id),
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

    def as_dict(self, prefix: Mapping[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The session as JSON-able data; `prefix` adds each round's prefix-reuse figures (by
        round id, as tokens.report.round_prefix_info gives them)."""
        total = self.cost
        return {
            "session": self.name,
            "project": self.session.project,
            "cost_usd": round(total.usd, 6) if total.priced else None,
            "unpriced_rounds": total.unpriced,
            "rounds": [self.round_dict(i, prefix) for i in range(len(self.rounds))],
        }


def _ms(start: float | None, at: float | None) -> float | None:
    return None if start is None or at is None else (at - start) * 1000


def show(db: OrmSession, ref: str, *, prices: PriceTable | None = None) -> SessionView:
    """One session (by `provider:id`, id or unique id prefix) with its rounds, tool calls,
    tool result times and costs; raises LookupError when `ref` matches no session or several.

    Example: show(db, "claude:4f1c2a").rounds[0].round.model
    """
    found = find_session(db, ref)
    return SessionView(found, session_rounds(db, found.id, prices=prices))


# -- content --------------------------------------------------------------------------------

# What each content level keeps, for a round whose text is not all there.
_POLICY_NOTES = {
    "redacted": "content level redacted: secrets and personal data were replaced before storing",
    "none": "content level none: no text was stored, only its length and a keyed hash",
    "import": "imported from TraceLab rows: no content was stored",
}


@dataclass
class ContentPart:
    """One piece of a conversation: a message's text, a tool call's input, a tool's output."""

    role: str  # user | assistant | tool | system | developer
    kind: str  # text | thinking | tool_call | tool_result | other
    text: str
    name: str | None = None  # the tool's name (tool_call)
    call_id: str | None = None  # tool_call and tool_result

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class RoundContent:
    """What a round added to the conversation and what came back, at its stored level."""

    policy: str
    new: list[ContentPart]  # the messages this round sent that the previous one did not
    response: list[ContentPart]
    note: str | None = None  # what the content level left out, when it left something out

    def as_dict(self) -> dict[str, Any]:
        return {
            "content_policy": self.policy,
            "note": self.note,
            "new_messages": [p.as_dict() for p in self.new],
            "response": [p.as_dict() for p in self.response],
        }


def _text(value: Any) -> str:
    """Text of a content value: a string, a list of text parts, or other JSON as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [_text(v.get("text") if isinstance(v, dict) and "text" in v else v) for v in value]
        return "\n".join(t for t in texts if t)
    if isinstance(value, dict):
        for key in ("text", "output", "content"):
            if key in value:
                return _text(value[key])
    return json.dumps(value, ensure_ascii=False)


def _args(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _block_parts(role: str, block: Any) -> list[ContentPart]:
    """Parts of one content block or item (Anthropic, OpenAI Responses or Chat Completions)."""
    if isinstance(block, str):
        return [ContentPart(role, "text", block)] if block else []
    if not isinstance(block, dict):
        return []
    kind = block.get("type")
    if kind in ("text", "input_text", "output_text"):
        return [ContentPart(role, "text", _text(block.get("text")))]
    if kind in ("thinking", "redacted_thinking"):
        return [ContentPart(role, "thinking", _text(block.get("thinking") or block.get("data")))]
    if kind == "reasoning":
        return [ContentPart(role, "thinking", _text(block.get("summary") or block.get("content")))]
    if kind in ("tool_use", "server_tool_use"):
        return [
            ContentPart(
                role, "tool_call", _args(block.get("input")), block.get("name"), block.get("id")
            )
        ]
    if kind in ("function_call", "custom_tool_call", "local_shell_call"):
        value = block.get("arguments", block.get("input", block.get("action")))
        return [
            ContentPart(role, "tool_call", _args(value), block.get("name"), block.get("call_id"))
        ]
    if kind in ("tool_result", "web_search_tool_result"):
        return [
            ContentPart(
                "tool", "tool_result", _text(block.get("content")), None, block.get("tool_use_id")
            )
        ]
    if kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
        return [
            ContentPart(
                "tool", "tool_result", _text(block.get("output")), None, block.get("call_id")
            )
        ]
    if kind == "message" or (kind is None and "role" in block):
        return _message_parts(block)
    return [ContentPart(role, "other", _args(block))]


def _message_parts(message: Any) -> list[ContentPart]:
    """Parts of one message (any of the three wire formats)."""
    if not isinstance(message, dict):
        return _block_parts("user", message)
    if message.get("type") not in (None, "message"):
        return _block_parts(str(message.get("role") or "user"), message)
    role = str(message.get("role") or "user")
    if role == "tool":  # Chat Completions tool output
        return [
            ContentPart(
                "tool",
                "tool_result",
                _text(message.get("content")),
                None,
                message.get("tool_call_id"),
            )
        ]
    parts: list[ContentPart] = []
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            parts += _block_parts(role, block)
    elif content:
        parts.append(ContentPart(role, "text", _text(content)))
    for call in message.get("tool_calls") or []:  # Chat Completions tool calls
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        name, arguments = fn.get("name"), _args(fn.get("arguments"))
        parts.append(ContentPart(role, "tool_call", arguments, name, call.get("id")))
    return parts


def _response_parts(body: Any) -> list[ContentPart]:
    """Parts of a stored response (Anthropic message, Responses object, chat completion)."""
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("content"), list):  # Anthropic
        return [p for b in body["content"] for p in _block_parts("assistant", b)]
    if isinstance(body.get("output"), list):  # OpenAI Responses
        return [p for item in body["output"] for p in _block_parts("assistant", item)]
    parts: list[ContentPart] = []
    for choice in body.get("choices") or []:  # Chat Completions
        if isinstance(choice, dict):
            parts += _message_parts({"role": "assistant", **(choice.get("message") or {})})
    return parts


def _blobs(db: OrmSession, hashes: list[str]) -> dict[str, Any]:
    wanted = {h for h in hashes if h}
    if not wanted:
        return {}
    return {
        b.hash: load_json(b.codec, b.data)
        for b in db.scalars(sa.select(m.Blob).where(m.Blob.hash.in_(wanted)))
    }


def round_content(db: OrmSession, rnd: m.Round) -> RoundContent:
    """What `rnd` sent that its previous round did not (its new messages), and its response,
    rebuilt from the content store at the level it was stored at: redacted text stays
    redacted, a round stored at level `none` shows lengths and keyed hashes only.

    Example: [p.text for p in round_content(db, rnd).response if p.kind == "text"]
    """
    blobs = _blobs(db, [*rnd.msg_new, rnd.response_hash or ""])
    new = [p for h in rnd.msg_new if h in blobs for p in _message_parts(blobs[h])]
    response = _response_parts(blobs.get(rnd.response_hash or ""))
    note = _POLICY_NOTES.get(rnd.content_policy)
    if not rnd.msg_new and rnd.response_hash is None and note is None:
        note = "no content was stored for this round"
    return RoundContent(rnd.content_policy, new, response, note)
