"""mooncake: ms timestamps from the first request, hash ids that reproduce shared prefixes."""

from __future__ import annotations

import io
import itertools
import json
import math

import pytest

from tests.exporters.handmade import FIXTURE, row, two_sessions
from tracetap.exporters import mooncake


def _trace(rows: list[dict], **kw: object) -> list[dict]:
    buf = io.StringIO()
    n = mooncake.export(rows, buf, **kw)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert n == len(lines)
    for rec in lines:
        assert set(rec) == {"timestamp", "input_length", "output_length", "hash_ids"}
        assert len(rec["hash_ids"]) == math.ceil(rec["input_length"] / kw.get("block_size", 512))
    return lines


def test_synthesized_ids_follow_each_sessions_prefix() -> None:
    lines = _trace(two_sessions(), block_size=100)
    # time order: s1r0 (0 s), s1r1 (1.5 s), s2r0 (2.5 s), s2r1 (5 s), s1r2 (10 s)
    assert [r["timestamp"] for r in lines] == [0, 1500, 2500, 5000, 10000]
    assert [(r["input_length"], r["output_length"]) for r in lines] == [
        (1000, 100),
        (1300, 50),
        (600, 10),
        (700, 10),
        (1400, 20),
    ]
    assert [r["hash_ids"] for r in lines] == [
        list(range(10)),
        list(range(10)) + [10, 11, 12],
        list(range(13, 19)),
        list(range(13, 19)) + [19],
        list(range(13)) + [20],
    ]


def test_a_trailing_partial_block_is_not_reused() -> None:
    rows = [
        row("s1", 0, at=0, end=1, total=1050, prefix=0, output=5, user=True),
        row("s1", 1, at=2, end=3, total=1100, prefix=1050, output=5),
    ]
    a, b = _trace(rows, block_size=100)
    assert a["hash_ids"] == list(range(11))
    assert b["hash_ids"] == list(range(10)) + [11]


def test_recorded_block_hashes_are_rechunked_and_shared_across_sessions() -> None:
    h = [f"{i:02x}" * 8 for i in range(8)]
    g = [f"f{i}" * 8 for i in range(6)]
    a = row(
        "s1",
        0,
        at=0,
        end=1,
        total=520,
        prefix=0,
        output=5,
        user=True,
        tt_block_hashes=h,
        tt_block_size=64,
    )
    b = row(
        "s2",
        0,
        at=1,
        end=2,
        total=384,
        prefix=256,
        output=5,
        user=True,
        tt_block_hashes=h[:4] + g[4:6],
        tt_block_size=64,
    )
    first, second = _trace([a, b], block_size=128)
    assert first["hash_ids"] == [0, 1, 2, 3, 4]  # 4 full 128-token blocks + partial
    assert second["hash_ids"] == [0, 1, 5]  # shares the first 256 tokens only
    with pytest.raises(ValueError, match="multiple"):
        _trace([a], block_size=96)


def test_fixture_default_block_size() -> None:
    from tracetap.tracelab import read_rows

    lines = _trace(list(read_rows(FIXTURE)))
    assert len(lines) == 19
    assert lines[0]["timestamp"] == 0
    assert all(a["timestamp"] <= b["timestamp"] for a, b in itertools.pairwise(lines))
    ids = [i for rec in lines for i in rec["hash_ids"]]
    assert min(ids) == 0 and max(ids) == len(set(ids)) - 1  # renumbered densely from 0


def test_each_hash_id_names_one_block_size() -> None:
    """AIPerf and SGLang rebuild one fixed-size block per hash id, so an id used for a
    trailing partial block must never appear anywhere else."""
    from tracetap.tracelab import read_rows

    rows = list(read_rows(FIXTURE)) + two_sessions()
    for block in (64, 512, 1024):
        sizes: dict[int, set[int]] = {}
        for rec in _trace(rows, block_size=block):
            n = len(rec["hash_ids"])
            for i, hid in enumerate(rec["hash_ids"]):
                size = rec["input_length"] - (n - 1) * block if i == n - 1 else block
                sizes.setdefault(hid, set()).add(size)
        assert all(len(s) == 1 for s in sizes.values())


def test_hash_chain_longer_or_shorter_than_the_reported_input() -> None:
    h = [f"{i:02x}" * 8 for i in range(8)]
    longer = row(
        "s1",
        0,
        at=0,
        end=1,
        total=300,
        prefix=0,
        output=5,
        user=True,
        tt_block_hashes=h,
        tt_block_size=64,
    )  # chain covers 512 tokens
    shorter = row(
        "s2",
        0,
        at=1,
        end=2,
        total=700,
        prefix=0,
        output=5,
        user=True,
        tt_block_hashes=h[:4],
        tt_block_size=64,
    )  # chain covers 256 tokens
    a, b = _trace([longer, shorter], block_size=128)
    assert a["hash_ids"] == [0, 1, 2]  # 2 full blocks + 44-token tail
    assert b["hash_ids"] == [0, 1, 3, 4, 5, 6]  # 2 shared, 3 uncovered, 1 partial
