"""The four optimization studies on tiny traces with hand-computed answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracetap.analysis import load, public, run
from tracetap.analysis.append_prefill import padded_tokens
from tracetap.analysis.latency_predict import LatencyModel, tool_frame
from tracetap.tracelab import format_ts, write_rows

T0 = 1780000000.0


def _row(sid, i, total, prefix, t, *, tools=(), extra=None, output=10):
    events = [
        {
            "event_type": "tool_result" if i else "user_message",
            "timestamp": format_ts(T0 + t),
            "source": "test",
            "content_chars": 4,
        },
        {
            "event_type": "text",
            "timestamp": format_ts(T0 + t + 1),
            "source": "test",
            "content_chars": 4,
        },
    ]
    row = {
        "provider": "claude",
        "project": "p",
        "session_id": sid,
        "round_index": i,
        "round_id": f"msg_{sid}{i}",
        "model": "m",
        "input_tokens_total": total,
        "prefix_tokens": prefix,
        "newly_append_tokens": total - prefix,
        "output_tokens": output,
        "reasoning_output_tokens": None,
        "timing_events": events,
        "tools": list(tools),
        "current_user_message_count": int(i == 0),
        "current_tool_result_count": int(i > 0),
        "current_input_chars": 4,
        "first_input_event_type": "tool_result" if i else "user_message",
        "store": "tracetap",
        "trace_key": f"{sid}{i}",
    }
    row.update(extra or {})
    return row


def _tool(i, cmd, lat_s, t, name="Bash"):
    text = json.dumps(cmd) if isinstance(cmd, dict) else cmd
    return {
        "tool_index": i,
        "tool_name": name,
        "tool_call_id": f"toolu_{t}_{i}",
        "emitted_at": format_ts(T0 + t),
        "result_at": format_ts(T0 + t + lat_s),
        "input": text,
        "input_chars": len(text or ""),
        "result_chars": 5,
        "tool_wall_latency_ms": round(lat_s * 1000),
        "tool_internal_latency_ms": None,
        "is_error": False,
    }


def _load(tmp_path, rows):
    path = tmp_path / "t.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        write_rows(rows, fh)
    return load(str(path))


def test_padding_model():
    assert padded_tokens(np.array([1, 5, 2, 8.0]), 2) == 2 * 5 + 2 * 8
    assert padded_tokens(np.array([1, 5, 2]), 2) == 10 + 2
    assert padded_tokens(np.array([]), 4) == 0


def test_append_prefill_sorting_saves_padding(tmp_path):
    rows = [_row("s", i, 100 + a, 100, i, output=1) for i, a in enumerate([1, 5, 2, 8])]
    res = public(run(_load(tmp_path, rows), ["append_prefill"], {"batch": 2, "window": 4}))[
        "append_prefill"
    ]["all"]
    assert res["padded_tokens_fifo"] == 26  # [1,5] -> 10, [2,8] -> 16
    assert res["padded_tokens_append_aware"] == 20  # sorted [1,2] -> 4, [5,8] -> 16
    assert res["append_aware_saving"] == pytest.approx(6 / 26)


def test_executable_features(tmp_path):
    cmds = [
        {"command": "cd /repo && pytest -q"},
        {"command": "FOO=1 make test"},
        {"cmd": ["bash", "-lc", "rg -n foo"]},
        {"command": "ls"},
        {"path": "a.py"},
    ]
    tools = [_tool(i, c, 1.0, 0) for i, c in enumerate(cmds)]
    ds = _load(tmp_path, [_row("s", 0, 100, 0, 0, tools=tools)])
    assert list(tool_frame(ds)["exe"]) == ["pytest", "make", "rg", "ls", ""]


def test_latency_model_levels_and_session_history():
    names = np.array(["Bash"] * 10)
    exes = np.array(["pytest"] * 5 + ["ls"] * 5)
    chars = np.full(10, 20.0)
    lat = np.array([10, 12, 14, 16, 18, 0.1, 0.1, 0.2, 0.1, 0.1])
    m = LatencyModel().fit(names, exes, chars, lat)
    assert m.static("Bash", "pytest", 20) == 14
    assert m.static("Bash", "ls", 5000) == pytest.approx(0.1)  # other size bin: (tool, exe)
    assert m.static("Read", "", 10) == pytest.approx(np.median(lat))  # unseen: global
    pred = m.predict(
        np.array(["s", "s"]),
        np.array(["Bash", "Bash"]),
        np.array(["pytest", "pytest"]),
        np.array([20.0, 20.0]),
        np.array([40.0, 1]),
    )
    assert pred[0] == 14 and pred[1] == pytest.approx(np.sqrt(14 * 40))


def test_latency_prediction_beats_static_on_a_split(tmp_path):
    rows, t = [], 0.0
    for s in range(10):  # each session: a fast ls and a slow pytest; time-ordered sessions
        tools = [_tool(0, {"command": "ls"}, 0.05, t), _tool(1, {"command": "pytest"}, 90.0, t)]
        rows.append(_row(f"s{s}", 0, 100, 0, t, tools=tools))
        t += 1000
    res = public(run(_load(tmp_path, rows), ["latency_predict"]))["latency_predict"]["all"]
    assert (res["train_sessions"], res["test_sessions"]) == (7, 3)
    sem, tool = res["methods"]["semantic"], res["methods"]["per_tool_median"]
    assert sem["decision_accuracy"] == 1.0 and sem["median_abs_log10_error"] == 0.0
    # one Bash median cannot tell ls from pytest: every call is on the wrong side of 60 s or off
    assert tool["median_abs_log10_error"] > 1.0
    assert res["methods"]["fixed_timeout"]["kept_but_long"] == 3


def test_tool_overhead_exact_with_segments(tmp_path):
    seg = {"tools": 500, "system": 100, "history": 0, "new_input": 10, "output_tool_args": 30}
    rows = [
        _row(
            "s", 0, 700, 0, 0, tools=[_tool(0, {"command": "ls"}, 1, 0)], extra={"tt_segments": seg}
        ),
        _row("s", 1, 800, 700, 5, extra={"tt_segments": {**seg, "output_tool_args": 0}}),
    ]
    res = public(run(_load(tmp_path, rows), ["tool_overhead"]))["tool_overhead"]["all"]
    assert res["method"].startswith("exact")
    assert res["definition_tokens_per_round"]["total"] == 1000
    assert res["framing_tokens_per_round"]["total"] == 20 + 30
    assert res["definition_share_of_input"] == pytest.approx(1000 / 1500)


def test_tool_overhead_estimate_says_so(tmp_path):
    rows = [_row("s", 0, 700, 0, 0), _row("s", 1, 800, 700, 5)]
    res = public(run(_load(tmp_path, rows), ["tool_overhead"]))["tool_overhead"]["all"]
    assert res["method"].startswith("estimated")
    # smallest input minus that round's new text (4 chars / 3.6)
    assert res["definition_tokens_per_round"]["p50"] == pytest.approx(700 - 4 / 3.6)


@pytest.mark.parametrize("scope,hit_tokens", [("global", 32), ("session", 0)])
def test_kv_sim_with_block_hashes_shares_across_sessions_only_globally(tmp_path, scope, hit_tokens):
    rows = [
        _row("a", 0, 48, 0, 0, extra={"tt_block_hashes": ["aa", "bb", "cc"], "tt_block_size": 16}),
        _row("b", 0, 48, 0, 10, extra={"tt_block_hashes": ["aa", "bb", "dd"], "tt_block_size": 16}),
    ]
    res = public(
        run(
            _load(tmp_path, rows),
            ["kv_sim"],
            {"capacities": [None], "policies": ["lru"], "scope": scope, "block_size": 64},
        )
    )["kv_sim"]["all"]
    assert res["block_size"] == 16  # the trace's own block size wins
    assert res["grid"][0]["hit_rate"] == pytest.approx(hit_tokens / 96)
