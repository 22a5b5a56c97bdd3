"""SQLAlchemy 2 models of the store: sessions -> rounds -> tool calls and timing events.

Content (messages, tools, system prompts, responses) lives once in `blobs`, addressed by hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Blob",
    "Round",
    "RoundTokens",
    "SchemaInfo",
    "Session",
    "SideRequest",
    "TimingEvent",
    "ToolCall",
    "JSONType",
    "Quarantine",
    "SCHEMA_VERSION",
]

# The Alembic revision this code writes; the proxy refuses to run on any other.
SCHEMA_VERSION = "0004_breakpoints"

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: sa.DateTime()}

    if TYPE_CHECKING:
        # DeclarativeBase types it as any FromClause; every model here is mapped to a Table.
        __table__: ClassVar[sa.Table]


class Blob(Base):
    """Content stored once: canonical JSON bytes, zstd-compressed when that is smaller."""

    __tablename__ = "blobs"
    hash: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    size: Mapped[int] = mapped_column(sa.Integer)
    codec: Mapped[str] = mapped_column(sa.String(8))  # "raw" | "zstd"
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (sa.UniqueConstraint("provider", "agent_session_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(32))
    agent_session_id: Mapped[str] = mapped_column(sa.Text)
    session_source: Mapped[str | None] = mapped_column(sa.Text)
    client: Mapped[str | None] = mapped_column(sa.Text)
    project: Mapped[str | None] = mapped_column(sa.Text)
    main_system_key: Mapped[str | None] = mapped_column(sa.String(32))
    origin: Mapped[str] = mapped_column(sa.Text, default="proxy")  # proxy | import:...


class Round(Base):
    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(sa.Text, unique=True)
    session_pk: Mapped[int] = mapped_column(sa.ForeignKey("sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    provider: Mapped[str] = mapped_column(sa.String(32))
    api: Mapped[str] = mapped_column(sa.String(32))
    transport: Mapped[str] = mapped_column(sa.String(16))
    endpoint: Mapped[str] = mapped_column(sa.Text)
    client: Mapped[str | None] = mapped_column(sa.Text)
    model: Mapped[str | None] = mapped_column(sa.Text)
    model_requested: Mapped[str | None] = mapped_column(sa.Text)
    response_id: Mapped[str | None] = mapped_column(sa.Text)
    turn_id: Mapped[str | None] = mapped_column(sa.Text)
    stream: Mapped[bool] = mapped_column(default=False)
    status: Mapped[int | None]
    complete: Mapped[bool] = mapped_column(default=False)
    truncated: Mapped[bool] = mapped_column(default=False)
    stop_reason: Mapped[str | None] = mapped_column(sa.Text)
    error_type: Mapped[str | None] = mapped_column(sa.Text)
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    retry_count: Mapped[int | None] = mapped_column(sa.BigInteger)  # a request header's number
    # proxy timing (epoch seconds)
    request_at: Mapped[float] = mapped_column(sa.Float(precision=53), index=True)
    upstream_first_byte_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    first_token_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    last_token_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    end_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    # provider usage, as the wire gave it: 64-bit, since a count need not fit PostgreSQL's
    # 32-bit integer
    input_tokens_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    cached_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    uncached_input_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    cache_creation_input_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    cache_creation_5m_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    cache_creation_1h_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    cache_read_input_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    reasoning_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)
    # new input that triggered the round
    user_message_count: Mapped[int] = mapped_column(default=0)
    tool_result_count: Mapped[int] = mapped_column(default=0)
    user_message_chars: Mapped[int] = mapped_column(default=0)
    tool_result_chars: Mapped[int] = mapped_column(default=0)
    first_input_type: Mapped[str | None] = mapped_column(sa.String(16))
    # content, by hash
    content_policy: Mapped[str] = mapped_column(sa.String(16), default="full")
    system_key: Mapped[str | None] = mapped_column(sa.String(32))
    thread_key: Mapped[str | None] = mapped_column(sa.String(32))
    envelope_hash: Mapped[str | None] = mapped_column(sa.String(32))
    system_hash: Mapped[str | None] = mapped_column(sa.String(32))
    # A system prompt given as blocks is stored block by block (a block that changes on every
    # request, like Claude Code's billing line, then costs only itself).
    system_blocks: Mapped[list[Any] | None] = mapped_column()
    tools_hash: Mapped[str | None] = mapped_column(sa.String(32))
    msg_parent_uid: Mapped[str | None] = mapped_column(sa.String(64))
    msg_prefix_len: Mapped[int] = mapped_column(default=0)
    msg_new: Mapped[list[Any]] = mapped_column(default=list)
    msg_count: Mapped[int] = mapped_column(default=0)
    response_hash: Mapped[str | None] = mapped_column(sa.String(32))
    headers: Mapped[list[Any]] = mapped_column(default=list)
    # Blob of [[ms since request, event name], ...]: every stream event's arrival time.
    timeline_hash: Mapped[str | None] = mapped_column(sa.String(32))
    stream_events: Mapped[int] = mapped_column(default=0)
    request_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    response_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ToolCall(Base):
    __tablename__ = "tool_calls"
    __table_args__ = (sa.UniqueConstraint("round_pk", "tool_index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    round_pk: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"))
    tool_index: Mapped[int]
    call_id: Mapped[str] = mapped_column(sa.Text, index=True)
    name: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[str] = mapped_column(sa.String(32))
    input_hash: Mapped[str | None] = mapped_column(sa.String(32))
    input_chars: Mapped[int] = mapped_column(default=0)
    emitted_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    # Filled when the result is known at write time (imported rows); proxy rounds pair by
    # tool_call_id with the tool_result timing event of a later request instead.
    result_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    result_chars: Mapped[int | None]
    is_error: Mapped[bool | None]
    wall_latency_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    internal_latency_ms: Mapped[int | None] = mapped_column(sa.BigInteger)


class TimingEvent(Base):
    """Input events (user messages, tool results: the pairing side) and output events."""

    __tablename__ = "timing_events"
    __table_args__ = (sa.UniqueConstraint("round_pk", "event_index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    round_pk: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"))
    event_index: Mapped[int]
    event_type: Mapped[str] = mapped_column(sa.String(16))
    ts: Mapped[float] = mapped_column(sa.Float(precision=53))
    source: Mapped[str] = mapped_column(sa.Text)
    tool_call_id: Mapped[str | None] = mapped_column(sa.Text, index=True)
    tool_name: Mapped[str | None] = mapped_column(sa.Text)
    tool_index: Mapped[int | None]
    chars: Mapped[int | None]
    is_error: Mapped[bool | None]
    internal_latency_ms: Mapped[int | None] = mapped_column(sa.BigInteger)  # as tool_calls'


class SideRequest(Base):
    """Exchanges that are not model rounds: count_tokens, unrecognized endpoints."""

    __tablename__ = "side_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(sa.Text, unique=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    session_pk: Mapped[int | None] = mapped_column(sa.ForeignKey("sessions.id"))
    method: Mapped[str] = mapped_column(sa.String(16))
    host: Mapped[str] = mapped_column(sa.Text)
    path: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[int | None]
    request_at: Mapped[float] = mapped_column(sa.Float(precision=53))
    end_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    request_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    response_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    input_tokens: Mapped[int | None] = mapped_column(sa.BigInteger)  # count_tokens' answer
    request_hash: Mapped[str | None] = mapped_column(sa.String(32))
    response_hash: Mapped[str | None] = mapped_column(sa.String(32))


class SchemaInfo(Base):
    """Key/value facts about the store (e.g. the installation that created it)."""

    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


class RoundTokens(Base):
    __tablename__ = "round_tokens"
    round_pk: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"), primary_key=True)
    tokenizer: Mapped[str] = mapped_column(sa.String(200))
    block_size: Mapped[int]
    prompt_tokens: Mapped[int] = mapped_column(sa.BigInteger)
    n_blocks: Mapped[int] = mapped_column(sa.BigInteger)
    # chain: the first `shared_blocks` hashes are the parent round's; then `new_hashes`
    parent_uid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    shared_blocks: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    new_hashes: Mapped[bytes] = mapped_column(sa.LargeBinary, default=b"")
    reuse_prev_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    reuse_any_blocks: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    reuse_any_uid: Mapped[str | None] = mapped_column(sa.String(64))
    segments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Prompt token offsets right after each element that carried Anthropic `cache_control`
    # (where the provider may write and read a cache entry); NULL when the enricher did not say.
    breakpoints: Mapped[list[Any] | None] = mapped_column()


class Quarantine(Base):
    """A record the writer could not store (its data, not the database, was at fault): kept with
    the error, out of the way of the records after it, for `tracetap db quarantine`."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str | None] = mapped_column(sa.Text, index=True)  # the record's; not unique
    kind: Mapped[str] = mapped_column(sa.String(8))  # round | side
    error: Mapped[str] = mapped_column(sa.Text)  # exception type and first line
    # The record as the journal held it (scrubbed already), compact JSON by `content.encode`;
    # NULL when it could not be serialized (e.g. nested too deeply).
    codec: Mapped[str | None] = mapped_column(sa.String(8))
    record: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[float] = mapped_column(sa.Float(precision=53))  # epoch seconds
    retried_at: Mapped[float | None] = mapped_column(sa.Float(precision=53))
    resolved: Mapped[bool] = mapped_column(default=False)
