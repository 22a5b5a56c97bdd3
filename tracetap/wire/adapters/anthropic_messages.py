"""Anthropic Messages (`/v1/messages`, SSE or JSON) -> Round; `count_tokens` -> side request.

Blocks: thinking, redacted_thinking, text, tool_use, server_tool_use; usage with cache 5m/1h.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from tracetap.model import Exchange, InputEvent, OutputEvent, Round, ToolCall, Usage
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
from tracetap.wire.events import keep_unknown

__all__ = ["AnthropicMessages", "session_from_user_id"]

_LEGACY_SESSION = re.compile(r"_session_([0-9a-fA-F-]{8,})")
_OUTPUT_TYPES = {
    "thinking": "reasoning",
    "redacted_thinking": "reasoning",
    "text": "text",
    "tool_use": "tool_call",
    "server_tool_use": "tool_call",
}


def session_from_user_id(user_id: object) -> str | None:
    """Session part of Claude Code's metadata.user_id (JSON form or legacy `..._session_<id>`)."""
    if not isinstance(user_id, str) or not user_id:
        return None
    if user_id.startswith("{"):
        data = loads(user_id)
        if isinstance(data, dict) and data.get("session_id"):
            return str(data["session_id"])
        return None
    match = _LEGACY_SESSION.search(user_id)
    return match.group(1) if match else None


def _block_chars(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        return len(block.get("text") or "")
    if kind == "thinking":
        return len(block.get("thinking") or "")
    if kind in ("tool_use", "server_tool_use"):
        return len(json.dumps(block.get("input"), ensure_ascii=False)) if "input" in block else 0
    return 0


class AnthropicMessages:
    name = "anthropic_messages"
    body_parts: ClassVar[dict[str, str]] = {
        "system": "system",
        "tools": "tools",
        "messages": "messages",
    }

    def matches(self, method: str, path: str) -> bool:
        base = path.split("?", 1)[0].rstrip("/")
        return method == "POST" and (
            base.endswith("/v1/messages") or base.endswith("/v1/messages/count_tokens")
        )

    def to_round(self, exchange: Exchange, body: Any = UNPARSED) -> Round:
        base = exchange.path.split("?", 1)[0].rstrip("/")
        endpoint = "/v1/messages/count_tokens" if base.endswith("count_tokens") else "/v1/messages"
        rnd = new_round(exchange, "claude", endpoint)
        if endpoint.endswith("count_tokens"):
            rnd.kind = "side"
        if body is UNPARSED:
            body = loads(exchange.request_body)
        rnd.envelope, rnd.system, rnd.tools, rnd.messages = split_body(
            body, ("system", "tools", "messages")
        )
        if body is None:
            rnd.envelope = unparsed_envelope(exchange)
        sid = exchange.header("x-claude-code-session-id")  # even when the body is unparsable
        if sid:
            rnd.agent_session_id, rnd.session_source = sid, "header"
        if isinstance(body, dict):
            rnd.model_requested = body.get("model")
            rnd.stream = bool(body.get("stream"))
            meta = body.get("metadata")
            if not isinstance(meta, dict):
                meta = {}
            if not sid and session_from_user_id(meta.get("user_id")):
                rnd.agent_session_id = session_from_user_id(meta.get("user_id"))
                rnd.session_source = "metadata"
        rnd.inputs = _new_inputs(rnd.messages)
        return finish(rnd, exchange, stream=_apply_stream, whole=_apply_json)


def _new_inputs(messages: list[Any]) -> list[InputEvent]:
    """User messages and tool results after the last assistant message."""
    events: list[InputEvent] = []
    for msg in after_last(messages, lambda m: m.get("role") == "assistant"):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                events.append(
                    InputEvent(
                        "tool_result",
                        content_chars(block.get("content")),
                        "request.messages.tool_result",
                        tool_call_id=block.get("tool_use_id"),
                        is_error=bool(block.get("is_error")),
                    )
                )
        typed = user_text_chars(content)  # system reminders are not user input
        if typed is not None:
            events.append(InputEvent("user_message", typed, "request.messages.text"))
    return events


def _apply_usage(usage: Usage, data: dict[str, Any]) -> None:
    mapping = {
        "input_tokens": "uncached_input_tokens",
        "cache_creation_input_tokens": "cache_creation_input_tokens",
        "cache_read_input_tokens": "cache_read_input_tokens",
        "output_tokens": "output_tokens",
    }
    for src, dst in mapping.items():
        if isinstance(data.get(src), int):
            setattr(usage, dst, data[src])
    creation = data.get("cache_creation")
    if isinstance(creation, dict):
        if isinstance(creation.get("ephemeral_5m_input_tokens"), int):
            usage.cache_creation_5m_tokens = creation["ephemeral_5m_input_tokens"]
        if isinstance(creation.get("ephemeral_1h_input_tokens"), int):
            usage.cache_creation_1h_tokens = creation["ephemeral_1h_input_tokens"]
    parts = (
        usage.uncached_input_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    )
    if any(p is not None for p in parts):
        usage.input_tokens_total = sum(p or 0 for p in parts)
        usage.cached_tokens = usage.cache_read_input_tokens or 0


def _finish_block(rnd: Round, block: dict[str, Any], at: float) -> None:
    kind = _OUTPUT_TYPES.get(block.get("type", ""))
    if kind is None:
        return
    source = f"response.content.{block.get('type')}"
    if kind == "tool_call":
        index = len(rnd.tool_calls)
        args = json.dumps(block.get("input", {}), ensure_ascii=False, separators=(",", ":"))
        rnd.tool_calls.append(
            ToolCall(
                index,
                block.get("id") or "",
                block.get("name") or "",
                block["type"],  # present: it named an output type above
                args,
                at,
                len(args),
            )
        )
        rnd.outputs.append(
            OutputEvent(
                "tool_call",
                at,
                len(args),
                source,
                tool_call_id=block.get("id"),
                tool_name=block.get("name"),
                tool_index=index,
            )
        )
    else:
        rnd.outputs.append(OutputEvent(kind, at, _block_chars(block), source))


def _apply_json(rnd: Round, exchange: Exchange) -> None:
    data = loads(exchange.response_body)
    if not isinstance(data, dict):
        if exchange.response_body:
            rnd.error_type = rnd.error_type or "unparsed_response"
        return
    rnd.response = data
    if rnd.endpoint.endswith("count_tokens"):
        if isinstance(data.get("input_tokens"), int):
            rnd.usage.input_tokens_total = data["input_tokens"]
        rnd.complete = (exchange.status or 0) < 400
        return
    if data.get("type") == "error":
        err = data.get("error") or {}
        rnd.error_type, rnd.error_message = err.get("type"), err.get("message")
        return
    rnd.response_id, rnd.model = data.get("id"), data.get("model")
    rnd.stop_reason = data.get("stop_reason")
    _apply_usage(rnd.usage, data.get("usage") or {})
    at = exchange.end_at or exchange.request_at
    for block in data.get("content") or []:
        if isinstance(block, dict):
            _finish_block(rnd, block, at)
    if rnd.outputs:
        rnd.first_token_at = rnd.last_token_at = at
    rnd.complete = (exchange.status or 0) < 400


def _apply_stream(rnd: Round, exchange: Exchange) -> None:
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    content: list[dict[str, Any]] = []
    first = last = None
    failed = False  # an error event: no later event makes the round complete
    datas = event_data(exchange.events)
    for ev, data in zip(exchange.events, datas):
        if not isinstance(data, dict):
            continue
        kind = data.get("type") or ev.name
        if kind == "content_block_delta":  # nearly every event: tested first
            if first is None:
                first = ev.at
            last = ev.at
            idx = data.get("index", 0)
            block = blocks.get(idx)
            if block is None:
                block = blocks[idx] = {}
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif dtype == "signature_delta":
                block["signature"] = block.get("signature", "") + delta.get("signature", "")
            elif dtype == "input_json_delta":
                partial.setdefault(idx, []).append(delta.get("partial_json", ""))
            elif dtype == "citations_delta":
                block.setdefault("citations", []).append(delta.get("citation"))
        elif kind == "message_start":
            message = dict(data.get("message") or {})
            rnd.response_id, rnd.model = message.get("id"), message.get("model")
            _apply_usage(rnd.usage, message.get("usage") or {})
        elif kind == "content_block_start":
            idx = data.get("index", len(blocks))
            blocks[idx] = dict(data.get("content_block") or {})
            partial[idx] = []
        elif kind == "content_block_stop":
            idx = data.get("index", 0)
            block = blocks.pop(idx, {})
            raw = "".join(partial.pop(idx, []))
            if block.get("type") in ("tool_use", "server_tool_use"):
                parsed = loads(raw) if raw else None
                block["input"] = (
                    parsed
                    if parsed is not None
                    else (block.get("input") if not raw else {"_unparsed": raw})
                )
            content.append(block)
            _finish_block(rnd, block, ev.at)
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            rnd.stop_reason = delta.get("stop_reason") or rnd.stop_reason
            _apply_usage(rnd.usage, data.get("usage") or {})
        elif kind == "message_stop":  # the final event: complete unless an error came first
            rnd.complete = not failed
        elif kind == "error":
            err = data.get("error") or {}
            rnd.error_type, rnd.error_message = err.get("type") or "error", err.get("message")
            rnd.complete, failed = False, True
    if first is not None:
        rnd.first_token_at, rnd.last_token_at = first, last
    for idx in sorted(blocks):  # blocks the stream never closed: keep what was seen
        block = blocks[idx]
        if partial.get(idx):
            block["_partial_input_json"] = "".join(partial[idx])
        content.append(block)
        kind = _OUTPUT_TYPES.get(block.get("type", ""))
        if kind in ("reasoning", "text") and rnd.last_token_at is not None:
            # output the model produced before the stream broke off
            rnd.outputs.append(
                OutputEvent(
                    kind,
                    rnd.last_token_at,
                    _block_chars(block),
                    f"response.content.{block.get('type')}.partial",
                )
            )
    message["content"] = content
    if rnd.stop_reason:
        message["stop_reason"] = rnd.stop_reason
    keep_unknown(message, AnthropicMessages.name, exchange.events, datas)
    rnd.response = message
