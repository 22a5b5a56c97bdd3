"""OpenAI Chat Completions (`/v1/chat/completions`, SSE or JSON) -> Round.

Streams carry tool_call deltas per index and, with include_usage, a final usage chunk.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tracetap.model import Exchange, InputEvent, OutputEvent, Round, ToolCall
from tracetap.wire.adapters.base import (
    UNPARSED,
    after_last,
    content_chars,
    event_data,
    finish,
    loads,
    new_round,
    split_body,
    unparsed_envelope,
    user_text_chars,
)

__all__ = ["OpenAIChat"]


class OpenAIChat:
    name = "openai_chat"
    body_parts: ClassVar[dict[str, str]] = {"tools": "tools", "messages": "messages"}

    def matches(self, method: str, path: str) -> bool:
        return method == "POST" and path.split("?", 1)[0].rstrip("/").endswith("/chat/completions")

    def to_round(self, exchange: Exchange, body: Any = UNPARSED) -> Round:
        rnd = new_round(exchange, "openai", "/v1/chat/completions")
        if body is UNPARSED:
            body = loads(exchange.request_body)
        rnd.envelope, _, rnd.tools, rnd.messages = split_body(
            body, ("_no_system_field", "tools", "messages")
        )
        if body is None:
            rnd.envelope = unparsed_envelope(exchange)
        if isinstance(body, dict):
            rnd.model_requested = body.get("model")
            rnd.stream = bool(body.get("stream"))
            user = body.get("user") or body.get("prompt_cache_key")
            if user:
                rnd.agent_session_id, rnd.session_source = str(user), "prompt_cache_key"
        for header in ("session_id", "session-id", "x-session-id"):
            if exchange.header(header):
                rnd.agent_session_id, rnd.session_source = exchange.header(header), "header"
                break
        rnd.inputs = _new_inputs(rnd.messages)
        return finish(rnd, exchange, stream=_apply_stream, whole=_apply_json)


def _new_inputs(messages: list[Any]) -> list[InputEvent]:
    events: list[InputEvent] = []
    for msg in after_last(messages, lambda m: m.get("role") == "assistant"):
        if msg.get("role") == "tool":
            events.append(
                InputEvent(
                    "tool_result",
                    content_chars(msg.get("content")),
                    "request.messages.tool",
                    tool_call_id=msg.get("tool_call_id"),
                )
            )
        elif msg.get("role") == "user":
            typed = user_text_chars(msg.get("content"))
            if typed is not None:
                events.append(InputEvent("user_message", typed, "request.messages.user"))
    return events


def _apply_usage(rnd: Round, usage: object) -> None:
    if not isinstance(usage, dict):
        return
    rnd.usage.input_tokens_total = usage.get("prompt_tokens")
    rnd.usage.output_tokens = usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details") or {}
    rnd.usage.cached_tokens = details.get("cached_tokens") or 0
    out = usage.get("completion_tokens_details") or {}
    rnd.usage.reasoning_tokens = out.get("reasoning_tokens")


def _emit(
    rnd: Round, text: str, reasoning: str, calls: list[dict[str, Any]], times: dict[str, float]
) -> None:
    if reasoning:
        rnd.outputs.append(
            OutputEvent(
                "reasoning",
                times["reasoning"],
                len(reasoning),
                "response.choices.delta.reasoning_content",
            )
        )
    if text:
        rnd.outputs.append(
            OutputEvent("text", times["text"], len(text), "response.choices.delta.content")
        )
    for call in calls:
        index = len(rnd.tool_calls)
        fn = call.get("function") or {}
        at = times.get(f"tool{call.get('_index', index)}", times.get("end", rnd.request_at))
        args = fn.get("arguments") or ""
        rnd.tool_calls.append(
            ToolCall(
                index,
                call.get("id") or "",
                fn.get("name") or "",
                "chat_tool_call",
                args,
                at,
                len(args),
            )
        )
        rnd.outputs.append(
            OutputEvent(
                "tool_call",
                at,
                len(fn.get("arguments") or ""),
                "response.choices.delta.tool_calls",
                tool_call_id=call.get("id"),
                tool_name=fn.get("name"),
                tool_index=index,
            )
        )
    rnd.outputs.sort(key=lambda o: o.at)


def _apply_json(rnd: Round, exchange: Exchange) -> None:
    data = loads(exchange.response_body)
    if not isinstance(data, dict):
        if exchange.response_body:
            rnd.error_type = rnd.error_type or "unparsed_response"
        return
    if isinstance(data.get("error"), dict):
        rnd.error_type = data["error"].get("type") or data["error"].get("code")
        rnd.error_message = data["error"].get("message")
        return
    rnd.response = data
    rnd.response_id, rnd.model = data.get("id"), data.get("model")
    _apply_usage(rnd, data.get("usage"))
    choice = (data.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    rnd.stop_reason = choice.get("finish_reason")
    at = exchange.end_at or rnd.request_at
    calls = [dict(c, _index=i) for i, c in enumerate(msg.get("tool_calls") or [])]
    _emit(
        rnd,
        msg.get("content") or "",
        msg.get("reasoning_content") or "",
        calls,
        {"text": at, "reasoning": at, "end": at},
    )
    if rnd.outputs:
        rnd.first_token_at = rnd.last_token_at = at
    rnd.complete = (exchange.status or 0) < 400


def _apply_stream(rnd: Round, exchange: Exchange) -> None:
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    times: dict[str, float] = {}
    failed = False  # an error chunk: servers still end the stream with [DONE]
    for ev, data in zip(exchange.events, event_data(exchange.events)):
        if ev.data.strip() == "[DONE]":  # the final event
            rnd.complete = not failed
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("error"), dict):
            rnd.error_type = data["error"].get("type") or data["error"].get("code") or "error"
            rnd.error_message = data["error"].get("message")
            rnd.complete, failed = False, True
            continue
        rnd.response_id = data.get("id") or rnd.response_id
        rnd.model = data.get("model") or rnd.model
        if data.get("usage"):
            _apply_usage(rnd, data["usage"])
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            if choice.get("finish_reason"):
                rnd.stop_reason = choice["finish_reason"]
            got = False
            if delta.get("content"):
                text.append(delta["content"])
                times["text"] = ev.at
                got = True
            part = delta.get("reasoning_content") or delta.get("reasoning")
            if part:
                reasoning.append(part)
                times["reasoning"] = ev.at
                got = True
            for tc in delta.get("tool_calls") or []:
                idx = tc.get("index", 0)
                call = calls.setdefault(
                    idx,
                    {
                        "id": None,
                        "type": "function",
                        "_index": idx,
                        "function": {"name": "", "arguments": ""},
                    },
                )
                call["id"] = tc.get("id") or call["id"]
                fn = tc.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
                times[f"tool{idx}"] = ev.at
                got = True
            if got:
                rnd.first_token_at = rnd.first_token_at or ev.at
                rnd.last_token_at = ev.at
    times["end"] = rnd.last_token_at or exchange.end_at or rnd.request_at
    ordered = [calls[i] for i in sorted(calls)]
    _emit(rnd, "".join(text), "".join(reasoning), ordered, times)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if ordered:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "_index"} for c in ordered]
    rnd.response = {
        "id": rnd.response_id,
        "model": rnd.model,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": rnd.stop_reason}],
    }
