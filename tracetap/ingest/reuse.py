"""Work proportional to new content: an agent re-sends its whole history every round, so equal
elements become the very same object (`Interner`) and each step finds its result again
(`tracetap.memo`).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import orjson

from tracetap.memo import leading
from tracetap.model import Round

__all__ = ["Interner"]


def _keys(objs: list[Any]) -> list[bytes | None]:
    """Exact serializations: equal keys mean the same JSON value, types included (1, 1.0 and
    true differ; `==` would call them equal). None (never equal) for what orjson refuses."""
    try:
        return list(map(orjson.dumps, objs))
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        return [_key(o) for o in objs]


def _key(obj: Any) -> bytes | None:
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return None


class _Lineage:
    """An earlier request of a session: by part name, its elements' serializations (None
    where orjson refuses one) and the elements themselves."""

    __slots__ = ("keys", "objs", "size")

    def __init__(self, keys: dict[str, list[bytes | None]], objs: dict[str, list[Any]]) -> None:
        self.keys = keys
        self.objs = objs
        self.size = sum(sum(map(len, filter(None, ks))) for ks in keys.values())


class Interner:
    """Per session, the elements (tools, system blocks, messages) of its last few request lines
    (main agent, subagents): a new round's element exactly equal to the one at the same position
    in the closest line becomes that object, so later steps recognise it without comparing.

    Content objects are therefore shared between rounds: no ingest step may modify one in place.
    Bounded by `max_bytes` of serialized content over all sessions (least recently used first).
    """

    def __init__(self, *, max_bytes: int = 32_000_000, per_session: int = 3) -> None:
        self.max_bytes = max_bytes
        self.per_session = per_session
        self._sessions: OrderedDict[Hashable, list[_Lineage]] = OrderedDict()
        self._bytes = 0
        self.shared = 0  # elements replaced by an earlier object
        self.seen = 0

    def __call__(self, rnd: Round) -> None:
        """Share this round's elements with its session's recent lines."""
        cur = {
            "tools": rnd.tools if isinstance(rnd.tools, list) else [],
            "system": rnd.system if isinstance(rnd.system, list) else [],
            "messages": rnd.messages if isinstance(rnd.messages, list) else [],
        }
        keys = {name: _keys(part) for name, part in cur.items()}
        msgs = keys["messages"]
        sid = (rnd.provider, rnd.agent_session_id or (msgs[0] if msgs else None))
        lines = self._sessions.get(sid, ())
        best: _Lineage | None = None
        best_same: list[bool] = []
        for line in lines:  # the line sharing the most leading messages
            same = list(map(operator.eq, msgs, line.keys["messages"]))
            if best is None or leading(same) >= leading(best_same):
                best, best_same = line, same
        if best is not None and msgs and best_same[:1] != [True]:
            best = None  # nothing in common: a new line (a subagent's first request)
        objs: dict[str, list[Any]] = {}
        for name, items in cur.items():
            if best is not None and best.keys[name]:
                same = (
                    best_same
                    if name == "messages"
                    else list(map(operator.eq, keys[name], best.keys[name]))
                )
                if None in keys[name]:  # unserializable: never shared
                    same = [s and k is not None for s, k in zip(same, keys[name])]
                items = [p if s else o for o, p, s in zip(items, best.objs[name], same)] + items[
                    len(best.objs[name]) :
                ]
                self.shared += same.count(True)
            self.seen += len(items)
            objs[name] = items
        if isinstance(rnd.tools, list):
            rnd.tools = objs["tools"]
        if isinstance(rnd.system, list):
            rnd.system = objs["system"]
        if isinstance(rnd.messages, list):
            rnd.messages = objs["messages"]
        self._keep(sid, best, _Lineage(keys, objs))

    def _keep(self, sid: Hashable, replaced: _Lineage | None, line: _Lineage) -> None:
        lines = self._sessions.pop(sid, None) or []
        if replaced is not None:
            lines.remove(replaced)
            self._bytes -= replaced.size
        lines.append(line)
        self._bytes += line.size
        while len(lines) > self.per_session:
            self._bytes -= lines.pop(0).size
        self._sessions[sid] = lines
        while self._bytes > self.max_bytes and self._sessions:
            _, old = self._sessions.popitem(last=False)
            self._bytes -= sum(x.size for x in old)
