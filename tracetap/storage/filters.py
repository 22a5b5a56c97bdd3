"""One filter for every read command and view: time range, agent, model, project, session.

`Filter.conditions()` gives its SQL conditions on rounds joined to sessions; `Filter.matches_row`
applies the same rules to a TraceLab row, so a store and a JSONL file are narrowed alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from tracetap.storage import models as m
from tracetap.tracelab import parse_ts

__all__ = ["AGENTS", "Filter", "parse_when"]

# An agent is the provider a session was recorded under; each takes a few spellings.
AGENTS: dict[str, str] = {
    "claude": "claude",
    "claude-code": "claude",
    "codex": "codex",
    "openai": "openai",
}

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, *, now: float | None = None) -> float:
    """An ISO-8601 time or date ("2026-12-01", "2026-12-01T08:00Z") or an age ("90m", "12h",
    "7d", "2w": that long before now) -> epoch seconds. Raises ValueError naming the text.

    Example: parse_when("7d") -> the epoch seconds of a week ago
    """
    value = text.strip()
    hit = _RELATIVE.match(value)
    if hit:
        return (time.time() if now is None else now) - float(hit[1]) * _UNIT_S[hit[2]]
    try:
        parsed = parse_ts(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{text!r} is not an ISO-8601 time or an age like 12h or 7d")
    return parsed


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Filter:
    """Which rounds a read covers. Every field empty: everything.

    - since/until: the round's request time, since <= t < until (epoch seconds);
    - agents: providers ("claude", "codex", "openai"; "claude-code" is claude);
    - models: a model name or its prefix ("claude-sonnet" covers "claude-sonnet-4-5");
    - projects: a project (working directory or its pseudonym) or a part of it;
    - sessions: a session id or its prefix, optionally as "provider:id".
    A round passes when it matches every non-empty field, and any one value within a field.

    Example: Filter(since=parse_when("7d"), agents=("claude",)).conditions()
    """

    since: float | None = None
    until: float | None = None
    agents: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown:
            raise ValueError(
                f"unknown agent {unknown[0]!r}: use one of {', '.join(sorted(set(AGENTS)))}"
            )
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"the range is empty: since {_iso(self.since)} is not before until")

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(AGENTS[a] for a in self.agents))

    def is_empty(self) -> bool:
        """True when the filter lets everything through."""
        return all(getattr(self, f.name) in (None, ()) for f in fields(self))

    def describe(self) -> str:
        """The filter in words for messages and provenance ("everything" when empty).

        Example: Filter(agents=("codex",)).describe() -> "agent codex"
        """
        parts = []
        if self.since is not None:
            parts.append(f"since {_iso(self.since)}")
        if self.until is not None:
            parts.append(f"until {_iso(self.until)}")
        for name, values in (
            ("agent", self.agents),
            ("model", self.models),
            ("project", self.projects),
            ("session", self.sessions),
        ):
            if values:
                parts.append(f"{name} {' or '.join(values)}")
        return ", ".join(parts) or "everything"

    def as_dict(self) -> dict[str, Any]:
        """The non-empty fields, times as ISO text: for manifests and JSON output."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (None, ()):
                continue
            if f.name in ("since", "until"):
                value = datetime.fromtimestamp(value, tz=UTC).isoformat()
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions on `m.Round` and `m.Session`; the caller joins the two.

        Example: sa.select(m.Round).join(m.Session).where(*flt.conditions())
        """
        out: list[ColumnElement[bool]] = []
        if self.since is not None:
            out.append(m.Round.request_at >= self.since)
        if self.until is not None:
            out.append(m.Round.request_at < self.until)
        if self.agents:
            out.append(m.Session.provider.in_(self.providers))
        if self.models:
            models = (m.Round.model.startswith(v, autoescape=True) for v in self.models)
            out.append(sa.or_(*models))
        if self.projects:
            projects = (m.Session.project.contains(v, autoescape=True) for v in self.projects)
            out.append(sa.or_(*projects))
        if self.sessions:
            out.append(sa.or_(*(_session_condition(v) for v in self.sessions)))
        return out

    def session_conditions(self) -> list[ColumnElement[bool]]:
        """The conditions that concern a session alone (agent, project, session id), for a query
        over `m.Session` without rounds."""
        only = Filter(agents=self.agents, projects=self.projects, sessions=self.sessions)
        return only.conditions()

    def matches_row(self, row: Mapping[str, Any]) -> bool:
        """Whether a TraceLab row passes, by the same rules as `conditions()`; a row's time is
        its first timing event."""
        if self.since is not None or self.until is not None:
            events = row.get("timing_events") or []
            t = parse_ts(events[0].get("timestamp")) if events else None
            if t is None:
                return False
            if (self.since is not None and t < self.since) or (
                self.until is not None and t >= self.until
            ):
                return False
        if self.agents and row.get("provider") not in self.providers:
            return False
        model = row.get("model") or ""
        if self.models and not any(model.startswith(v) for v in self.models):
            return False
        project = row.get("project") or ""
        if self.projects and not any(v in project for v in self.projects):
            return False
        if self.sessions:
            sid = str(row.get("session_id") or "")
            bare = sid.partition(":")[2] if ":" in sid else sid
            if not any(sid.startswith(v) or bare.startswith(v) for v in self.sessions):
                return False
        return True


def _session_condition(ref: str) -> ColumnElement[bool]:
    head, sep, tail = ref.partition(":")
    if sep and head in AGENTS:
        return sa.and_(
            m.Session.provider == AGENTS[head],
            m.Session.agent_session_id.startswith(tail, autoescape=True),
        )
    return m.Session.agent_session_id.startswith(ref, autoescape=True)
