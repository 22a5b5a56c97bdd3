"""The seam between the proxy and ingest: `IngestSink`, what the capture addon hands exchanges to,
and `open_sink`, which builds the one a recording proxy runs for its settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tracetap.content import digest
from tracetap.ingest.pipeline import Pipeline, PipelineStats, Transform, schema_checked
from tracetap.ingest.records import Captured
from tracetap.settings import Settings
from tracetap.storage.db import default_url, display_url, make_engine
from tracetap.storage.writer import WriterExtension

__all__ = ["IngestSink", "default_journal_dir", "open_sink", "resolved"]

log = logging.getLogger("tracetap.ingest")


class IngestSink(Protocol):
    """Takes captured exchanges and gets them into the store; `submit` is called on the proxy's
    event loop and returns at once (it queues, it never parses or writes)."""

    @property
    def stats(self) -> PipelineStats: ...

    @property
    def queue_depth(self) -> int:
        """Exchanges taken and not yet journaled."""
        ...

    @property
    def backlog_bytes(self) -> int:
        """Journaled bytes not yet in the database."""
        ...

    @property
    def alive(self) -> bool:
        """False when what is submitted is not being recorded."""
        ...

    @property
    def reason(self) -> str | None:
        """Why ingest is not healthy, if it is not (shown by /healthz)."""
        ...

    def start(self) -> None: ...

    def submit(self, item: Captured, kept: Callable[[], None] | None = None) -> None:
        """Take an exchange; `kept` is called (from another thread) once it is on disk."""
        ...

    def stop(self) -> None:
        """Journal and write everything submitted, then stop."""
        ...


def default_journal_dir(db_url: str) -> Path:
    """Beside a SQLite file; for servers, under the user data dir, one per database."""
    env = os.environ.get("TRACETAP_JOURNAL_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("tracetap")) / "journal" / digest(db_url.encode())[:12]


def resolved(settings: Settings) -> Settings:
    """The settings with the store's URL and the journal directory filled in."""
    url = settings.db or default_url()
    return settings.with_(db=url, journal_dir=str(settings.journal_dir or default_journal_dir(url)))


def open_sink(
    settings: Settings,
    *,
    transforms: Sequence[Transform] | None = None,
    extensions: Sequence[WriterExtension] | None = None,
) -> IngestSink:
    """The ingest for `settings`: its own process running the steps of the content level and
    tokenizer (what `tracetap proxy` runs), or, given `transforms` or `extensions`, a pipeline
    in this process running those. The schema is checked here, so a wrong store fails before
    anything is captured; a database server that cannot be reached is only warned about."""
    settings = resolved(settings)
    assert settings.db is not None and settings.journal_dir is not None
    engine = make_engine(settings.db)
    if not schema_checked(engine):
        log.warning(
            "the database %s cannot be reached; recording to the journal until it can",
            display_url(settings.db),
        )
    if transforms is None and extensions is None:
        from tracetap.ingest.process import IngestProcess

        return IngestProcess(settings)
    return Pipeline(
        engine, settings.journal_dir, transforms=transforms or (), extensions=extensions or ()
    )
