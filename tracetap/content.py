"""Content addressing: canonical JSON bytes, their hash, and zstd compression for blobs.

The same message re-sent on every request hashes the same, so the store keeps it once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import zstandard

__all__ = ["canonical", "decode", "digest", "dumps", "encode", "json_text", "load_json", "loads"]

_ZC = zstandard.ZstdCompressor(level=3)
_ZD = zstandard.ZstdDecompressor()


def canonical(obj: Any) -> bytes:
    """Stable JSON bytes: sorted keys, no spaces, UTF-8."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        return _stdlib_json(obj, sort_keys=True)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (key order kept)."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        return _stdlib_json(obj)


def json_text(obj: Any) -> str:
    """Compact JSON text for the store's JSON columns (orjson: one C call, not json.dumps)."""
    return dumps(obj).decode()


def _stdlib_json(obj: Any, *, sort_keys: bool = False) -> bytes:
    """json.dumps for what orjson refuses (integers beyond 64 bits, non-string keys, lone
    surrogates): UTF-8 like orjson's, but with \\u escapes when a lone surrogate (a broken
    emoji in a tool's output, which JSON.stringify sends escaped) has no UTF-8."""
    text = json.dumps(obj, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(obj, sort_keys=sort_keys, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError on malformed input."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # orjson refuses some valid JSON (e.g. huge integers)


def digest(data: bytes) -> str:
    """128-bit content address (hex)."""
    return hashlib.sha256(data).hexdigest()[:32]


def encode(data: bytes) -> tuple[str, bytes]:
    """(codec, stored bytes): zstd when it saves space, else raw."""
    if len(data) >= 64:
        packed = _ZC.compress(data)
        if len(packed) < len(data):
            return "zstd", packed
    return "raw", data


def decode(codec: str, data: bytes) -> bytes:
    return _ZD.decompress(data) if codec == "zstd" else bytes(data)


def load_json(codec: str, data: bytes) -> Any:
    return loads(decode(codec, data))
