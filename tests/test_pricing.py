"""Cost: the dated price table, prices worked out by hand, override files and unknown models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracetap.pricing import (
    PriceFileError,
    Usage,
    cost,
    costs_by,
    load_table,
    usage_of,
)


def test_a_claude_round_with_5m_and_1h_cache_writes_and_reads() -> None:
    usage = Usage(
        input_tokens_total=53_100,
        cached_tokens=50_000,
        uncached_input_tokens=100,
        cache_creation_input_tokens=3_000,
        cache_creation_5m_tokens=1_000,
        cache_creation_1h_tokens=2_000,
        cache_read_input_tokens=50_000,
        output_tokens=400,
    )
    # Sonnet 4.5: input $3, 5m write $3.75, 1h write $6, read $0.30, output $15 per MTok
    by_hand = (100 * 3 + 1_000 * 3.75 + 2_000 * 6 + 50_000 * 0.30 + 400 * 15) / 1e6
    assert cost("claude-sonnet-4-5-20250929", usage) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.03705)


def test_cache_writes_without_the_5m_1h_split_are_5m_writes() -> None:
    usage = Usage(uncached_input_tokens=0, cache_creation_input_tokens=1_000, output_tokens=0)
    assert cost("claude-opus-4-5", usage) == pytest.approx(1_000 * 6.25 / 1e6)


def test_an_openai_round_with_cached_input() -> None:
    usage = Usage(input_tokens_total=20_000, cached_tokens=15_000, output_tokens=1_000)
    # gpt-5-codex: input $1.25, cached input $0.125, output $10 per MTok
    by_hand = (5_000 * 1.25 + 15_000 * 0.125 + 1_000 * 10) / 1e6
    assert cost("gpt-5-codex", usage) == pytest.approx(by_hand) == pytest.approx(0.018125)


def test_a_prompt_over_the_long_context_threshold_is_billed_at_the_long_rates() -> None:
    usage = Usage(uncached_input_tokens=10, cache_read_input_tokens=250_000, output_tokens=100)
    by_hand = (10 * 6 + 250_000 * 0.6 + 100 * 22.5) / 1e6
    assert cost("claude-sonnet-4-5", usage) == pytest.approx(by_hand)


def test_model_names_match_by_longest_prefix_with_dates_stripped() -> None:
    table = load_table()
    assert table.lookup("claude-opus-4-20250514").rates.input == 15.0  # type: ignore[union-attr]
    assert table.lookup("claude-opus-4-5-20251101").rates.input == 5.0  # type: ignore[union-attr]
    assert table.lookup("gpt-4.1-mini-2025-04-14").model == "gpt-4.1-mini"  # type: ignore[union-attr]
    assert table.lookup("o4-mini-2025-04-16").model == "o4-mini"  # type: ignore[union-attr]
    assert table.lookup("claude-3-5-sonnet-latest").model == "claude-3-5-sonnet"  # type: ignore[union-attr]
    # the first gpt-4o snapshot has its own price; later ones are gpt-4o's
    assert table.lookup("gpt-4o-2024-05-13").rates.input == 5.0  # type: ignore[union-attr]
    assert table.lookup("gpt-4o-2024-08-06").rates.input == 2.5  # type: ignore[union-attr]


def test_an_unknown_model_has_no_cost_never_zero() -> None:
    usage = Usage(input_tokens_total=1_000, output_tokens=10)
    assert cost("gemini-2.5-pro", usage) is None
    assert cost(None, usage) is None
    # another version of a known family is not priced as its neighbour
    assert cost("claude-opus-4-99", usage) is None
    assert cost("gpt-5.9", usage) is None
    assert cost("claude-sonnet-4-5", Usage()) is None  # no usage reported at all


def test_the_table_says_where_and_when_its_prices_were_taken() -> None:
    sources = load_table().sources
    assert set(sources) == {"anthropic", "openai"}
    for info in sources.values():
        assert info["source"].startswith("https://")
        assert len(info["taken"]) == 10  # YYYY-MM-DD


def test_an_override_file_replaces_and_extends_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."gpt-5-codex"]\ninput = 2.0\noutput = 20.0\ncache_read = 0.5\n'
        '[models."local-llama"]\ninput = 0.0\noutput = 0.0\n'
    )
    usage = Usage(input_tokens_total=20_000, cached_tokens=15_000, output_tokens=1_000)
    table = load_table(path)
    assert table.cost("gpt-5-codex", usage) == pytest.approx(
        (5_000 * 2 + 15_000 * 0.5 + 1_000 * 20) / 1e6
    )
    assert table.cost("local-llama", usage) == 0.0  # priced at zero on purpose: not None
    assert table.cost("gpt-4.1", usage) is not None  # the rest of the table stays
    monkeypatch.setenv("TRACETAP_PRICES", str(path))
    assert load_table().lookup("local-llama") is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x\n", "not valid TOML"),
        ('[models."x"]\ninput = 1.0\n', "has no output price"),
        ('[models."x"]\ninput = -1.0\noutput = 1.0\n', "must be a price"),
        ('[models."x"]\ninput = 1.0\noutput = 1.0\ncached = 0.1\n', "unknown field 'cached'"),
        ('[model."x"]\ninput = 1.0\n', "unknown table [model]"),
    ],
)
def test_a_bad_price_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(PriceFileError) as info:
        load_table(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_price_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="No such file"):
        load_table(tmp_path / "nope.toml")


def test_costs_by_model_and_project_over_tracelab_rows() -> None:
    rows = [
        {
            "model": "gpt-5-codex",
            "project": "a",
            "input_tokens_total": 20_000,
            "prefix_tokens": 15_000,
            "output_tokens": 1_000,
        },
        {
            "model": "claude-haiku-4-5",
            "project": "a",
            "input_tokens_total": 1_000,
            "prefix_tokens": 0,
            "claude_uncached_input_tokens": 1_000,
            "claude_cache_read_input_tokens": 0,
            "output_tokens": 100,
        },
        {"model": "mystery-1", "project": "b", "input_tokens_total": 5, "output_tokens": 5},
    ]
    haiku = (1_000 * 1 + 100 * 5) / 1e6
    by_project = costs_by(rows, "project")
    assert by_project["a"].usd == pytest.approx(0.018125 + haiku)
    assert (by_project["a"].rounds, by_project["a"].unpriced) == (2, 0)
    assert not by_project["b"].priced and by_project["b"].as_dict()["cost_usd"] is None
    by_model = costs_by(rows)
    assert list(by_model) == ["gpt-5-codex", "claude-haiku-4-5", "mystery-1"]
    assert by_model["claude-haiku-4-5"].usd == pytest.approx(haiku)


def test_usage_of_reads_round_objects() -> None:
    from tracetap.model import Usage as WireUsage

    wire = WireUsage(input_tokens_total=20_000, cached_tokens=15_000, output_tokens=1_000)
    assert cost("gpt-5-codex", usage_of(wire)) == pytest.approx(0.018125)
