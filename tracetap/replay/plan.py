"""Replay plans: sessions of rounds (token shape, timing, waits) read from any supported input.

Reads the store (database URL), TraceLab JSONL, TraceLab replay CSV (both headers) and Mooncake
JSONL into one shape, `Plan`, that the prompt builder and the runner consume.

Waits between rounds of a TraceLab session: the recorded gap is the time from the round's last
model output event to the next round's first input event (never negative). Its tool part is the
sum of the round's effective tool latencies (tool_internal_latency_ms, else tool_wall_latency_ms),
clipped to the gap; the human part is the rest. The replay CSV gives one wait per round with no
split, counted as tool time; Mooncake lines are independent requests with no waits.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracetap.tracelab import open_text, parse_ts, read_rows

__all__ = [
    "Plan",
    "PlanRound",
    "PlanSession",
    "cap_idle",
    "load_plan",
    "plan_from_csv",
    "plan_from_mooncake",
    "plan_from_rows",
]

_INPUT_EVENTS = ("user_message", "tool_result")
_OUTPUT_EVENTS = ("reasoning", "text", "tool_call")


@dataclass(slots=True)
class PlanRound:
    """One recorded round: its token shape and when it happened (seconds from the trace start)."""

    index: int
    prefix_len: int
    append_len: int
    output_len: int
    at: float
    tool_wait: float = 0.0
    human_wait: float = 0.0
    block_keys: list[str] | None = None
    block_size: int | None = None

    @property
    def input_len(self) -> int:
        return self.prefix_len + self.append_len


@dataclass(slots=True)
class PlanSession:
    """The rounds of one session in order; `start` is its first round's offset in seconds.

    `group` names the agent (provider) whose sessions share a system/tools prefix: a session's
    first recorded prefix is read from what other sessions of its group put in the cache."""

    session_id: str
    rounds: list[PlanRound] = field(default_factory=list)
    group: str | None = None

    @property
    def start(self) -> float:
        return self.rounds[0].at if self.rounds else 0.0


@dataclass(slots=True)
class Plan:
    """All sessions of a trace, ordered by start; `source` names the input kind."""

    sessions: list[PlanSession]
    source: str

    @property
    def n_rounds(self) -> int:
        return sum(len(s.rounds) for s in self.sessions)


def _request_time(row: dict[str, Any]) -> float | None:
    t = parse_ts(row.get("tt_request_at"))
    if t is not None:
        return t
    events = row.get("timing_events") or []
    parsed = [parse_ts(e.get("timestamp")) for e in events if e.get("event_type") in _INPUT_EVENTS]
    stamps = [s for s in parsed if s is not None]
    if stamps:
        return max(stamps)
    stamps = [s for s in (parse_ts(e.get("timestamp")) for e in events) if s is not None]
    return min(stamps) if stamps else None


def _first_input(row: dict[str, Any]) -> float | None:
    parsed = [
        parse_ts(e.get("timestamp"))
        for e in row.get("timing_events") or []
        if e.get("event_type") in _INPUT_EVENTS
    ]
    stamps = [s for s in parsed if s is not None]
    return min(stamps) if stamps else _request_time(row)


def _last_output(row: dict[str, Any]) -> float | None:
    parsed = [
        parse_ts(e.get("timestamp"))
        for e in row.get("timing_events") or []
        if e.get("event_type") in _OUTPUT_EVENTS
    ]
    stamps = [s for s in parsed if s is not None]
    return max(stamps) if stamps else None


def _tool_seconds(row: dict[str, Any]) -> float:
    total = 0
    for tool in row.get("tools") or []:
        ms = tool.get("tool_internal_latency_ms")
        if ms is None:
            ms = tool.get("tool_wall_latency_ms")
        total += int(ms or 0)
    return total / 1000.0


def _group(session_id: str) -> str | None:
    """The provider a `<provider>:<id>` session id names, else None."""
    head, sep, _ = session_id.partition(":")
    return head if sep and head else None


def plan_from_rows(rows: Iterable[dict[str, Any]]) -> Plan:
    """Sessions from TraceLab rows (any order); rows without a usable time are skipped."""
    by_session: dict[str, list[tuple[float, int, dict[str, Any]]]] = {}
    groups: dict[str, str | None] = {}
    for row in rows:
        t = _request_time(row)
        if t is None:
            continue
        sid = str(row.get("session_id"))
        by_session.setdefault(sid, []).append((t, int(row.get("round_index") or 0), row))
        groups.setdefault(sid, str(row["provider"]) if row.get("provider") else _group(sid))
    t0 = min((t for items in by_session.values() for t, _, _ in items), default=0.0)
    sessions = []
    for sid, items in by_session.items():
        items.sort(key=lambda x: (x[1], x[0]))
        session = PlanSession(sid, group=groups.get(sid))
        for i, (t, _, row) in enumerate(items):
            hashes = row.get("tt_block_hashes")
            session.rounds.append(
                PlanRound(
                    index=i,
                    prefix_len=int(row.get("prefix_tokens") or 0),
                    append_len=int(row.get("newly_append_tokens") or 0),
                    output_len=int(row.get("output_tokens") or 0),
                    at=t - t0,
                    block_keys=[str(h) for h in hashes] if hashes else None,
                    block_size=int(row.get("tt_block_size") or 64) if hashes else None,
                )
            )
        for (_, _, row), (_, _, nxt), rnd in zip(items, items[1:], session.rounds):
            end, start = _last_output(row), _first_input(nxt)
            gap = max(0.0, start - end) if end is not None and start is not None else 0.0
            rnd.tool_wait = min(gap, _tool_seconds(row))
            rnd.human_wait = gap - rnd.tool_wait
        sessions.append(session)
    sessions.sort(key=lambda s: (s.start, s.session_id))
    return Plan(sessions, "tracelab")


def plan_from_csv(path: str | Path) -> Plan:
    """Sessions from a TraceLab replay CSV, with or without the arrival_time column."""
    sessions: dict[str, PlanSession] = {}
    arrivals: dict[str, float] = {}
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        need = {
            "session_id",
            "round_idx",
            "prefix_len",
            "input_len",
            "output_len",
            "tool_wait_after_ms",
        }
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ValueError(f"{path}: not a replay CSV (header {reader.fieldnames})")
        rows = sorted(reader, key=lambda r: (r["session_id"], int(r["round_idx"])))
    for r in rows:
        sid = r["session_id"]
        arrivals.setdefault(sid, float(r.get("arrival_time") or 0) / 1000.0)
        session = sessions.setdefault(sid, PlanSession(sid, group=_group(sid)))
        session.rounds.append(
            PlanRound(
                index=len(session.rounds),
                prefix_len=int(r["prefix_len"]),
                append_len=int(r["input_len"]),
                output_len=int(r["output_len"]),
                at=arrivals[sid],
                tool_wait=float(r["tool_wait_after_ms"] or 0) / 1000.0,
            )
        )
    # Without response times, later rounds' open-loop times are the arrival plus earlier waits.
    for session in sessions.values():
        t = arrivals[session.session_id]
        for rnd in session.rounds:
            rnd.at = t
            t += rnd.tool_wait
    ordered = sorted(sessions.values(), key=lambda s: (s.start, s.session_id))
    return Plan(ordered, "replay-csv")


def plan_from_mooncake(path: str | Path, *, block_size: int = 512) -> Plan:
    """One single-round session per Mooncake line, at its `timestamp` (ms); `hash_ids` name
    blocks of `block_size` tokens, so lines sharing leading ids share a prefix."""
    sessions = []
    with open_text(path) as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            rec = json.loads(line)
            keys = [f"m{h}" for h in rec.get("hash_ids") or []]
            total = int(rec["input_length"])
            sessions.append(
                PlanSession(
                    f"mooncake:{n}",
                    [
                        PlanRound(
                            index=0,
                            prefix_len=0,
                            append_len=total,
                            output_len=int(rec["output_length"]),
                            at=float(rec["timestamp"]) / 1000.0,
                            block_keys=keys or None,
                            block_size=block_size if keys else None,
                        )
                    ],
                )
            )
    sessions.sort(key=lambda s: s.start)
    return Plan(sessions, "mooncake")


def _looks_like_mooncake(path: Path) -> bool:
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                return "input_length" in rec and "session_id" not in rec
    return False


def load_plan(source: str, *, block_size: int = 512) -> Plan:
    """Plan from a database URL (`scheme://…`), a .csv replay CSV, or a JSONL file that is
    either TraceLab rows or Mooncake lines (told apart by their fields)."""
    if "://" in source:
        from tracetap.exporters.tracelab import iter_rows

        plan = plan_from_rows(iter_rows(source))
        plan.source = "store"
        return plan
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such input: {source}")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return plan_from_csv(path)
    if _looks_like_mooncake(path):
        return plan_from_mooncake(path, block_size=block_size)
    return plan_from_rows(read_rows(path))


def cap_idle(plan: Plan, max_idle: float) -> Plan:
    """Shorten every stretch longer than `max_idle` seconds during which no session is under
    way (from the latest round start so far to the next session's start) to `max_idle`,
    moving later sessions earlier whole; recorded traces can hold days between sessions.
    Gaps inside a session are untouched (--max-wait caps those)."""
    if max_idle < 0:
        raise ValueError("max idle must be >= 0")
    shift, busy_until = 0.0, None
    for session in sorted(plan.sessions, key=lambda s: s.start):
        if not session.rounds:
            continue
        start, end = session.start, max(r.at for r in session.rounds)
        if busy_until is not None and start - busy_until > max_idle:
            shift += start - busy_until - max_idle
        busy_until = end if busy_until is None else max(busy_until, end)
        for r in session.rounds:
            r.at -= shift
    return plan
