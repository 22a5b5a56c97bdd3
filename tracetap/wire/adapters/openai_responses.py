"""OpenAI Responses (`/v1/responses` over SSE, JSON or WebSocket; `/responses/compact`) -> Round.

Output items: reasoning, message, function_call, custom_tool_call; usage with cached/reasoning.
"""

from __future__ import annotations

import json
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
    wall_time_ms,
)
from tracetap.wire.events import keep_unknown

__all__ = ["OpenAIResponses", "codex_turn_id", "is_codex"]

_MODEL_ITEMS = {
    "message",
    "reasoning",
    "function_call",
    "custom_tool_call",
    "local_shell_call",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "mcp_call",
}
_TOOL_ITEMS = {"function_call", "custom_tool_call", "local_shell_call"}
_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def is_codex(exchange: Exchange) -> bool:
    ua = (exchange.header("user-agent") or "").lower()
    originator = (exchange.header("originator") or "").lower()
    return "codex" in ua or "codex" in originator


def codex_turn_id(exchange: Exchange, body: object = None) -> str | None:
    """Codex's turn id: from the request's client_metadata (per message, which is what a
    WebSocket carries), else from the x-codex-turn-metadata header."""
    sources: list[Any] = []
    meta = body.get("client_metadata") if isinstance(body, dict) else None
    if isinstance(meta, dict):
        sources += [meta, loads(meta.get("x-codex-turn-metadata") or "")]
    sources.append(loads(exchange.header("x-codex-turn-metadata") or ""))
    for src in sources:
        if isinstance(src, dict):
            for key in ("turn_id", "turnId", "sub_id"):
                if src.get(key):
                    return str(src[key])
    return None


def _item_chars(item: dict[str, Any]) -> int:
    kind = item.get("type")
    if kind == "message":
        return content_chars(item.get("content"))
    if kind == "reasoning":
        return content_chars(item.get("summary")) + content_chars(item.get("content"))
    if kind == "function_call":
        return len(item.get("arguments") or "")
    if kind == "custom_tool_call":
        return len(item.get("input") or "")
    return len(json.dumps(item.get("action") or {}))


def _tool_args(item: dict[str, Any]) -> str:
    if item.get("type") == "function_call":
        return item.get("arguments") or ""
    if item.get("type") == "custom_tool_call":
        return item.get("input") or ""
    return json.dumps(item.get("action") or {}, separators=(",", ":"))


class OpenAIResponses:
    name = "openai_responses"
    body_parts: ClassVar[dict[str, str]] = {
        "instructions": "system",
        "tools": "tools",
        "input": "messages",
    }

    def matches(self, method: str, path: str) -> bool:
        base = path.split("?", 1)[0].rstrip("/")
        return method in ("POST", "GET") and (
            base.endswith("/responses") or base.endswith("/responses/compact")
        )

    def to_round(self, exchange: Exchange, body: Any = UNPARSED) -> Round:
        base = exchange.path.split("?", 1)[0].rstrip("/")
        compact = base.endswith("/compact")
        codex = is_codex(exchange)
        rnd = new_round(
            exchange,
            "codex" if codex else "openai",
            "/v1/responses/compact" if compact else "/v1/responses",
        )
        if compact:
            rnd.kind = "compaction"
        if body is UNPARSED:
            body = loads(exchange.request_body)
        if isinstance(body, dict) and body.get("type") == "response.create":
            body = {k: v for k, v in body.items() if k != "type"}
            if isinstance(body.get("response"), dict):  # {"type": ..., "response": {...}} form
                body = body["response"]
        rnd.envelope, rnd.system, rnd.tools, rnd.messages = split_body(
            body, ("instructions", "tools", "input")
        )
        if body is None:
            rnd.envelope = unparsed_envelope(exchange)
        if isinstance(body, dict):
            rnd.model_requested = body.get("model")
            rnd.stream = bool(body.get("stream")) or exchange.transport == "websocket"
        for header in ("session_id", "session-id", "thread-id", "thread_id", "conversation_id"):
            if exchange.header(header):
                rnd.agent_session_id, rnd.session_source = exchange.header(header), "header"
                break
        else:
            key = body.get("prompt_cache_key") if isinstance(body, dict) else None
            if key:
                rnd.agent_session_id, rnd.session_source = str(key), "prompt_cache_key"
        rnd.turn_id = codex_turn_id(exchange, body)
        rnd.inputs = _new_inputs(rnd.messages)
        return finish(rnd, exchange, stream=_apply_stream, whole=_apply_json)


def _is_model_item(item: dict[str, Any]) -> bool:
    kind = item.get("type", "message")
    return kind in _MODEL_ITEMS and not (kind == "message" and item.get("role") != "assistant")


def _new_inputs(items: list[Any]) -> list[InputEvent]:
    """Tool outputs and user messages after the last model-produced item."""
    events: list[InputEvent] = []
    for item in after_last(items, _is_model_item):
        kind = item.get("type", "message")
        if kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            events.append(
                InputEvent(
                    "tool_result",
                    content_chars(output),
                    f"request.input.{kind}",
                    tool_call_id=item.get("call_id"),
                    is_error=_is_error_output(output),
                    internal_latency_ms=wall_time_ms(text),
                )
            )
        elif kind == "message" and item.get("role") == "user":
            typed = user_text_chars(item.get("content"))  # not <environment_context>
            if typed is not None:
                events.append(InputEvent("user_message", typed, "request.input.message"))
    return events


def _is_error_output(output: object) -> bool:
    if isinstance(output, str) and output.startswith("{"):
        output = loads(output)
    if isinstance(output, dict):
        meta = output.get("metadata")
        exit_code = meta.get("exit_code") if isinstance(meta, dict) else None
        if isinstance(exit_code, int):
            return exit_code != 0
        if output.get("success") is False:
            return True
    return False


# Deltas whose text makes up an output item, kept for an item the stream never finished.
_PARTIAL_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
    }
)


def _partial_item(item: dict[str, Any], text: str) -> dict[str, Any]:
    """An output item as far as it streamed: its text (or arguments) so far, `incomplete`."""
    item = dict(item, status="incomplete")
    kind = item.get("type")
    if kind == "message":
        item["content"] = [{"type": "output_text", "text": text, "annotations": []}]
    elif kind == "reasoning":
        item["summary"] = [{"type": "summary_text", "text": text}] if text else []
    elif kind == "function_call":
        item["arguments"] = text
    elif kind == "custom_tool_call":
        item["input"] = text
    return item


def _apply_usage(usage: Usage, data: dict[str, Any]) -> None:
    if not isinstance(data, dict):
        return
    usage.input_tokens_total = data.get("input_tokens", usage.input_tokens_total)
    usage.output_tokens = data.get("output_tokens", usage.output_tokens)
    details = data.get("input_tokens_details") or {}
    usage.cached_tokens = details.get("cached_tokens", usage.cached_tokens or 0)
    out_details = data.get("output_tokens_details") or {}
    usage.reasoning_tokens = out_details.get("reasoning_tokens", usage.reasoning_tokens)


def _emit_item(rnd: Round, item: dict[str, Any], at: float) -> None:
    kind = item.get("type")
    source = f"response.output.{kind}"
    if kind == "reasoning":
        rnd.outputs.append(OutputEvent("reasoning", at, _item_chars(item), source))
    elif kind == "message":
        rnd.outputs.append(OutputEvent("text", at, _item_chars(item), source))
    elif kind in _TOOL_ITEMS:
        index = len(rnd.tool_calls)
        call_id = item.get("call_id") or item.get("id") or ""
        name = item.get("name") or kind
        args = _tool_args(item)
        rnd.tool_calls.append(ToolCall(index, call_id, name, kind, args, at, len(args)))
        rnd.outputs.append(
            OutputEvent(
                "tool_call",
                at,
                len(args),
                source,
                tool_call_id=call_id,
                tool_name=name,
                tool_index=index,
            )
        )


def _apply_final(rnd: Round, response: dict[str, Any], at: float, *, emit: bool) -> None:
    rnd.response = response
    rnd.response_id = response.get("id") or rnd.response_id
    rnd.model = response.get("model") or rnd.model
    rnd.stop_reason = response.get("status") or rnd.stop_reason
    _apply_usage(rnd.usage, response.get("usage") or {})
    if emit:
        for item in response.get("output") or []:
            if isinstance(item, dict):
                _emit_item(rnd, item, at)
        if rnd.outputs:
            rnd.first_token_at = rnd.last_token_at = at


def _apply_json(rnd: Round, exchange: Exchange) -> None:
    data = loads(exchange.response_body)
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and "output" not in data:
        rnd.error_type = data["error"].get("type") or data["error"].get("code")
        rnd.error_message = data["error"].get("message")
    elif isinstance(data, dict):
        _apply_final(rnd, data, exchange.end_at or exchange.request_at, emit=True)
        rnd.complete = (exchange.status or 0) < 400
    elif exchange.response_body:
        rnd.error_type = rnd.error_type or "unparsed_response"


def _apply_stream(rnd: Round, exchange: Exchange) -> None:
    done_items: list[dict[str, Any]] = []
    final: dict[str, Any] | None = None
    failed = False  # an error event: no later event makes the round complete
    open_items: dict[int, dict[str, Any]] = {}  # output_index -> item not done yet
    deltas: dict[int, list[str]] = {}  # output_index -> its text or arguments so far
    datas = event_data(exchange.events)
    for ev, data in zip(exchange.events, datas):
        if not isinstance(data, dict):
            continue
        kind = data.get("type") or ev.name
        if kind.endswith(".delta"):
            if rnd.first_token_at is None:
                rnd.first_token_at = ev.at
            rnd.last_token_at = ev.at
            delta = data.get("delta")
            if isinstance(delta, str) and kind in _PARTIAL_DELTAS:
                deltas.setdefault(data.get("output_index", -1), []).append(delta)
        if kind == "response.output_item.added":
            item = data.get("item")
            if isinstance(item, dict):
                open_items[data.get("output_index", len(open_items))] = item
        elif kind in ("response.created", "response.in_progress"):
            resp = data.get("response") or {}
            rnd.response_id = resp.get("id") or rnd.response_id
            rnd.model = resp.get("model") or rnd.model
        elif kind == "response.output_item.done":
            item = data.get("item") or {}
            open_items.pop(data.get("output_index", -1), None)
            done_items.append(item)
            _emit_item(rnd, item, ev.at)
        elif kind in _TERMINAL:
            final = data.get("response") or {}
            failed = failed or kind == "response.failed"
            rnd.complete = not failed
            if kind == "response.failed":
                err = final.get("error") or {}
                rnd.error_type = err.get("code") or err.get("type") or "response_failed"
                rnd.error_message = err.get("message")
        elif kind == "error":
            err = data.get("error")
            if not isinstance(err, dict):
                err = data
            rnd.error_type = err.get("code") or err.get("type") or "error"
            rnd.error_message = err.get("message")
            rnd.complete, failed = False, True
    if final is not None:
        complete = rnd.complete
        _apply_final(rnd, final, rnd.last_token_at or exchange.end_at or rnd.request_at, emit=False)
        rnd.complete = complete
        if not final.get("output"):
            final["output"] = done_items
    else:
        partial = [
            _partial_item(open_items[i], "".join(deltas.get(i, []))) for i in sorted(open_items)
        ]
        for item in partial:  # output the model produced before the stream broke off
            if item.get("type") in ("message", "reasoning") and rnd.last_token_at is not None:
                rnd.outputs.append(
                    OutputEvent(
                        "text" if item["type"] == "message" else "reasoning",
                        rnd.last_token_at,
                        _item_chars(item),
                        f"response.output.{item['type']}.partial",
                    )
                )
        rnd.response = {
            "id": rnd.response_id,
            "model": rnd.model,
            "output": done_items + partial,
            "status": "incomplete",
        }
    if rnd.response is not None:
        keep_unknown(rnd.response, OpenAIResponses.name, exchange.events, datas)
