"""The TraceLab row format (../shared/tracelab-format.md): field lists, timestamps, JSONL I/O.

Every module that reads or writes TraceLab rows goes through here, so the contract lives once.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ROW_FIELDS",
    "TOOL_FIELDS",
    "PRIVATE_KEYS",
    "TraceLabFormatError",
    "check_row",
    "format_ts",
    "open_text",
    "parse_ts",
    "read_rows",
    "write_rows",
]

ROW_FIELDS: tuple[str, ...] = (
    "provider",
    "project",
    "session_id",
    "round_index",
    "round_id",
    "turn_id",
    "model",
    "input_tokens_total",
    "prefix_tokens",
    "newly_append_tokens",
    "claude_uncached_input_tokens",
    "claude_cache_creation_input_tokens",
    "claude_cache_read_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "timing_events",
    "tools",
    "current_input_event_count",
    "current_user_message_count",
    "current_tool_result_count",
    "current_user_message_chars",
    "current_tool_result_chars",
    "current_input_chars",
    "first_input_event_type",
    "store",
    "trace_key",
)

TOOL_FIELDS: tuple[str, ...] = (
    "tool_index",
    "tool_name",
    "tool_call_id",
    "emitted_at",
    "result_at",
    "input",
    "input_chars",
    "result_chars",
    "tool_wall_latency_ms",
    "tool_internal_latency_ms",
    "is_error",
)

# Keys TraceLab's privacy rule forbids anywhere in a public row (plus any key ending in
# "_path" or "filepath").
PRIVATE_KEYS: frozenset[str] = frozenset(
    {
        "cwd",
        "home",
        "host",
        "hostname",
        "file_path",
        "filepath",
        "repo_url",
        "repository_url",
        "session_file",
        "workdir",
    }
)


class TraceLabFormatError(ValueError):
    """A row or file that does not follow the TraceLab contract."""


def format_ts(epoch: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with milliseconds and Z, e.g. 2026-06-01T05:40:20.151Z."""
    if epoch is None:
        return None
    ms = round(epoch * 1000)
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ts(value: str | None) -> float | None:
    """ISO-8601 timestamp (with Z or an offset) -> epoch seconds; None stays None."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """Open a JSONL file for text I/O; a `.gz` suffix means gzip."""
    p = Path(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(p, mode.replace("t", "") + "b"), encoding="utf-8")
    return open(p, mode, encoding="utf-8")


def read_rows(path: str | Path, *, check: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the rows of a TraceLab JSONL (or .jsonl.gz) file, one dict per round.

    Blank lines are skipped; a malformed line raises TraceLabFormatError naming the line.
    """
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceLabFormatError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise TraceLabFormatError(f"{path}:{lineno}: a row must be a JSON object")
            if check:
                problems = check_row(row)
                if problems:
                    raise TraceLabFormatError(f"{path}:{lineno}: " + "; ".join(problems))
            yield row


def write_rows(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write rows as compact JSONL; returns the number written."""
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        n += 1
    return n


def check_row(row: dict[str, Any]) -> list[str]:
    """Return what is wrong with a row (empty when it follows the contract)."""
    problems: list[str] = []
    for key in (
        "provider",
        "session_id",
        "round_id",
        "input_tokens_total",
        "prefix_tokens",
        "newly_append_tokens",
        "output_tokens",
        "timing_events",
        "tools",
    ):
        if key not in row:
            problems.append(f"missing field {key!r}")
    if problems:
        return problems
    if row["input_tokens_total"] != row["prefix_tokens"] + row["newly_append_tokens"]:
        problems.append("input_tokens_total != prefix_tokens + newly_append_tokens")
    stamps = [parse_ts(e.get("timestamp")) for e in row["timing_events"]]
    if any(a is not None and b is not None and b < a for a, b in zip(stamps, stamps[1:])):
        problems.append("timing_events are not ordered by timestamp")
    return problems
