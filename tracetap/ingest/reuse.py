"""Work proportional to new content: an agent re-sends its whole history every round, so equal
elements become the very same object (`Interner`) and each step finds its result again
(`tracetap.memo`).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from itertools import islice
from typing import Any

import orjson

from tracetap.ingest.splice import Line
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


def _keys_reusing(
    objs: list[Any], lines: Sequence[_Lineage], name: str, first: list[bytes | None] | None = None
) -> tuple[list[bytes | None], tuple[_Lineage, int] | None]:
    """(`_keys(objs)`, its origin): the serializations of a leading run of objects that a
    line already holds (shared by `Interner` or `parse_resent`) are taken from that line, the
    origin (line, run length); so are those of a run after a first object of its own (Claude
    Code's billing line in `system`), without an origin; `first`: the first object's, when
    the caller has it."""
    best, best_n = None, 0
    for line in lines:
        n = leading(list(map(operator.is_, objs, line.objs[name])))
        if n > best_n:
            best, best_n = line, n
    if best is not None:
        return [*best.keys[name][:best_n], *_keys(objs[best_n:])], (best, best_n)
    head = first if first is not None and objs else _keys(objs[:1])
    for line in lines:
        n = leading(list(map(operator.is_, objs[1:], line.objs[name][1:])))
        if n:
            return [*head, *line.keys[name][1 : 1 + n], *_keys(objs[1 + n :])], None
    return head + _keys(objs[1:]), None


def _key(obj: Any) -> bytes | None:
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return None


class _Lineage(Line):
    __slots__ = ("size",)

    def __init__(
        self,
        keys: dict[str, list[bytes | None]],
        objs: dict[str, list[Any]],
        origins: dict[str, tuple[Line, int]] | None = None,
    ) -> None:
        super().__init__(keys, objs, origins)
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
        self._hints: OrderedDict[Hashable, Hashable] = OrderedDict()  # session header -> sid
        self._bytes = 0
        self.shared = 0  # elements replaced by an earlier object
        self.seen = 0

    def lines_for(self, hint: Hashable | None) -> list[Line]:
        """The recent request lines of the session `hint` (a session header) was last seen
        with; without one, of the two sessions last seen."""
        sid = self._hints.get(hint) if hint is not None else None
        if sid is not None:
            sids = [sid]
        elif hint is None:
            sids = list(islice(reversed(self._sessions), 2))
        else:
            sids = []
        return [line for s in sids for line in self._sessions.get(s, ())]

    def __call__(self, rnd: Round, hint: Hashable | None = None) -> None:
        """Share this round's elements with its session's recent lines; `hint` (its session
        header, if any) finds them again for `lines_for`."""
        cur = {
            "tools": rnd.tools if isinstance(rnd.tools, list) else [],
            "system": rnd.system if isinstance(rnd.system, list) else [],
            "messages": rnd.messages if isinstance(rnd.messages, list) else [],
        }
        head = None if rnd.agent_session_id else _keys(cur["messages"][:1])
        sid = (rnd.provider, rnd.agent_session_id or (head[0] if head else None))
        lines = self._sessions.get(sid, ())
        keys: dict[str, list[bytes | None]] = {}
        origins: dict[str, tuple[Line, int]] = {}
        for name, part in cur.items():
            keys[name], origin = _keys_reusing(
                part, lines, name, head if name == "messages" else None
            )
            if origin is not None:
                origins[name] = origin
        msgs = keys["messages"]
        if hint is not None:
            self._hints[hint] = sid
            self._hints.move_to_end(hint)
            while len(self._hints) > 1024:
                self._hints.popitem(last=False)
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
        self._keep(sid, best, _Lineage(keys, objs, origins))

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
