"""Private rows -> the rows a dataset shares: TraceLab's public form (exporters.public), a
contributor pseudonym, optional clock shift and time coarsening, rare tool names hidden.

Every pseudonym and shift is keyed, so the same contributor, key and option give the same rows.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tracetap.exporters.public import Pseudonymizer, sanitize_row
from tracetap.privacy.keys import keyed_hash
from tracetap.tracelab import format_ts, parse_ts

__all__ = [
    "KEPT_EXTRAS",
    "Shaper",
    "contributor_pseudonym",
    "key_fingerprint",
    "parse_granularity",
    "rare_tools",
]

# tracetap's tt_* fields a dataset keeps: numbers and the round kind, nothing that names a
# person, a path or content (tt_block_hashes are hashes of prompt tokens: dropped).
KEPT_EXTRAS: dict[str, str] = {
    "tt_contributor": "contributor pseudonym (keyed hash of the contributor's name)",
    "tt_kind": "round kind: main, subagent, compaction, side",
    "tt_status": "HTTP status",
    "tt_complete": "whether the response ended normally",
    "tt_ttft_ms": "time to first token seen by the proxy, ms",
    "tt_decode_ms": "first to last token, ms",
    "tt_upstream_ttfb_ms": "time to the upstream's first byte, ms",
    "tt_end_ms": "request start to response end, ms",
    "tt_retry_count": "client retry number",
    "tt_cache_creation_5m_tokens": "cache writes with a 5-minute TTL",
    "tt_cache_creation_1h_tokens": "cache writes with a 1-hour TTL",
    "tt_measured_prefix_tokens": "prefix tokens reused, as tracetap's tokenizer measured",
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_GRANULARITY = re.compile(r"^(\d+)\s*([smhdw])$")
_SHIFT_RANGE_S = 365 * 86400  # a session's clock moves back by up to a year


def parse_granularity(text: str) -> int:
    """ "15m", "1h", "1d" -> seconds. Raises ValueError naming the text."""
    hit = _GRANULARITY.match(text.strip())
    if not hit or int(hit[1]) == 0:
        raise ValueError(f"{text!r} is not a granularity like 1s, 15m, 1h or 1d")
    return int(hit[1]) * _UNITS[hit[2]]


def key_fingerprint(key: bytes) -> str:
    """A name for the key that does not reveal it (SHA-256 of a fixed label and the key)."""
    return hashlib.sha256(b"tracetap key fingerprint\0" + key).hexdigest()[:16]


def contributor_pseudonym(key: bytes, name: str) -> str:
    return "contributor_" + keyed_hash(key, "contributor", name, 10)


def rare_tools(rows: Iterable[dict[str, Any]], k: int) -> dict[str, int]:
    """Tool names called in fewer than `k` sessions -> their session count."""
    sessions: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        for tool in row.get("tools") or []:
            if tool.get("tool_name"):
                sessions[str(tool["tool_name"])].add(str(row.get("session_id")))
    return {name: len(s) for name, s in sessions.items() if len(s) < k}


@dataclass
class Shaper:
    """Makes each shared row; `shift_clock` and `granularity_s` change only timestamps."""

    key: bytes
    contributor: str  # the pseudonym, not the name
    shift_clock: bool = False
    granularity_s: int | None = None
    hidden_tools: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pseudonyms = Pseudonymizer(self.key)

    def shift_for(self, session_id: str) -> int:
        """Whole seconds a session's clock moves back (0 without --shift-clock)."""
        if not self.shift_clock:
            return 0
        mac = hmac.new(self.key, b"clock\0" + session_id.encode(), hashlib.sha256)
        return int.from_bytes(mac.digest()[:8], "big") % _SHIFT_RANGE_S

    def tool_name(self, name: str) -> str:
        if name in self.hidden_tools:
            return "tool_" + keyed_hash(self.key, "tool", name, 8)
        return name

    def _time(self, text: Any, shift: int) -> Any:
        t = parse_ts(text) if isinstance(text, str) else None
        if t is None:
            return text
        t -= shift
        if self.granularity_s:
            t = math.floor(t / self.granularity_s) * self.granularity_s
        return format_ts(t)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = sanitize_row(row, self.pseudonyms)
        for k in [k for k in out if k.startswith("tt_") and k not in KEPT_EXTRAS]:
            del out[k]
        out["tt_contributor"] = self.contributor
        shift = self.shift_for(str(row["session_id"]))
        for event in out.get("timing_events") or []:
            event["timestamp"] = self._time(event.get("timestamp"), shift)
            if event.get("tool_name"):
                event["tool_name"] = self.tool_name(str(event["tool_name"]))
        for tool in out.get("tools") or []:
            tool["emitted_at"] = self._time(tool.get("emitted_at"), shift)
            tool["result_at"] = self._time(tool.get("result_at"), shift)
            if tool.get("tool_name"):
                tool["tool_name"] = self.tool_name(str(tool["tool_name"]))
        return out
