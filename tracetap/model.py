"""The normalized round: one model invocation as every protocol adapter reports it.

Crosses every boundary: proxy -> ingest -> journal -> storage. Times are epoch seconds (float).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

__all__ = [
    "Exchange",
    "InputEvent",
    "OutputEvent",
    "Round",
    "StreamEvent",
    "ToolCall",
    "Usage",
]

# Round kinds.
MAIN, SUBAGENT, SIDE, COMPACTION = "main", "subagent", "side", "compaction"


class _Slotted(Protocol):
    """A dataclass(slots=True) record: its slots are its fields, in order."""

    __slots__: ClassVar[tuple[str, ...]]


def _slots_dict(obj: _Slotted) -> dict[str, Any]:
    names = obj.__slots__
    return (
        dict(zip(names, _getter(type(obj))(obj)))
        if len(names) > 1
        else {name: getattr(obj, name) for name in names}
    )


@functools.cache
def _getter(cls: type[_Slotted]) -> Callable[[object], tuple[Any, ...]]:
    return operator.attrgetter(*cls.__slots__)


@dataclass(slots=True)
class StreamEvent:
    """One event of a response stream (SSE event or WebSocket message) with its arrival time."""

    at: float
    name: str
    data: str


@dataclass(slots=True)
class Exchange:
    """What the proxy saw of one HTTP exchange or one WebSocket request/response pair.

    Filled on the proxy's hot path with no parsing at all: the response is kept as the chunks
    that arrived (`wire_chunks`), framed into `events` or `response_body` off the hot path
    (tracetap.wire.frames); adapters then turn it into a Round.
    """

    uid: str
    api: str  # adapter name, e.g. "anthropic_messages"
    transport: str  # "http" | "sse" | "websocket"
    method: str
    scheme: str
    host: str
    path: str
    request_headers: list[tuple[str, str]]
    request_body: bytes  # decoded (content-encoding removed) copy
    request_at: float
    request_encoding: str | None = None
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    upstream_first_byte_at: float | None = None
    end_at: float | None = None
    events: list[StreamEvent] = field(default_factory=list)
    response_body: bytes = b""  # non-streaming body, decoded
    wire_chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival, raw bytes)
    response_bytes: int = 0  # bytes on the wire to the client
    truncated: bool = False  # retained content hit the cap; timing still complete
    error: str | None = None  # proxy-level error (client disconnect, upstream reset ...)
    client_disconnected: bool = False

    def __getstate__(self) -> dict[str, Any]:
        """Compact pickling (the proxy hands exchanges to the ingest process): stream events
        travel as plain tuples, not one pickled object each."""
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["events"] = [(e.at, e.name, e.data) for e in self.events]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.events = [StreamEvent(*e) for e in state["events"]]

    def header(self, name: str, *, response: bool = False) -> str | None:
        name = name.lower()
        for key, value in self.response_headers if response else self.request_headers:
            if key.lower() == name:
                return value
        return None


@dataclass(slots=True)
class Usage:
    """Token usage as the provider reported it (None where it did not say)."""

    input_tokens_total: int | None = None
    cached_tokens: int | None = None  # prefix served from the provider's cache
    uncached_input_tokens: int | None = None  # Claude usage.input_tokens
    cache_creation_input_tokens: int | None = None
    cache_creation_5m_tokens: int | None = None
    cache_creation_1h_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(slots=True)
class ToolCall:
    """A tool call the model emitted, and (after pairing) what came back."""

    index: int
    call_id: str
    name: str
    kind: str  # tool_use | server_tool_use | function_call | custom_tool_call | chat_tool_call
    arguments: str  # JSON string (raw text for custom tools)
    emitted_at: float | None
    input_chars: int | None = None  # of the arguments as the model sent them (before scrubbing)


@dataclass(slots=True)
class OutputEvent:
    """A block of model output, timed when the proxy saw it complete."""

    type: str  # reasoning | text | tool_call
    at: float
    chars: int
    source: str
    tool_call_id: str | None = None
    tool_name: str | None = None
    tool_index: int | None = None


@dataclass(slots=True)
class InputEvent:
    """New input that triggered a round: a user message or a tool result."""

    type: str  # user_message | tool_result
    chars: int
    source: str
    tool_call_id: str | None = None
    is_error: bool = False
    internal_latency_ms: int | None = None  # e.g. Codex "Wall time: X seconds"


@dataclass(slots=True)
class Round:
    """One model invocation, normalized across Anthropic Messages, OpenAI Responses and Chat."""

    uid: str
    provider: str  # claude | codex | openai
    api: str
    transport: str
    endpoint: str
    request_at: float
    # session identity
    agent_session_id: str | None = None
    session_source: str | None = None  # header | metadata | prompt_cache_key | prefix
    turn_id: str | None = None
    client: str | None = None  # user agent family
    project: str | None = None
    # request content (parsed, possibly scrubbed)
    model_requested: str | None = None
    envelope: dict[str, Any] = field(default_factory=dict)  # everything but the parts below
    system: Any = None
    tools: list[Any] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    stream: bool = False
    # response
    status: int | None = None
    response_id: str | None = None
    model: str | None = None
    response: dict[str, Any] | None = None  # normalized final response object
    stop_reason: str | None = None
    complete: bool = False
    error_type: str | None = None
    error_message: str | None = None
    retry_count: int | None = None
    usage: Usage = field(default_factory=Usage)
    # timing
    upstream_first_byte_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    end_at: float | None = None
    stream_timeline: list[tuple[float, str]] = field(default_factory=list)
    # derived content facts
    inputs: list[InputEvent] = field(default_factory=list)
    outputs: list[OutputEvent] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    kind: str | None = None  # main | subagent | side | compaction (set by ingest)
    system_key: str | None = None  # hash of the normalized system prompt (ingest)
    thread_key: str | None = None  # hash of the conversation's first message (ingest)
    content_policy: str = "full"
    truncated: bool = False
    request_bytes: int = 0
    response_bytes: int = 0
    # Results of pipeline enrichers (e.g. tokenizer segments and block hashes), keyed by name;
    # JSON-serializable, written by the matching storage extension.
    annotations: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (fast: nested records are converted by hand, not deep-copied)."""
        data = _slots_dict(self)  # slots are the fields, in order
        data["usage"] = _slots_dict(self.usage)
        data["inputs"] = [_slots_dict(e) for e in self.inputs]
        data["outputs"] = [_slots_dict(e) for e in self.outputs]
        data["tool_calls"] = [_slots_dict(t) for t in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Round:
        data = dict(data)
        data["usage"] = _build(Usage, data.get("usage") or {})
        data["inputs"] = [_build(InputEvent, e) for e in data.get("inputs") or []]
        data["outputs"] = [_build(OutputEvent, e) for e in data.get("outputs") or []]
        data["tool_calls"] = [_build(ToolCall, t) for t in data.get("tool_calls") or []]
        data["request_headers"] = [tuple(h) for h in data.get("request_headers") or []]
        data["stream_timeline"] = [tuple(t) for t in data.get("stream_timeline") or []]
        return _build(cls, data)


def _build[T: _Slotted](cls: type[T], data: dict[str, Any]) -> T:
    """`cls(**data)`, but positional when `data` names every field: the keys of a dict that
    was unpickled or parsed are not the interned names of the parameters, so matching them as
    keywords compares strings, field by field. Missing fields (a record journaled by an
    earlier version) get their defaults; an unknown one raises TypeError, as `cls(**data)`."""
    if len(data) == len(cls.__slots__):
        try:
            return cls(*_item_getter(cls)(data))
        except KeyError:  # as many keys, not the same ones
            pass
    return cls(**data)


@functools.cache
def _item_getter(cls: type[_Slotted]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    names = cls.__slots__
    return operator.itemgetter(*names) if len(names) > 1 else lambda d: (d[names[0]],)
