"""replay-csv: recorded arrivals and waits, or TraceLab's tool-only waits."""

from __future__ import annotations

import csv
import io

import pytest

from tests.exporters.handmade import two_sessions
from tracetap.exporters import replay_csv


def _csv(**kw: object) -> list[dict[str, str]]:
    buf = io.StringIO()
    n = replay_csv.export(two_sessions(), buf, **kw)
    assert n == 5
    lines = buf.getvalue().splitlines()
    assert lines[0] == ",".join(replay_csv.HEADER)
    return list(csv.DictReader(io.StringIO(buf.getvalue())))


def test_recorded_waits_and_arrivals() -> None:
    rows = _csv()
    got = [
        (
            r["session_id"],
            r["arrival_time"],
            r["round_idx"],
            r["prefix_len"],
            r["input_len"],
            r["output_len"],
            r["tool_wait_after_ms"],
        )
        for r in rows
    ]
    assert got == [
        # s1: end of round 0 at 1.0 s -> next request 1.5 s; 3.0 s -> 10.0 s; last round 0
        ("claude:s1", "0", "0", "0", "1000", "100", "500"),
        ("claude:s1", "0", "1", "1000", "300", "50", "7000"),
        ("claude:s1", "0", "2", "1300", "100", "20", "0"),
        # s2 starts 2.5 s after s1
        ("claude:s2", "2500", "0", "0", "600", "10", "1500"),
        ("claude:s2", "2500", "1", "600", "100", "10", "0"),
    ]


def test_tool_only_waits_sum_tool_latencies() -> None:
    waits = [int(r["tool_wait_after_ms"]) for r in _csv(waits="tool-only")]
    assert waits == [700 + 200, 1100, 0, 0, 0]  # unanswered Grep counts 0


def test_unknown_wait_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        replay_csv.export([], io.StringIO(), waits="poisson")
