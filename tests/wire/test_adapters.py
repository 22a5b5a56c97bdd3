"""Protocol adapters: captured exchanges become the right normalized rounds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tracetap.model import Exchange, StreamEvent
from tracetap.wire.adapters import by_name, select
from tracetap.wire.adapters.anthropic_messages import session_from_user_id
from tracetap.wire.adapters.base import event_data, loads

T0 = 1_780_000_000.0


def exchange(
    api: str,
    body: Any,
    *,
    events: list[tuple[str, dict | str]] | None = None,
    response: Any = None,
    headers: list[tuple[str, str]] | None = None,
    path: str = "/v1/messages",
    status: int = 200,
    **kw: Any,
) -> Exchange:
    ex = Exchange(
        uid="u1",
        api=api,
        transport="sse" if events else "http",
        method="POST",
        scheme="https",
        host="api.example.com",
        path=path,
        request_headers=headers or [],
        request_body=json.dumps(body).encode(),
        request_at=T0,
        status=status,
        upstream_first_byte_at=T0 + 0.1,
        end_at=T0 + 2.0,
        **kw,
    )
    for i, (name, data) in enumerate(events or []):
        ex.events.append(
            StreamEvent(
                T0 + 0.2 + i * 0.1, name, data if isinstance(data, str) else json.dumps(data)
            )
        )
    if response is not None:
        ex.response_body = json.dumps(response).encode()
    return ex


ANTHROPIC_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2; cch=abc;"},
        {
            "type": "text",
            "text": "You are Claude Code.\nPrimary working directory: /home/alice/proj",
        },
    ],
    "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "sess-meta"})},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "list files"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_A", "name": "Bash", "input": {"command": "ls"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": "a.txt\nb.txt"},
                {"type": "text", "text": "<system-reminder>hi</system-reminder>"},
            ],
        },
    ],
}


def anthropic_events() -> list[tuple[str, dict]]:
    return [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "usage": {
                        "input_tokens": 4,
                        "cache_creation_input_tokens": 300,
                        "cache_read_input_tokens": 12000,
                        "output_tokens": 1,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 300,
                            "ephemeral_1h_input_tokens": 0,
                        },
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm."},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "text_delta", "text": "Reading."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "tool_use", "id": "toolu_B", "name": "Read", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"file_path": "/home/'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": 'alice/proj/a.txt"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 3,
                "content_block": {"type": "tool_use", "id": "toolu_C", "name": "Bash", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 3,
                "delta": {"type": "input_json_delta", "partial_json": '{"command":"pwd"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 3}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 87},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_select_routes_paths() -> None:
    assert select("POST", "/v1/messages?beta=true").name == "anthropic_messages"
    assert select("POST", "/v1/messages/count_tokens?beta=true").name == "anthropic_messages"
    assert select("POST", "/v1/responses").name == "openai_responses"
    assert select("POST", "/backend-api/codex/responses").name == "openai_responses"
    assert select("POST", "/v1/responses/compact").name == "openai_responses"
    assert select("POST", "/v1/chat/completions").name == "openai_chat"
    assert select("GET", "/v1/models") is None
    assert select("POST", "/v1/embeddings") is None


def test_anthropic_stream_round() -> None:
    ex = exchange(
        "anthropic_messages",
        ANTHROPIC_REQUEST,
        events=anthropic_events(),
        path="/v1/messages?beta=true",
        headers=[
            ("X-Claude-Code-Session-Id", "sess-hdr"),
            ("x-api-key", "k"),
            ("x-stainless-retry-count", "1"),
            ("user-agent", "claude-cli/2.1"),
        ],
    )
    rnd = by_name("anthropic_messages").to_round(ex)
    assert rnd.provider == "claude" and rnd.agent_session_id == "sess-hdr"
    assert rnd.session_source == "header" and rnd.retry_count == 1 and rnd.client == "claude-cli"
    assert rnd.response_id == "msg_01" and rnd.model == "claude-sonnet-4-5" and rnd.complete
    u = rnd.usage
    assert (u.uncached_input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (
        4,
        300,
        12000,
    )
    assert u.input_tokens_total == 12304 and u.cached_tokens == 12000
    assert u.output_tokens == 87 and u.cache_creation_5m_tokens == 300
    assert [o.type for o in rnd.outputs] == ["reasoning", "text", "tool_call", "tool_call"]
    assert [(t.index, t.call_id, t.name) for t in rnd.tool_calls] == [
        (0, "toolu_B", "Read"),
        (1, "toolu_C", "Bash"),
    ]
    assert json.loads(rnd.tool_calls[0].arguments) == {"file_path": "/home/alice/proj/a.txt"}
    # the tool call completes at its content_block_stop, not at the end of the stream
    assert rnd.tool_calls[0].emitted_at == T0 + 0.2 + 12 * 0.1
    assert rnd.first_token_at == T0 + 0.2 + 2 * 0.1
    assert rnd.stop_reason == "tool_use"
    # the system reminder Claude Code appends is not user input
    assert [(i.type, i.tool_call_id, i.chars) for i in rnd.inputs] == [
        ("tool_result", "toolu_A", 11)
    ]
    assert rnd.response["content"][0]["signature"] == "sig"
    assert rnd.system[1]["text"].startswith("You are Claude Code")


def test_typed_text_counts_but_injected_context_does_not() -> None:
    body = dict(
        ANTHROPIC_REQUEST,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                    {"type": "text", "text": "fix the bug"},
                ],
            }
        ],
    )
    rnd = by_name("anthropic_messages").to_round(
        exchange("anthropic_messages", body, events=anthropic_events())
    )
    assert [(i.type, i.chars) for i in rnd.inputs] == [("user_message", 11)]
    codex = dict(
        RESPONSES_REQUEST,
        input=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "<environment_context><cwd>/w</cwd>"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        ],
    )
    rnd = by_name("openai_responses").to_round(
        exchange("openai_responses", codex, events=responses_events())
    )
    assert [(i.type, i.chars) for i in rnd.inputs] == [("user_message", 2)]


def test_anthropic_session_from_metadata_forms() -> None:
    assert session_from_user_id(json.dumps({"session_id": "abc"})) == "abc"
    legacy = (
        "user_" + "f" * 64 + "_account_1234abcd-0000-0000-0000-000000000000_session_"
        "5a1b2c3d-1111-2222-3333-444455556666"
    )
    assert session_from_user_id(legacy) == "5a1b2c3d-1111-2222-3333-444455556666"
    assert session_from_user_id("garbage") is None
    rnd = by_name("anthropic_messages").to_round(
        exchange("anthropic_messages", ANTHROPIC_REQUEST, events=anthropic_events())
    )
    assert (rnd.agent_session_id, rnd.session_source) == ("sess-meta", "metadata")


def test_anthropic_error_midstream_keeps_partial_output() -> None:
    events = anthropic_events()[:9] + [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ]
    rnd = by_name("anthropic_messages").to_round(
        exchange("anthropic_messages", ANTHROPIC_REQUEST, events=events)
    )
    assert not rnd.complete and rnd.error_type == "overloaded_error"
    assert [o.type for o in rnd.outputs] == ["reasoning", "text"]


def test_anthropic_client_disconnect_marks_incomplete() -> None:
    events = anthropic_events()[:11]  # cut inside the Read tool's JSON
    ex = exchange(
        "anthropic_messages",
        ANTHROPIC_REQUEST,
        events=events,
        error="Client disconnected.",
        client_disconnected=True,
    )
    rnd = by_name("anthropic_messages").to_round(ex)
    assert not rnd.complete and rnd.error_type == "client_disconnected"
    assert rnd.response["content"][-1]["_partial_input_json"] == '{"file_path": "/home/'
    assert rnd.tool_calls == []  # an unfinished tool call was never emitted
    assert [o.type for o in rnd.outputs] == ["reasoning", "text"]


def test_partial_text_block_counts_as_output_when_cut() -> None:
    ex = exchange(
        "anthropic_messages",
        ANTHROPIC_REQUEST,
        events=anthropic_events()[:8],
        error="Client disconnected.",
        client_disconnected=True,
    )
    rnd = by_name("anthropic_messages").to_round(ex)
    assert [(o.type, o.chars, o.source) for o in rnd.outputs][-1] == (
        "text",
        8,
        "response.content.text.partial",
    )


def test_disconnect_after_the_last_event_keeps_the_round_complete() -> None:
    ex = exchange(
        "anthropic_messages",
        ANTHROPIC_REQUEST,
        events=anthropic_events(),
        error="Client disconnected.",
        client_disconnected=True,
    )
    rnd = by_name("anthropic_messages").to_round(ex)
    assert rnd.complete and rnd.error_type is None


def test_anthropic_json_and_http_error() -> None:
    body = dict(ANTHROPIC_REQUEST, stream=False)
    ok = {
        "id": "msg_2",
        "type": "message",
        "model": "claude-haiku-4-5",
        "role": "assistant",
        "content": [{"type": "text", "text": "Title"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 50, "output_tokens": 3},
    }
    rnd = by_name("anthropic_messages").to_round(exchange("anthropic_messages", body, response=ok))
    assert rnd.complete and rnd.usage.input_tokens_total == 50 and rnd.usage.cached_tokens == 0
    assert [o.type for o in rnd.outputs] == ["text"] and rnd.outputs[0].at == T0 + 2.0
    err = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    rnd = by_name("anthropic_messages").to_round(
        exchange("anthropic_messages", body, response=err, status=429)
    )
    assert not rnd.complete and rnd.error_type == "rate_limit_error" and rnd.status == 429


def test_count_tokens_is_side() -> None:
    rnd = by_name("anthropic_messages").to_round(
        exchange(
            "anthropic_messages",
            {"model": "m", "messages": []},
            response={"input_tokens": 42},
            path="/v1/messages/count_tokens?beta=true",
        )
    )
    assert rnd.endpoint.endswith("count_tokens") and rnd.kind == "side"
    assert rnd.usage.input_tokens_total == 42


def test_malformed_request_body_is_kept() -> None:
    ex = exchange("anthropic_messages", {}, events=anthropic_events())
    ex.request_body = b"{not json"
    rnd = by_name("anthropic_messages").to_round(ex)
    assert rnd.envelope == {"_unparsed_body": "{not json"} and rnd.response_id == "msg_01"


RESPONSES_REQUEST = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex.",
    "stream": True,
    "store": False,
    "prompt_cache_key": "pck-1",
    "tools": [{"type": "function", "name": "exec_command", "parameters": {}}],
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "sandbox rules"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "x"},
        {
            "type": "function_call",
            "name": "exec_command",
            "arguments": '{"cmd":"ls"}',
            "call_id": "call_1",
        },
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": "Chunk ID: 1\nWall time: 0.0123 seconds\nProcess exited with code 0\na\n",
        },
    ],
}


def responses_events() -> list[tuple[str, dict]]:
    resp = {
        "id": "resp_1",
        "object": "response",
        "model": "gpt-5-codex",
        "status": "in_progress",
        "output": [],
    }
    fc1 = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_2",
        "name": "exec_command",
        "arguments": '{"cmd":"echo two"}',
        "status": "completed",
    }
    fc2 = {
        "type": "function_call",
        "id": "fc_2",
        "call_id": "call_3",
        "name": "exec_command",
        "arguments": '{"cmd":"cat f"}',
        "status": "completed",
    }
    final = dict(
        resp,
        status="completed",
        output=[fc1, fc2],
        usage={
            "input_tokens": 9000,
            "input_tokens_details": {"cached_tokens": 8064},
            "output_tokens": 120,
            "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 9120,
        },
    )
    seq = [
        ("response.created", {"type": "response.created", "response": resp}),
        ("response.in_progress", {"type": "response.in_progress", "response": resp}),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_1"},
            },
        ),
        (
            "response.reasoning_summary_text.delta",
            {"type": "response.reasoning_summary_text.delta", "delta": "Plan"},
        ),
        (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Plan"}],
                },
            },
        ),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 1,
                "item": dict(fc1, arguments=""),
            },
        ),
        (
            "response.function_call_arguments.delta",
            {"type": "response.function_call_arguments.delta", "delta": fc1["arguments"]},
        ),
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 1, "item": fc1},
        ),
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 2, "item": fc2},
        ),
        ("response.completed", {"type": "response.completed", "response": final}),
    ]
    for i, (_, data) in enumerate(seq):
        data["sequence_number"] = i
    return seq


def test_responses_stream_round() -> None:
    headers = [
        ("session_id", "codex-sess"),
        ("originator", "codex_exec"),
        ("x-codex-turn-metadata", json.dumps({"turn_id": "turn-9"})),
    ]
    rnd = by_name("openai_responses").to_round(
        exchange(
            "openai_responses",
            RESPONSES_REQUEST,
            events=responses_events(),
            headers=headers,
            path="/v1/responses",
        )
    )
    assert rnd.provider == "codex" and rnd.agent_session_id == "codex-sess"
    assert rnd.turn_id == "turn-9" and rnd.response_id == "resp_1" and rnd.complete
    assert (
        rnd.usage.input_tokens_total,
        rnd.usage.cached_tokens,
        rnd.usage.output_tokens,
        rnd.usage.reasoning_tokens,
    ) == (9000, 8064, 120, 64)
    assert [o.type for o in rnd.outputs] == ["reasoning", "tool_call", "tool_call"]
    assert [t.call_id for t in rnd.tool_calls] == ["call_2", "call_3"]
    assert rnd.system == "You are Codex."
    [result] = rnd.inputs
    assert result.type == "tool_result" and result.tool_call_id == "call_1"
    assert result.internal_latency_ms == 12


def test_responses_session_falls_back_to_prompt_cache_key() -> None:
    rnd = by_name("openai_responses").to_round(
        exchange(
            "openai_responses", RESPONSES_REQUEST, events=responses_events(), path="/v1/responses"
        )
    )
    assert (rnd.agent_session_id, rnd.session_source) == ("pck-1", "prompt_cache_key")
    assert rnd.provider == "openai"


def test_responses_failed_and_websocket_request_shape() -> None:
    events = responses_events()[:5] + [
        (
            "response.failed",
            {
                "type": "response.failed",
                "response": {
                    "id": "resp_1",
                    "status": "failed",
                    "error": {"code": "server_error", "message": "boom"},
                },
            },
        )
    ]
    ws_body = dict(RESPONSES_REQUEST, type="response.create")
    ex = exchange("openai_responses", ws_body, events=events, path="/v1/responses")
    ex.transport = "websocket"
    rnd = by_name("openai_responses").to_round(ex)
    assert not rnd.complete and rnd.error_type == "server_error"
    assert rnd.stream and "type" not in rnd.envelope and rnd.transport == "websocket"
    assert [o.type for o in rnd.outputs] == ["reasoning"]


def test_responses_compact_is_compaction() -> None:
    out = {
        "id": "resp_c",
        "model": "gpt-5-codex",
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "summary"}],
            }
        ],
        "usage": {"input_tokens": 50000, "output_tokens": 800},
    }
    rnd = by_name("openai_responses").to_round(
        exchange("openai_responses", RESPONSES_REQUEST, response=out, path="/v1/responses/compact")
    )
    assert rnd.kind == "compaction" and rnd.usage.input_tokens_total == 50000
    assert [o.type for o in rnd.outputs] == ["text"]


def test_chat_stream_with_parallel_tool_deltas_and_usage_chunk() -> None:
    body = {
        "model": "gpt-4.1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c0"}]},
            {"role": "tool", "tool_call_id": "c0", "content": "out"},
        ],
    }
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4.1"}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    events = [
        ("message", chunk({"role": "assistant", "content": "Let"})),
        ("message", chunk({"content": " me"})),
        (
            "message",
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
        ),
        (
            "message",
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "g", "arguments": "{}"},
                        }
                    ]
                }
            ),
        ),
        ("message", chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]})),
        ("message", chunk({}, "tool_calls")),
        (
            "message",
            dict(
                base,
                choices=[],
                usage={
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "prompt_tokens_details": {"cached_tokens": 64},
                },
            ),
        ),
        ("message", "[DONE]"),
    ]
    rnd = by_name("openai_chat").to_round(
        exchange("openai_chat", body, events=events, path="/v1/chat/completions")
    )
    assert rnd.complete and rnd.response_id == "chatcmpl-1"
    assert [(t.call_id, t.name, t.arguments) for t in rnd.tool_calls] == [
        ("c1", "f", '{"x":1}'),
        ("c2", "g", "{}"),
    ]
    # c1's last delta came after c2's: completion times follow the deltas
    assert rnd.tool_calls[0].emitted_at > rnd.tool_calls[1].emitted_at
    assert (rnd.usage.input_tokens_total, rnd.usage.cached_tokens) == (100, 64)
    assert [(i.type, i.tool_call_id) for i in rnd.inputs] == [("tool_result", "c0")]
    assert rnd.response["choices"][0]["message"]["content"] == "Let me"


def test_chat_json() -> None:
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    resp = {
        "id": "chatcmpl-2",
        "model": "gpt-4.1",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hello"},
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    }
    rnd = by_name("openai_chat").to_round(
        exchange("openai_chat", body, response=resp, path="/v1/chat/completions")
    )
    assert rnd.complete and rnd.outputs[0].chars == 5 and rnd.usage.cached_tokens == 0


def test_custom_tool_calls_and_server_tools() -> None:
    patch = {
        "type": "custom_tool_call",
        "id": "ctc_1",
        "call_id": "call_patch",
        "name": "apply_patch",
        "input": "*** Begin Patch\n*** End Patch",
    }
    final = {
        "id": "resp_c2",
        "model": "gpt-5-codex",
        "status": "completed",
        "output": [patch],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    events = [
        ("response.created", {"type": "response.created", "response": {"id": "resp_c2"}}),
        (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": patch},
        ),
        ("response.completed", {"type": "response.completed", "response": final}),
    ]
    rnd = by_name("openai_responses").to_round(
        exchange("openai_responses", RESPONSES_REQUEST, events=events, path="/v1/responses")
    )
    [call] = rnd.tool_calls
    assert (call.call_id, call.name, call.kind, call.arguments) == (
        "call_patch",
        "apply_patch",
        "custom_tool_call",
        patch["input"],
    )
    blocks = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_s", "model": "m", "usage": {"input_tokens": 1}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "redacted_thinking", "data": "opaque"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"query":"x"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_stop", {"type": "message_stop"}),
    ]
    rnd = by_name("anthropic_messages").to_round(
        exchange("anthropic_messages", ANTHROPIC_REQUEST, events=blocks)
    )
    assert [o.type for o in rnd.outputs] == ["reasoning", "tool_call"]
    assert [(t.kind, t.name) for t in rnd.tool_calls] == [("server_tool_use", "web_search")]


@pytest.mark.parametrize(
    "datas",
    [
        ['{"a":1}', '{"b":[2]}', "[DONE]"],  # Chat Completions' end
        ['{"a":1}', '{"partial":', '{"c":3}'],  # malformed in the middle
        ['{"a":1}', "", '{"c":3}'],  # empty
        ['{"big":123456789012345678901234567890}', '{"c":3}'],  # beyond orjson's integers
        ["[DONE]"],
        [],
    ],
)
def test_event_data_decodes_as_loads_does_one_by_one(datas: list[str]) -> None:
    events = [StreamEvent(float(i), "message", d) for i, d in enumerate(datas)]
    assert event_data(events) == [loads(d) for d in datas]
