"""The normalized round survives its dict form (journal, worker processes) unchanged."""

from __future__ import annotations

import pickle

import orjson
import pytest

from tracetap.model import InputEvent, OutputEvent, Round, ToolCall, Usage


def _round() -> Round:
    return Round(
        uid="u1",
        provider="claude",
        api="anthropic_messages",
        transport="sse",
        endpoint="/v1/messages",
        request_at=1.5,
        agent_session_id="s",
        stream=True,
        messages=[{"role": "user", "content": "hi"}],
        request_headers=[("a", "b")],
        usage=Usage(input_tokens_total=10, output_tokens=2),
        stream_timeline=[(1.6, "message_start")],
        inputs=[InputEvent("tool_result", 4, "claude", "t1", True, 12)],
        outputs=[OutputEvent("tool_call", 1.7, 9, "claude", "t2", "Bash", 0)],
        tool_calls=[ToolCall(0, "t2", "Bash", "tool_use", '{"command":"ls"}', 1.7, 16)],
        annotations={"tokens": {"prompt_tokens": 3}},
    )


@pytest.mark.parametrize("carry", ["pickle", "json"])
def test_from_dict_gives_back_the_round(carry: str) -> None:
    """Unpickled or parsed, the dict's keys are not the interned field names."""
    rnd = _round()
    data = (
        pickle.loads(pickle.dumps(rnd.to_dict()))
        if carry == "pickle"
        else orjson.loads(orjson.dumps(rnd.to_dict()))
    )
    assert Round.from_dict(data) == rnd


def test_from_dict_of_an_earlier_version_fills_defaults_and_refuses_unknown_fields() -> None:
    data = _round().to_dict()
    for key in ("annotations", "truncated"):  # fields an earlier version did not have
        del data[key]
    data["usage"].pop("reasoning_tokens")
    data["inputs"][0].pop("internal_latency_ms")
    old = Round.from_dict(data)
    assert old.annotations == {} and old.truncated is False
    assert old.usage.reasoning_tokens is None and old.inputs[0].internal_latency_ms is None
    swapped = dict(_round().to_dict())
    del swapped["kind"]
    swapped["colour"] = "red"  # as many keys as fields, one unknown
    with pytest.raises(TypeError):
        Round.from_dict(swapped)
