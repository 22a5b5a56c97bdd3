"""What an input to `tracetap import` looks like: TraceLab rows, a Claude Code log or a Codex
rollout, told from its first JSON lines, so a wrong command can name the right one.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

__all__ = ["COMMANDS", "Looks", "describe", "looks_like"]

Looks = Literal["tracelab", "claude-code", "codex"]

# The import command for each kind of input, and how a file and a directory of it are named.
COMMANDS: dict[Looks, str] = {
    "tracelab": "tracetap import tracelab",
    "claude-code": "tracetap import claude-code",
    "codex": "tracetap import codex",
}
_FILE_NAMES: dict[Looks, str] = {
    "tracelab": "TraceLab rows",
    "claude-code": "a Claude Code session log",
    "codex": "a Codex rollout",
}
_DIR_NAMES: dict[Looks, str] = {
    "tracelab": "TraceLab files",
    "claude-code": "Claude Code session logs",
    "codex": "Codex rollouts",
}
_CODEX_TYPES = {"session_meta", "response_item", "event_msg", "turn_context", "compacted"}
_CLAUDE_TYPES = {"user", "assistant", "summary", "system"}
_LINES = 20  # lines read from each file
_FILES = 10  # files read from a directory


def _kind(obj: dict[str, Any]) -> Looks | None:
    if "session_id" in obj and "round_id" in obj and "timing_events" in obj:
        return "tracelab"
    if obj.get("type") in _CODEX_TYPES and "payload" in obj:
        return "codex"
    if "sessionId" in obj or (obj.get("type") in _CLAUDE_TYPES and "uuid" in obj):
        return "claude-code"
    return None


def _file_votes(path: Path, votes: Counter[Looks]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for _, line in zip(range(_LINES), fh):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                kind = _kind(obj) if isinstance(obj, dict) else None
                if kind is not None:
                    votes[kind] += 1
    except (OSError, EOFError, ValueError):  # unreadable or not gzip: no vote
        return


def looks_like(path: Path) -> Looks | None:
    """The kind of input `path` (a file, or a directory's first .jsonl files) holds most of,
    or None when its lines are none of them.

    Example: looks_like(Path("~/.claude/projects").expanduser()) -> "claude-code"
    """
    votes: Counter[Looks] = Counter()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.jsonl*") if p.is_file())
        for file in files[:_FILES]:
            _file_votes(file, votes)
    elif path.is_file():
        _file_votes(path, votes)
    return votes.most_common(1)[0][0] if votes else None


def describe(path: Path, kind: Looks) -> str:
    """`path` named with what it holds and the command that imports it.

    Example: describe(Path("x.jsonl"), "tracelab")
      -> "x.jsonl looks like TraceLab rows — use `tracetap import tracelab x.jsonl`"
    """
    if path.is_dir():
        if kind == "tracelab":
            return f"{path} holds {_DIR_NAMES[kind]} — import each with `{COMMANDS[kind]} FILE`"
        return f"{path} holds {_DIR_NAMES[kind]} — use `{COMMANDS[kind]} {path}`"
    return f"{path} looks like {_FILE_NAMES[kind]} — use `{COMMANDS[kind]} {path}`"
