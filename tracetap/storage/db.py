"""Engines, the default database location, and schema checks/migrations (Alembic).

SQLite runs in WAL mode; an empty database is created at the current schema on first use.
Stores stay private: a SQLite file tracetap creates is 0600 (SQLite gives its -wal and -shm files
the database's mode), tracetap's data directory is 0700, and a URL that is printed or logged goes
through `display_url` (or `hide_passwords`), so a database password never reaches a terminal.
"""

from __future__ import annotations

import errno
import os
import re
import stat
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

__all__ = [
    "SchemaError",
    "check_schema",
    "data_dir",
    "default_url",
    "display_url",
    "ensure_schema",
    "hide_passwords",
    "make_engine",
    "sqlite_path",
    "upgrade",
]

_MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The database holds a schema this version of tracetap does not know."""


def default_url() -> str:
    """TRACETAP_DB, else a SQLite file under the user's data directory."""
    env = os.environ.get("TRACETAP_DB")
    if env:
        return env
    return f"sqlite:///{Path(user_data_dir('tracetap')) / 'tracetap.db'}"


# scheme://user:password@ in free text; the password part may be empty or hold anything but '@'
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_HIDDEN = "***"


def display_url(url: str) -> str:
    """`url` as it may be printed or logged: the password of a database URL shown as ***.
    Text that is not a URL comes back unchanged, except that anything in it shaped like
    `scheme://user:password@` still has its password hidden.

    Example: display_url("postgresql://u:secret@db/x") -> "postgresql://u:***@db/x"
    """
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return _CREDENTIALS.sub(rf"\g<head>{_HIDDEN}@", url)


def hide_passwords(text: str, *urls: str) -> str:
    """`text` (an error message, say) with the password of each of `urls`, raw or URL-encoded,
    and of every `scheme://user:password@` in it replaced by ***."""
    from urllib.parse import quote, quote_plus

    for url in urls:
        try:
            password = sa.engine.make_url(url).password
        except (sa.exc.ArgumentError, ValueError, TypeError):
            continue
        if password:
            secret = str(password)
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, _HIDDEN)
    return _CREDENTIALS.sub(rf"\g<head>{_HIDDEN}@", text)


def _own_data_dir() -> Path:
    return Path(user_data_dir("tracetap")).expanduser().absolute()


def data_dir() -> Path:
    """tracetap's own data directory (the default store, journal and pseudonym key), created
    0700. One an older tracetap left readable by others is tightened to 0700, since what is in
    it is the user's recorded work."""
    path = _own_data_dir()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid():
        try:
            path.chmod(0o700)
        except OSError:  # a read-only file system: nothing is created there either
            pass
    return path


def _private_parent(path: Path) -> None:
    """Create the directory a SQLite file goes in: tracetap's data directory through
    `data_dir`, any other missing directory 0700 (an existing one is the user's to keep)."""
    parent = path.parent
    own = _own_data_dir()
    if parent.absolute() == own or own in parent.absolute().parents:
        data_dir()
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)


def _create_private(path: Path) -> None:
    """Create the empty database file 0600 before SQLite opens it: SQLite then creates its
    -wal and -shm files with the same mode, whatever the process's umask. An existing file is
    left as it is; where the file cannot be created, SQLite says so when it connects."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass


def _sqlite_pragmas(busy_ms: int, wal: bool):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        if wal:  # persistent in the file: a writer sets it, a reader leaves the file alone
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.close()

    return on_connect


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names; None for another database, an in-memory one or a URI.

    Example: sqlite_path("sqlite:///traces.db") -> Path("traces.db")
    """
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite" or u.query.get("uri"):
        return None
    if not u.database or u.database == ":memory:":
        return None
    return Path(u.database).expanduser()


def make_engine(  # type: ignore[no-untyped-def]
    url: str, *, sqlite_busy_ms: int = 30_000, create: bool = True, **kwargs
) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, a busy timeout, its parent directory (0700)
    and, when it does not exist yet, its file (0600). JSON columns are written as compact JSON
    by orjson. With create=False (a reader) nothing is created and the journal mode is left as
    the file has it: a missing SQLite file raises FileNotFoundError naming it."""
    u = sa.engine.make_url(url)
    kwargs.setdefault("json_serializer", json_text)
    if u.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None and not create and not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such SQLite store", str(path))
        if path is not None and create:
            _private_parent(path)
            _create_private(path)
        engine = sa.create_engine(u, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas(sqlite_busy_ms, wal=create))
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
