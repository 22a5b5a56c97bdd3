"""A store for the UI tests: a tokenized Claude Code session, one whose round 3 re-sends history
with an earlier message edited, and the TraceLab fixture's Claude and Codex sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.storage.rounds import claude_session
from tracetap.importers.tracelab import import_tracelab
from tracetap.ingest.steps import build_transforms
from tracetap.model import Round
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tracelab_sample.jsonl"
REWRITTEN = "the edited tool output that breaks the prefix"
REWRITE_ROUND = 3  # this round re-sends message 2 edited
REWRITE_INDEX = 2


def enrich(
    rounds: list[Round], key_file: Path, content: str = "redacted"
) -> tuple[list[Round], list[Any]]:
    """The rounds through the proxy's steps (tokenizer, then the content level)."""
    transforms, extensions = build_transforms(content, str(key_file), "default")
    out = []
    for rnd in rounds:
        for step in transforms:
            rnd = step(rnd)
        out.append(rnd)
    return out, extensions


def rewritten_session(session: str = "rewrite-1", t0: float = 1_780_100_000.0) -> list[Round]:
    """Five rounds; round REWRITE_ROUND re-sends the history with message REWRITE_INDEX (a tool
    result) edited, the rounds after it continue from the edited history."""
    rounds = claude_session(5, session=session, t0=t0)
    for rnd in rounds[REWRITE_ROUND:]:
        old = rnd.messages[REWRITE_INDEX]
        block = dict(old["content"][0], content=REWRITTEN)
        rnd.messages[REWRITE_INDEX] = dict(old, content=[block])
    return rounds


def write(url: str, rounds: list[Round], key_file: Path, content: str = "redacted") -> None:
    """Store `rounds` as the proxy would at that content level (enriched, then written)."""
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        enriched, extensions = enrich(rounds, key_file, content)
        Writer(engine, extensions).write(enriched)
    finally:
        engine.dispose()


def seed(path: Path) -> str:
    """A SQLite store at `path` with the sessions above; returns its URL."""
    url = f"sqlite:///{path}"
    key_file = path.with_name("pseudonym.key")
    write(url, claude_session(6, session="sess-ui-1", t0=1_780_000_000.0), key_file)
    write(url, rewritten_session(), key_file)
    import_tracelab(url, FIXTURE)
    return url
