"""What every protocol adapter shares: the Adapter interface and small parsing helpers.

An adapter turns one captured Exchange into the normalized Round; it never does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import orjson

from tracetap.content import loads as _loads
from tracetap.model import Exchange, Round, StreamEvent
from tracetap.wire.faults import ENDED_EARLY, REQUEST_OVER_CAP, is_record_fault, is_request_fault

__all__ = [
    "INJECTED_PREFIXES",
    "UNPARSED",
    "Adapter",
    "after_last",
    "client_family",
    "content_chars",
    "event_data",
    "finish",
    "loads",
    "new_round",
    "retry_count",
    "split_body",
    "unparsed_envelope",
    "user_text_chars",
]

_WALL_TIME = re.compile(r"Wall time:\s*([0-9]+(?:\.[0-9]+)?)\s*seconds")


UNPARSED: Any = object()  # to_round's body when the caller has not parsed it


class Adapter(Protocol):
    """One wire protocol. `matches` is cheap (hot path); `to_round` runs off the hot path.

    `body_parts` names the request body's array fields of re-sent content (body field ->
    system, tools or messages); a caller may parse the body itself, reusing earlier rounds'
    objects for them (tracetap.ingest.splice), and pass it as `body`.
    """

    name: str
    body_parts: ClassVar[dict[str, str]]

    def matches(self, method: str, path: str) -> bool: ...

    def to_round(self, exchange: Exchange, body: Any = UNPARSED) -> Round: ...


def loads(raw: bytes | str) -> Any:
    """JSON-decode, returning None for empty or malformed input."""
    if not raw:
        return None
    try:
        return _loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def event_data(events: Sequence[StreamEvent]) -> list[Any]:
    """Each event's data JSON-decoded, as `loads` gives it (None where empty or malformed).
    In one C loop when every event but the last is plain JSON (the last may be Chat
    Completions' `[DONE]`): a response is hundreds of events."""
    datas = [ev.data for ev in events]
    try:
        head = list(map(orjson.loads, datas[:-1]))
    except ValueError:  # an empty or malformed event, or JSON orjson refuses: one by one
        head = list(map(loads, datas[:-1]))
    return head + [loads(d) for d in datas[-1:]]


def unparsed_envelope(exchange: Exchange) -> dict[str, Any]:
    """The envelope of a request body that did not parse: its text, but nothing when the record
    holds only part of the body (cut at the cap) or bytes it could not decode."""
    if not exchange.request_body or is_request_fault(exchange.error):
        return {}
    return {"_unparsed_body": exchange.request_body.decode("utf-8", "replace")}


def split_body(
    body: Any, parts: tuple[str, str, str]
) -> tuple[dict[str, Any], Any, list[Any], list[Any]]:
    """Split a request body into (envelope, system, tools, messages) by the given field names."""
    if not isinstance(body, dict):
        return {}, None, [], []
    system_key, tools_key, messages_key = parts
    envelope = {k: v for k, v in body.items() if k not in parts}
    tools = body.get(tools_key) or []
    messages = body.get(messages_key) or []
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return envelope, body.get(system_key), list(tools), list(messages)


def content_chars(content: object) -> int:
    """Characters of text in a message content (string, or list of text-bearing parts)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                for key in ("text", "output", "content"):
                    if key in part:
                        total += content_chars(part[key])
                        break
        return total
    if isinstance(content, dict):
        return content_chars(content.get("text") or content.get("content"))
    return len(str(content))


# Text the client injects into user turns (context, reminders), not typed by a person.
INJECTED_PREFIXES = (
    "<system-reminder>",
    "<environment_context>",
    "<user_instructions>",
    "# AGENTS.md instructions",
    "<local-command-stdout>",
    "<task-notification>",  # a Claude Code subagent finished
    "Your response above was cut off",
)  # Claude Code's resume after a cut


def is_injected(text: str) -> bool:
    return text.lstrip().startswith(INJECTED_PREFIXES)


def user_text_chars(content: object) -> int | None:
    """Characters a person typed in a user turn; None when it holds only injected context."""
    if isinstance(content, str):
        return None if is_injected(content) else len(content)
    total, typed = 0, False
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            if not is_injected(part["text"]):
                total += len(part["text"])
                typed = True
    return total if typed else None


def wall_time_ms(text: object) -> int | None:
    """Runner-reported duration from a Codex output ("Wall time: 0.0123 seconds")."""
    if not isinstance(text, str):
        return None
    match = _WALL_TIME.search(text[:4096])
    return round(float(match.group(1)) * 1000) if match else None


def retry_count(exchange: Exchange) -> int | None:
    value = exchange.header("x-stainless-retry-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def client_family(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    return user_agent.split(" ", 1)[0].split("/", 1)[0] or None


def new_round(exchange: Exchange, provider: str, endpoint: str) -> Round:
    """A Round carrying what every adapter copies from the exchange."""
    return Round(
        uid=exchange.uid,
        provider=provider,
        api=exchange.api,
        transport=exchange.transport,
        endpoint=endpoint,
        request_at=exchange.request_at,
        request_headers=list(exchange.request_headers),
        status=exchange.status,
        upstream_first_byte_at=exchange.upstream_first_byte_at,
        end_at=exchange.end_at,
        retry_count=retry_count(exchange),
        client=client_family(exchange.header("user-agent")),
        truncated=exchange.truncated,
        request_bytes=_request_bytes(exchange),
        response_bytes=exchange.response_bytes,
        stream_timeline=[(e.at, e.name) for e in exchange.events],
    )


def _request_bytes(exchange: Exchange) -> int:
    """The request body's size: the body's, or for one the proxy kept only a prefix of, the
    size its content-length header declares when it has one."""
    kept = len(exchange.request_body)
    if exchange.error == REQUEST_OVER_CAP:
        declared = exchange.header("content-length") or ""
        if declared.isdigit() and int(declared) > kept:
            return int(declared)
    return kept


def after_last(
    items: list[Any], is_output: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The items after the last model-produced one: the new input of this request."""
    last = -1
    for i in range(len(items) - 1, -1, -1):  # from the end: the history is long, the input short
        if isinstance(items[i], dict) and is_output(items[i]):
            last = i
            break
    return [item for item in items[last + 1 :] if isinstance(item, dict)]


def finish(
    rnd: Round,
    exchange: Exchange,
    *,
    stream: Callable[[Round, Exchange], None],
    whole: Callable[[Round, Exchange], None],
) -> Round:
    """What every adapter does last: read the response (`stream(rnd, exchange)` for an event
    stream, `whole(rnd, exchange)` for one body), account for what the record lacks and for the
    connection, default the model."""
    (stream if exchange.events else whole)(rnd, exchange)
    account(rnd, exchange)
    rnd.model_requested = _as_text(rnd.model_requested)
    rnd.model = _as_text(rnd.model) or rnd.model_requested
    rnd.response_id = _as_text(rnd.response_id)
    return rnd


def _as_text(value: object) -> str | None:
    """A field the store keeps as text, as the client or upstream sent it: a string as it is,
    any other JSON value as its compact JSON (a client may send anything in `model`)."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def account(rnd: Round, exchange: Exchange) -> None:
    """Settle `complete` and `error_type` with what the proxy and the wire layer saw.

    The adapter set `complete` when the response reached its final event (or came whole). A
    record fault (tracetap.wire.faults: a body cut at the cap or undecodable) makes the round
    incomplete and is its error_type, unless the API named an error. A transport error counts
    only for a stream that had not reached its final event: clients such as the OpenAI SDK and
    Codex close the connection right after the last event. An event stream that ended short
    with no reason given is named `ENDED_EARLY`.
    """
    fault = exchange.error
    if is_record_fault(fault):
        rnd.complete = False
        if rnd.error_type is None or rnd.error_type == "unparsed_response":
            rnd.error_type = fault
        return
    if exchange.truncated:  # cut at the cap, with a transport error taking the reason's place
        rnd.complete = False
    if rnd.complete:
        return
    if exchange.client_disconnected:
        rnd.error_type = rnd.error_type or "client_disconnected"
        rnd.error_message = rnd.error_message or fault
    elif fault:
        rnd.error_type = rnd.error_type or "connection_error"
        rnd.error_message = rnd.error_message or fault
    elif rnd.error_type is None and (exchange.events or exchange.transport != "http"):
        rnd.error_type = ENDED_EARLY
