"""The ingest steps for a content policy and tokenizer: the transforms every round goes through
(tokenizer enricher, then the content policy) and the writer extensions that store their output.
"""

from __future__ import annotations

from tracetap.ingest.pipeline import Transform
from tracetap.privacy.keys import load_key
from tracetap.privacy.scrub import POLICIES, ContentPolicy
from tracetap.storage.writer import WriterExtension
from tracetap.tokens.enrich import DEFAULT_BLOCK_SIZE, TokenEnricher
from tracetap.tokens.store import TokenStore
from tracetap.tokens.tokenizer import DEFAULT_TOKENIZER

__all__ = ["build_steps", "build_transforms"]


def build_transforms(
    content: str = "redacted",
    key_file: str | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[list[Transform], list[WriterExtension]]:
    """Tokenizer enricher first (raw content), then the content policy; plus the token store.

    `tokenizer="default"` is the offline cl100k tokenizer; `"off"` records no token data.
    Raises ValueError on a bad policy or tokenizer.
    """
    if tokenizer == "default":
        tokenizer = DEFAULT_TOKENIZER
    if content not in POLICIES:
        raise ValueError(f"unknown content policy {content!r}; use one of {', '.join(POLICIES)}")
    key = load_key(key_file)
    transforms: list[Transform] = []
    extensions: list[WriterExtension] = []
    if tokenizer != "off":
        transforms.append(TokenEnricher(key, tokenizer, block_size=block_size))
        extensions.append(TokenStore())
    transforms.append(ContentPolicy(content, key))
    return transforms, extensions


def build_steps(
    content: str = "redacted", key_file: str | None = None, tokenizer: str = "default"
) -> list[Transform]:
    """The transforms of `build_transforms`: what each normalizer process builds for itself."""
    return build_transforms(content, key_file, tokenizer)[0]
