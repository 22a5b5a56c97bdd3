"""`tracetap show --content` reads every wire format: OpenAI Responses items and Chat
Completions messages, as stored (new messages, response text, tool calls and outputs)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tracetap.cli import app
from tracetap.model import Round, ToolCall, Usage
from tracetap.storage.db import ensure_schema, make_engine
from tracetap.storage.writer import Writer

T0 = 1_780_000_000.0


def _round(api: str, session: str, i: int, messages: list[Any], response: dict[str, Any]) -> Round:
    provider = "codex" if api == "openai_responses" else "openai"
    return Round(
        uid=str(uuid.uuid4()),
        provider=provider,
        api=api,
        transport="sse",
        endpoint="/v1/responses" if provider == "codex" else "/v1/chat/completions",
        request_at=T0 + i * 10,
        agent_session_id=session,
        session_source="header",
        model="gpt-5-codex" if provider == "codex" else "gpt-4.1",
        messages=messages,
        status=200,
        complete=True,
        response=response,
        usage=Usage(input_tokens_total=20_000, cached_tokens=15_000, output_tokens=1_000),
        end_at=T0 + i * 10 + 2,
        kind="main",
    )


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    ensure_schema(engine)
    prompt = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "list files"}],
    }
    call = {
        "type": "function_call",
        "name": "shell",
        "call_id": "call_1",
        "arguments": '{"cmd":"ls"}',
    }
    said = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Listing."}],
    }
    thought = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "use ls"}]}
    output = {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"}
    done = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Two files."}],
    }
    codex = [
        _round("openai_responses", "codex-1", 0, [prompt], {"output": [thought, said, call]}),
        _round(
            "openai_responses",
            "codex-1",
            1,
            [prompt, thought, said, call, output],
            {"output": [done]},
        ),
    ]
    codex[0].tool_calls = [ToolCall(0, "call_1", "shell", "function_call", '{"cmd":"ls"}', T0 + 1)]
    ask = {"role": "user", "content": "what time is it?"}
    tool_call = {"id": "c9", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    chat = [
        _round(
            "openai_chat",
            "chat-1",
            0,
            [ask],
            {
                "choices": [
                    {"message": {"role": "assistant", "content": None, "tool_calls": [tool_call]}}
                ]
            },
        ),
        _round(
            "openai_chat",
            "chat-1",
            1,
            [
                ask,
                {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                {"role": "tool", "tool_call_id": "c9", "content": "12:00"},
            ],
            {"choices": [{"message": {"role": "assistant", "content": "It is noon."}}]},
        ),
    ]
    Writer(engine).write([*codex, *chat])
    engine.dispose()
    return url


def _show(url: str, *args: str) -> str:
    result = CliRunner().invoke(app, ["show", *args, "--db", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_openai_responses_content(tmp_path: Path) -> None:
    url = _store(tmp_path)
    text = _show(url, "codex:codex-1", "--content")
    assert "user: list files" in text
    assert "assistant thinking: use ls" in text
    assert "assistant: Listing." in text
    assert 'tool call shell [call_1]: {"cmd":"ls"}' in text
    assert "tool result [call_1]: a.txt" in text
    assert "assistant: Two files." in text
    one = _show(url, "codex:codex-1", "--round", "0")
    assert "tool results (sent by the next rounds)" in one and "a.txt" in one
    data = json.loads(_show(url, "codex:codex-1", "--round", "0", "--json"))
    # gpt-5-codex: 5,000 uncached at $1.25, 15,000 cached at $0.125, 1,000 out at $10 per MTok
    assert data["cost_usd"] == 0.018125


def test_chat_completions_content(tmp_path: Path) -> None:
    url = _store(tmp_path)
    text = _show(url, "openai:chat-1", "--content")
    assert "user: what time is it?" in text
    assert "tool call clock [c9]: {}" in text
    assert "tool result [c9]: 12:00" in text
    assert "assistant: It is noon." in text
