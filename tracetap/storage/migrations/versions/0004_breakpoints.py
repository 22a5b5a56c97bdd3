"""round_tokens.breakpoints: the prompt token offsets of the provider's cache breakpoints

Revision ID: 0004_breakpoints
Revises: 0003_quarantine
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_breakpoints"
down_revision = "0003_quarantine"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# Adding a nullable column is an in-place ALTER TABLE on every back end (batch mode on SQLite
# does not copy the table for it); rounds stored before this revision keep NULL ("not known").
# Dropping it on SQLite copies `round_tokens`, which only refers to `rounds` and is referred
# to by no table, so the copy cannot break a foreign key (unlike 0003's copy of `rounds`).


def upgrade() -> None:
    with op.batch_alter_table("round_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("breakpoints", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("round_tokens", schema=None) as batch_op:
        batch_op.drop_column("breakpoints")
