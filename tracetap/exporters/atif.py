"""`atif`: one Harbor Agent Trajectory Interchange Format (ATIF-v1.4) trajectory per session:
user and agent steps, tool calls with their observations, token metrics per step and in total.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from tracetap.exporters.replay_csv import by_session

__all__ = ["SCHEMA_VERSION", "export", "trajectories", "trajectory"]

SCHEMA_VERSION = "ATIF-v1.4"
_AGENTS = {"claude": "claude-code", "codex": "codex"}


def _arguments(tool: dict[str, Any]) -> dict[str, Any]:
    raw = tool.get("input")
    if not raw:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {"input": raw}
    return value if isinstance(value, dict) else {"input": value}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def trajectory(session: list[dict[str, Any]]) -> dict[str, Any]:
    """The ATIF trajectory of one session's rows (ordered by round_index).

    Rows hold sizes, not text: messages are empty strings and the sizes go to `extra`; tool
    arguments come from private rows' tools[].input (public rows give {}).
    """
    first = session[0]
    steps: list[dict[str, Any]] = []
    totals = {"prompt": 0, "completion": 0, "cached": 0}
    for row in session:
        for ev in row.get("timing_events") or []:
            if ev.get("event_type") == "user_message":
                steps.append(
                    {
                        "step_id": len(steps) + 1,
                        "timestamp": ev.get("timestamp"),
                        "source": "user",
                        "message": "",
                        "extra": {"content_chars": ev.get("content_chars")},
                    }
                )
        outputs = [
            e
            for e in row.get("timing_events") or []
            if e.get("event_type") in ("reasoning", "text", "tool_call")
        ]
        tools = row.get("tools") or []
        prompt = int(row.get("input_tokens_total") or 0)
        completion = int(row.get("output_tokens") or 0)
        cached = int(row.get("prefix_tokens") or 0)
        totals["prompt"] += prompt
        totals["completion"] += completion
        totals["cached"] += cached
        step: dict[str, Any] = {
            "step_id": len(steps) + 1,
            "timestamp": outputs[-1]["timestamp"] if outputs else None,
            "source": "agent",
            "model_name": row.get("model"),
            "message": "",
        }
        if tools:
            step["tool_calls"] = [
                {
                    "tool_call_id": t.get("tool_call_id"),
                    "function_name": t.get("tool_name"),
                    "arguments": _arguments(t),
                }
                for t in tools
            ]
            step["observation"] = {
                "results": [{"source_call_id": t.get("tool_call_id"), "content": ""} for t in tools]
            }
        step["metrics"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": cached,
            "extra": _drop_none(
                {
                    "newly_append_tokens": row.get("newly_append_tokens"),
                    "cache_creation_input_tokens": row.get("claude_cache_creation_input_tokens"),
                    "reasoning_output_tokens": row.get("reasoning_output_tokens"),
                }
            ),
        }
        step["extra"] = _drop_none(
            {
                "round_index": row.get("round_index"),
                "round_id": row.get("round_id"),
                "turn_id": row.get("turn_id"),
                "trace_key": row.get("trace_key"),
                "text_chars": sum(
                    int(e.get("content_chars") or 0)
                    for e in outputs
                    if e.get("event_type") == "text"
                )
                or None,
                "tools": [
                    _drop_none(
                        {
                            k: t.get(k)
                            for k in (
                                "tool_call_id",
                                "emitted_at",
                                "result_at",
                                "input_chars",
                                "result_chars",
                                "tool_wall_latency_ms",
                                "tool_internal_latency_ms",
                                "is_error",
                            )
                        }
                    )
                    for t in tools
                ]
                or None,
                "kind": row.get("tt_kind"),
            }
        )
        steps.append(_drop_none(step))
    provider = first.get("provider")
    models = sorted({r["model"] for r in session if r.get("model")})
    return {
        "schema_version": SCHEMA_VERSION,
        "session_id": first.get("session_id"),
        "agent": _drop_none(
            {
                "name": _AGENTS.get(provider, provider) if provider else "unknown",
                "version": "unknown",
                "model_name": models[0] if len(models) == 1 else None,
                "extra": {"models": models} if len(models) > 1 else None,
            }
        ),
        "steps": steps,
        "final_metrics": {
            "total_prompt_tokens": totals["prompt"],
            "total_completion_tokens": totals["completion"],
            "total_cached_tokens": totals["cached"],
            "total_steps": len(steps),
        },
        "extra": _drop_none(
            {
                "project": first.get("project"),
                "provider": provider,
                "store": first.get("store"),
                "exporter": "tracetap",
            }
        ),
    }


def _safe_name(session_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", session_id)


def trajectories(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for session in by_session(rows):
        yield trajectory(session)


def export(rows: Iterable[dict[str, Any]], out: IO[str] | str | Path) -> int:
    """One trajectory per session: as JSON lines into an open text stream, or as
    `<dir>/<session>.json` files when `out` is a directory path. Returns sessions written."""
    n = 0
    if isinstance(out, (str, Path)):
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        for traj in trajectories(rows):
            path = out_dir / f"{_safe_name(str(traj['session_id']))}.json"
            path.write_text(json.dumps(traj, indent=2) + "\n", encoding="utf-8")
            n += 1
        return n
    for traj in trajectories(rows):
        out.write(json.dumps(traj, separators=(",", ":")) + "\n")
        n += 1
    return n
