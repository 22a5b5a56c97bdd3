"""Public (sanitized) TraceLab rows: no text, no tool inputs, no path-like keys, ids replaced
by keyed pseudonyms that keep the original's shape, so cross-row relations survive.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from typing import Any

from tracetap.tracelab import PRIVATE_KEYS

__all__ = ["Pseudonymizer", "privacy_problems", "sanitize_row"]

_HEX = set(string.hexdigits)
_B62 = string.digits + string.ascii_letters
_PROVIDERS = ("claude", "codex", "openai")
_DROP_EXTRAS = {"tt_round_uid", "tt_request_at"}
_CACHE_MAX = 50_000


class Pseudonymizer:
    """Stable, keyed, shape-preserving pseudonyms (nothing reversible is kept)."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._cache: dict[str, str] = {}

    def _stream(self, value: str, n: int) -> bytes:
        out = b""
        counter = 0
        while len(out) < n:
            out += hmac.new(self.key, f"{counter}:{value}".encode(), hashlib.sha256).digest()
            counter += 1
        return out

    def __call__(self, value: str) -> str:
        """Same prefix (e.g. `msg_`, `toolu_`), same length, hex stays hex, '-' and ':' stay."""
        if value in self._cache:
            return self._cache[value]
        head, sep, tail = value.rpartition("_")
        prefix = head + sep if sep and head.isalpha() else ""
        body = value[len(prefix) :]
        hexish = all(c in _HEX or not c.isalnum() for c in body)
        stream = self._stream(value, len(body))
        chars = []
        for c, b in zip(body, stream):
            if not c.isalnum():
                chars.append(c)
            elif hexish:
                chars.append("0123456789abcdef"[b % 16])
            else:
                chars.append(_B62[b % 62])
        out = prefix + "".join(chars)
        if len(self._cache) >= _CACHE_MAX:  # bounded: a long export stays in constant memory
            self._cache.clear()
        self._cache[value] = out
        return out

    def session(self, value: str) -> str:
        provider, sep, rest = value.partition(":")
        return f"{provider}:{self(rest)}" if sep and provider in _PROVIDERS else self(value)

    def round_id(self, value: str) -> str:
        turn, sep, n = value.rpartition(":")
        return f"{self(turn)}:{n}" if sep and n.isdigit() else self(value)

    def project(self, value: str) -> str:
        if value.startswith("project_"):
            return self(value)
        return "project_" + hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:8]


def _private_key(key: str) -> bool:
    k = key.lower()
    return k in PRIVATE_KEYS or k.endswith("_path") or k.endswith("filepath")


def _scrub(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if not _private_key(k) and k != "input"}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def sanitize_row(row: dict[str, Any], ps: Pseudonymizer) -> dict[str, Any]:
    """The public form of one private row."""
    out = _scrub({k: v for k, v in row.items() if k not in _DROP_EXTRAS})
    out["session_id"] = ps.session(str(row["session_id"]))
    out["round_id"] = ps.round_id(str(row["round_id"]))
    if row.get("turn_id"):
        out["turn_id"] = ps(str(row["turn_id"]))
    if row.get("project"):
        out["project"] = ps.project(str(row["project"]))
    if row.get("user"):
        out["user"] = ps(str(row["user"]))
    for item in out.get("tools") or []:
        if item.get("tool_call_id"):
            item["tool_call_id"] = ps(str(item["tool_call_id"]))
    for event in out.get("timing_events") or []:
        if event.get("tool_call_id"):
            event["tool_call_id"] = ps(str(event["tool_call_id"]))
    out["trace_key"] = f"{row['provider']}:{out['session_id']}:{out['round_id']}"
    return out


def privacy_problems(row: dict[str, Any]) -> list[str]:
    """What in a row breaks TraceLab's public privacy rule (empty when it passes)."""
    problems: list[str] = []

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if _private_key(k):
                    problems.append(f"{where}.{k}: private key")
                walk(v, f"{where}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")

    walk(row, "row")
    for i, t in enumerate(row.get("tools") or []):
        if "input" in t:
            problems.append(f"row.tools[{i}].input: tool input in a public row")
    return problems
