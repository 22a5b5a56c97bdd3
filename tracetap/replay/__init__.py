"""Replay recorded agent workloads against OpenAI-compatible servers, and `serve-sim`, a
simulated server with a block prefix cache and a latency model to replay against.
"""

from __future__ import annotations

from tracetap.replay.plan import Plan, PlanRound, PlanSession, load_plan
from tracetap.replay.prompts import BuiltPrompt, PromptBuilder, load_tokenizer
from tracetap.replay.runner import (
    ReplayConfig,
    ReplayError,
    RoundResult,
    preflight,
    replay,
    run_replay,
)
from tracetap.replay.server import SimConfig, SimServer, make_app, serve_sim
from tracetap.replay.simcache import BlockCache, PrefixCache, block_hashes

__all__ = [
    "BlockCache",
    "BuiltPrompt",
    "Plan",
    "PlanRound",
    "PlanSession",
    "PrefixCache",
    "PromptBuilder",
    "ReplayConfig",
    "ReplayError",
    "RoundResult",
    "SimConfig",
    "SimServer",
    "block_hashes",
    "load_plan",
    "load_tokenizer",
    "make_app",
    "preflight",
    "replay",
    "run_replay",
    "serve_sim",
]
