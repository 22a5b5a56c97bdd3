"""Rebuild what a round sent and received from the content-addressed store.

Message lists are chains (parent round + shared prefix + new hashes); this walks them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import load_json
from tracetap.storage import models as m

__all__ = ["message_hashes", "request_body", "request_parts", "response"]

# Field names of the request parts per wire protocol.
_FIELDS = {
    "anthropic_messages": ("system", "tools", "messages"),
    "openai_responses": ("instructions", "tools", "input"),
    "openai_chat": (None, "tools", "messages"),
}


def _blob(db: OrmSession, h: str | None) -> Any:
    if h is None:
        return None
    b = db.get(m.Blob, h)
    return None if b is None else load_json(b.codec, b.data)


def message_hashes(db: OrmSession, rnd: m.Round) -> list[str]:
    """The round's full list of message hashes, following parent pointers."""
    chain: list[m.Round] = [rnd]
    seen = {rnd.uid}
    while chain[-1].msg_parent_uid and chain[-1].msg_prefix_len:
        parent = db.scalar(sa.select(m.Round).where(m.Round.uid == chain[-1].msg_parent_uid))
        if parent is None or parent.uid in seen:
            raise LookupError(f"message chain of round {rnd.uid} is broken")
        seen.add(parent.uid)
        chain.append(parent)
    hashes: list[str] = []
    for r in reversed(chain):
        hashes = hashes[: r.msg_prefix_len] + list(r.msg_new)
    return hashes


def request_parts(db: OrmSession, rnd: m.Round) -> dict[str, Any]:
    hashes = message_hashes(db, rnd)
    wanted = set(hashes) | set(rnd.system_blocks or [])
    blobs = {
        b.hash: load_json(b.codec, b.data)
        for b in db.scalars(sa.select(m.Blob).where(m.Blob.hash.in_(wanted)))
    }
    system = (
        [blobs[h] for h in rnd.system_blocks]
        if rnd.system_blocks is not None
        else _blob(db, rnd.system_hash)
    )
    return {
        "envelope": _blob(db, rnd.envelope_hash) or {},
        "system": system,
        "tools": _blob(db, rnd.tools_hash) or [],
        "messages": [blobs[h] for h in hashes],
    }


def request_body(db: OrmSession, rnd: m.Round) -> dict[str, Any]:
    """The request JSON as the client sent it (after any scrubbing the policy applied)."""
    parts = request_parts(db, rnd)
    system_key, tools_key, messages_key = _FIELDS.get(rnd.api, ("system", "tools", "messages"))
    body = dict(parts["envelope"])
    if system_key and parts["system"] is not None:
        body[system_key] = parts["system"]
    if parts["tools"]:
        body[tools_key] = parts["tools"]
    body[messages_key] = parts["messages"]
    return body


def response(db: OrmSession, rnd: m.Round) -> Any:
    return _blob(db, rnd.response_hash)
