"""tracetap agrees with TraceLab's overview script on the published sample rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracetap.analysis import load, public, run

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def results():
    ds = load(str(FIXTURES / "tracelab_sample.jsonl"), group_by="provider")
    return public(run(ds, ["overview", "tokens", "growth", "timing", "tools"]))


def _mine(res, scope):
    get = (lambda k: res[k]["all"]) if scope == "merged" else (lambda k: res[k]["groups"][scope])
    o, tk, g, tm, tl = (get(k) for k in ("overview", "tokens", "growth", "timing", "tools"))
    return {
        "sessions": o["total_sessions"],
        "rounds": o["llm_rounds_total"],
        "user": o["rounds_with_visible_user_message"],
        "tool_started": o["rounds_started_from_tool_result"],
        "hit": tk["prefix_hit_rate"],
        "hit_user": tk["hit_ratio"]["user_message"]["prefix_hit_rate"],
        "hit_tool": tk["hit_ratio"]["tool_result"]["prefix_hit_rate"],
        "context_increase": g["all"]["total_context_increase_tokens"],
        "growth_user_median": g["by_trigger"]["user_message"]["median_raw_delta_tokens"],
        "growth_tool_p90": g["by_trigger"]["tool_result"]["p90_raw_delta_tokens"],
        "growth_user_micro": g["by_trigger"]["user_message"]["micro_reduction_rounds"],
        "gen_total": tm["observable_generation_seconds"]["total"],
        "gen_p50": tm["observable_generation_seconds"]["p50"],
        "gen_p90": tm["observable_generation_seconds"]["p90"],
        "speed": tm["normalized_decode_speed_tokens_per_second"],
        "wait_total": tm["human_wait_seconds"]["total"],
        "wait_median": tm["human_wait_seconds"]["p50"],
        "wait_rounds": tm["human_wait_seconds"]["count"],
        "tool_calls": tl["total_tool_calls"],
        "tool_seconds": tl["total_seconds"],
        "tool_p50": tl["p50_seconds"],
        "tool_p90": tl["p90_seconds"],
        "tool_nonpositive": tl["tool_calls_nonpositive_latency"],
    }


def _theirs(m):
    s, ti, gt = m["scope"], m["tokens"]["input"], m["generation_timing"]
    lat = m["tools"]["effective_latency"]
    gu = ti["total_input_growth_when_started_with_user_message"]
    return {
        "sessions": s["total_sessions"],
        "rounds": s["llm_rounds_total"],
        "user": s["rounds_with_visible_user_message"],
        "tool_started": s["rounds_started_from_tool_result"],
        "hit": ti["prefix_hit_rate"],
        "hit_user": ti["prefix_hit_rate_when_started_with_user_message"],
        "hit_tool": ti["prefix_hit_rate_when_started_with_tool_result"],
        "context_increase": ti["total_context_increase_tokens"],
        "growth_user_median": gu["median_raw_delta_tokens"],
        "growth_tool_p90": ti["total_input_growth_when_started_with_tool_result"][
            "p90_raw_delta_tokens"
        ],
        "growth_user_micro": gu["micro_reduction_rounds"],
        "gen_total": gt["total_observable_generation_time_seconds"],
        "gen_p50": gt["p50_observable_generation_time_seconds"],
        "gen_p90": gt["p90_observable_generation_time_seconds"],
        "speed": gt["average_normalized_decoding_speed_tokens_per_second"],
        "wait_total": gt["total_waiting_for_human_input_seconds"],
        "wait_median": gt["median_waiting_for_human_input_seconds"],
        "wait_rounds": gt["rounds_with_waiting_for_human_input_time"],
        "tool_calls": m["tools"]["total_tool_calls"],
        "tool_seconds": lat["total_seconds"],
        "tool_p50": lat["p50_seconds"],
        "tool_p90": lat["p90_seconds"],
        "tool_nonpositive": lat["tool_calls_nonpositive_latency"],
    }


@pytest.mark.parametrize("scope", ["merged", "claude", "codex"])
def test_same_numbers_as_tracelab_overview(results, scope):
    ref = json.loads((FIXTURES / "tracelab_sample.overview.json").read_text())[scope]
    mine, theirs = _mine(results, scope), _theirs(ref)
    for key, expected in theirs.items():
        assert mine[key] == pytest.approx(expected, rel=1e-7, abs=1e-6), key


def test_rounds_by_provider_and_model(results):
    ref = json.loads((FIXTURES / "tracelab_sample.overview.json").read_text())["merged"]
    assert results["overview"]["all"]["rounds_by_provider"] == ref["rounds_by_provider"]
    assert results["overview"]["all"]["rounds_by_model"] == ref["rounds_by_model"]
