"""64-bit token and usage counts; the quarantine of records the writer could not store

Revision ID: 0003_quarantine
Revises: 0002_tokens
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0003_quarantine"
down_revision = "0002_tokens"
branch_labels = None
depends_on = None

# table -> its count columns that hold numbers from the wire (or derived from them)
_COUNTS = {
    "rounds": (
        "retry_count",
        "input_tokens_total",
        "cached_tokens",
        "uncached_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation_5m_tokens",
        "cache_creation_1h_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "reasoning_tokens",
    ),
    "side_requests": ("input_tokens",),
    "timing_events": ("internal_latency_ms",),
    "round_tokens": (
        "prompt_tokens",
        "n_blocks",
        "shared_blocks",
        "reuse_prev_tokens",
        "reuse_any_blocks",
    ),
}
_NOT_NULL = {"prompt_tokens", "n_blocks", "shared_blocks", "reuse_prev_tokens", "reuse_any_blocks"}


def _retype(old: type[sa.types.TypeEngine[int]], new: type[sa.types.TypeEngine[int]]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with _foreign_keys_off():
            _alter(old, new)
    else:
        _alter(old, new)


def _alter(old: type[sa.types.TypeEngine[int]], new: type[sa.types.TypeEngine[int]]) -> None:
    for table, columns in _COUNTS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(
                    column,
                    existing_type=old(),
                    type_=new(),
                    existing_nullable=column not in _NOT_NULL,
                )


@contextmanager
def _foreign_keys_off() -> Iterator[None]:
    """SQLite changes a column's type by copying the table and dropping the old one; dropping
    `rounds` while foreign keys are enforced would delete, or refuse for, the rows of the tables
    that refer to it. Enforcement can only be switched off outside a transaction: what the
    revisions before this one did is committed first (SQLite commits DDL as it runs anyway),
    and the copy is checked with `foreign_key_check` before it is committed."""
    raw = op.get_bind().connection.driver_connection
    if raw.in_transaction:
        raw.commit()
    enforced = raw.execute("PRAGMA foreign_keys").fetchone()[0]
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the copy: {broken[:5]}")
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.execute(f"PRAGMA foreign_keys={int(enforced)}")


def upgrade() -> None:
    _retype(sa.Integer, sa.BigInteger)
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("codec", sa.String(length=8), nullable=True),
        sa.Column("record", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.Column("retried_at", sa.Float(precision=53), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_uid"), ["uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_uid"))
    op.drop_table("quarantine")
    _retype(sa.BigInteger, sa.Integer)
