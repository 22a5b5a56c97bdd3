"""Token segments, block hash chains and prefix reuse on hand-made rounds (1 token per char)."""

from __future__ import annotations

import uuid
from array import array
from typing import Any

from tracetap.model import Round, ToolCall, Usage
from tracetap.tokens.enrich import TokenEnricher, block_hashes
from tracetap.tokens.render import element_text

KEY = b"test-key"


class CharTokenizer:
    """One token per character: counts can be computed by hand."""

    name = "chars"

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def _round(
    messages: list[Any],
    *,
    system: Any = "You are a careful agent.",
    tools: list[Any] | None = None,
    session: str = "s1",
    at: float = 1000.0,
    response: dict[str, Any] | None = None,
    calls: list[ToolCall] | None = None,
    usage: Usage | None = None,
) -> Round:
    return Round(
        uid=str(uuid.uuid4()),
        provider="claude",
        api="anthropic_messages",
        transport="sse",
        endpoint="/v1/messages",
        request_at=at,
        end_at=at + 1,
        agent_session_id=session,
        system=system,
        tools=tools or [],
        messages=messages,
        response=response,
        tool_calls=calls or [],
        usage=usage or Usage(),
    )


def _len(obj: Any, api: str = "anthropic_messages") -> int:
    """Tokens (characters) of one element's measured rendering."""
    return len(element_text(api, obj, set()))


def test_segments_split_tools_system_history_new_input_and_output() -> None:
    tool = {"name": "Bash", "input_schema": {"type": "object"}}
    msgs = [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}],
        },
    ]
    rnd = _round(
        msgs,
        tools=[tool],
        response={
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "All good"},
            ]
        },
        calls=[ToolCall(0, "t2", "Bash", "tool_use", '{"command":"ls"}', None)],
    )
    t = TokenEnricher(KEY, CharTokenizer(), block_size=4).analyse(rnd)
    seg = t["segments"]
    assert seg["tools"] == _len(tool)
    assert seg["system"] == len("You are a careful agent.")
    assert seg["history"] == _len(msgs[0]) + _len(msgs[1])
    assert seg["new_input"] == _len(msgs[2])
    assert (seg["output_text"], seg["output_reasoning"], seg["output_tool_args"]) == (8, 3, 16)
    assert t["prompt_tokens"] == seg["tools"] + seg["system"] + seg["history"] + seg["new_input"]
    assert t["n_blocks"] == t["prompt_tokens"] // 4
    assert set(t["segment_source"].values()) == {"estimated"}


def test_chain_is_keyed_and_chained_like_vllm() -> None:
    toks = array("I", range(10))
    a = block_hashes(toks, 4, KEY)
    assert len(a) == 2  # the partial last block is not hashed
    assert block_hashes(array("I", [99, *range(1, 10)]), 4, KEY)[1] != a[1]  # parent chained
    assert block_hashes(toks, 4, b"other")[0] != a[0]  # keyed


def test_append_only_session_reuses_the_whole_previous_prompt() -> None:
    enr = TokenEnricher(KEY, CharTokenizer(), block_size=4)
    msgs: list[Any] = [{"role": "user", "content": "hello there"}]
    first = enr.analyse(_round(list(msgs)))
    msgs += [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "next"}]
    second = enr.analyse(_round(list(msgs), at=1005.0))
    assert second["reuse_prev_tokens"] >= first["prompt_tokens"] - 1  # up to the closing bracket
    assert second["shared_blocks"] == first["n_blocks"]
    assert len(bytes.fromhex(second["new_hashes"])) == 8 * (second["n_blocks"] - first["n_blocks"])
    assert second["gap_s"] == 4.0


def test_billing_header_is_normalized_and_recorded() -> None:
    enr = TokenEnricher(KEY, CharTokenizer(), block_size=4)
    msgs = [{"role": "user", "content": "x" * 40}]

    def system(cch: str) -> list[dict[str, str]]:
        return [
            {"type": "text", "text": f"x-anthropic-billing-header: cch={cch};"},
            {"type": "text", "text": "You are Claude Code."},
        ]

    a = enr.analyse(_round(msgs, system=system("0a1b2")))
    b = enr.analyse(_round(msgs, system=system("ffee9"), at=1002.0))
    assert b["normalized"] == ["x-anthropic-billing-header"]
    assert b["reuse_prev_tokens"] == a["prompt_tokens"] == b["prompt_tokens"]


def test_changed_system_prompt_breaks_the_prefix_inside_the_system_segment() -> None:
    enr = TokenEnricher(KEY, CharTokenizer(), block_size=4)
    msgs = [{"role": "user", "content": "y" * 50}]
    enr.analyse(_round(msgs, system="You are agent A. Be brief."))
    b = enr.analyse(_round(msgs, system="You are agent B. Be brief.", at=1003.0))
    assert b["reuse_prev_tokens"] == len("You are agent ")
    assert b["shared_blocks"] == len("You are agent ") // 4


def test_shared_system_prompt_across_sessions_counts_as_reuse_any() -> None:
    enr = TokenEnricher(KEY, CharTokenizer(), block_size=4)
    system = "S" * 100
    enr.analyse(_round([{"role": "user", "content": "first"}], system=system, session="a"))
    other = enr.analyse(_round([{"role": "user", "content": "second"}], system=system, session="b"))
    assert other["parent_uid"] is None and other["reuse_prev_tokens"] == 0
    # the system prompt and the message's `[user]\n` header (7 characters) are shared
    assert other["reuse_any_blocks"] == (100 + 7) // 4


def test_token_ids_of_repeated_history_come_from_the_cache() -> None:
    class Counting(CharTokenizer):
        calls = 0

        def encode(self, text: str) -> list[int]:
            Counting.calls += 1
            return super().encode(text)

    enr = TokenEnricher(KEY, Counting(), block_size=4)
    msgs: list[Any] = [{"role": "user", "content": "a"}]
    enr.analyse(_round(list(msgs)))
    first = Counting.calls
    msgs += [{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    enr.analyse(_round(list(msgs)))
    assert Counting.calls - first == 2  # only the two new messages


def test_chat_completions_system_messages_count_as_the_system_segment() -> None:
    sys_msg = {"role": "system", "content": "Be terse."}
    user = {"role": "user", "content": "hi"}
    rnd = _round([sys_msg, user], system=None)
    rnd.provider, rnd.api = "openai", "openai_chat"
    t = TokenEnricher(KEY, CharTokenizer(), block_size=4).analyse(rnd)
    assert t["segments"]["system"] == _len(sys_msg, "openai_chat")
    assert t["segments"]["new_input"] == _len(user, "openai_chat")
    assert t["segments"]["history"] == 0


def test_reused_prefix_blocks_outlive_the_global_index_bound() -> None:
    enr = TokenEnricher(KEY, CharTokenizer(), block_size=4, global_hashes=40)
    system = "S" * 64  # 16 blocks shared by every session
    for i in range(6):  # each session adds ~10 unique blocks: the index overflows
        t = enr.analyse(
            _round([{"role": "user", "content": f"{i}" * 40}], system=system, session=f"s{i}")
        )
    assert t["reuse_any_blocks"] >= 16


def test_responses_items_split_at_the_last_model_item() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]
    rnd = _round(items, system="You are Codex.")
    rnd.provider, rnd.api = "codex", "openai_responses"
    t = TokenEnricher(KEY, CharTokenizer(), block_size=4).analyse(rnd)
    assert t["segments"]["system"] == len("You are Codex.")
    assert t["segments"]["history"] == sum(_len(i, "openai_responses") for i in items[:3])
    assert t["segments"]["new_input"] == _len(items[3], "openai_responses")
