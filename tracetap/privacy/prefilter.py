"""Cheap tests that let the detector skip regex scans that cannot match: keyword presence (one
Aho-Corasick pass, in Rust), base64 runs and phone-like digit groups (C byte scans over ASCII text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ahocorasick_rs

__all__ = ["KeywordSet", "b64_runs", "may_have_phone"]

_B64_MIN = 24
# Non-ASCII text (character offsets differ from byte offsets): the plain scans; the look-behind
# starts a match only where a run starts, not again at each of its characters.
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{24,}")
_PHONE_HINT = re.compile(r"\d{3}[ .\-]\d{3}|\+\d{10}")


def _classes(**groups: str) -> bytes:
    """A bytes.translate table: each byte of a group's characters becomes the group's name,
    every other byte " "."""
    table = bytearray(b" " * 256)
    for name, chars in groups.items():
        for ch in chars.encode():
            table[ch] = ord(name)
    return bytes(table)


_B64_TABLE = _classes(a="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_B64_NEEDLE = b"a" * _B64_MIN
_PHONE_TABLE = _classes(d="0123456789", s=" .-", p="+")
_PHONE_NEEDLES = (b"dddsddd", b"p" + b"d" * 10)  # \d{3}[ .-]\d{3} and \+\d{10}, as classes


def b64_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of base64/base64url characters at least 24 long."""
    if len(text) < _B64_MIN:
        return []
    if not text.isascii():
        return [m.span() for m in _B64_RUN.finditer(text)]
    classes = text.encode("ascii").translate(_B64_TABLE)
    out: list[tuple[int, int]] = []
    find = classes.find
    start = find(_B64_NEEDLE)
    while start >= 0:  # searching from a run's end (or 0), the first hit is a run's start
        end = find(b" ", start + _B64_MIN)
        if end < 0:
            end = len(classes)
        out.append((start, end))
        start = find(_B64_NEEDLE, end)
    return out


def may_have_phone(text: str) -> bool:
    """False only when no phone pattern can match: each needs `ddd[ .-]ddd` or `+` and ten
    digits."""
    if len(text) < 7:
        return False
    if not text.isascii():  # \d is any Unicode digit there
        return _PHONE_HINT.search(text) is not None
    classes = text.encode("ascii").translate(_PHONE_TABLE)
    return any(needle in classes for needle in _PHONE_NEEDLES)


class KeywordSet:
    """`present(text)` is exactly `{k for k in keywords if k in text}`, in one Aho-Corasick pass
    over the text (ahocorasick_rs: the Rust aho-corasick crate's DFA, overlapping matches)."""

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords = sorted(set(keywords))
        self._empty = {k for k in self.keywords if not k}  # in every text
        words = [k for k in self.keywords if k]
        self._automaton = (
            ahocorasick_rs.AhoCorasick(words, implementation=ahocorasick_rs.Implementation.DFA)
            if words
            else None
        )

    def present(self, text: str) -> set[str]:
        if self._automaton is None:
            found: set[str] = set()
        else:
            try:
                found = set(self._automaton.find_matches_as_strings(text, overlapping=True))
            except UnicodeEncodeError:  # lone surrogates have no UTF-8: the plain tests
                found = {k for k in self.keywords if k and k in text}
        return found | self._empty if self._empty else found
