"""Small numeric helpers shared by the analyses: percentiles and summaries that tolerate empties.

Percentiles use linear interpolation (numpy's default), as TraceLab's scripts do.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import numpy as np

__all__ = ["pct", "summary", "ratio", "clean"]


def pct(values: Any, q: float) -> float | None:
    """q-th percentile (0-100) with linear interpolation; None for no values."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return None if arr.size == 0 else float(np.percentile(arr, q))


def summary(values: Any) -> dict[str, float | int | None]:
    """count, total, mean, p10/p50/p90/p99 of the non-null values."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {
            "count": 0,
            "total": 0,
            "mean": None,
            "p10": None,
            "p50": None,
            "p90": None,
            "p99": None,
        }
    p10, p50, p90, p99 = np.percentile(arr, [10, 50, 90, 99])
    return {
        "count": int(arr.size),
        "total": float(arr.sum()),
        "mean": float(arr.mean()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
    }


def ratio(num: SupportsFloat, den: SupportsFloat) -> float | None:
    return None if not den else float(num) / float(den)


def clean(value: Any) -> Any:
    """numpy scalars/arrays -> plain Python, recursively (for --json)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        f = float(value)
        return None if np.isnan(f) else f
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
