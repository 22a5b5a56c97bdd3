"""Cheap tests that let the detector skip regex scans that cannot match: keyword presence (one
Aho-Corasick pass), base64 runs and phone-like digit groups (numpy passes over the text's bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ahocorasick
import numpy as np

__all__ = ["KeywordSet", "b64_runs", "may_have_phone"]

# Below these lengths the plain scans beat numpy's fixed costs (measured on code-like text).
_B64_SCAN_MIN, _PHONE_SCAN_MIN = 1500, 400


def _table(chars: str) -> np.ndarray:
    t = np.zeros(256, bool)
    t[list(chars.encode())] = True
    return t


_DIGIT = _table("0123456789")
_SEP = _table(" .-")
_B64_CLASS = _table("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_B64_MIN = 24
_B64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{24,}")
_PHONE_HINT = re.compile(r"\d{3}[ .\-]\d{3}|\+\d{10}")


def _ascii_bytes(text: str, at_least: int) -> np.ndarray | None:
    """The text's bytes when it is long enough and ASCII (byte offsets are character offsets)."""
    if len(text) < at_least or not text.isascii():
        return None
    return np.frombuffer(text.encode("ascii"), np.uint8)


def b64_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of base64/base64url characters at least 24 long."""
    a = _ascii_bytes(text, _B64_SCAN_MIN)
    if a is None:
        return [m.span() for m in _B64_RUN.finditer(text)]
    edges = np.diff(np.concatenate(([False], _B64_CLASS[a], [False])).view(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = ends - starts >= _B64_MIN
    return list(zip(starts[keep].tolist(), ends[keep].tolist()))


def may_have_phone(text: str) -> bool:
    """False only when no phone pattern can match: each needs `ddd[ .-]ddd` or `+` and ten
    digits."""
    a = _ascii_bytes(text, _PHONE_SCAN_MIN)
    if a is None:
        return _PHONE_HINT.search(text) is not None
    dig = _DIGIT[a]
    d3 = dig[:-2] & dig[1:-1] & dig[2:]
    if (d3[:-4] & _SEP[a][3:-3] & d3[4:]).any():
        return True
    plus = np.flatnonzero(a == ord("+"))
    if not len(plus):
        return False
    counts = np.concatenate(([0], np.cumsum(dig)))  # digits before each position
    plus = plus[plus + 10 < len(a)]
    return bool((counts[plus + 11] - counts[plus + 1] == 10).any())


class KeywordSet:
    """`present(text)` is exactly `{k for k in keywords if k in text}`, in one Aho-Corasick pass
    over the text (pyahocorasick's automaton, in C)."""

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords = sorted(set(keywords))
        self._empty = {k for k in self.keywords if not k}  # in every text
        self._automaton: ahocorasick.Automaton | None = None
        if len(self.keywords) > len(self._empty):
            self._automaton = ahocorasick.Automaton()
            for k in self.keywords:
                if k:
                    self._automaton.add_word(k, k)
            self._automaton.make_automaton()

    def present(self, text: str) -> set[str]:
        found = {k for _, k in self._automaton.iter(text)} if self._automaton else set()
        return found | self._empty if self._empty else found
