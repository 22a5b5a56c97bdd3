"""Tokenizers work with the network unplugged: the shipped tiktoken encoding and a local HF file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracetap.tokens.tokenizer import get_tokenizer

_UNPLUGGED = """
import socket
def unplugged(*a, **k):
    raise OSError("network unplugged")
socket.socket.connect = unplugged
socket.create_connection = unplugged
socket.getaddrinfo = unplugged
from tracetap.tokens.tokenizer import get_tokenizer
print(get_tokenizer().encode("hello world"))
"""


def test_default_tokenizer_needs_no_network_or_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOKEN", "DATA_GYM"))}
    env.update(
        TIKTOKEN_CACHE_DIR=str(tmp_path / "empty-cache"),
        HOME=str(tmp_path),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )
    res = subprocess.run(
        [sys.executable, "-c", _UNPLUGGED], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[15339, 1917]"  # cl100k_base ids of "hello world"


def test_special_token_strings_in_a_prompt_are_text() -> None:
    tok = get_tokenizer()
    ids = tok.encode("see <|endoftext|> and <|fim_prefix|> here")
    assert 100257 not in ids and 100258 not in ids  # the special tokens' ids
    assert tok.encode("<|endoftext|>") == tok.encode("<|") + tok.encode("endoftext") + tok.encode(
        "|>"
    )


def test_hf_tokenizer_from_a_local_file(tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    t = get_tokenizer(f"hf:{path}")
    assert t.encode("hello world again") == [1, 2, 0]
    assert t.name == f"hf:{path}"


def test_unknown_tokenizer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_tokenizer("no_such_encoding")


def test_id_arrays_are_the_encoded_ids() -> None:
    """`ids` (tiktoken's id buffer, copied whole) gives what `encode` gives, special-token
    strings included, and lone surrogates (which tiktoken cannot take) are replaced the same."""
    from array import array

    from tracetap.tokens.tokenizer import id_array

    tok = get_tokenizer()
    assert tok._buffer is not None  # type: ignore[attr-defined]  # the buffer path is taken
    texts = [
        "",
        "hello world",
        "see <|endoftext|> and <|fim_prefix|> here",
        "<|endoftext|>",
        "def f(x):\n    return {'a': [1, 2.5e10]}\n\n\n  \t",
        "naïve 東京 🚀 ﷽ \u200b",
        "lone \ud800 surrogate \udfff",
        "x" * 70_000,
        " ".join(str(i) for i in range(5_000)),
    ]
    for text in texts:
        ids = tok.ids(text)  # type: ignore[attr-defined]
        assert isinstance(ids, array) and ids.typecode == "I"
        assert ids.tolist() == tok.encode(text), text[:40]
        assert id_array(tok, text) == ids


def test_id_array_of_a_tokenizer_without_ids() -> None:
    from tracetap.tokens.tokenizer import id_array

    class Plain:
        name = "plain"

        def encode(self, text: str) -> list[int]:
            return [ord(c) for c in text]

    assert id_array(Plain(), "ab").tolist() == [97, 98]
