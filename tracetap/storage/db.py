"""Engines, the default database location, and schema checks/migrations (Alembic).

SQLite runs in WAL mode; an empty database is created at the current schema on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from platformdirs import user_data_dir
from sqlalchemy.engine import Engine

from tracetap.content import json_text
from tracetap.storage.models import SCHEMA_VERSION

__all__ = ["SchemaError", "check_schema", "default_url", "ensure_schema", "make_engine", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The database holds a schema this version of tracetap does not know."""


def default_url() -> str:
    """TRACETAP_DB, else a SQLite file under the user's data directory."""
    env = os.environ.get("TRACETAP_DB")
    if env:
        return env
    return f"sqlite:///{Path(user_data_dir('tracetap')) / 'tracetap.db'}"


def _sqlite_pragmas(busy_ms: int):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.close()

    return on_connect


def make_engine(url: str, *, sqlite_busy_ms: int = 30_000, **kwargs) -> Engine:  # type: ignore[no-untyped-def]
    """An engine for `url`; SQLite gets WAL mode, a busy timeout and its parent directory.
    JSON columns are written as compact JSON by orjson."""
    u = sa.engine.make_url(url)
    kwargs.setdefault("json_serializer", json_text)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas(sqlite_busy_ms))
        return engine
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("", "psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(u, **kwargs)


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    # Alembic's config interpolates '%': escape it (URL-encoded passwords, ?host=%2F...)
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on this engine's database."""
    cfg = _config(engine)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # one migration at a time across processes
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7274273880)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check_schema(engine: Engine) -> str:
    """'current', 'empty' (no tables yet), or raise SchemaError with what to run."""
    rev = current_revision(engine)
    if rev == SCHEMA_VERSION:
        return "current"
    if rev is None:
        if sa.inspect(engine).has_table("rounds"):
            raise SchemaError(
                "the database has tracetap tables but no migration record; "
                "it was not created by tracetap's migrations"
            )
        return "empty"
    known = {s.revision for s in ScriptDirectory.from_config(_config(engine)).walk_revisions()}
    url = engine.url.render_as_string(hide_password=True)
    if rev in known:
        raise SchemaError(
            f"the database schema is at {rev}, this tracetap needs "
            f"{SCHEMA_VERSION}: run `tracetap db upgrade --db {url}`"
        )
    raise SchemaError(
        f"the database schema revision {rev!r} is unknown to this tracetap "
        f"(newer version?); upgrade tracetap or use another database"
    )


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse a schema this code does not know."""
    if check_schema(engine) == "empty":
        upgrade(engine)
