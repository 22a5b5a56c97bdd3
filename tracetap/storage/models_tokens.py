"""Token tables: per-round token segments and the compact block hash chain (issue 3).

A round stores only the block hashes that differ from its parent round, plus a pointer.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from tracetap.storage.models import Base

__all__ = ["RoundTokens"]


class RoundTokens(Base):
    __tablename__ = "round_tokens"
    round_pk: Mapped[int] = mapped_column(sa.ForeignKey("rounds.id"), primary_key=True)
    tokenizer: Mapped[str] = mapped_column(sa.String(200))
    block_size: Mapped[int]
    prompt_tokens: Mapped[int]
    n_blocks: Mapped[int]
    # chain: the first `shared_blocks` hashes are the parent round's; then `new_hashes`
    parent_uid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    shared_blocks: Mapped[int] = mapped_column(default=0)
    new_hashes: Mapped[bytes] = mapped_column(sa.LargeBinary, default=b"")
    reuse_prev_tokens: Mapped[int] = mapped_column(default=0)
    reuse_any_blocks: Mapped[int] = mapped_column(default=0)
    reuse_any_uid: Mapped[str | None] = mapped_column(sa.String(64))
    segments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
