"""What every protocol adapter shares: the Adapter interface and small parsing helpers.

An adapter turns one captured Exchange into the normalized Round; it never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import orjson

from tracetap.content import loads as _loads
from tracetap.model import Exchange, Round, StreamEvent

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
        request_bytes=len(exchange.request_body),
        response_bytes=exchange.response_bytes,
        stream_timeline=[(e.at, e.name) for e in exchange.events],
    )


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
    stream, `whole(rnd, exchange)` for one body), account for the connection, default the
    model."""
    (stream if exchange.events else whole)(rnd, exchange)
    apply_proxy_error(rnd, exchange)
    rnd.model = rnd.model or rnd.model_requested
    return rnd


def apply_proxy_error(rnd: Round, exchange: Exchange) -> None:
    """Mark a round cut short by the proxy's view of the connection.

    A round whose stream already reached its terminal event stays complete: clients such as
    the OpenAI SDK and Codex close the connection right after the last event.
    """
    if rnd.complete or not (exchange.client_disconnected or exchange.error):
        return
    if exchange.client_disconnected:
        rnd.error_type = rnd.error_type or "client_disconnected"
    else:
        rnd.error_type = rnd.error_type or "connection_error"
    rnd.error_message = rnd.error_message or exchange.error
