"""A three-round hand-made session whose answers were computed by hand (see each assertion)."""

from __future__ import annotations

import pytest

from tracetap.analysis import load, public, run
from tracetap.tracelab import format_ts, write_rows

T0 = 1780000000.0


def _ev(kind, t, **kw):
    return {"event_type": kind, "timestamp": format_ts(T0 + t), "source": "test", **kw}


def _row(i, total, prefix, output, events, tools=(), trig="tool_result"):
    return {
        "provider": "claude",
        "project": "p",
        "session_id": "claude:s1",
        "round_index": i,
        "round_id": f"msg_{i}",
        "model": "m",
        "input_tokens_total": total,
        "prefix_tokens": prefix,
        "newly_append_tokens": total - prefix,
        "output_tokens": output,
        "reasoning_output_tokens": None,
        "timing_events": events,
        "tools": list(tools),
        "current_user_message_count": int(trig == "user_message"),
        "current_tool_result_count": int(trig == "tool_result"),
        "current_input_chars": 10,
        "first_input_event_type": trig,
        "store": "tracetap",
        "trace_key": f"k{i}",
    }


ROWS = [
    _row(
        0,
        1000,
        0,
        100,
        [
            _ev("user_message", 0, content_chars=10),
            _ev("text", 2, content_chars=5),
            _ev("tool_call", 3, tool_call_id="toolu_1", tool_name="Bash", tool_index=0),
        ],
        [
            {
                "tool_index": 0,
                "tool_name": "Bash",
                "tool_call_id": "toolu_1",
                "emitted_at": format_ts(T0 + 3),
                "result_at": format_ts(T0 + 8),
                "input": '{"command":"pytest -q"}',
                "input_chars": 23,
                "result_chars": 10,
                "tool_wall_latency_ms": 5000,
                "tool_internal_latency_ms": None,
                "is_error": False,
            }
        ],
        trig="user_message",
    ),
    _row(
        1,
        1300,
        1000,
        50,
        [
            _ev("tool_result", 8, tool_call_id="toolu_1", result_chars=10),
            _ev("text", 10, content_chars=5),
        ],
    ),
    _row(
        2,
        1400,
        1300,
        20,
        [_ev("user_message", 110, content_chars=4), _ev("text", 111, content_chars=5)],
        trig="user_message",
    ),
]


@pytest.fixture(scope="module")
def res(tmp_path_factory):
    path = tmp_path_factory.mktemp("hand") / "t.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        write_rows(ROWS, fh)
    ds = load(str(path))
    return public(
        run(ds, opts={"capacities": [None], "block_size": 16, "policies": ["lru", "ttl-5m"]})
    )


def test_tokens_and_hit_ratio(res):
    tk = res["tokens"]["all"]
    assert tk["prefix_hit_rate"] == pytest.approx(2300 / 3700)
    assert tk["hit_ratio"]["user_message"]["prefix_hit_rate"] == pytest.approx(1300 / 2400)
    assert tk["hit_ratio"]["tool_result"]["prefix_hit_rate"] == pytest.approx(1000 / 1300)
    # adjusted append: 300 − 100 and 100 − 50
    assert tk["distributions"]["adjusted"]["total"] == 250
    assert tk["distributions"]["adjusted"]["count"] == 2


def test_growth_and_redundant_prefill(res):
    g = res["growth"]["all"]
    assert g["all"]["total_context_increase_tokens"] == 400
    assert g["by_trigger"]["user_message"]["total_raw_delta_tokens"] == 100
    rp = g["redundant_prefill"]
    assert rp["prefill_amplification"] == pytest.approx((300 + 100) / 400)
    # genuinely new: max(0, 300 − 100) + max(0, 100 − 50)
    assert rp["genuinely_new_tokens"] == 250


def test_timing_and_tools(res):
    tm = res["timing"]["all"]
    assert tm["observable_generation_seconds"]["total"] == pytest.approx(3 + 2 + 1)
    assert tm["human_wait_seconds"]["count"] == 1
    assert tm["human_wait_seconds"]["total"] == pytest.approx(100)
    tl = res["tools"]["all"]
    assert tl["total_seconds"] == pytest.approx(5)
    assert tl["by_category"]["execute"]["calls"] == 1
    assert tl["latency_bins"]["1-10s"]["share_of_time"] == 1.0
    ov = res["overview"]["all"]
    assert ov["rounds_per_user_request"] == 1.5
    assert ov["loop_length_rounds"]["total"] == 3


def test_kv_timeout(res):
    rows = {r["timeout_s"]: r for r in res["kv_timeout"]["all"]["by_timeout"]}
    # reusable: r1 = min(1300, 1000 + 100) = 1100 after a 5 s gap; r2 = 1300 + 50 after 100 s
    assert rows[60]["hit_rate"] == pytest.approx(1100 / 3700)
    assert rows[300]["hit_rate"] == pytest.approx(2450 / 3700)
    assert rows[60]["kv_active_ratio"] == pytest.approx(6 / 11)
    assert rows[300]["kv_active_ratio"] == pytest.approx(6 / 111)
    # idle token-hours at 300 s: 1100 tokens × 5 s + 1350 × 100 s
    assert rows[300]["idle_token_hours"] == pytest.approx((1100 * 5 + 1350 * 100) / 3600)


def test_kv_sim_and_matching_ttl(res):
    kv = res["kv_sim"]["all"]
    grid = {r["policy"]: r for r in kv["grid"]}
    # whole 16-token blocks: 68 × 16 + 84 × 16 = 2432
    assert grid["lru"]["hit_rate"] == pytest.approx(2432 / 3700)
    assert grid["ttl-5m"]["prefill_tokens"] == 3700 - 2432
    # reported 2300 / 3700 is first reached once the 100 s gap is kept
    assert kv["ttl_matching_reported_s"] == pytest.approx(100)


def test_latency_predict_uses_command_features(res):
    lp = res["latency_predict"]["all"]
    assert lp["uses_command_features"] is True
    assert lp["calls"] == 1


def test_compaction_events_listed(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[2] = {
        **rows[2],
        "input_tokens_total": 70000,
        "prefix_tokens": 0,
        "newly_append_tokens": 70000,
    }
    rows.append(
        {
            **ROWS[2],
            "round_index": 3,
            "round_id": "msg_3",
            "input_tokens_total": 5000,
            "prefix_tokens": 4000,
            "newly_append_tokens": 1000,
            "timing_events": [{**ROWS[2]["timing_events"][0], "timestamp": format_ts(T0 + 200)}],
        }
    )
    path = tmp_path / "c.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        write_rows(rows, fh)
    g = public(run(load(str(path)), ["growth"]))["growth"]["all"]
    assert g["compactions"] == 1
    assert g["compaction_events"] == [
        {"session_id": "claude:s1", "round_index": 3, "input_before": 70000, "input_after": 5000}
    ]
    assert g["by_trigger"]["user_message"]["major_reduction_rounds"] == 1


def test_matching_ttl_absent_when_reported_exceeds_the_simulation(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[0] = {**rows[0], "prefix_tokens": 900, "newly_append_tokens": 100}  # cross-session reuse
    path = tmp_path / "x.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        write_rows(rows, fh)
    kv = public(run(load(str(path)), ["kv_sim"], {"capacities": [None], "policies": ["lru"]}))
    kv = kv["kv_sim"]["all"]
    assert kv["reported_hit_rate"] == pytest.approx(3200 / 3700)
    assert kv["simulated_hit_rate_unbounded"] == pytest.approx(2432 / 3700)
    assert kv["ttl_matching_reported_s"] is None
    assert any("no TTL reaches" in n for n in kv["notes"])
