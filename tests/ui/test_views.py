"""The data behind the pages: session rows (totals, cost, order, filters) and a session's
waterfall (lanes, waits, tool errors), read from a store written by the Writer."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.storage.rounds import claude_session
from tests.ui.seed import write
from tracetap.model import InputEvent
from tracetap.storage.db import make_engine
from tracetap.storage.filters import Filter, parse_when
from tracetap.storage.views import latest_round, session_rows
from tracetap.ui.data import session_detail

T0 = 1_780_000_000.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    key = tmp_path / "key"
    write(url, claude_session(3, session="old", t0=T0), key)
    unknown = claude_session(2, session="unpriced", t0=T0 + 86_400)
    for rnd in unknown:
        rnd.model = "a-model-without-a-price"
    write(url, unknown, key)
    write(url, claude_session(4, session="new", t0=T0 + 2 * 86_400), key)
    return url


def test_rows_hold_each_sessions_totals_newest_written_first(url: str) -> None:
    with Session(make_engine(url, create=False)) as db:
        rows = session_rows(db, Filter())
        assert [r.ref for r in rows] == ["claude:new", "claude:unpriced", "claude:old"]
        new = rows[0]
        assert (new.rounds, new.tool_calls, new.by_kind) == (4, 4, {"main": 4})
        assert new.input_tokens == 1000 + 2000 + 3000 + 4000
        assert new.cached_tokens == 900 * (1 + 2 + 3) and new.output_tokens == 4 * 50
        assert new.models == {
            "claude-sonnet-4-5": {
                "rounds": 4,
                "input_tokens": 10_000,
                "cached_tokens": 5_400,
                "output_tokens": 200,
            }
        }
        assert 0 < new.reusable_tokens < new.prompt_tokens  # measured by the tokenizer
        assert new.measured_reuse == new.reusable_tokens / new.prompt_tokens
        assert new.first_at == T0 + 2 * 86_400 and new.last_at == T0 + 2 * 86_400 + 15 + 1.6
        assert new.cost.usd > 0 and new.cost.unpriced == 0
        assert rows[1].cost.unpriced == 2 and not rows[1].cost.priced
        assert [r.ref for r in session_rows(db, Filter(), limit=2)] == [
            "claude:new",
            "claude:unpriced",
        ]


def test_rows_follow_the_filter(url: str) -> None:
    with Session(make_engine(url, create=False)) as db:

        def refs(flt: Filter) -> list[str]:
            return [r.ref for r in session_rows(db, flt)]

        assert refs(Filter(models=("a-model",))) == ["claude:unpriced"]
        assert refs(Filter(sessions=("ol",))) == ["claude:old"]
        assert refs(Filter(agents=("codex",))) == []
        day2 = parse_when("2026-05-29T20:00Z")
        assert refs(Filter(since=day2)) == ["claude:new", "claude:unpriced"]
        assert refs(Filter(until=day2)) == ["claude:old"]
        # totals cover the rounds the filter lets through
        [row] = session_rows(db, Filter(sessions=("new",), until=T0 + 2 * 86_400 + 6))
        assert row.rounds == 2


def test_latest_round_grows_with_every_round_written(url: str, tmp_path: Path) -> None:
    engine = make_engine(url, create=False)
    with Session(engine) as db:
        before = latest_round(db)
    assert before == 9
    write(url, claude_session(1, session="later", t0=T0 + 3 * 86_400), tmp_path / "key")
    with Session(engine) as db:
        assert latest_round(db) == before + 1


def test_a_session_has_lanes_waits_and_tool_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    main = claude_session(3, session="lanes", t0=T0)
    sub = claude_session(2, session="lanes", t0=T0 + 1.0, first_prompt="look into the logs")
    for rnd in sub:
        rnd.kind = "subagent"
    main[1].inputs = [InputEvent("user_message", 12, "request.messages.text")]
    main[2].inputs = [
        InputEvent("tool_result", 5, "request.messages.tool_result", "toolu_lanes_1", is_error=True)
    ]
    write(url, sorted(main + sub, key=lambda r: r.request_at), tmp_path / "key")
    with Session(make_engine(url, create=False)) as db:
        detail = session_detail(db, "lanes")
    rounds = detail["rounds"]
    assert [r["kind"] for r in rounds] == ["main", "subagent", "main", "subagent", "main"]
    sub_lanes = {r["lane"] for r in rounds if r["kind"] == "subagent"}
    assert len(sub_lanes) == 1 and next(iter(sub_lanes)).startswith("subagent ")
    assert detail["lanes"] == ["main", *sub_lanes]
    assert rounds[0]["start_ms"] == 0.0 and rounds[1]["start_ms"] == 1000.0
    assert rounds[0]["first_token_ms"] == 500.0 and rounds[0]["end_ms"] == 1600.0
    # waits are per lane: a human before main round 1, tools before main round 2
    main_rounds = [r for r in rounds if r["kind"] == "main"]
    assert main_rounds[0]["wait"] is None
    assert main_rounds[1]["wait"] == {"kind": "human", "start_ms": 1600.0, "end_ms": 5000.0}
    assert main_rounds[2]["wait"]["kind"] == "tools"
    tools = [t for r in main_rounds for t in r["tools"]]
    assert [t["error"] for t in tools] == [False, True, False]
    assert tools[1]["latency_ms"] == 3600  # emitted at 6.4 s, its result sent at 10 s
