"""A team database that cannot be reached when the proxy starts: the proxy starts anyway with a
one-line warning, records into the journal, and writes everything once the server is back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anthropic
import pytest
import sqlalchemy as sa

from tests.support.postgres import PostgresServer
from tests.support.proxy import start_proxy
from tests.support.scripted import ScriptedUpstream
from tracetap.storage import models as m
from tracetap.storage.db import make_engine

TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]


def _ask(url: str, i: int) -> str:
    client = anthropic.Anthropic(base_url=url, api_key="sk-ant-api03-down", max_retries=0)
    return client.messages.create(
        model="claude-down",
        max_tokens=20,
        tools=TOOLS,
        messages=[{"role": "user", "content": f"task {i}"}],
        extra_headers={"X-Claude-Code-Session-Id": f"down-{i}"},
    ).id


@pytest.mark.slow
def test_postgresql_down_at_start_then_back(
    tmp_path: Path, scripted_upstream: ScriptedUpstream, mitm_confdir: Path
) -> None:
    server = PostgresServer()
    try:
        server.stop()
        proxy = start_proxy(
            tmp_path,
            confdir=mitm_confdir,
            anthropic_upstream=scripted_upstream.url,
            db_url=server.url,
        )
        ids = [_ask(proxy.anthropic_url, i) for i in range(4)]  # recorded while it is down
        server.start()
        engine = make_engine(server.url)
        deadline = time.monotonic() + 60
        stored: set[str] = set()
        while time.monotonic() < deadline and stored != set(ids):
            time.sleep(0.5)
            try:
                with engine.connect() as conn:
                    stored = set(conn.execute(sa.select(m.Round.response_id)).scalars())
            except sa.exc.SQLAlchemyError:
                pass  # the schema is not there yet
        ids.append(_ask(proxy.anthropic_url, 4))
        proxy.stop(signal.SIGTERM)
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(m.Round.response_id)).scalars())
        engine.dispose()
        assert stored == set(ids)
        log = proxy.log.read_text()
        warnings = [line for line in log.splitlines() if "cannot be reached" in line]
        assert len(warnings) == 1, log  # one line, not a traceback through tracetap's code
        assert not [line for line in log.splitlines() if "/tracetap/" in line], log
    finally:
        server.close()
