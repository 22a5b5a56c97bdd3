"""Cheap tests that let the detector skip regex scans that cannot match: keyword presence, base64
runs and phone-like digit groups, each one numpy pass over the text's bytes instead of a scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

__all__ = ["KeywordSet", "b64_runs", "may_have_phone"]

# Below these lengths the plain scans beat numpy's fixed costs (measured on code-like text).
_KEYWORDS_MIN, _B64_SCAN_MIN, _PHONE_SCAN_MIN = 96, 1500, 400
_TRI_BITS = 16


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


def _tri(a: np.ndarray) -> np.ndarray:
    """Hashed trigram codes of a byte array (collisions only let extra keywords through)."""
    return ((a[:-2] << 10) ^ (a[1:-1] << 5) ^ a[2:]) & ((1 << _TRI_BITS) - 1)


def _bi(a: np.ndarray) -> np.ndarray:
    return (a[:-1] << 8) | a[1:]


class KeywordSet:
    """`present(text)` is exactly `{k for k in keywords if k in text}`, computed faster.

    A keyword occurs only where each of its UTF-8 trigrams (bigrams for two-byte keywords)
    occurs; candidates passing that test are confirmed with a substring test.
    """

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords = sorted(set(keywords))
        self._short = [k for k in self.keywords if len(k.encode("utf-8", "surrogatepass")) < 2]
        tri, bi = [], []
        for k in self.keywords:
            data = np.frombuffer(k.encode("utf-8", "surrogatepass"), np.uint8).astype(np.int64)
            if len(data) >= 3:
                tri.append((k, _tri(data)))
            elif len(data) == 2:
                bi.append((k, _bi(data)))
        self._tri_words = [k for k, _ in tri]
        self._tri_codes = np.concatenate([c for _, c in tri]) if tri else np.zeros(0, np.int64)
        self._tri_starts = np.cumsum([0] + [len(c) for _, c in tri[:-1]])
        self._bi_words = [k for k, _ in bi]
        self._bi_codes = np.concatenate([c for _, c in bi]) if bi else np.zeros(0, np.int64)

    def present(self, text: str) -> set[str]:
        if len(text) < _KEYWORDS_MIN:
            return {k for k in self.keywords if k in text}
        a = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8).astype(np.int64)
        seen_tri = np.zeros(1 << _TRI_BITS, bool)
        seen_tri[_tri(a)] = True
        seen_bi = np.zeros(1 << 16, bool)
        seen_bi[_bi(a)] = True
        found = {k for k in self._short if k in text}
        if self._tri_words:
            ok = np.logical_and.reduceat(seen_tri[self._tri_codes], self._tri_starts)
            found.update(k for k in (self._tri_words[i] for i in np.flatnonzero(ok))
                         if k in text)
        if self._bi_words:
            found.update(k for k in (self._bi_words[i] for i in
                                     np.flatnonzero(seen_bi[self._bi_codes])) if k in text)
        return found
