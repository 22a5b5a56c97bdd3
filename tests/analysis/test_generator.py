"""bench/gen_tracelab.py: contract-correct, ordered, paired and deterministic rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from tracetap.tracelab import check_row, parse_ts

_spec = importlib.util.spec_from_file_location(
    "gen_tracelab", Path(__file__).resolve().parents[2] / "bench" / "gen_tracelab.py"
)
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def test_rows_follow_the_contract():
    rows = list(gen.generate(3000, seed=3))
    assert len(rows) == 3000
    prev: dict[str, dict] = {}
    for row in rows:
        assert check_row(row) == []
        assert row["input_tokens_total"] == row["prefix_tokens"] + row["newly_append_tokens"]
        ts = [parse_ts(e["timestamp"]) for e in row["timing_events"]]
        assert ts == sorted(ts)
        sid = row["session_id"]
        if sid in prev:
            assert row["round_index"] == prev[sid]["round_index"] + 1
            # every tool call of the previous round comes back as a result in this round
            results = {
                e["tool_call_id"]: e
                for e in row["timing_events"]
                if e["event_type"] == "tool_result"
            }
            for t in prev[sid]["tools"]:
                assert results[t["tool_call_id"]]["timestamp"] == t["result_at"]
                assert t["tool_wall_latency_ms"] == round(
                    (parse_ts(t["result_at"]) - parse_ts(t["emitted_at"])) * 1000
                )
        for t in row["tools"]:
            arg = json.loads(t["input"])
            assert t["input_chars"] == len(t["input"])
            if t["tool_name"] in ("Bash", "exec_command"):
                assert arg["command"]
        prev[sid] = row


def test_deterministic_and_public_mode():
    a = list(gen.generate(500, seed=1))
    assert a == list(gen.generate(500, seed=1))
    assert a != list(gen.generate(500, seed=2))
    pub = list(gen.generate(500, seed=1, private=False))
    assert all("input" not in t for r in pub for t in r["tools"])


def test_headline_distributions():
    rows = list(gen.generate(20000, seed=0))
    prefix = np.median([r["prefix_tokens"] for r in rows])
    append = np.median([r["newly_append_tokens"] for r in rows])
    lat = np.array([t["tool_wall_latency_ms"] for r in rows for t in r["tools"]]) / 1000
    users = sum(r["first_input_event_type"] == "user_message" for r in rows)
    assert 80_000 < prefix < 160_000
    assert 600 < append < 1200
    assert 0.15 < np.percentile(lat, 50) < 0.6 and 7 < np.percentile(lat, 90) < 25
    assert 7 < len(rows) / users < 11
