"""Shared builder for TraceLab rows derived from agents' local logs: collects a session's
rounds (input events, output events, tool calls), pairs tool results, and emits rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracetap.tracelab import format_ts, parse_ts

__all__ = [
    "LogRound",
    "LogSession",
    "Unreadable",
    "iter_log_files",
    "read_jsonl",
    "text_chars",
]

_WALL_TIME = re.compile(r"Wall time: ([0-9.]+) seconds")


@dataclass
class Unreadable:
    """The lines of agent logs that were skipped because they are not JSON objects (a torn
    last line, garbage): how many, and where the first was."""

    count: int = 0
    first: tuple[Path, int] | None = None

    def add(self, path: Path, lineno: int) -> None:
        self.count += 1
        if self.first is None:
            self.first = (path, lineno)

    def describe(self) -> str:
        """Example: "skipped 3 unreadable lines (first at line 17 of a.jsonl)"."""
        if self.first is None:
            return ""
        path, lineno = self.first
        lines = "line" if self.count == 1 else "lines"
        return f"skipped {self.count:,} unreadable {lines} (first at line {lineno} of {path})"


def read_jsonl(path: Path, unreadable: Unreadable | None = None) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file; lines that are no JSON object (a torn last line) are skipped
    and counted in `unreadable`."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                yield obj
            elif unreadable is not None:
                unreadable.add(path, lineno)


def iter_log_files(root: Path) -> list[Path]:
    """Every *.jsonl under root (or root itself when it is a file), in name order."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


def text_chars(content: object) -> int:
    """Characters of a message/tool-result content: a string, or text parts of a list."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict):
                for key in ("text", "output", "content"):
                    if isinstance(part.get(key), str):
                        total += len(part[key])
                        break
            elif isinstance(part, str):
                total += len(part)
        return total
    return 0


def wall_time_ms(text: str) -> int | None:
    """Runner-reported duration from a `Wall time: 0.0123 seconds` line."""
    m = _WALL_TIME.search(text)
    return round(float(m.group(1)) * 1000) if m else None


@dataclass
class LogRound:
    round_id: str
    turn_id: str | None = None
    model: str | None = None
    input_total: int = 0
    prefix: int = 0
    claude_uncached: int | None = None
    claude_creation: int | None = None
    claude_read: int | None = None
    output: int = 0
    reasoning: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "main"


@dataclass
class LogSession:
    """One session's rounds in log order; `pending` holds inputs seen since the last round."""

    provider: str
    session_id: str
    project: str
    tool: str
    rounds: list[LogRound] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    tools_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_input(self, event: dict[str, Any]) -> None:
        self.pending.append(event)

    def start_round(self, rnd: LogRound) -> LogRound:
        rnd.inputs, self.pending = self.pending, []
        self.rounds.append(rnd)
        return rnd

    def add_tool(
        self, rnd: LogRound, *, ts: str | None, call_id: str, name: str, source: str, arguments: str
    ) -> None:
        index = len(rnd.tools)
        tool = {
            "tool_index": index,
            "tool_name": name,
            "tool_call_id": call_id,
            "emitted_at": ts,
            "result_at": None,
            "input": arguments,
            "input_chars": len(arguments),
            "result_chars": None,
            "tool_wall_latency_ms": None,
            "tool_internal_latency_ms": None,
            "is_error": None,
        }
        rnd.tools.append(tool)
        self.tools_by_id[call_id] = tool
        rnd.outputs.append(
            {
                "event_type": "tool_call",
                "timestamp": ts,
                "source": source,
                "tool_call_id": call_id,
                "tool_name": name,
                "tool_index": index,
            }
        )

    def add_result(
        self,
        *,
        ts: str | None,
        call_id: str,
        source: str,
        chars: int,
        is_error: bool | None,
        internal_ms: int | None,
    ) -> None:
        event: dict[str, Any] = {
            "event_type": "tool_result",
            "timestamp": ts,
            "source": source,
            "tool_call_id": call_id,
            "result_chars": chars,
        }
        if is_error is not None:
            event["is_error"] = is_error
        self.add_input(event)
        tool = self.tools_by_id.get(call_id)
        if tool is None or tool["result_at"] is not None:
            return
        tool["result_at"] = ts
        tool["result_chars"] = chars
        tool["is_error"] = bool(is_error)
        tool["tool_internal_latency_ms"] = internal_ms
        t0, t1 = parse_ts(tool["emitted_at"]), parse_ts(ts)
        if t0 is not None and t1 is not None:
            tool["tool_wall_latency_ms"] = max(0, round((t1 - t0) * 1000))

    def rows(self) -> Iterator[dict[str, Any]]:
        """TraceLab rows (private form: tools[].input kept) with tt_source 'log'."""
        for index, rnd in enumerate(self.rounds):
            users = [e for e in rnd.inputs if e["event_type"] == "user_message"]
            results = [e for e in rnd.inputs if e["event_type"] == "tool_result"]
            user_chars = sum(int(e.get("content_chars") or 0) for e in users)
            result_chars = sum(int(e.get("result_chars") or 0) for e in results)
            events = sorted(
                rnd.inputs + rnd.outputs, key=lambda e: parse_ts(e.get("timestamp")) or 0.0
            )
            for e in events:
                e["timestamp"] = format_ts(parse_ts(e.get("timestamp")))
            tools = [
                dict(
                    t,
                    emitted_at=format_ts(parse_ts(t["emitted_at"])),
                    result_at=format_ts(parse_ts(t["result_at"])),
                )
                for t in rnd.tools
            ]
            session_id = f"{self.provider}:{self.session_id}"
            row = {
                "provider": self.provider,
                "project": self.project,
                "session_id": session_id,
                "round_index": index,
                "round_id": rnd.round_id,
                "turn_id": rnd.turn_id,
                "model": rnd.model,
                "input_tokens_total": rnd.input_total,
                "prefix_tokens": rnd.prefix,
                "newly_append_tokens": rnd.input_total - rnd.prefix,
                "claude_uncached_input_tokens": rnd.claude_uncached,
                "claude_cache_creation_input_tokens": rnd.claude_creation,
                "claude_cache_read_input_tokens": rnd.claude_read,
                "output_tokens": rnd.output,
                "reasoning_output_tokens": rnd.reasoning,
                "timing_events": events,
                "tools": tools,
                "current_input_event_count": len(rnd.inputs),
                "current_user_message_count": len(users),
                "current_tool_result_count": len(results),
                "current_user_message_chars": user_chars,
                "current_tool_result_chars": result_chars,
                "current_input_chars": user_chars + result_chars,
                "first_input_event_type": rnd.inputs[0]["event_type"] if rnd.inputs else None,
                "store": f"tracetap-import:{self.tool}",
                "trace_key": f"{self.provider}:{session_id}:{rnd.round_id}",
                "tt_source": "log",
                "tt_kind": rnd.kind,
            }
            if rnd.turn_id is None:
                del row["turn_id"]
            yield row
