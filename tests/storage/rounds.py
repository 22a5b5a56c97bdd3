"""Builders of normalized rounds for storage tests (an agent session that re-sends history)."""

from __future__ import annotations

import uuid
from typing import Any

from tracetap.model import InputEvent, OutputEvent, Round, ToolCall, Usage

SYSTEM = [
    {"type": "text", "text": "x-anthropic-billing-header: cch=00000;"},
    {"type": "text", "text": "You are Claude Code. " * 50},
]
TOOLS = [
    {"name": "Bash", "description": "run a command " * 40, "input_schema": {}},
    {"name": "Read", "description": "read a file " * 40, "input_schema": {}},
]


def claude_session(
    n_rounds: int,
    *,
    session: str = "sess-1",
    t0: float = 1_780_000_000.0,
    system: Any = None,
    first_prompt: str = "fix the bug",
    tool_output: str = "x" * 2000,
) -> list[Round]:
    """n rounds of a Claude Code loop: each request re-sends the whole history."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": first_prompt}]
    rounds = []
    t = t0
    for i in range(n_rounds):
        call_id = f"toolu_{session}_{i}"
        rnd = Round(
            uid=str(uuid.uuid4()),
            provider="claude",
            api="anthropic_messages",
            transport="sse",
            endpoint="/v1/messages",
            request_at=t,
            agent_session_id=session,
            session_source="header",
            model="claude-sonnet-4-5",
            model_requested="claude-sonnet-4-5",
            envelope={"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True},
            system=[SYSTEM[0] | {"text": f"x-anthropic-billing-header: cch={i:05d};"}, SYSTEM[1]]
            if system is None
            else system,
            tools=TOOLS,
            messages=[dict(m) for m in messages],
            status=200,
            response_id=f"msg_{session}_{i}",
            complete=True,
            usage=Usage(
                input_tokens_total=1000 * (i + 1),
                cached_tokens=900 * i,
                uncached_input_tokens=10,
                output_tokens=50,
            ),
            upstream_first_byte_at=t + 0.3,
            first_token_at=t + 0.5,
            last_token_at=t + 1.5,
            end_at=t + 1.6,
        )
        rnd.inputs = (
            [InputEvent("user_message", len(first_prompt), "request.messages.text")]
            if i == 0
            else [
                InputEvent(
                    "tool_result",
                    len(tool_output),
                    "request.messages.tool_result",
                    tool_call_id=f"toolu_{session}_{i - 1}",
                )
            ]
        )
        rnd.tool_calls = [ToolCall(0, call_id, "Bash", "tool_use", '{"command":"make"}', t + 1.4)]
        rnd.outputs = [
            OutputEvent("text", t + 1.0, 20, "response.content.text"),
            OutputEvent(
                "tool_call",
                t + 1.4,
                18,
                "response.content.tool_use",
                tool_call_id=call_id,
                tool_name="Bash",
                tool_index=0,
            ),
        ]
        rnd.response = {
            "id": rnd.response_id,
            "content": [
                {"type": "text", "text": "Running make."},
                {"type": "tool_use", "id": call_id, "name": "Bash", "input": {"command": "make"}},
            ],
        }
        rounds.append(rnd)
        messages.append({"role": "assistant", "content": rnd.response["content"]})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call_id, "content": tool_output + str(i)}
                ],
            }
        )
        t += 5.0
    return rounds
