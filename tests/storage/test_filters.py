"""storage.filters: one Filter narrows a store (SQL) and a TraceLab file (rows) alike."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.storage.rounds import claude_session
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.filters import Filter, parse_when
from tracetap.storage.writer import Writer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tracelab_sample.jsonl"
T0 = 1_780_000_000.0


def _store(tmp_path: Path) -> sa.Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    ensure_schema(engine)
    w = Writer(engine)
    for sid, t0, model, project in (
        ("alpha-1", T0, "claude-sonnet-4-5", "/home/u/shop"),
        ("alpha-2", T0 + 86400, "claude-opus-4-1", "/home/u/blog"),
        ("beta-1", T0 + 2 * 86400, "claude-sonnet-4-5", "/home/u/shop"),
    ):
        rounds = claude_session(3, session=sid, t0=t0)
        w.write([dataclasses.replace(r, model=model, project=project) for r in rounds])
    return engine


def _sessions(engine: sa.Engine, flt: Filter) -> list[str]:
    q = (
        sa.select(m.Session.agent_session_id)
        .join(m.Round, m.Round.session_pk == m.Session.id)
        .where(*flt.conditions())
        .distinct()
        .order_by(m.Session.agent_session_id)
    )
    with Session(engine) as db:
        return list(db.scalars(q))


def test_each_field_narrows_the_store(tmp_path: Path) -> None:
    engine = _store(tmp_path)
    assert _sessions(engine, Filter()) == ["alpha-1", "alpha-2", "beta-1"]
    assert _sessions(engine, Filter(sessions=("alpha",))) == ["alpha-1", "alpha-2"]
    assert _sessions(engine, Filter(sessions=("claude:beta",))) == ["beta-1"]
    assert _sessions(engine, Filter(models=("claude-opus",))) == ["alpha-2"]
    assert _sessions(engine, Filter(projects=("shop",))) == ["alpha-1", "beta-1"]
    assert _sessions(engine, Filter(since=T0 + 3600)) == ["alpha-2", "beta-1"]
    assert _sessions(engine, Filter(until=T0 + 3600)) == ["alpha-1"]
    assert _sessions(engine, Filter(agents=("codex",))) == []
    assert _sessions(engine, Filter(agents=("claude-code",), projects=("blog",))) == ["alpha-2"]
    # LIKE wildcards in a value are literal characters
    assert _sessions(engine, Filter(sessions=("alpha%",))) == []


def test_the_same_rules_apply_to_tracelab_rows() -> None:
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    first = rows[0]
    sid = first["session_id"]
    assert all(Filter().matches_row(r) for r in rows)
    assert Filter(sessions=(sid.partition(":")[2][:8],)).matches_row(first)
    assert Filter(sessions=(sid,)).matches_row(first)
    assert not Filter(sessions=("zzzz",)).matches_row(first)
    assert Filter(models=(first["model"][:6],)).matches_row(first)
    assert not Filter(agents=("codex",)).matches_row(first) or first["provider"] == "codex"
    t = parse_when(first["timing_events"][0]["timestamp"])
    assert Filter(since=t).matches_row(first)
    assert not Filter(until=t).matches_row(first)


def test_times_and_ages() -> None:
    assert parse_when("2026-12-01") == parse_when("2026-12-01T00:00:00Z")
    assert parse_when("12h", now=100_000.0) == 100_000.0 - 12 * 3600
    assert parse_when("2w", now=10**7) == 10**7 - 14 * 86400
    with pytest.raises(ValueError, match="'yesterday' is not an ISO-8601 time"):
        parse_when("yesterday")


def test_bad_filters_say_why() -> None:
    with pytest.raises(ValueError, match="unknown agent 'gemini'"):
        Filter(agents=("gemini",))
    with pytest.raises(ValueError, match="the range is empty"):
        Filter(since=10.0, until=5.0)
    assert Filter().describe() == "everything"
    assert Filter(agents=("codex",), models=("gpt-5",)).describe() == "agent codex, model gpt-5"
    assert Filter(since=0.0).as_dict() == {"since": "1970-01-01T00:00:00+00:00"}
