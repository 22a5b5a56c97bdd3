"""atif: one ATIF-v1.4 trajectory per session with steps, tool calls, observations, metrics."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.exporters.handmade import two_sessions
from tracetap.exporters import atif


def test_one_trajectory_per_session_with_steps_and_metrics() -> None:
    buf = io.StringIO()
    assert atif.export(two_sessions(), buf) == 2
    s1, s2 = (json.loads(line) for line in buf.getvalue().splitlines())
    assert s1["schema_version"] == "ATIF-v1.4"
    assert s1["session_id"] == "claude:s1"
    assert s1["agent"] == {"name": "claude-code", "version": "unknown", "model_name": "claude-test"}
    steps = s1["steps"]
    assert [s["step_id"] for s in steps] == list(range(1, len(steps) + 1))
    # round 0 and round 2 start with a user message; round 1 is driven by tool results
    assert [s["source"] for s in steps] == ["user", "agent", "agent", "user", "agent"]
    first_agent = steps[1]
    assert [c["function_name"] for c in first_agent["tool_calls"]] == ["Bash", "Read"]
    assert first_agent["tool_calls"][0]["arguments"] == {"command": "secret-command --token abc"}
    assert [r["source_call_id"] for r in first_agent["observation"]["results"]] == [
        c["tool_call_id"] for c in first_agent["tool_calls"]
    ]
    assert first_agent["metrics"]["prompt_tokens"] == 1000
    assert first_agent["metrics"]["completion_tokens"] == 100
    assert s1["final_metrics"] == {
        "total_prompt_tokens": 1000 + 1300 + 1400,
        "total_completion_tokens": 170,
        "total_cached_tokens": 1000 + 1300,
        "total_steps": 5,
    }
    assert all("model_name" not in s for s in steps if s["source"] == "user")
    assert s2["steps"][1]["extra"]["tools"][0].get("result_at") is None


def test_public_rows_give_empty_arguments_and_directory_output(tmp_path: Path) -> None:
    rows = two_sessions()
    for r in rows:
        for t in r["tools"]:
            del t["input"]
    assert atif.export(rows, tmp_path / "traj") == 2
    files = sorted(p.name for p in (tmp_path / "traj").iterdir())
    assert files == ["claude_s1.json", "claude_s2.json"]
    doc = json.loads((tmp_path / "traj" / "claude_s1.json").read_text())
    assert doc["steps"][1]["tool_calls"][0]["arguments"] == {}
    assert "secret-command" not in (tmp_path / "traj" / "claude_s1.json").read_text()
