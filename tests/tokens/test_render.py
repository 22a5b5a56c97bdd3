"""The measured prompt's rendering, rule by rule (the rules are in tracetap/tokens/render.py)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tracetap.model import Round
from tracetap.tokens.enrich import TokenEnricher
from tracetap.tokens.render import (
    ANTHROPIC,
    CHAT,
    RESPONSES,
    Stripped,
    element_text,
    prompt_parts,
)

KEY = b"render-key"


class Chars:
    name = "chars"

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def _text(api: str, obj: Any) -> str:
    return element_text(api, obj, set())


def _round(api: str, messages: list[Any], **kw: Any) -> Round:
    return Round(
        uid=str(uuid.uuid4()),
        provider="claude" if api == ANTHROPIC else "codex",
        api=api,
        transport="sse",
        endpoint="/",
        request_at=kw.pop("at", 1000.0),
        agent_session_id="s",
        messages=messages,
        **kw,
    )


def test_cache_control_never_enters_the_rendering() -> None:
    tool = {"name": "Bash", "input_schema": {"type": "object"}}
    assert _text(ANTHROPIC, tool) == _text(ANTHROPIC, {**tool, "cache_control": {"a": 1}})
    block = {"type": "text", "text": "sys"}
    assert _text(ANTHROPIC, block) == _text(ANTHROPIC, {**block, "cache_control": {"a": 1}})
    result = {"type": "tool_result", "tool_use_id": "t", "content": "x"}
    marked = {**result, "cache_control": {"type": "ephemeral"}}
    assert _text(ANTHROPIC, {"role": "user", "content": [result]}) == _text(
        ANTHROPIC, {"role": "user", "content": [marked]}
    )
    part = {"type": "text", "text": "hi"}
    assert _text(CHAT, {"role": "user", "content": [part]}) == _text(
        CHAT, {"role": "user", "content": [{**part, "cache_control": {"type": "ephemeral"}}]}
    )


def test_responses_item_ids_and_status_are_transport() -> None:
    a = {"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "c1"}
    b = {"type": "function_call", "id": "fc_2", "call_id": "c1"}
    assert _text(RESPONSES, {**a, "name": "n", "arguments": "{}"}) == _text(
        RESPONSES, {**b, "name": "n", "arguments": "{}"}
    )
    msg = {"type": "message", "role": "user", "content": "x"}
    assert _text(RESPONSES, {**msg, "id": "msg_1"}) == _text(RESPONSES, msg)


def test_string_content_and_one_text_block_render_alike() -> None:
    assert _text(ANTHROPIC, {"role": "user", "content": "x"}) == _text(
        ANTHROPIC, {"role": "user", "content": [{"type": "text", "text": "x"}]}
    )
    assert _text(ANTHROPIC, "sys") == _text(ANTHROPIC, {"type": "text", "text": "sys"})
    assert _text(
        ANTHROPIC,
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "o"}]},
    ) == _text(
        ANTHROPIC,
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [{"type": "text", "text": "o"}],
                }
            ],
        },
    )
    assert _text(RESPONSES, {"type": "message", "role": "user", "content": "x"}) == _text(
        RESPONSES,
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]},
    )
    assert _text(CHAT, {"role": "user", "content": "x"}) == _text(
        CHAT, {"role": "user", "content": [{"type": "text", "text": "x"}]}
    )


def test_system_role_message_stays_in_the_messages_with_its_role() -> None:
    env = {"role": "system", "content": [{"type": "text", "text": "# Environment"}]}
    rnd = _round(ANTHROPIC, [{"role": "user", "content": "go"}, env], system="S")
    parts = prompt_parts(rnd)
    assert parts["system"] == ["S"] and parts["new_input"][1] is env
    assert _text(ANTHROPIC, env).startswith("[system]\n# Environment")
    assert _text(ANTHROPIC, env) == _text(ANTHROPIC, {"role": "system", "content": "# Environment"})


def _thinking_turns() -> list[Any]:
    return [
        {"role": "user", "content": "first task"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "old plan", "signature": "sig1"},
                {"type": "text", "text": "done"},
            ],
        },
        {"role": "user", "content": "second task"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "new plan", "signature": "sig2"},
                {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"c": 1}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}],
        },
    ]


def test_earlier_turns_thinking_is_dropped_the_turn_in_progress_keeps_it() -> None:
    msgs = _thinking_turns()
    parts = prompt_parts(_round(ANTHROPIC, msgs, system="S"))
    history = parts["history"]
    assert isinstance(history[1], Stripped) and history[3] is msgs[3]
    assert "old plan" not in _text(ANTHROPIC, history[1])
    current = _text(ANTHROPIC, history[3])
    assert "[thinking]\nnew plan" in current and "sig2" not in current  # signature: transport
    assert "[redacted_thinking ? 9B sha256:" in current and "ZW5j" not in current
    # a request that keeps all thinking (Claude Code's context_management) strips nothing
    keep = {"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}
    kept = prompt_parts(_round(ANTHROPIC, msgs, system="S", envelope=keep))
    assert kept["history"][1] is msgs[1]


def test_stripped_messages_keep_the_enricher_reuse() -> None:
    enr = TokenEnricher(KEY, Chars(), block_size=4)
    msgs = _thinking_turns()
    a = enr.analyse(_round(ANTHROPIC, msgs, system="S"))
    step = [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t2", "name": "B", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "ok"}],
        },
    ]
    b = enr.analyse(_round(ANTHROPIC, [*msgs, *step], system="S", at=1001.0))
    assert b["reuse_prev_tokens"] == a["prompt_tokens"]  # the same turn: an append
    # a new user turn drops the previous turn's thinking: the prompt changes at message 3
    turn = [{"role": "assistant", "content": "fine"}, {"role": "user", "content": "next"}]
    c = enr.analyse(_round(ANTHROPIC, [*msgs, *step, *turn], system="S", at=1002.0))
    start = len("S") + sum(len(_text(ANTHROPIC, m)) for m in (msgs[0], Stripped(msgs[1]), msgs[2]))
    assert start <= c["reuse_prev_tokens"] < start + len(_text(ANTHROPIC, msgs[3]))


def test_tool_call_ids_are_model_visible() -> None:
    use = {"type": "tool_use", "id": "toolu_A", "name": "Bash", "input": {}}
    other = {**use, "id": "toolu_B"}
    assert _text(ANTHROPIC, {"role": "assistant", "content": [use]}) != _text(
        ANTHROPIC, {"role": "assistant", "content": [other]}
    )
    out = {"type": "function_call_output", "call_id": "call_A", "output": "x"}
    assert "call_A" in _text(RESPONSES, out)
    assert "call_9" in _text(CHAT, {"role": "tool", "tool_call_id": "call_9", "content": "x"})


def test_media_render_by_type_size_and_hash() -> None:
    data = base64.b64encode(b"\x89PNG" + b"\0" * 96).decode()
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    text = _text(ANTHROPIC, {"role": "user", "content": [img]})
    assert "[image image/png 100B sha256:" in text and data not in text
    other = {**img, "source": {**img["source"], "data": base64.b64encode(b"x" * 100).decode()}}
    assert _text(ANTHROPIC, {"role": "user", "content": [other]}) != text
    url = f"data:image/png;base64,{data}"
    part = {"type": "input_image", "image_url": url}
    r = _text(RESPONSES, {"type": "message", "role": "user", "content": [part]})
    assert "[image image/png 100B sha256:" in r and data not in r
    c = _text(CHAT, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]})
    assert "[image image/png 100B sha256:" in c


def test_responses_reasoning_renders_encrypted_content_by_hash() -> None:
    enc = "gAAAA" + "x" * 200
    item = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Plan."}],
        "content": None,
        "encrypted_content": enc,
    }
    text = _text(RESPONSES, item)
    assert text.startswith("[reasoning]\nPlan.\n[encrypted_reasoning ") and enc not in text
    assert _text(RESPONSES, {**item, "id": "rs_2"}) == text


def test_previous_response_id_continues_the_referenced_conversation() -> None:
    enr = TokenEnricher(KEY, Chars(), block_size=4)
    dev = {"type": "message", "role": "developer", "content": "You are Codex."}
    user = {"type": "message", "role": "user", "content": "go"}
    call = {"type": "function_call", "call_id": "c1", "name": "sh", "arguments": "{}"}
    first = _round(RESPONSES, [dev, user], response_id="resp_1", response={"output": [call]})
    a = enr.analyse(first)
    out = {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    cont = _round(RESPONSES, [out], at=1001.0, envelope={"previous_response_id": "resp_1"})
    b = enr.analyse(cont)
    assert b["normalized"] == ["previous_response_id"]
    assert b["reuse_prev_tokens"] == a["prompt_tokens"]
    full = enr.analyse(_round(RESPONSES, [dev, user, call, out], at=1002.0))
    assert full["prompt_tokens"] == b["prompt_tokens"]  # the same prompt, sent whole
    lost = _round(RESPONSES, [out], at=1003.0, envelope={"previous_response_id": "resp_x"})
    assert enr.analyse(lost)["normalized"] == ["previous_response_id-unresolved"]


def test_store_changes_nothing_the_model_reads() -> None:
    enr = TokenEnricher(KEY, Chars(), block_size=4)
    msgs = [{"type": "message", "role": "user", "content": "go"}]
    a = enr.analyse(_round(RESPONSES, msgs, envelope={"store": False}))
    b = enr.analyse(_round(RESPONSES, msgs, envelope={"store": True}))
    assert b["reuse_prev_tokens"] == a["prompt_tokens"] == b["prompt_tokens"]


def test_segment_order_is_the_providers_cache_order() -> None:
    tool = {"name": "T", "input_schema": {}}
    rnd = _round(ANTHROPIC, [{"role": "user", "content": "u"}], system="S", tools=[tool])
    assert list(prompt_parts(rnd)) == ["tools", "system", "history", "new_input"]
    items = [
        {"type": "message", "role": "developer", "content": "D"},
        {"type": "message", "role": "user", "content": "U"},
    ]
    parts = prompt_parts(_round(RESPONSES, items, tools=[tool]))
    assert parts["system"] == [items[0]] and parts["new_input"] == [items[1]]


def test_breakpoints_are_the_token_offsets_after_marked_elements() -> None:
    enr = TokenEnricher(KEY, Chars(), block_size=4)
    sys_blocks = [
        {"type": "text", "text": "aaaa"},
        {"type": "text", "text": "bbbb", "cache_control": {"type": "ephemeral"}},
    ]
    msgs = [
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": [{"type": "text", "text": "u2", "cache_control": {}}]},
    ]
    t = enr.analyse(_round(ANTHROPIC, msgs, system=sys_blocks))
    ends = [4, 8]
    for m in msgs:
        ends.append(ends[-1] + len(_text(ANTHROPIC, m)))
    assert t["breakpoints"] == [8, ends[-1]] and t["prompt_tokens"] == ends[-1]
    chat = enr.analyse(_round(CHAT, [{"role": "user", "content": "x", "cache_control": {}}]))
    assert chat["breakpoints"] == []


def test_billing_line_is_normalized() -> None:
    notes: set[str] = set()
    a = element_text(ANTHROPIC, {"type": "text", "text": "x-anthropic-billing-header: a=1;"}, notes)
    assert a == "x-anthropic-billing-header: <normalized>"
    assert notes == {"x-anthropic-billing-header"}


def test_deferred_tools_are_outside_the_context() -> None:
    assert _text(ANTHROPIC, {"name": "Later", "input_schema": {}, "defer_loading": True}) == ""
