"""The detector's prefilters (keywords, base64 runs, phone hints) change its speed, never its
findings: each equals its plain scan, and findings equal those with the prefilters off."""

from __future__ import annotations

import base64
import random
import re

import pytest

from tests.data.corpus import corpus
from tracetap.privacy import detect
from tracetap.privacy.detect import Detector
from tracetap.privacy.prefilter import KeywordSet, b64_runs, may_have_phone

PIECES = [
    "+1 555 123 4567",
    "(555) 123-4567",
    "+441234567890",
    "555.123.4567",
    "12 345 6789",
    "١٢٣ ٤٥٦ ٧٨٩٠",
    "+12345678901234",
    "123-456",
    "v1.2.3",
    "192.168.1.20",
    "fe80::1:2:3:4",
    "john.doe@corp.example.net",
    "/home/alice/x",
    "C:\\Users\\bob\\",
    "db.corp.internal",
    "%2Fhome%2Fcarol",
    "password=Sup3r$ecret!",
    "token: abcdefghijklmnopqrstuvwxyz012345",
    "ghp_" + "a1B2" * 9,
    "AKIA" + "B7" * 8,
    "=",
    "==",
    "_",
    "-",
    "+",
    "/",
    " ",
    "\n",
    "é",
    "日本",
]


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    items = [item.text for item in corpus()]
    alpha = "abcXYZ0123456789+/_-=. :()\n"
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.25:
                parts.append(rng.choice(PIECES))
            elif r < 0.35:
                parts.append(rng.choice(items))
            elif r < 0.5:
                raw = rng.choice(
                    [
                        b"password=hunter2hunter2hunter2",
                        rng.randbytes(40),
                        b"mail me at someone@corp.example.com please",
                    ]
                )
                enc = rng.choice([base64.b64encode, base64.urlsafe_b64encode])(raw).decode()
                parts.append(enc.rstrip("=") if rng.random() < 0.3 else enc)
            else:
                parts.append("".join(rng.choice(alpha) for _ in range(rng.randint(1, 50))))
        text = "".join(parts)
        out.append(text * rng.randint(1, 6) if rng.random() < 0.4 else text)
    return out


TEXTS = _texts(11, 600)


def test_keyword_set_equals_substring_tests() -> None:
    det = Detector()
    words = det._keywords.keywords
    ks = KeywordSet(words + ["é", "日本語", "ab", "keykey", ""])
    for text in TEXTS + ["", "a\ud800key", "keykeykey", "日本語 é"]:
        low = text.lower()
        assert ks.present(low) == {k for k in ks.keywords if k in low}
    assert KeywordSet([]).present("anything") == set()


def test_b64_runs_and_phone_hints_equal_their_scans() -> None:
    runs = re.compile(r"[A-Za-z0-9+/_\-]{24,}")
    hint = re.compile(r"\d{3}[ .\-]\d{3}|\+\d{10}")
    edges = [
        "",
        "a" * 23,
        "a" * 24,
        " " + "a" * 24,
        "a" * 24 + " ",
        "é" + "a" * 30 + " b",
        "a" * 23 + " " + "b" * 25 + "=" + "c" * 24,
        "123 456",
        "123.45",
        "12 3456",
        "+1234567890",
        "+123456789",
        "x+12345678901",
        "١٢٣ ٤٥٦",
        "123-456é",
    ]
    for text in TEXTS + edges:
        assert b64_runs(text) == [m.span() for m in runs.finditer(text)]
        assert may_have_phone(text) == (hint.search(text) is not None)


def test_findings_equal_those_without_prefilters(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = Detector()
    expected = [fast.find(t) for t in TEXTS]
    assert sum(f.kind == "phone" for fs in expected for f in fs) > 20
    assert sum(f.label.startswith("base64:") for fs in expected for f in fs) > 20
    slow = Detector()
    monkeypatch.setattr(
        slow._keywords, "present", lambda low: {k for k in slow._keywords.keywords if k in low}
    )
    monkeypatch.setattr(detect, "b64_runs", lambda text: [(0, len(text))])
    monkeypatch.setattr(detect, "may_have_phone", lambda text: True)
    assert [slow.find(t) for t in TEXTS] == expected
