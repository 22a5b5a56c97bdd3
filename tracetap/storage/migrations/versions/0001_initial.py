"""initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 07:37:03.732528
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("hash", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("codec", sa.String(length=8), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_blobs")),
    )
    op.create_table(
        "schema_info",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_schema_info")),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("agent_session_id", sa.Text(), nullable=False),
        sa.Column("session_source", sa.Text(), nullable=True),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("project", sa.Text(), nullable=True),
        sa.Column("main_system_key", sa.String(length=32), nullable=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("provider", "agent_session_id", name=op.f("uq_sessions_provider")),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.Text(), nullable=False),
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("api", sa.String(length=32), nullable=False),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("model_requested", sa.Text(), nullable=True),
        sa.Column("response_id", sa.Text(), nullable=True),
        sa.Column("turn_id", sa.Text(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=True),
        sa.Column("request_at", sa.Float(precision=53), nullable=False),
        sa.Column("upstream_first_byte_at", sa.Float(precision=53), nullable=True),
        sa.Column("first_token_at", sa.Float(precision=53), nullable=True),
        sa.Column("last_token_at", sa.Float(precision=53), nullable=True),
        sa.Column("end_at", sa.Float(precision=53), nullable=True),
        sa.Column("input_tokens_total", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("uncached_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_5m_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_1h_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_read_input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=True),
        sa.Column("user_message_count", sa.Integer(), nullable=False),
        sa.Column("tool_result_count", sa.Integer(), nullable=False),
        sa.Column("user_message_chars", sa.Integer(), nullable=False),
        sa.Column("tool_result_chars", sa.Integer(), nullable=False),
        sa.Column("first_input_type", sa.String(length=16), nullable=True),
        sa.Column("content_policy", sa.String(length=16), nullable=False),
        sa.Column("system_key", sa.String(length=32), nullable=True),
        sa.Column("thread_key", sa.String(length=32), nullable=True),
        sa.Column("envelope_hash", sa.String(length=32), nullable=True),
        sa.Column("system_hash", sa.String(length=32), nullable=True),
        sa.Column(
            "system_blocks",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("tools_hash", sa.String(length=32), nullable=True),
        sa.Column("msg_parent_uid", sa.String(length=64), nullable=True),
        sa.Column("msg_prefix_len", sa.Integer(), nullable=False),
        sa.Column(
            "msg_new",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("msg_count", sa.Integer(), nullable=False),
        sa.Column("response_hash", sa.String(length=32), nullable=True),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("timeline_hash", sa.String(length=32), nullable=True),
        sa.Column("stream_events", sa.Integer(), nullable=False),
        sa.Column("request_bytes", sa.BigInteger(), nullable=False),
        sa.Column("response_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "extra",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["session_pk"], ["sessions.id"], name=op.f("fk_rounds_session_pk_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rounds")),
        sa.UniqueConstraint("uid", name=op.f("uq_rounds_uid")),
    )
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rounds_request_at"), ["request_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_rounds_session_pk"), ["session_pk"], unique=False)

    op.create_table(
        "side_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("session_pk", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("request_at", sa.Float(precision=53), nullable=False),
        sa.Column("end_at", sa.Float(precision=53), nullable=True),
        sa.Column("request_bytes", sa.BigInteger(), nullable=False),
        sa.Column("response_bytes", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("request_hash", sa.String(length=32), nullable=True),
        sa.Column("response_hash", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_pk"], ["sessions.id"], name=op.f("fk_side_requests_session_pk_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_side_requests")),
        sa.UniqueConstraint("uid", name=op.f("uq_side_requests_uid")),
    )
    op.create_table(
        "timing_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_pk", sa.Integer(), nullable=False),
        sa.Column("event_index", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.Float(precision=53), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("tool_call_id", sa.Text(), nullable=True),
        sa.Column("tool_name", sa.Text(), nullable=True),
        sa.Column("tool_index", sa.Integer(), nullable=True),
        sa.Column("chars", sa.Integer(), nullable=True),
        sa.Column("is_error", sa.Boolean(), nullable=True),
        sa.Column("internal_latency_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["round_pk"], ["rounds.id"], name=op.f("fk_timing_events_round_pk_rounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timing_events")),
        sa.UniqueConstraint("round_pk", "event_index", name=op.f("uq_timing_events_round_pk")),
    )
    with op.batch_alter_table("timing_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timing_events_tool_call_id"), ["tool_call_id"], unique=False
        )

    op.create_table(
        "tool_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_pk", sa.Integer(), nullable=False),
        sa.Column("tool_index", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("input_hash", sa.String(length=32), nullable=True),
        sa.Column("input_chars", sa.Integer(), nullable=False),
        sa.Column("emitted_at", sa.Float(precision=53), nullable=True),
        sa.Column("result_at", sa.Float(precision=53), nullable=True),
        sa.Column("result_chars", sa.Integer(), nullable=True),
        sa.Column("is_error", sa.Boolean(), nullable=True),
        sa.Column("wall_latency_ms", sa.BigInteger(), nullable=True),
        sa.Column("internal_latency_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["round_pk"], ["rounds.id"], name=op.f("fk_tool_calls_round_pk_rounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_calls")),
        sa.UniqueConstraint("round_pk", "tool_index", name=op.f("uq_tool_calls_round_pk")),
    )
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tool_calls_call_id"), ["call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_calls_call_id"))

    op.drop_table("tool_calls")
    with op.batch_alter_table("timing_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timing_events_tool_call_id"))

    op.drop_table("timing_events")
    op.drop_table("side_requests")
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rounds_session_pk"))
        batch_op.drop_index(batch_op.f("ix_rounds_request_at"))

    op.drop_table("rounds")
    op.drop_table("sessions")
    op.drop_table("schema_info")
    op.drop_table("blobs")
