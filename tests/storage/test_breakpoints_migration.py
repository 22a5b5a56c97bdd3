"""0004: round_tokens gains `breakpoints`; a store at 0003 upgrades with its token rows intact."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.storage.rounds import claude_session
from tracetap.cli import app
from tracetap.storage import models as m
from tracetap.storage.db import check_schema, current_revision, make_engine, upgrade
from tracetap.storage.writer import Writer
from tracetap.tokens.store import TokenStore


def _tokens(prompt: int, breakpoints: list[int] | None) -> dict:
    t = {
        "tokenizer": "x",
        "block_size": 64,
        "prompt_tokens": prompt,
        "n_blocks": prompt // 64,
        "parent_uid": None,
        "shared_blocks": 0,
        "new_hashes": "00" * 8,
        "reuse_prev_tokens": 0,
        "reuse_any_blocks": 0,
        "reuse_any_uid": None,
        "segments": {"tools": 10},
    }
    if breakpoints is not None:
        t["breakpoints"] = breakpoints
    return t


def _token_rows_0003(engine: sa.Engine, pks: list[int]) -> None:
    """round_tokens rows as 0003's table holds them (no breakpoints column)."""
    with engine.begin() as conn:
        for pk in pks:
            conn.execute(
                sa.text(
                    "INSERT INTO round_tokens (round_pk, tokenizer, block_size, prompt_tokens,"
                    " n_blocks, shared_blocks, new_hashes, reuse_prev_tokens, reuse_any_blocks,"
                    " segments, info) VALUES (:pk, 'x', 64, 5000, 78, 0, :h, 0, 0, :j, :j)"
                ),
                {"pk": pk, "h": b"\0" * 8, "j": '{"tools": 1}'},
            )


def test_a_store_at_0003_upgrades_and_stores_breakpoints(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0003_quarantine")
    before = claude_session(2)
    Writer(engine).write(before)
    with Session(engine) as s:
        pks = list(s.scalars(sa.select(m.Round.id).order_by(m.Round.request_at)))
    _token_rows_0003(engine, pks)
    assert current_revision(engine) == "0003_quarantine"
    upgrade(engine)
    assert current_revision(engine) == m.SCHEMA_VERSION == "0004_breakpoints"
    assert check_schema(engine) == "current"
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), m.Base.metadata) == []
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    with Session(engine) as s:  # the older rows are kept, their breakpoints unknown
        old = list(s.scalars(sa.select(m.RoundTokens).order_by(m.RoundTokens.round_pk)))
        assert [(t.round_pk, t.prompt_tokens, t.breakpoints) for t in old] == [
            (pks[0], 5000, None),
            (pks[1], 5000, None),
        ]
    later = claude_session(2, session="later", t0=1_790_000_000.0)
    later[0].annotations["tokens"] = _tokens(3000, [1200, 2990])
    later[1].annotations["tokens"] = _tokens(3100, None)  # an enricher without breakpoints
    assert Writer(engine, [TokenStore()]).write(later) == 2
    with Session(engine) as s:
        rows = s.execute(
            sa.select(m.Round.uid, m.RoundTokens.breakpoints).join(
                m.RoundTokens, m.RoundTokens.round_pk == m.Round.id
            )
        ).all()
        got = {uid: bp for uid, bp in rows}
    assert got[later[0].uid] == [1200, 2990] and got[later[1].uid] is None


def test_db_upgrade_takes_a_0003_store_to_0004(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine, "0003_quarantine")
    Writer(engine).write(claude_session(2))
    engine.dispose()
    old = runner.invoke(app, ["db", "check", "--db", url])
    assert old.exit_code == 2 and "0003_quarantine" in old.output
    up = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert up.exit_code == 0 and "0003_quarantine -> 0004_breakpoints" in up.output
    assert runner.invoke(app, ["db", "check", "--db", url]).exit_code == 0
