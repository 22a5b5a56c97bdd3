"""round_tokens: token segments and compact block hash chains

Revision ID: 0002_tokens
Revises: 0001_initial
Create Date: 2026-11-25 08:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_tokens"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "round_tokens",
        sa.Column("round_pk", sa.Integer(), nullable=False),
        sa.Column("tokenizer", sa.String(length=200), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("n_blocks", sa.Integer(), nullable=False),
        sa.Column("parent_uid", sa.String(length=64), nullable=True),
        sa.Column("shared_blocks", sa.Integer(), nullable=False),
        sa.Column("new_hashes", sa.LargeBinary(), nullable=False),
        sa.Column("reuse_prev_tokens", sa.Integer(), nullable=False),
        sa.Column("reuse_any_blocks", sa.Integer(), nullable=False),
        sa.Column("reuse_any_uid", sa.String(length=64), nullable=True),
        sa.Column("segments", _JSON, nullable=False),
        sa.Column("info", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["round_pk"], ["rounds.id"], name=op.f("fk_round_tokens_round_pk_rounds")
        ),
        sa.PrimaryKeyConstraint("round_pk", name=op.f("pk_round_tokens")),
    )
    with op.batch_alter_table("round_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_round_tokens_parent_uid"), ["parent_uid"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("round_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_round_tokens_parent_uid"))
    op.drop_table("round_tokens")
