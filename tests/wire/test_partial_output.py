"""A Responses stream cut in the middle of an item keeps what the model produced so far, and
an undocumented stream event is kept raw beside the round's response.
"""

from __future__ import annotations

from tests.wire.test_adapters import exchange
from tracetap.wire.adapters import by_name
from tracetap.wire.events import UNKNOWN_KEY

REQUEST = {
    "model": "gpt-5-codex",
    "stream": True,
    "tools": [{"type": "function", "name": "exec_command", "parameters": {}}],
    "input": [{"type": "message", "role": "user", "content": "go"}],
}
RESP = {"id": "resp_cut", "object": "response", "model": "gpt-5-codex", "output": []}


def _round(events: list[tuple[str, dict | str]]):  # type: ignore[no-untyped-def]
    return by_name("openai_responses").to_round(
        exchange("openai_responses", REQUEST, events=events, path="/v1/responses")
    )


def test_message_cut_midstream_keeps_its_text_so_far() -> None:
    message = {"type": "message", "id": "msg_1", "role": "assistant", "content": []}
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command"}
    rnd = _round(
        [
            ("response.created", {"type": "response.created", "response": RESP}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": message},
            ),
            (
                "response.output_text.delta",
                {"type": "response.output_text.delta", "output_index": 0, "delta": "Hello "},
            ),
            (
                "response.output_text.delta",
                {"type": "response.output_text.delta", "output_index": 0, "delta": "wor"},
            ),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 1, "item": call},
            ),
            (
                "response.function_call_arguments.delta",
                {
                    "type": "response.function_call_arguments.delta",
                    "output_index": 1,
                    "delta": '{"cmd": "ec',
                },
            ),
        ]
    )
    assert not rnd.complete and rnd.response is not None
    text, args = rnd.response["output"]
    assert text["status"] == "incomplete" and text["content"][0]["text"] == "Hello wor"
    assert args["arguments"] == '{"cmd": "ec'
    assert [(o.type, o.chars, o.source) for o in rnd.outputs] == [
        ("text", 9, "response.output.message.partial")
    ]
    assert rnd.tool_calls == []  # a call whose arguments never finished was not made


def test_undocumented_event_is_kept_raw_and_the_round_completes() -> None:
    done = dict(RESP, status="completed", usage={"input_tokens": 5, "output_tokens": 1})
    future = '{"type":"response.plan_step.added","step":{"text":"new"}}'
    rnd = _round(
        [
            ("response.created", {"type": "response.created", "response": RESP}),
            ("response.plan_step.added", future),
            ("response.completed", {"type": "response.completed", "response": done}),
        ]
    )
    assert rnd.complete and rnd.usage.input_tokens_total == 5
    assert rnd.response is not None
    [kept] = rnd.response[UNKNOWN_KEY]
    assert kept["type"] == "response.plan_step.added" and kept["data"] == future
