"""Protocol adapters, one module per wire protocol, all producing the normalized Round.

`select(method, path)` picks the adapter on the hot path; anything unmatched passes through.
"""

from __future__ import annotations

from tracetap.wire.adapters.anthropic_messages import AnthropicMessages
from tracetap.wire.adapters.base import Adapter
from tracetap.wire.adapters.openai_chat import OpenAIChat
from tracetap.wire.adapters.openai_responses import OpenAIResponses

__all__ = ["ADAPTERS", "Adapter", "by_name", "select"]

ADAPTERS: tuple[Adapter, ...] = (AnthropicMessages(), OpenAIResponses(), OpenAIChat())
_BY_NAME = {a.name: a for a in ADAPTERS}


def select(method: str, path: str) -> Adapter | None:
    """The adapter for a request line, or None for traffic that is only passed through."""
    for adapter in ADAPTERS:
        if adapter.matches(method, path):
            return adapter
    return None


def by_name(name: str) -> Adapter:
    return _BY_NAME[name]
