"""Content-encoding support for parsing copies: streaming decompressors and whole-body decode.

The bytes on the wire are never touched; only tracetap's own copies are decoded.
"""

from __future__ import annotations

import zlib
from typing import Literal, Protocol, cast

__all__ = ["Decompressor", "decode_body", "decompressor"]


class Decompressor(Protocol):
    """The zlib-style streaming interface (zlib, zstandard and _Brotli all have it)."""

    def decompress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class _Brotli:
    """brotli's streaming decompressor behind the zlib-style decompress()/flush() interface."""

    def __init__(self) -> None:
        import brotli

        self._d = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return cast(bytes, self._d.process(data))  # brotli ships no type information

    def flush(self) -> bytes:
        return b""

    @property
    def eof(self) -> bool:
        return bool(self._d.is_finished())


def decompressor(encoding: str | None) -> Decompressor | Literal[False] | None:
    """A streaming decompressor with decompress()/flush(); None for identity; False for an
    encoding we cannot parse (the bytes still pass through)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=47)
    if enc == "deflate":
        return zlib.decompressobj()
    if enc == "br":
        return _Brotli()
    if enc == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    return False


def decode_body(data: bytes, encoding: str | None) -> bytes:
    """Decode a whole body (possibly several comma-listed encodings).

    Raises ValueError naming what is wrong: "invalid zstd data" (corrupt), "truncated gzip
    data" (the compressed stream stops before its end), "unsupported content-encoding 'x'".
    """
    encodings = [e.strip() for e in (encoding or "").split(",") if e.strip()]
    for enc in reversed(encodings):
        dec = decompressor(enc)
        if dec is None:
            continue
        if dec is False:
            raise ValueError(f"unsupported content-encoding {enc!r}")
        try:
            out = dec.decompress(data) + dec.flush()
        except Exception:  # corrupt data in any codec
            raise ValueError(f"invalid {enc} data") from None
        # a cut stream decodes without an error in zlib and zstd: only its end tells
        if data and not getattr(dec, "eof", True):
            raise ValueError(f"truncated {enc} data")
        data = out
    return data
