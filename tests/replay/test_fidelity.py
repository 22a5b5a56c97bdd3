"""Replay realizes the recorded reuse: against serve-sim with an unbounded cache, the prefix the
server serves from cache (and the part the replay knows it can serve) equals the planned prefix
on TraceLab-shaped traces (generated and the published sample rows)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tracetap.replay.plan import Plan, load_plan, plan_from_rows
from tracetap.replay.runner import ReplayConfig, run_replay
from tracetap.replay.server import SimConfig

from .simserver import sim
from .traces import row

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tracelab_sample.jsonl"
_spec = importlib.util.spec_from_file_location(
    "gen_tracelab", Path(__file__).resolve().parents[2] / "bench" / "gen_tracelab.py"
)
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


def _replay(plan: Plan, block_size: int = 16, **kw: Any) -> tuple[list[Any], dict[str, Any]]:
    """Closed loop with every recorded time compressed: waits capped at 1 s, then / 1e6."""

    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=block_size)) as (url, _):
            cfg = ReplayConfig(base_url=url, model="m", speedup=1e6, max_wait=1.0, **kw)
            return await run_replay(plan, cfg)

    return asyncio.run(go())


def _assert_realized(summary: dict[str, Any]) -> None:
    assert summary["errors"] == 0 and summary["rounds_ok"] == summary["rounds_planned"]
    planned = summary["planned_hit_rate"]
    assert summary["reusable_hit_rate"] == pytest.approx(planned, abs=0.01)
    assert summary["server_hit_rate"] == pytest.approx(planned, abs=0.01)
    # Nothing but each round's cached prefix floored to whole blocks separates them.
    assert summary["reusable_hit_rate"] == pytest.approx(planned, abs=0.002)
    assert summary["server_hit_rate"] == pytest.approx(planned, abs=0.002)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_trace_replay_realizes_planned_reuse(seed: int) -> None:
    plan = plan_from_rows(gen.generate(300, seed=seed, private=False))
    _, summary = _replay(plan, block_size=64)
    _assert_realized(summary)


def test_fixture_replay_realizes_planned_reuse() -> None:
    _, summary = _replay(load_plan(str(FIXTURE)))
    _assert_realized(summary)


def _first_round(session: str, at: float, prefix: int, append: int, provider: str) -> dict:
    r = row(session, 0, at=at, end=at + 0.1, prefix=prefix, append=append, output=4)
    r["provider"] = provider
    return r


def test_sessions_of_one_agent_share_the_recorded_system_prefix() -> None:
    # No block keys: only the rows' shape says a and b both read a 200-token prefix at start.
    rows = [
        _first_round("claude:a", 0.0, 200, 50, "claude"),
        _first_round("claude:b", 0.5, 200, 30, "claude"),
        _first_round("codex:c", 1.0, 100, 40, "codex"),
    ]
    results, _ = _replay(plan_from_rows(rows), warm_shared=False)
    got = {r.session_id: (r.reusable_prefix, r.server_cached_tokens) for r in results}
    # b reuses the blocks a's prompt put in the cache; c (another agent) shares nothing with them.
    assert got == {"claude:a": (0, 0), "claude:b": (200, 192), "codex:c": (0, 0)}


def test_shared_prefix_is_warmed_so_first_rounds_hit_as_recorded() -> None:
    rows = [
        _first_round("claude:a", 0.0, 200, 50, "claude"),
        _first_round("claude:b", 0.5, 300, 30, "claude"),
    ]
    results, summary = _replay(plan_from_rows(rows))
    got = {r.session_id: (r.reusable_prefix, r.server_cached_tokens) for r in results}
    assert got == {"claude:a": (200, 192), "claude:b": (300, 288)}
    assert summary["warmup"]["requests"] == 1 and summary["warmup"]["prompt_tokens"] == 300


def test_next_round_reuses_the_previous_output_as_served() -> None:
    # Round 1's recorded prefix covers round 0's prompt and its whole output.
    rows = [
        row("s", 0, at=0, end=0.1, prefix=0, append=40, output=24),
        row("s", 1, at=1, end=1.1, prefix=64, append=8, output=2),
    ]
    results, _ = _replay(plan_from_rows(rows))
    r1 = next(r for r in results if r.round_index == 1)
    assert (r1.reusable_prefix, r1.server_cached_tokens) == (64, 64)


def test_serve_sim_caches_a_completed_requests_output_blocks() -> None:
    async def go():  # type: ignore[no-untyped-def]
        async with sim(SimConfig(block_size=16)) as (url, _), aiohttp.ClientSession() as h:
            body = {"prompt": list(range(1, 41)), "max_tokens": 20, "return_token_ids": True}
            async with h.post(url + "/completions", json=body) as resp:
                first = await resp.json()
            out = first["choices"][0]["token_ids"]
            again = {"prompt": list(range(1, 41)) + out + [5] * 10, "max_tokens": 1}
            async with h.post(url + "/completions", json=again) as resp:
                second = await resp.json()
            return out, second

    out, second = asyncio.run(go())
    assert len(out) == 20
    # 40 prompt + 20 output tokens: 3 full blocks cached once the request completed.
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 48
