"""`tracetap sessions` and `tracetap show`: the shared filters, project and cost columns, the
total, JSON lines, a round's content at its stored level, and `--round N`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.storage.rounds import claude_session
from tracetap.cli import app
from tracetap.importers.tracelab import import_rows
from tracetap.model import Round, Usage
from tracetap.privacy.scrub import ContentPolicy
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer
from tracetap.tracelab import read_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
SECRET = "sk-ant-api03-" + "x" * 93 + "AA"
KEY = b"k" * 32


def _claude_cost(i: int) -> float:
    """Round i of claude_session on Sonnet 4.5: 10 uncached, 900*i cache reads, 50 output."""
    return (10 * 3 + 900 * i * 0.30 + 50 * 15) / 1e6


def _with_cache_writes(rounds: list[Round]) -> list[Round]:
    """The first round writes the cache for 5 minutes and an hour; the second reads it."""
    rounds[0].usage = Usage(
        input_tokens_total=3_010,
        cached_tokens=0,
        uncached_input_tokens=10,
        cache_creation_input_tokens=3_000,
        cache_creation_5m_tokens=1_000,
        cache_creation_1h_tokens=2_000,
        cache_read_input_tokens=0,
        output_tokens=50,
    )
    rounds[1].usage = Usage(
        input_tokens_total=3_020,
        cached_tokens=3_000,
        uncached_input_tokens=20,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=3_000,
        output_tokens=100,
    )
    return rounds


# Sonnet 4.5 by hand: 10*$3 + 1,000*$3.75 + 2,000*$6 + 50*$15, then 20*$3 + 3,000*$0.30 + 100*$15
CACHED_SESSION_USD = (30 + 3_750 + 12_000 + 750 + 60 + 900 + 1_500) / 1e6


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    alpha = claude_session(3, session="alpha-1111", t0=T0)
    beta = _with_cache_writes(claude_session(2, session="beta-2222", t0=T0 + 86_400))
    mystery = claude_session(2, session="mystery-3333", t0=T0 + 2 * 86_400)
    redacted = claude_session(
        1, session="redacted-4444", t0=T0 + 3 * 86_400, first_prompt=f"deploy with {SECRET}"
    )
    hidden = claude_session(1, session="hidden-5555", t0=T0 + 4 * 86_400)
    for r in alpha:
        r.project = "/home/dev/alpha"
    for r in beta:
        r.project = "/home/dev/beta"
    for r in mystery:
        r.model = "mystery-model-1"
    for r in redacted:
        ContentPolicy("redacted", KEY)(r)
    for r in hidden:
        ContentPolicy("none", KEY)(r)
    Writer(engine).write([*alpha, *beta, *mystery, *redacted, *hidden])
    engine.dispose()
    import_rows(url, read_rows(FIXTURE), source="tracelab")  # one Claude and one Codex session
    return url


def _run(store: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env={"TRACETAP_DB": store, "COLUMNS": "200"})
    assert result.exit_code == code, (args, result.output)
    return result.output


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_sessions_json_is_one_compact_object_per_line_newest_first(store: str) -> None:
    text = _run(store, "sessions", "--json", "--limit", "0")
    rows = _lines(text)
    assert len(rows) == len(text.splitlines()) == 7
    assert all(": " not in line for line in text.splitlines())  # compact, as JSON lines go
    firsts = [r["first_at"] for r in rows]
    assert firsts == sorted(firsts, reverse=True)
    by_id = {r["session"]: r for r in rows}
    assert by_id["alpha-1111"]["project"] == "/home/dev/alpha"
    assert by_id["alpha-1111"]["cost_usd"] == pytest.approx(sum(_claude_cost(i) for i in range(3)))
    assert by_id["beta-2222"]["cost_usd"] == pytest.approx(CACHED_SESSION_USD)
    # a model without a price has no cost, not $0
    assert by_id["mystery-3333"]["cost_usd"] is None
    assert by_id["mystery-3333"]["unpriced_rounds"] == 2


def test_sessions_says_how_many_it_shows_of_how_many(store: str) -> None:
    text = _run(store, "sessions", "--limit", "2")
    assert "showing 2 of 7 sessions" in text
    assert "7 sessions" in _run(store, "sessions")


def test_sessions_table_has_project_and_cost_columns(store: str) -> None:
    text = _run(store, "sessions", "--project", "alpha")
    assert "project" in text and "cost" in text
    assert "…/dev/alpha" in text
    total = sum(_claude_cost(i) for i in range(3))
    assert f"${total:.4f}" in text
    mystery = _run(store, "sessions", "--session", "mystery")
    assert "–" in mystery and "$0.0000" not in mystery
    assert "list prices" in mystery  # the table says whose prices and from when


def test_sessions_take_the_shared_filters(store: str) -> None:
    def ids(*args: str) -> set[str]:
        return {r["session"] for r in _lines(_run(store, "sessions", "--json", *args))}

    assert ids("--project", "alpha") == {"alpha-1111"}
    assert ids("--project", "alpha", "--project", "beta") == {"alpha-1111", "beta-2222"}
    assert ids("--session", "beta") == {"beta-2222"}
    assert ids("--model", "mystery") == {"mystery-3333"}
    assert len(ids("--agent", "codex")) == 1
    # beta starts a day after T0 (2026-05-29 20:26 UTC), mystery two days, redacted three
    since, until = "2026-05-29T00:00:00Z", "2026-05-31T00:00:00Z"
    assert ids("--since", since, "--until", until) == {"beta-2222", "mystery-3333"}


def test_a_filter_that_matches_nothing_is_exit_1_with_one_line(store: str) -> None:
    result = CliRunner().invoke(
        app, ["sessions", "--project", "nowhere"], env={"TRACETAP_DB": store}
    )
    assert result.exit_code == 1
    assert result.output == f"error: nothing in {store} matches project nowhere\n"


def test_a_bad_filter_value_is_exit_2(store: str) -> None:
    result = CliRunner().invoke(
        app, ["sessions", "--since", "yesterday"], env={"TRACETAP_DB": store}
    )
    assert result.exit_code == 2 and result.output.startswith("error: --since: ")


def test_a_store_with_schema_and_no_rounds_has_no_recordings_yet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ensure_schema(make_engine(url))
    result = CliRunner().invoke(app, ["sessions"], env={"TRACETAP_DB": url})
    assert result.exit_code == 1 and "no recordings yet in" in result.output


def test_an_override_price_file_changes_the_cost(store: str, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."mystery-model-1"]\ninput = 1.0\noutput = 1.0\n')
    rows = _lines(
        _run(store, "sessions", "--json", "--session", "mystery", "--prices", str(prices))
    )
    # two rounds, each 10 uncached + 900*i cached input (billed as input: no cache price) + 50 out
    assert rows[0]["cost_usd"] == pytest.approx((10 + 50 + 10 + 900 + 50) / 1e6)


def test_show_lists_the_cost_of_each_round_and_the_session(store: str) -> None:
    data = json.loads(_run(store, "show", "beta-2222", "--json"))
    assert data["cost_usd"] == pytest.approx(CACHED_SESSION_USD)
    first = data["rounds"][0]
    assert first["cost_usd"] == pytest.approx((30 + 3_750 + 12_000 + 750) / 1e6)
    assert (first["cache_creation_5m_tokens"], first["cache_creation_1h_tokens"]) == (1_000, 2_000)
    table = _run(store, "show", "beta-2222")
    assert "cost" in table and f"${CACHED_SESSION_USD:.4f}" in table


def test_show_takes_an_id_prefix_and_an_ambiguous_one_lists_candidates(
    store: str, tmp_path: Path
) -> None:
    assert json.loads(_run(store, "show", "alph", "--json"))["session"] == "claude:alpha-1111"
    url = f"sqlite:///{tmp_path / 'two.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    Writer(engine).write(claude_session(1, session="same-a") + claude_session(1, session="same-b"))
    result = CliRunner().invoke(app, ["show", "same", "--db", url])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "claude:same-a" in result.output and "claude:same-b" in result.output
    missing = CliRunner().invoke(app, ["show", "zzz", "--db", url])
    assert missing.exit_code == 1 and "no session matches 'zzz'" in missing.output


def test_show_content_has_the_prompt_response_and_tool_input(store: str) -> None:
    text = _run(store, "show", "alpha-1111", "--content")
    assert "user: fix the bug" in text
    assert "assistant: Running make." in text
    assert 'tool call Bash [toolu_alpha-1111_0]: {"command": "make"}' in text
    assert "tool result [toolu_alpha-1111_0]:" in text  # round 1 sent round 0's result
    data = json.loads(_run(store, "show", "alpha-1111", "--content", "--json"))
    content = data["rounds"][0]["content"]
    assert content["new_messages"] == [{"role": "user", "kind": "text", "text": "fix the bug"}]
    assert content["response"][1]["kind"] == "tool_call"


def test_show_content_keeps_redacted_text_redacted(store: str) -> None:
    text = _run(store, "show", "redacted-4444", "--content")
    assert SECRET not in text
    assert "<secret:anthropic-api-key:" in text
    assert "content level redacted" in text


def test_show_content_of_a_round_stored_without_text_says_so(store: str) -> None:
    text = _run(store, "show", "hidden-5555", "--content")
    assert "content level none: no text was stored" in text
    assert "fix the bug" not in text and "<text chars=11 hmac=" in text
    imported = _lines(_run(store, "sessions", "--json", "--agent", "codex"))[0]
    shown = _run(store, "show", f"codex:{imported['session']}", "--content")
    assert "imported from TraceLab rows: no content was stored" in shown


def test_show_round_n_is_one_round_in_full(store: str) -> None:
    text = _run(store, "show", "beta-2222", "--round", "0")
    assert "0 of 2 in claude:beta-2222" in text
    assert "300 ms / 500 ms / 1,600 ms" in text  # ttfb / ttft / total
    assert "cache write 5m" in text and "1,000" in text
    assert "cache write 1h" in text and "2,000" in text
    assert f"${(30 + 3_750 + 12_000 + 750) / 1e6:.4f}" in text
    assert "tool call" in text and "Bash [toolu_beta-2222_0]" in text
    assert "tool results (sent by the next rounds)" in text
    assert "x" * 2000 in text.replace("\n", "")  # whole, not clipped
    data = json.loads(_run(store, "show", "beta-2222", "--round", "1", "--json"))
    assert data["index"] == 1 and data["content"]["content_policy"] == "full"


def test_show_round_out_of_range_is_exit_2(store: str) -> None:
    result = CliRunner().invoke(
        app, ["show", "beta-2222", "--round", "5"], env={"TRACETAP_DB": store}
    )
    assert result.exit_code == 2
    assert result.output == "error: --round 5: claude:beta-2222 has rounds 0 to 1\n"


@pytest.mark.parametrize("command", [["sessions"], ["show", "beta-2222"]], ids=" ".join)
def test_tables_fit_80_columns_without_cutting_a_value(
    store: str, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    import tracetap.cli.store as store_cli

    screen = io.StringIO()
    monkeypatch.setattr(store_cli, "out", Console(file=screen, width=80, force_terminal=False))
    _run(store, *command)
    text = screen.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text.replace("…/dev", "")  # only the project's shortened path
    assert "left out at this width:" in text
    if command == ["sessions"]:
        assert "session ids shortened" in text and "beta-222" in text
        assert "$0.0190" in text  # the cost column stays
    else:
        assert "$0.0165" in text and "claude-sonnet-4-5" in text
