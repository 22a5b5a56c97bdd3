"""A recorded-looking Claude Code session for comparing reused work with a from-scratch run.

History re-sent every round, a subagent interleaved, an edit mid-history, number types changing
(1 -> 1.0 -> true), a compaction, a tools change, a count_tokens call, a session without an id.
"""

from __future__ import annotations

import json
import random
from typing import Any

from tracetap.model import Exchange, StreamEvent

__all__ = ["SECRETS", "SECRET_VALUES", "scenario_exchanges"]

SECRETS = [
    "export GITHUB_TOKEN=ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6",
    "contact alice.smith@corp-mail.net or call +1 415 555 0123",
    "ssh deploy@10.20.30.40 -i /home/alice/.ssh/id_ed25519",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8tR3xLm2Pd7",
    "postgres://admin:S3cr3t!pass@db.corp.internal:5432/app",
]
SECRET_VALUES = [
    "ghp_Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6",
    "alice.smith@corp-mail.net",
    "10.20.30.40",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8tR3xLm2Pd7",
    "S3cr3t!pass",
]
WORDS = ["def", "return", "self", "import", "value", "path", "data", "error", "test", "assert"]


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    while sum(map(len, out)) < chars:
        out.append(" ".join(rng.choices(WORDS, k=rng.randint(2, 8))) + f" x{rng.randint(0, 999)}")
        if rng.random() < 0.08:
            out.append(rng.choice(SECRETS))
    return "\n".join(out)


def _tools(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"Tool{i}",
            "description": f"Does thing {i}. " * 20,
            "input_schema": {
                "type": "object",
                "properties": {"arg": {"type": "string"}},
                "required": ["arg"],
                "additionalProperties": False,
            },
        }
        for i in range(n)
    ]


def _events(i: int, call_id: str, text: str, tool_input: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{i}",
                    "model": "claude-sonnet-4-5",
                    "usage": {
                        "input_tokens": 10,
                        "cache_read_input_tokens": 100 * i,
                        "cache_creation_input_tokens": 5,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": call_id, "name": "Tool0", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps(tool_input)},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 40},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


class _Line:
    """One request line (main agent or subagent) of a session."""

    def __init__(
        self, rng: random.Random, system: str, tools: list[dict[str, Any]], first: str
    ) -> None:
        self.rng = rng
        self.system = system
        self.tools = tools
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": first}]

    def body(self, i: int, session: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "stream": True,
            "system": [
                {"type": "text", "text": f"x-anthropic-billing-header: cch={i:05x};"},
                {"type": "text", "text": self.system},
            ],
            "tools": self.tools,
            "messages": json.loads(json.dumps(self.messages)),
        }
        if session:
            body["metadata"] = {"user_id": json.dumps({"session_id": session})}
        return body

    def advance(self, i: int, text: str, call_id: str, tool_input: dict[str, Any]) -> None:
        self.messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "tool_use", "id": call_id, "name": "Tool0", "input": tool_input},
                ],
            }
        )
        self.messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call_id,
                        "content": _text(self.rng, self.rng.randint(200, 1500)),
                    }
                ],
            }
        )


_CLAUDE_ORDER = ("model", "messages", "system", "tools")  # tests/e2e/WIRE_NOTES.md


def scenario_exchanges(
    seed: int = 7,
    t0: float = 1_780_000_000.0,
    *,
    session_id: str = "sess-scn",
    uid_prefix: str = "scn",
    compact: bool = False,
    claude_order: bool = False,
) -> list[Exchange]:
    """`compact`: bodies as agents send them (JSON.stringify's form, which lets ingest take
    re-sent history from earlier rounds without parsing it); else json.dumps's default.
    `claude_order`: compact, with the fields in the order Claude Code sends them (messages
    before the system prompt, whose billing line changes every request; WIRE_NOTES.md)."""
    rng = random.Random(seed)
    main = _Line(
        rng,
        "You are Claude Code. " * 40 + "Primary working directory: /home/alice/app",
        _tools(4),
        "Fix the failing test in path/to/test_x.py please",
    )
    sub = _Line(rng, "You are a search subagent. " * 20, _tools(2), "Find where X is defined")
    anon = _Line(rng, "You are a helpful assistant. " * 10, _tools(1), "Summarize README.md")
    plan: list[tuple[_Line, str | None]] = []
    for i in range(22):
        line = sub if i in (5, 9, 12) else anon if i in (3, 7) else main
        plan.append((line, None if line is anon else session_id))
    out: list[Exchange] = []
    t = t0
    for i, (line, session) in enumerate(plan):
        if line is main and i == 8:  # an edit deep in the history: later elements differ too
            line.messages[4]["content"][0]["content"] += "\n(edited)"
        if line is main and i == 11:  # same values, other JSON types: 1 -> 1.0, then -> true
            line.messages[1]["content"][1]["input"]["n"] = 1.0
        if line is main and i == 13:
            line.messages[1]["content"][1]["input"]["n"] = True
        if line is main and i == 15:  # compaction: the history becomes a summary
            line.messages = [
                {
                    "role": "user",
                    "content": "Summary of the conversation so far: " + _text(rng, 400),
                }
            ]
        if line is main and i == 18:
            line.tools = line.tools[:3]
        body = line.body(i, session)
        if claude_order:
            body = {
                **{k: body[k] for k in _CLAUDE_ORDER if k in body},
                **{k: v for k, v in body.items() if k not in _CLAUDE_ORDER},
            }
        call_id = f"toolu_{i:03d}"
        text = _text(rng, rng.randint(50, 300))
        tool_input = {"arg": f"step {i}", "n": 1, "flag": 1}
        evs = _events(i, call_id, text, tool_input)
        path = "/v1/messages/count_tokens" if i == 10 else "/v1/messages"
        headers = [("content-type", "application/json"), ("user-agent", "claude-cli/2.1.0")]
        if session:
            headers.append(("x-claude-code-session-id", session))
        out.append(
            Exchange(
                uid=f"{uid_prefix}-{i:03d}",
                api="anthropic_messages",
                transport="sse",
                method="POST",
                scheme="https",
                host="api.anthropic.com",
                path=path,
                request_headers=headers,
                request_body=(
                    json.dumps(body, separators=(",", ":"), ensure_ascii=False)
                    if compact or claude_order
                    else json.dumps(body)
                ).encode(),
                request_at=t,
                status=200,
                upstream_first_byte_at=t + 0.2,
                end_at=t + 1.0,
                events=[
                    StreamEvent(t + 0.2 + 0.01 * k, n, json.dumps(d))
                    for k, (n, d) in enumerate(evs)
                ]
                if i != 10
                else [],
                response_body=b'{"input_tokens": 1234}' if i == 10 else b"",
            )
        )
        if i != 10:
            line.advance(i, text, call_id, tool_input)
        t += 3.0
    return out
