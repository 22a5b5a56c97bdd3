"""The registry of analyses: each module registered once here, run by name via `--only NAME`.

An analysis module defines NAME, TITLE, GROUPED, compute(ds, opts), render(result) and may define
plot(result, fig_dir).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["ANALYSES", "get"]

_MODULES = (
    "overview",
    "tokens",
    "growth",
    "timing",
    "tools",
    "kv_timeout",
    "tool_overhead",
    "append_prefill",
    "latency_predict",
    "kv_sim",
)

ANALYSES: dict[str, ModuleType] = {}
for _m in _MODULES:
    _mod = importlib.import_module(f"tracetap.analysis.{_m}")
    ANALYSES[_mod.NAME] = _mod


def get(name: str) -> ModuleType:
    """The analysis module called `name` (KeyError listing the known names otherwise)."""
    try:
        return ANALYSES[name]
    except KeyError:
        raise KeyError(f"unknown analysis {name!r}; known: {', '.join(ANALYSES)}") from None
