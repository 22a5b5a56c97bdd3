"""Per-session memo of a step's results: an agent re-sends its history every round, so a step
finds its result for each re-sent element again by the element's identity (`Recent`).
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from tracetap.model import Round

__all__ = ["MISS", "Recent", "leading", "session_key"]

MISS: Any = object()  # no earlier result for this element


def session_key(rnd: Round) -> Hashable:
    """The session a round belongs to as far as the ingest steps can tell before identity is
    assigned: the client's session id, else the (interned) object of its first message."""
    if rnd.agent_session_id:
        return rnd.provider, rnd.agent_session_id
    first = rnd.messages[0] if rnd.messages else None
    return rnd.provider, id(first)  # an unrelated reuse of the id only costs a cache miss


def leading(flags: list[bool]) -> int:
    """Length of the leading run of true values."""
    return flags.index(False) if False in flags else len(flags)


class Recent:
    """A step's result per element for each session's last few rounds, found again by
    identity at the same position (elements the `Interner` made shared). Bounded by sessions."""

    def __init__(self, *, sessions: int = 64, per_session: int = 3) -> None:
        self.sessions = sessions
        self.per_session = per_session
        self._by: OrderedDict[Hashable, list[tuple[list[Any], list[Any], Any]]] = OrderedDict()

    def match(self, key: Hashable, objs: Sequence[Any]) -> list[Any]:
        """Earlier results for `objs` (MISS where there is none), from the recent round sharing
        the longest run of leading elements."""
        return self.match_from(key, objs)[0]

    def match_from(self, key: Hashable, objs: Sequence[Any]) -> tuple[list[Any], Any, int]:
        """`match`'s results, the tag that round was kept with (None when there is none) and
        how many leading elements it shares."""
        out = [MISS] * len(objs)
        best: tuple[list[Any], list[Any], Any] | None = None
        best_n = 0
        for prev in self._by.get(key, ()):
            n = leading(list(map(operator.is_, prev[0], objs)))
            if best is None or n >= best_n:  # ties: the most recent
                best, best_n = prev, n
        if best is None:
            return out, None, 0
        prev_objs, prev_results, tag = best
        out[:best_n] = prev_results[:best_n]
        for i in range(best_n, min(len(objs), len(prev_objs))):
            if objs[i] is prev_objs[i]:  # the same object further on (a system block)
                out[i] = prev_results[i]
        return out, tag, best_n

    def keep(
        self, key: Hashable, objs: Sequence[Any], results: Sequence[Any], tag: Any = None
    ) -> None:
        """Remember this round's results (replacing the round it continued, if any)."""
        rounds = self._by.pop(key, None) or []
        objs, results = list(objs), list(results)
        for j, (prev_objs, _, _) in enumerate(rounds):
            if prev_objs and objs and prev_objs[0] is objs[0]:
                del rounds[j]  # this round continues that one: keep only the newer
                break
        rounds.append((objs, results, tag))
        del rounds[: -self.per_session]
        self._by[key] = rounds
        while len(self._by) > self.sessions:
            self._by.popitem(last=False)
