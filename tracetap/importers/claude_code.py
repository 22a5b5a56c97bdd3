"""Claude Code history (`~/.claude/projects/**/*.jsonl`) -> TraceLab rows: one round per
assistant message id, usage from message.usage, inputs from the user lines before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tracetap.importers.logrows import (
    LogRound,
    LogSession,
    Unreadable,
    iter_log_files,
    read_jsonl,
    text_chars,
)
from tracetap.importers.tracelab import import_rows

__all__ = ["default_dir", "import_claude_code", "parse_file", "rows_from_dir"]

_BLOCK_EVENTS = {
    "thinking": ("reasoning", "assistant.content.thinking"),
    "redacted_thinking": ("reasoning", "assistant.content.thinking"),
    "text": ("text", "assistant.content.text"),
}


def default_dir() -> Path:
    return Path.home() / ".claude" / "projects"


def _project(cwd: str | None, fallback: str) -> str:
    return Path(cwd).name if cwd else fallback


def _internal_ms(result: object) -> int | None:
    """Runner-reported duration from the line's toolUseResult (durationMs/durationSeconds)."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("durationMs"), (int, float)):
        return round(result["durationMs"])
    if isinstance(result.get("durationSeconds"), (int, float)):
        return round(result["durationSeconds"] * 1000)
    return None


def _usage(rnd: LogRound, usage: dict[str, Any]) -> None:
    uncached = int(usage.get("input_tokens") or 0)
    creation = int(usage.get("cache_creation_input_tokens") or 0)
    read = int(usage.get("cache_read_input_tokens") or 0)
    rnd.claude_uncached, rnd.claude_creation, rnd.claude_read = uncached, creation, read
    rnd.input_total = uncached + creation + read
    rnd.prefix = read
    rnd.output = max(rnd.output, int(usage.get("output_tokens") or 0))


def _side_name(line: dict[str, Any], path: Path) -> str:
    """Subagent session suffix: its agent id, its agent-*.jsonl file, else 'sidechain'."""
    if line.get("agentId"):
        return f"agent-{line['agentId']}"
    return path.stem if path.name.startswith("agent-") else "sidechain"


def parse_file(path: Path, unreadable: Unreadable | None = None) -> list[LogSession]:
    """Sessions of one Claude Code log file: the main thread, plus each subagent's lines
    (isSidechain, or an agent-*.jsonl file) as `<id>:agent-<agentId>` with tt_kind
    'subagent' (`<id>:sidechain` when the log names no agent)."""
    sessions: dict[tuple[str, str], LogSession] = {}
    current: dict[tuple[str, str], tuple[str, LogRound] | None] = {}
    for line in read_jsonl(path, unreadable):
        kind = line.get("type")
        if kind not in ("user", "assistant") or line.get("isMeta"):
            continue
        message = line.get("message")
        if not isinstance(message, dict):
            continue
        sid = str(line.get("sessionId") or path.stem)
        side = bool(line.get("isSidechain")) or path.name.startswith("agent-")
        key = (sid, _side_name(line, path) if side else "")
        if key not in sessions:
            sessions[key] = LogSession(
                "claude",
                f"{sid}:{key[1]}" if side else sid,
                _project(line.get("cwd"), path.parent.name),
                "claude-code",
            )
            current[key] = None
        session = sessions[key]
        ts = line.get("timestamp")
        content = message.get("content")
        if kind == "user":
            blocks = content if isinstance(content, list) else [content]
            for block in blocks:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    session.add_result(
                        ts=ts,
                        call_id=str(block.get("tool_use_id")),
                        source="user.content.tool_result",
                        chars=text_chars(block.get("content")),
                        is_error=bool(block.get("is_error")),
                        internal_ms=_internal_ms(line.get("toolUseResult")),
                    )
                elif isinstance(block, str) or (
                    isinstance(block, dict) and block.get("type") == "text"
                ):
                    chars = len(block) if isinstance(block, str) else text_chars([block])
                    session.add_input(
                        {
                            "event_type": "user_message",
                            "timestamp": ts,
                            "source": "user.message",
                            "content_chars": chars,
                        }
                    )
            continue
        model = message.get("model")
        if model == "<synthetic>":
            continue
        msg_id = str(message.get("id") or line.get("requestId") or line.get("uuid"))
        open_round = current[key]
        if open_round is None or open_round[0] != msg_id:
            rnd = session.start_round(
                LogRound(round_id=msg_id, model=model, kind="subagent" if side else "main")
            )
            current[key] = (msg_id, rnd)
        else:
            rnd = open_round[1]
        if isinstance(message.get("usage"), dict):
            _usage(rnd, message["usage"])
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype in _BLOCK_EVENTS:
                etype, source = _BLOCK_EVENTS[btype]
                body = block.get("thinking") if btype == "thinking" else block.get("text")
                rnd.outputs.append(
                    {
                        "event_type": etype,
                        "timestamp": ts,
                        "source": source,
                        "content_chars": len(body) if isinstance(body, str) else 0,
                    }
                )
            elif btype in ("tool_use", "server_tool_use"):
                args = json.dumps(
                    block.get("input") or {}, ensure_ascii=False, separators=(",", ":")
                )
                session.add_tool(
                    rnd,
                    ts=ts,
                    call_id=str(block.get("id")),
                    name=str(block.get("name")),
                    source="assistant.content.tool_use",
                    arguments=args,
                )
    return list(sessions.values())


def rows_from_dir(
    root: Path | None = None,
    *,
    unreadable: Unreadable | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """TraceLab rows of every session log under root (default ~/.claude/projects); lines
    that are no JSON object are counted in `unreadable`; `on_file` is called after each file."""
    for path in iter_log_files(root or default_dir()):
        for session in parse_file(path, unreadable):
            yield from session.rows()
        if on_file is not None:
            on_file(path)


def import_claude_code(
    db_url: str, root: Path | None = None, *, progress: Callable[[int], None] | None = None
) -> int:
    """Store every session log under root (default ~/.claude/projects; one .jsonl works too),
    its rounds marked as from logs; returns how many new rounds were stored.

    Example: import_claude_code("sqlite:///traces.db", Path.home() / ".claude" / "projects")
    """
    return import_rows(db_url, rows_from_dir(root), source="log:claude-code", progress=progress)
