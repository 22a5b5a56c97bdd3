"""Codex rollouts (`~/.codex/sessions/**/*.jsonl`) -> TraceLab rows: a round ends at each
new token_count event (usage from info.last_token_usage); round id `<turn_id>:<n>`.
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
    wall_time_ms,
)
from tracetap.importers.tracelab import import_rows

__all__ = ["default_dir", "import_codex", "parse_file", "rows_from_dir"]


def default_dir() -> Path:
    return Path.home() / ".codex" / "sessions"


def _output_text(output: object) -> tuple[str, bool | None, int | None]:
    """(text, is_error, internal ms) of a function_call_output's `output`."""
    if isinstance(output, dict):
        content = output.get("content")
        text = content if isinstance(content, str) else ""
        return (
            text,
            (False if output.get("success") is None else not output.get("success")),
            wall_time_ms(text),
        )
    if isinstance(output, list):
        text = "".join(p.get("text", "") for p in output if isinstance(p, dict))
        return text, None, wall_time_ms(text)
    text = str(output or "")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "output" in obj:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        code = meta.get("exit_code")
        secs = meta.get("duration_seconds")
        return (
            str(obj.get("output") or ""),
            None if code is None else code != 0,
            None if secs is None else round(float(secs) * 1000),
        )
    code = None
    for marker in ("Process exited with code ", "Exit code: "):
        at = text.find(marker)
        if at >= 0:
            digits = text[at + len(marker) :].split(None, 1)[0] if text[at + len(marker) :] else ""
            if digits.lstrip("-").isdigit():
                code = int(digits)
            break
    return text, None if code is None else code != 0, wall_time_ms(text)


class _State:
    def __init__(self, session: LogSession) -> None:
        self.session = session
        self.turn_id: str | None = None
        self.turn_rounds = 0
        self.model: str | None = None
        self.open: LogRound | None = None
        self.last_total: object = None

    def round(self) -> LogRound:
        if self.open is None:
            turn = self.turn_id or self.session.session_id
            self.open = self.session.start_round(
                LogRound(round_id=f"{turn}:{self.turn_rounds}", turn_id=turn, model=self.model)
            )
            self.turn_rounds += 1
        return self.open


def parse_file(path: Path, unreadable: Unreadable | None = None) -> list[LogSession]:
    """The session of one Codex rollout file (empty when it has no session_meta)."""
    state: _State | None = None
    for line in read_jsonl(path, unreadable):
        kind = line.get("type")
        payload = line.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        ts = line.get("timestamp")
        ptype = payload.get("type")
        if kind == "session_meta":
            if state is None:
                cwd = payload.get("cwd")
                sid = str(payload.get("id") or path.stem)
                state = _State(
                    LogSession("codex", sid, Path(cwd).name if cwd else "codex", "codex")
                )
            continue
        if state is None:
            continue
        session = state.session
        if kind == "turn_context":
            state.model = payload.get("model") or state.model
            turn = payload.get("turn_id")
            if turn and turn != state.turn_id:
                state.turn_id, state.turn_rounds = str(turn), 0
        elif kind == "event_msg" and ptype == "task_started" and payload.get("turn_id"):
            if payload["turn_id"] != state.turn_id:
                state.turn_id, state.turn_rounds = str(payload["turn_id"]), 0
        elif kind == "event_msg" and ptype == "user_message":
            session.add_input(
                {
                    "event_type": "user_message",
                    "timestamp": ts,
                    "source": "event_msg.user_message",
                    "content_chars": len(str(payload.get("message") or "")),
                }
            )
        elif kind == "event_msg" and ptype == "token_count":
            info = payload.get("info")
            if not isinstance(info, dict) or not isinstance(info.get("last_token_usage"), dict):
                continue
            if info.get("total_token_usage") == state.last_total and state.open is None:
                continue  # repeated report (e.g. a rate-limit update) with no new output
            state.last_total = info.get("total_token_usage")
            usage = info["last_token_usage"]
            rnd = state.round()
            rnd.input_total = int(usage.get("input_tokens") or 0)
            rnd.prefix = int(usage.get("cached_input_tokens") or 0)
            rnd.output = int(usage.get("output_tokens") or 0)
            rnd.reasoning = usage.get("reasoning_output_tokens")
            rnd.outputs.append(
                {"event_type": "usage_report", "timestamp": ts, "source": "event_msg.token_count"}
            )
            state.open = None
        elif kind == "response_item" and ptype == "message" and payload.get("role") == "assistant":
            state.round().outputs.append(
                {
                    "event_type": "text",
                    "timestamp": ts,
                    "source": "response_item.message",
                    "content_chars": text_chars(payload.get("content")),
                }
            )
        elif kind == "response_item" and ptype == "reasoning":
            state.round().outputs.append(
                {"event_type": "reasoning", "timestamp": ts, "source": "response_item.reasoning"}
            )
        elif kind == "response_item" and ptype in (
            "function_call",
            "custom_tool_call",
            "local_shell_call",
        ):
            args = (
                payload.get("arguments")
                if ptype == "function_call"
                else payload.get("input", payload.get("action"))
            )
            if not isinstance(args, str):
                args = json.dumps(args or {}, ensure_ascii=False, separators=(",", ":"))
            session.add_tool(
                state.round(),
                ts=ts,
                call_id=str(payload.get("call_id") or payload.get("id")),
                name=str(payload.get("name") or "local_shell"),
                source=f"response_item.{ptype}",
                arguments=args,
            )
        elif kind == "response_item" and ptype in (
            "function_call_output",
            "custom_tool_call_output",
        ):
            text, is_error, internal = _output_text(payload.get("output"))
            session.add_result(
                ts=ts,
                call_id=str(payload.get("call_id")),
                source=f"response_item.{ptype}",
                chars=len(text),
                is_error=is_error,
                internal_ms=internal,
            )
    return [state.session] if state is not None and state.session.rounds else []


def rows_from_dir(
    root: Path | None = None,
    *,
    unreadable: Unreadable | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """TraceLab rows of every rollout under root (default ~/.codex/sessions); lines that are no JSON
    object are counted in `unreadable`, and `on_file` is called after each file."""
    for path in iter_log_files(root or default_dir()):
        for session in parse_file(path, unreadable):
            yield from session.rows()
        if on_file is not None:
            on_file(path)


def import_codex(
    db_url: str, root: Path | None = None, *, progress: Callable[[int], None] | None = None
) -> int:
    """Store every rollout under root (default ~/.codex/sessions; one .jsonl works too), its
    rounds marked as from logs; returns how many new rounds were stored.

    Example: import_codex("sqlite:///traces.db", Path.home() / ".codex" / "sessions")
    """
    return import_rows(db_url, rows_from_dir(root), source="log:codex", progress=progress)
