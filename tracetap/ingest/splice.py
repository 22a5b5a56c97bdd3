"""Parsing a request body that re-sends a session's history: the leading elements an earlier
request of the session had byte for byte are taken as its very objects; only the rest is parsed.
"""

from __future__ import annotations

import operator
import os
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from tracetap.wire.adapters.base import loads

__all__ = ["MIN_BODY", "Line", "common_prefix", "common_suffix", "parse_resent"]

MIN_BODY = 4096  # below this, parsing the whole body is as cheap as looking for history

# A marker in the place of the elements cut out: no request body contains it (checked).
_NONCE = os.urandom(12).hex().encode()


class Line:
    """An earlier request of a session: by part name, its elements' serializations (None
    where orjson refuses one) and the elements themselves. `origins`: by part name, an earlier
    line and how many leading serializations this one shares with it (its joined bytes then
    grow from that line's instead of being joined again)."""

    __slots__ = ("_joined", "_origins", "keys", "objs")

    def __init__(
        self,
        keys: Mapping[str, Sequence[bytes | None]],
        objs: Mapping[str, Sequence[Any]],
        origins: Mapping[str, tuple[Line, int]] | None = None,
    ) -> None:
        self.keys = keys
        self.objs = objs
        # only what that line has joined already: no line keeps an earlier one alive
        self._origins = {
            part: (line._joined[part], n)
            for part, (line, n) in (origins or {}).items()
            if part in line._joined
        }
        self._joined: dict[str, tuple[bytearray, int, list[int]]] = {}

    def joined(self, part: str) -> tuple[bytearray, int, list[int]]:
        """(buffer, size, ends): the part's leading serializable elements as the array would
        hold them (joined by ","), which are buffer[:size] (a later line may have grown the
        buffer past it), and where each ends in that; made once, on first use."""
        got = self._joined.get(part)
        if got is None:
            got = self._joined[part] = self._join(part)
        return got

    def _join(self, part: str) -> tuple[bytearray, int, list[int]]:
        keys = list(self.keys.get(part) or ())
        n = keys.index(None) if None in keys else len(keys)
        origin = self._origins.pop(part, None)
        if origin is not None:
            (buf, size, ends), shared = origin
            # this line starts with all of that line's run, and no other line grew its buffer
            if 0 < len(ends) <= min(shared, n) and size == len(buf):
                new = keys[len(ends) : n]
                pos, grown = size, list(ends)
                for k in new:
                    pos += 1 + len(k)  # type: ignore[arg-type]
                    grown.append(pos)
                try:
                    if new:
                        buf += b"," + b",".join(new)  # type: ignore[arg-type]
                except BufferError:  # still exported to a view: join afresh
                    pass
                else:
                    return buf, pos, grown
        run = keys[:n]
        buf = bytearray(b",").join(run)  # type: ignore[arg-type]
        return (
            buf,
            len(buf),
            list(
                map(
                    operator.add,
                    accumulate(map(len, run)),  # type: ignore[arg-type]
                    range(len(run)),
                )
            ),
        )


def parse_resent(body: bytes, parts: Mapping[str, str], lines: Sequence[Line]) -> tuple[Any, int]:
    """(a value equal to `loads(body)`, the bytes not parsed): the leading elements of each
    array field in `parts` (body field -> part name) that one of `lines` had, serialized
    exactly as there (orjson's compact form, as JavaScript's JSON.stringify and httpx write
    it), are those objects; so are the elements after the first when only the first differs
    (Claude Code's `system`, whose first block is a billing line that changes every request).

    Exact by construction: the cut-out bytes are complete JSON values, each the serialization
    of the object put in its place, and the marker standing for them must come back as the
    element of an array at the index the cut began at (the first, or the second), so the cut
    began right after the array's "[" or its first element's "," in the body itself.
    Whenever anything is not so, the whole body is parsed.
    """
    if not lines or len(body) < MIN_BODY or _spaced(body):
        return loads(body), 0
    cuts: list[tuple[int, int, list[Any], int]] = []
    free = [(0, len(body))]  # where no cut is: the other fields are looked for only there
    for field, part in sorted(parts.items(), key=lambda fp: fp[1] != "messages"):
        needle = b'"' + field.encode() + b'":['
        cut = _cut(body, needle, part, lines, free)
        if cut is not None:
            cuts.append(cut)
    skipped = sum(end - start for start, end, _, _ in cuts)
    if skipped < MIN_BODY:
        return loads(body), 0
    cuts.sort(key=lambda c: c[0])
    pieces, pos = [], 0
    for i, (start, end, _, _) in enumerate(cuts):
        pieces += [body[pos:start], b'"', _NONCE, b"%d" % i, b'"']
        pos = end
    pieces.append(body[pos:])
    doc = b"".join(pieces)
    if doc.count(_NONCE) != len(cuts):  # the body itself has the marker: never guess
        return loads(body), 0
    value = loads(doc)
    markers = {(_NONCE + b"%d" % i).decode(): (objs, at) for i, (_, _, objs, at) in enumerate(cuts)}
    if value is None or _splice(value, markers, 3) != len(cuts):
        return loads(body), 0
    return value, skipped


def _spaced(body: bytes) -> bool:
    """True when the body's first member has a space after its colon (Python's json.dumps,
    pretty-printing): such a writer spaces its elements too, so none is worth looking for."""
    colon = body.find(b'":', 0, 256)
    return colon >= 0 and body[colon + 2 : colon + 3] in (b" ", b"\n", b"\t", b"\r")


def _cut(
    body: bytes, needle: bytes, part: str, lines: Sequence[Line], free: list[tuple[int, int]]
) -> tuple[int, int, list[Any], int] | None:
    """The longest run of a line's leading `part` elements right after an occurrence of
    `needle` in a free region (the first few occurrences are tried), or of the elements after
    its first when the body's first differs (Claude Code's billing line in `system`), as
    (start, end, objects, index of the first in the array); `free` loses what is cut."""
    tries = 0
    for r, (lo, hi) in enumerate(free):
        at = body.find(needle, lo, hi)
        while at >= 0 and tries < 4:
            tries += 1
            start = at + len(needle)
            best: tuple[int, int, list[Any], int] = (start, start, [], 0)
            for line in lines:
                joined = line.joined(part)
                end, n = _leading(body, start, hi, *joined)
                if end - start > best[1] - best[0]:
                    best = (start, end, list(line.objs[part][:n]), 0)
                elif not n:
                    begin = _second(body, start, hi, *joined)
                    if begin >= 0:
                        end, n = _leading(body, begin, hi, *joined, skip=1)
                        if end - begin > best[1] - best[0]:
                            best = (begin, end, list(line.objs[part][1 : 1 + n]), 1)
            if best[2]:
                free[r : r + 1] = [(lo, best[0]), (best[1], hi)]
                return best
            at = body.find(needle, start, hi)  # perhaps a nested field of that name
    return None


def common_prefix(
    a: bytes, start: int, b: bytes | bytearray | memoryview, n: int, hint: int = 0
) -> int:
    """How many of the first `n` bytes of `b` `a` holds at `start`, by bisection (one C
    comparison a step); `hint`, a guess, is tried first (exact: no bisection)."""
    with memoryview(b) as view:  # released on return: a bytearray can grow again
        same, differs = 0, n  # a holds b[:same] at start, not b[:differs]
        if 0 < hint < n:
            if not a.startswith(view[:hint], start):
                differs = hint
            elif start + hint >= len(a) or a[start + hint] != b[hint]:
                return hint
            else:
                same = hint + 1
        if differs == n and a.startswith(view[same:n], start + same):
            return n
        while differs - same > 1:
            mid = (same + differs) // 2
            if a.startswith(view[same:mid], start + same):
                same = mid
            else:
                differs = mid
        return same


def common_suffix(a: bytes, b: bytes, n: int, hint: int = 0) -> int:
    """How many of the last `n` bytes of `b` `a` ends with (n ≤ len(a), len(b)), by bisection
    (one C comparison a step); `hint`, a guess, is tried first (exact: no bisection)."""
    end_a, end_b = len(a), len(b)
    with memoryview(b) as view:
        same, differs = 0, n  # a ends with b's last `same` bytes, not with its last `differs`
        if 0 < hint < n:
            if not a.endswith(view[end_b - hint :]):
                differs = hint
            elif a[end_a - hint - 1] != b[end_b - hint - 1]:
                return hint
            else:
                same = hint + 1
        if differs == n and a.startswith(view[end_b - n : end_b - same], end_a - n):
            return n
        while differs - same > 1:
            mid = (same + differs) // 2
            if a.startswith(view[end_b - mid : end_b - same], end_a - mid):
                same = mid
            else:
                differs = mid
        return same


def _leading(
    body: bytes, start: int, stop: int, joined: bytearray, size: int, ends: list[int], skip: int = 0
) -> tuple[int, int]:
    """(end offset, count) of the longest run of the elements in `joined[:size]` (ending at
    `ends`), from element `skip` on, that `body` holds at `start` as complete array elements
    (each followed by "," or "]") before `stop`, its end before that "," or "]". The common
    prefix is found by bisection, each step one comparison in C."""
    if len(ends) <= skip:
        return start, 0
    base = ends[skip - 1] + 1 if skip else 0  # where element `skip` starts in joined
    if not body.startswith(joined[base : ends[skip]], start, stop):
        return start, 0  # not even the first element (Claude Code's billing line in system)
    with memoryview(joined) as view, view[base:size] as rest:  # released: joined may grow
        same = common_prefix(body, start, rest, min(size - base, stop - start))
    n = bisect_right(ends, base + same)
    while n > skip:  # the last element must end where the body's does (not 1 of 12, say)
        end = start + ends[n - 1] - base
        if end < stop and body[end : end + 1] in (b",", b"]"):
            return end, n - skip
        n -= 1
    return start, 0


def _second(
    body: bytes, start: int, stop: int, joined: bytearray, size: int, ends: list[int]
) -> int:
    """Where the body's array, begun at `start` with a first element other than the one in
    `joined`, may go on with the second element there: right after the first "," followed by
    that element's first bytes within reach of `start` (-1: none). A guess; `parse_resent`'s
    marker proves it or the body is parsed whole."""
    if len(ends) < 2:
        return -1
    first = ends[0] + 1
    probe = b"," + joined[first : min(ends[1], first + 64)]
    at = body.find(probe, start, min(stop, start + 4096 + 2 * first))
    return at + 1 if at >= 0 else -1


def _splice(value: Any, markers: dict[str, tuple[list[Any], int]], depth: int) -> int:
    """Put each marker's objects where the marker is: the element of an array (within `depth`
    levels of objects) at the index its cut began at (the first, or the second after a first
    element of the body's own); returns how many markers were found."""
    done = 0
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, list):
                for at in (0, 1):
                    m = v[at] if len(v) > at else None
                    if isinstance(m, str) and m in markers and markers[m][1] == at:
                        v[at : at + 1] = markers.pop(m)[0]
                        done += 1
                        break
            elif depth > 1 and isinstance(v, dict):
                done += _splice(v, markers, depth - 1)
            if not markers:
                break
    return done
