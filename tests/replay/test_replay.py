"""Replay against serve-sim in-process: cache reuse as planned, closed/open-loop timing,
shared prefixes across sessions, the chat endpoint, and servers that are down, slow or failing."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from aiohttp import web

from tracetap.replay.plan import Plan, load_plan, plan_from_rows
from tracetap.replay.prompts import PromptBuilder
from tracetap.replay.runner import ReplayConfig, ReplayError, preflight, run_replay
from tracetap.replay.server import SimConfig

from .simserver import free_port, serve, sim
from .traces import row, session_rows

BS = 16
FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def _two_sessions() -> Plan:
    rows = session_rows(
        "a", 0.0, [(0, 100, 20), (110, 30, 10), (150, 40, 5)], gap=2.0
    ) + session_rows("b", 1.0, [(0, 64, 8), (60, 50, 4)], gap=1.0)
    return plan_from_rows(rows)


def _floor(n: int) -> int:
    return n // BS * BS


def test_closed_loop_cache_matches_plan_and_waits_are_kept() -> None:
    plan = _two_sessions()
    sink = io.StringIO()

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS, decode_per_token=0.001)) as (url, server):
            cfg = ReplayConfig(base_url=url, model="m", speedup=20.0)
            return await run_replay(plan, cfg, sink=sink), server

    (results, summary), server = _run(go())
    assert summary["rounds_ok"] == 5 and summary["errors"] == 0 and summary["aborted"] is None
    for r in results:
        assert r.server_cached_tokens == _floor(r.reusable_prefix)
        assert r.server_prompt_tokens == r.prompt_tokens
        assert r.output_tokens == r.planned_output
    a = sorted((r for r in results if r.session_id == "a"), key=lambda r: r.round_index)
    # Prefixes 110 and 150 reach into the previous round's output, which the server cached.
    assert [r.reusable_prefix for r in a] == [0, 110, 150]
    # Closed loop: round i+1 leaves the recorded gap (2 s / 20) after round i's response ends.
    for prev, nxt in zip(a, a[1:]):
        end = prev.sent + prev.e2e_ms / 1000
        assert nxt.sent - end == pytest.approx(0.1, abs=0.02)
    b0 = next(r for r in results if r.session_id == "b" and r.round_index == 0)
    assert b0.scheduled == pytest.approx(0.05, abs=1e-6)
    assert all(0 <= r.lateness_ms < 20 for r in results)  # never early
    lines = [json.loads(x) for x in sink.getvalue().splitlines()]
    assert len(lines) == 5 and {"ttft_ms", "tpot_ms", "lateness_ms"} <= set(lines[0])
    assert summary["server_cached_tokens"] == sum(_floor(r.reusable_prefix) for r in results)
    assert server.requests == 5


def test_wait_scaling_and_cap() -> None:
    rows = [
        row("s", 0, at=0, end=1, prefix=0, append=32, output=2, tools=[(4000, None)]),
        row("s", 1, at=11, end=12, prefix=34, append=5, output=2),
    ]
    plan = plan_from_rows(rows)  # gap 10 s: 4 s tool + 6 s human

    async def gap(**kw):  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            res, _ = await run_replay(
                plan, ReplayConfig(base_url=url, model="m", speedup=100.0, **kw)
            )
        r0, r1 = sorted(res, key=lambda r: r.round_index)
        return r1.sent - (r0.sent + r0.e2e_ms / 1000)

    assert _run(gap()) == pytest.approx(0.10, abs=0.015)
    assert _run(gap(human_wait_scale=0.0)) == pytest.approx(0.04, abs=0.015)
    assert _run(gap(tool_wait_scale=0.0, human_wait_scale=0.5)) == pytest.approx(0.03, abs=0.015)
    assert _run(gap(max_wait=2.0)) == pytest.approx(0.02, abs=0.015)


def test_open_loop_sends_at_recorded_times_regardless_of_responses() -> None:
    plan = _two_sessions()

    async def go():  # type: ignore[no-untyped-def]
        # Each response takes ~0.2 s, longer than some recorded spacings.
        async with sim(SimConfig(block_size=BS, decode_per_token=0.01)) as (url, _):
            return await run_replay(
                plan, ReplayConfig(base_url=url, model="m", speedup=10.0, open_loop=True)
            )

    results, summary = _run(go())
    assert summary["rounds_ok"] == 5 and summary["mode"] == "open-loop"
    first = min(r.sent for r in results)
    for r in results:
        at = next(
            x.at
            for s in plan.sessions
            if s.session_id == r.session_id
            for x in s.rounds
            if x.index == r.round_index
        )
        assert r.sent - first == pytest.approx(at / 10.0, abs=0.02)


def test_sessions_sharing_a_prefix_share_it_on_the_server() -> None:
    shared = ["sys1", "sys2", "sys3"]
    rows = [
        row("a", 0, at=0, end=0.1, prefix=0, append=60, output=2, hashes=shared + ["a4"]),
        row("b", 0, at=0.5, end=0.6, prefix=48, append=20, output=2, hashes=shared + ["b4", "b5"]),
        row("c", 0, at=1.0, end=1.1, prefix=0, append=40, output=2, hashes=["c1", "c2"]),
    ]
    plan = plan_from_rows(rows)

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            return await run_replay(plan, ReplayConfig(base_url=url, model="m", speedup=10.0))

    results, _ = _run(go())
    got = {r.session_id: (r.reusable_prefix, r.server_cached_tokens) for r in results}
    assert got == {"a": (0, 0), "b": (48, 48), "c": (0, 0)}


def test_fixture_replay_matches_planned_reuse() -> None:
    plan = load_plan(str(FIXTURE))
    for s in plan.sessions:  # the two sessions are 72 days apart: start both at once
        t0 = s.start
        for r in s.rounds:
            r.at -= t0

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            cfg = ReplayConfig(base_url=url, model="m", speedup=1000.0, max_wait=10.0)
            return await run_replay(plan, cfg)

    results, summary = _run(go())
    assert summary["rounds_ok"] == 19
    for r in results:
        assert r.reusable_prefix - BS < r.server_cached_tokens <= r.reusable_prefix
    assert summary["server_hit_rate"] == pytest.approx(summary["reusable_hit_rate"], abs=0.01)
    assert summary["planned_hit_rate"] > 0.5


def test_chat_endpoint_with_word_text() -> None:
    plan = _two_sessions()

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            cfg = ReplayConfig(base_url=url, model="m", speedup=20.0, endpoint="chat")
            return await run_replay(plan, cfg)

    results, summary = _run(go())
    assert summary["rounds_ok"] == 5
    for r in results:
        assert r.server_prompt_tokens == r.prompt_tokens
        assert r.server_cached_tokens == _floor(r.reusable_prefix)


def test_preflight_reports_cache_and_warns_without_it() -> None:
    async def no_details(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(
            b'data: {"choices":[{"text":"x"}]}\n\ndata: {"choices":[],'
            b'"usage":{"prompt_tokens":5,"completion_tokens":1}}\n\n'
            b"data: [DONE]\n\n"
        )
        return resp

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            good = await preflight(ReplayConfig(base_url=url, model="m"))
        app = web.Application()
        app.router.add_post("/v1/completions", no_details)
        async with serve(app) as url:
            bad = await preflight(ReplayConfig(base_url=url, model="m"))
        return good, bad

    good, bad = _run(go())
    assert good["warning"] is None and good["cached_tokens"] == 1024
    assert bad["cached_tokens"] is None and "prefix caching" in bad["warning"]


def test_server_down_is_reported_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ReplayError, match="cannot reach the server"):
        _run(preflight(ReplayConfig(base_url=url, model="m")))
    sink = io.StringIO()
    results, summary = _run(
        run_replay(_two_sessions(), ReplayConfig(base_url=url, model="m", speedup=50.0), sink=sink)
    )
    assert summary["rounds_ok"] == 0 and summary["errors"] == 5
    assert all(r.error.startswith("connection failed") for r in results)
    assert len(sink.getvalue().splitlines()) == 5


def test_errors_stop_the_run_and_keep_results() -> None:
    calls = {"n": 0}
    inner = None

    async def flaky(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] > 2:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return await inner.handle(request, chat=False)

    async def go():  # type: ignore[no-untyped-def]
        nonlocal inner
        from tracetap.replay.server import SimServer

        inner = SimServer(SimConfig(block_size=BS))
        app = web.Application()
        app.router.add_post("/v1/completions", flaky)
        rows = session_rows("s", 0.0, [(0, 32, 2)] + [(34, 4, 2)] * 9, gap=0.1)
        async with serve(app) as url:
            cfg = ReplayConfig(base_url=url, model="m", speedup=10.0, max_errors=3)
            return await run_replay(plan_from_rows(rows), cfg)

    results, summary = _run(go())
    assert summary["rounds_ok"] == 2 and summary["errors"] == 3
    assert summary["aborted"].startswith("stopped after 3 failed requests")
    assert "HTTP 503" in results[-1].error and "overloaded" in results[-1].error
    assert summary["rounds_sent"] == 5 < summary["rounds_planned"] == 10


def test_slow_server_times_out_per_request() -> None:
    plan = plan_from_rows([row("s", 0, at=0, end=1, prefix=0, append=32, output=50)])

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS, decode_per_token=0.05)) as (url, _):
            return await run_replay(
                plan, ReplayConfig(base_url=url, model="m", request_timeout=0.3)
            )

    results, summary = _run(go())
    assert summary["errors"] == 1 and results[0].error.startswith("timeout after 0.3 s")
    assert results[0].ttft_ms is not None  # what arrived before the timeout is kept


def test_goodput_counts_rounds_within_slos() -> None:
    plan = _two_sessions()

    async def go(slo_ttft):  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS, prefill_per_token=0.0005)) as (url, _):
            cfg = ReplayConfig(base_url=url, model="m", speedup=50.0, slo_ttft=slo_ttft)
            return await run_replay(plan, cfg, builder=PromptBuilder(seed=1))

    results, summary = _run(go(0.03))
    # Uncached tokens x 0.5 ms: under 60 uncached tokens meets a 30 ms TTFT SLO.
    expected = sum(1 for r in results if r.ttft_ms <= 30)
    assert summary["goodput"]["requests_meeting_slo"] == expected
    assert 0 < expected < 5
    assert {r.prompt_tokens - r.server_cached_tokens < 50 for r in results if r.ttft_ms <= 30} == {
        True
    }


def test_max_active_sessions_caps_concurrency() -> None:
    rows = [r for name in "abc" for r in session_rows(name, 0.0, [(0, 32, 4), (36, 8, 4)], gap=0.5)]
    plan = plan_from_rows(rows)

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS, decode_per_token=0.005)) as (url, _):
            cfg = ReplayConfig(base_url=url, model="m", speedup=10.0, max_active_sessions=1)
            return await run_replay(plan, cfg)

    results, summary = _run(go())
    assert summary["rounds_ok"] == 6
    spans = {}
    for r in results:
        lo, hi = spans.get(r.session_id, (r.sent, r.sent + r.e2e_ms / 1000))
        spans[r.session_id] = (min(lo, r.sent), max(hi, r.sent + r.e2e_ms / 1000))
    ordered = sorted(spans.values())
    assert all(a[1] <= b[0] + 1e-3 for a, b in zip(ordered, ordered[1:]))  # one at a time


def test_mooncake_trace_shares_hash_prefixes_on_the_server(tmp_path: Path) -> None:
    path = tmp_path / "mooncake.jsonl"
    lines = [
        {"timestamp": 0, "input_length": 64, "output_length": 2, "hash_ids": [0, 1]},
        {"timestamp": 100, "input_length": 80, "output_length": 2, "hash_ids": [0, 1, 2]},
        {"timestamp": 200, "input_length": 40, "output_length": 2, "hash_ids": [3, 4]},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    plan = load_plan(str(path), block_size=32)

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            return await run_replay(plan, ReplayConfig(base_url=url, model="m", open_loop=True))

    results, _ = _run(go())
    cached = [r.server_cached_tokens for r in sorted(results, key=lambda r: r.scheduled)]
    assert cached == [0, 64, 0]


def test_chat_with_a_local_hf_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from tracetap.replay.prompts import load_tokenizer

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(800)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    hf = load_tokenizer(f"hf:{tmp_path / 'tokenizer.json'}")
    plan = _two_sessions()

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=BS)) as (url, _):
            cfg = ReplayConfig(base_url=url, model="m", speedup=20.0, endpoint="chat")
            return await run_replay(plan, cfg, tokenizer=hf)

    results, summary = _run(go())
    assert summary["rounds_ok"] == 5
    for r in results:
        assert r.server_prompt_tokens == r.prompt_tokens
        assert r.server_cached_tokens == _floor(r.reusable_prefix)


def test_store_input_plans_like_its_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tracetap.cli import app

    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(app, ["import", "tracelab", str(FIXTURE), "--db", url])
    assert result.exit_code == 0, result.output
    store, rows = load_plan(url), load_plan(str(FIXTURE))
    assert store.source == "store" and store.n_rounds == rows.n_rounds == 19
    for a, b in zip(store.sessions, rows.sessions):
        assert [(r.prefix_len, r.append_len, r.output_len) for r in a.rounds] == [
            (r.prefix_len, r.append_len, r.output_len) for r in b.rounds
        ]
        assert [r.tool_wait + r.human_wait for r in a.rounds] == pytest.approx(
            [r.tool_wait + r.human_wait for r in b.rounds], abs=0.002
        )
