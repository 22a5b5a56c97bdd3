"""What the web UI's pages show, as JSON-able data: the session list, one session's waterfall
and rounds, one round's content with its diff against the round before it.

Every function reads through the library's query functions (storage.views, storage.queries,
storage.reconstruct, tokens.report); none writes.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.pricing import load_table, usage_of
from tracetap.privacy.keys import default_key_file, load_key
from tracetap.privacy.scrub import Scrubber
from tracetap.storage import models as m
from tracetap.storage import views
from tracetap.storage.filters import Filter
from tracetap.storage.queries import find_session, session_rounds
from tracetap.storage.reconstruct import request_parts, response
from tracetap.tokens.report import CAUSES, round_prefix_info

__all__ = [
    "ContentView",
    "round_content",
    "session_detail",
    "session_list",
]

# Longest text of one element shown in the content view; the rest is cut with a note.
MAX_ELEMENT_CHARS = 20_000


def session_list(db: OrmSession, flt: Filter, *, limit: int = 100) -> dict[str, Any]:
    """The sessions page's data: the newest `limit` sessions `flt` lets through, with their
    totals and cost, and the newest round id of the store."""
    rows = []
    for row in views.session_rows(db, flt, limit=limit):
        data = views.as_dict(row)
        data["models"] = sorted(row.models, key=lambda k: -row.models[k]["rounds"])
        rows.append(data)
    return {
        "sessions": rows,
        "latest": views.latest_round(db),
        "filter": flt.describe(),
        "limit": limit,
    }


def _lane(r: m.Round) -> str:
    """The waterfall lane of a round: its kind, each subagent thread on a lane of its own."""
    if r.kind == "subagent":
        return f"subagent {(r.thread_key or '?')[:6]}"
    return r.kind


def _ms(t: float | None, t0: float) -> float | None:
    return None if t is None else round((t - t0) * 1000, 1)


def session_detail(db: OrmSession, ref: str) -> dict[str, Any]:
    """One session's waterfall and rounds: per round its times (ms from the session's first
    request), lane, tokens, prompt segments with cached/reusable/new, tool calls (latency,
    error) and the wait before it (tools or a human). Raises LookupError for an unknown ref."""
    found = find_session(db, ref)
    details = session_rounds(db, found.id)
    pks = [d.round.id for d in details]
    prefix = round_prefix_info(db, pks)
    errors = views.tool_result_errors(db, pks)
    t0 = details[0].round.request_at if details else 0.0
    prices = load_table()
    rounds: list[dict[str, Any]] = []
    lanes: list[str] = []
    last_end: dict[str, float] = {}
    for i, d in enumerate(details):
        r = d.round
        lane = _lane(r)
        if lane not in lanes:
            lanes.append(lane)
        info = prefix.get(r.id) or {}
        tools = []
        for t in d.tools:
            result_at = d.results.get(t.call_id)
            latency = t.wall_latency_ms
            if latency is None and result_at is not None and t.emitted_at is not None:
                latency = round((result_at - t.emitted_at) * 1000)
            error = t.is_error if t.is_error is not None else errors.get(t.call_id)
            tools.append(
                {
                    "name": t.name,
                    "call_id": t.call_id,
                    "start_ms": _ms(t.emitted_at, t0),
                    "end_ms": _ms(result_at, t0),
                    "latency_ms": latency,
                    "error": bool(error),
                }
            )
        before = last_end.get(lane)
        wait = None
        if before is not None and r.request_at > before:
            wait = {
                "kind": "human" if r.first_input_type == "user_message" else "tools",
                "start_ms": _ms(before, t0),
                "end_ms": _ms(r.request_at, t0),
            }
        last_end[lane] = r.end_at or r.last_token_at or r.request_at
        prompt = info.get("prompt_tokens")
        reusable = info.get("measured_prefix_tokens")
        cached = r.cached_tokens if r.cached_tokens is not None else r.cache_read_input_tokens
        rounds.append(
            {
                "pk": r.id,
                "index": i,
                "kind": r.kind,
                "lane": lane,
                "model": r.model,
                "status": r.status,
                "error": r.error_type,
                "content_policy": r.content_policy,
                "start_ms": _ms(r.request_at, t0),
                "first_byte_ms": _ms(r.upstream_first_byte_at, t0),
                "first_token_ms": _ms(r.first_token_at, t0),
                "last_token_ms": _ms(r.last_token_at, t0),
                "end_ms": _ms(r.end_at, t0),
                "input_tokens": r.input_tokens_total,
                "cached_tokens": cached,
                "output_tokens": r.output_tokens,
                "cost_usd": prices.cost(r.model, usage_of(r)),
                "prompt_tokens": prompt,
                "reusable_tokens": reusable,
                "segments": info.get("segments") or {},
                "prefix_break": info.get("prefix_break"),
                "cause": info.get("cause"),
                "cause_text": CAUSES.get(info.get("cause") or ""),
                "tools": tools,
                "wait": wait,
            }
        )
    return {
        "ref": f"{found.provider}:{found.agent_session_id}",
        "provider": found.provider,
        "project": found.project,
        "started_at": t0 if details else None,
        "lanes": lanes,
        "rounds": rounds,
        "latest": views.latest_round(db),
    }


@dataclass(frozen=True)
class ContentView:
    """How much of the stored text the UI shows: "redacted" scrubs rounds stored in full with
    the user's pseudonym key (a passing key when none exists, so nothing is created), "full"
    shows what is stored."""

    level: str = "redacted"

    def scrubber(self) -> Scrubber | None:
        if self.level != "redacted":
            return None
        existing = os.environ.get("TRACETAP_KEY") or default_key_file().is_file()
        return Scrubber(load_key() if existing else os.urandom(32))


def _text(value: Any) -> str:
    text = json.dumps(value, indent=1, ensure_ascii=False, default=str)
    if len(text) > MAX_ELEMENT_CHARS:
        text = text[:MAX_ELEMENT_CHARS] + f"\n… ({len(text) - MAX_ELEMENT_CHARS:,} more chars)"
    return text


def _previous(db: OrmSession, rnd: m.Round) -> m.Round | None:
    """The round whose prompt this one continues: its measured parent, else its message
    chain's parent, else the round before it of the same kind and thread in the session."""
    parent = db.scalar(sa.select(m.RoundTokens.parent_uid).where(m.RoundTokens.round_pk == rnd.id))
    for uid in (parent, rnd.msg_parent_uid):
        if uid:
            found = db.scalar(sa.select(m.Round).where(m.Round.uid == uid))
            if found is not None:
                return found
    q = (
        sa.select(m.Round)
        .where(
            m.Round.session_pk == rnd.session_pk,
            m.Round.kind == rnd.kind,
            sa.or_(m.Round.request_at < rnd.request_at, m.Round.id < rnd.id),
            m.Round.id != rnd.id,
        )
        .order_by(m.Round.request_at.desc(), m.Round.id.desc())
        .limit(1)
    )
    if rnd.thread_key is not None:
        q = q.where(m.Round.thread_key == rnd.thread_key)
    return db.scalar(q)


def _compare(now: list[str], before: list[str] | None) -> list[dict[str, Any]]:
    """Per element of `now`: "same" as the element at its index before, "changed", or "new"
    (past the end of `before`); an element `before` had past the end of `now` is "dropped"."""
    out: list[dict[str, Any]] = []
    for i, text in enumerate(now):
        if before is None:
            out.append({"index": i, "status": "new", "text": text})
        elif i >= len(before):
            out.append({"index": i, "status": "new", "text": text})
        elif before[i] == text:
            out.append({"index": i, "status": "same", "text": text})
        else:
            diff = difflib.unified_diff(
                before[i].splitlines(), text.splitlines(), "before", "now", n=1, lineterm=""
            )
            out.append(
                {"index": i, "status": "changed", "text": text, "diff": "\n".join(list(diff)[2:])}
            )
    for i in range(len(now), len(before or [])):
        out.append({"index": i, "status": "dropped", "text": (before or [])[i]})
    return out


# Where each measured prefix break lies in the prompt.
_BREAK_SECTION = {
    "tools-changed": "tools",
    "system-changed": "system",
    "history-rewritten": "messages",
}


def round_content(db: OrmSession, pk: int, view: ContentView) -> dict[str, Any]:
    """One round's prompt (system, tools, messages) and response at the stored content level,
    each element compared with the previous round's prompt: where the shared prefix broke,
    and the miss cause. Raises LookupError for an unknown round."""
    rnd = db.get(m.Round, pk)
    if rnd is None:
        raise LookupError(f"no round {pk}")
    scrub = view.scrubber() if rnd.content_policy == "full" else None

    def shown(value: Any) -> Any:
        return scrub.obj(value) if scrub is not None else value

    parts = request_parts(db, rnd)
    prev = _previous(db, rnd)
    before = request_parts(db, prev) if prev is not None else None
    sections: dict[str, list[dict[str, Any]]] = {}
    for name in ("system", "tools", "messages"):
        value = parts[name]
        items = value if isinstance(value, list) else ([] if value is None else [value])
        now = [_text(shown(x)) for x in items]
        old: list[str] | None = None
        if before is not None:
            prior = before[name]
            prior_items = prior if isinstance(prior, list) else ([] if prior is None else [prior])
            old = [_text(shown(x)) for x in prior_items]
        sections[name] = _compare(now, old)
    info = round_prefix_info(db, [rnd.id]).get(rnd.id) or {}
    broke = None
    # The measured prompt leaves out what tracetap normalizes (Claude Code's per-request billing
    # line, say): when it names where the prefix broke (or that the round only appended), a
    # changed element elsewhere broke nothing.
    measured = _BREAK_SECTION.get(info.get("prefix_break") or "")
    if info.get("prefix_break") != "append":
        for name in (measured,) if measured else ("tools", "system", "messages"):
            first = next((e for e in sections[name] if e["status"] in ("changed", "dropped")), None)
            if first is not None:
                broke = {"section": name, "index": first["index"]}
                break
    return {
        "pk": rnd.id,
        "content_policy": rnd.content_policy,
        "shown_as": "redacted" if scrub is not None else rnd.content_policy,
        "previous": None if prev is None else prev.id,
        "sections": sections,
        "response": _text(shown(response(db, rnd))),
        "broke_at": broke,
        "prefix_break": info.get("prefix_break"),
        "normalized": info.get("normalized") or [],
        "prefix_break_text": CAUSES.get(info.get("prefix_break") or ""),
        "cause": info.get("cause"),
        "cause_text": CAUSES.get(info.get("cause") or ""),
        "reusable_tokens": info.get("measured_prefix_tokens"),
        "prompt_tokens": info.get("prompt_tokens"),
    }
