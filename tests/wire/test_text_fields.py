"""Fields the store keeps as text hold whatever JSON a client sent there, as compact JSON."""

from __future__ import annotations

import json

from tracetap.model import Exchange
from tracetap.wire.adapters import by_name


def test_a_model_that_is_not_a_string_is_kept_as_its_json() -> None:
    body = {"model": ["claude", 3], "max_tokens": 5, "messages": []}
    response = {
        "id": {"odd": True},
        "type": "message",
        "role": "assistant",
        "model": 7,
        "content": [],
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    ex = Exchange(
        uid="u",
        api="anthropic_messages",
        transport="http",
        method="POST",
        scheme="http",
        host="h",
        path="/v1/messages",
        request_headers=[],
        request_body=json.dumps(body).encode(),
        request_at=1.0,
        status=200,
        wire_chunks=[(2.0, json.dumps(response).encode())],
        response_bytes=100,
    )
    from tracetap.wire.frames import frame_exchange

    frame_exchange(ex)
    rnd = by_name("anthropic_messages").to_round(ex)
    assert rnd.model_requested == '["claude",3]'
    assert rnd.model == "7"
    assert rnd.response_id == '{"odd":true}'
