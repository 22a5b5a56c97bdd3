"""Human units for analysis results: a metric's key says its unit, `human` writes the value in it.

Shares print as %, durations as 350 ms / 1.2 s / 3.4 min / 2.1 h, tokens as 875 / 12.3k / 3.6M,
instants as dates; a table, the HTML report and the terminal all use these.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = ["UNITS", "duration", "human", "tokens", "unit_of"]

UNITS = ("pct", "seconds", "ms", "tokens", "count", "date", "tok_s", "times", "token_hours", "num")

# Keys whose unit their name does not say.
_EXACT = {
    "earliest_observed": "date",
    "latest_observed": "date",
    "prefill_amplification": "times",
    "rounds_per_user_request": "num",
    "tool_calls_per_user_request": "num",
    "median_abs_log10_error": "num",
    "capacity_tokens": "tokens",
    "distributions": "tokens",
    "block_size": "count",
    "batch_size": "count",
    "sort_window": "count",
    "count": "count",
    "calls": "count",
    "rounds": "count",
}
# Parts of a key that name a share (a fraction printed as %).
_SHARE = ("share", "hit_rate", "hit_ratio", "_ratio", "accuracy", "waste", "saving", "within")


def unit_of(key: str, parent: str = "") -> str:
    """The unit of the metric called `key` (inside the record or summary called `parent`).

    Example: unit_of("p50", "human_wait_seconds") -> "seconds"
    """
    k = str(key).lower()
    if k in _EXACT:
        return _EXACT[k]
    if k.startswith("hit_") or any(s in k for s in _SHARE):
        return "pct"
    if "per_second" in k:
        return "tok_s"
    if "token_hours" in k:
        return "token_hours"
    if k.endswith("_ms"):
        return "ms"
    if k.endswith(("_seconds", "_s")) or k == "seconds":
        return "seconds"
    if "tokens" in k or k.startswith(("p50_prefix", "p50_append", "p50_output")):
        return "tokens"
    if k.endswith(("_rounds", "_calls", "_sessions", "_events")) or k.startswith(("total_", "n_")):
        return "count"
    if parent:
        return unit_of(parent)
    return "num"


def _num(v: float, digits: int = 3) -> str:
    """At most `digits` significant digits, thousands separated, no exponent below 1e15."""
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    places = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float) -> str:
    """350 ms, 1.2 s, 3.4 min, 2.1 h, 3.2 d."""
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 1:
        return f"{sign}{_num(s * 1000)} ms"
    if s < 60:
        return f"{sign}{_num(s)} s"
    if s < 3600:
        return f"{sign}{_num(s / 60)} min"
    if s < 86400:
        return f"{sign}{_num(s / 3600)} h"
    return f"{sign}{_num(s / 86400)} d"


def tokens(n: float) -> str:
    """875, 12.3k, 3.59M, 1.2B."""
    a = abs(n)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= size:
            return f"{_num(n / size)}{suffix}"
    return _num(n)


def human(value: Any, unit: str = "num") -> str:
    """`value` written in `unit` ("–" for none); text and booleans as they are.

    Example: human(0.9344, "pct") -> "93.4 %"; human(75.0, "seconds") -> "1.25 min"
    """
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "; ".join(human(v, unit) for v in value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if unit == "pct":
        if v != 0 and abs(v) < 0.001:
            return "<0.1 %" if v > 0 else ">-0.1 %"
        return f"{v * 100:.1f} %"
    if unit == "seconds":
        return duration(v)
    if unit == "ms":
        return duration(v / 1000)
    if unit == "tokens":
        return tokens(v)
    if unit == "count":
        return f"{v:,.0f}" if v.is_integer() else _num(v)
    if unit == "date":
        return datetime.fromtimestamp(v, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    if unit == "tok_s":
        return f"{_num(v)} tok/s"
    if unit == "times":
        return f"{_num(v)}×"
    if unit == "token_hours":
        return f"{tokens(v)} token·h"
    return tokens(v) if abs(v) >= 1e6 else _num(v)
