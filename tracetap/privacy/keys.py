"""The installation's secret key and the keyed hashes (HMAC-SHA256) made with it.

One key serves ingest and exports, so the pseudonyms of both agree: TRACETAP_KEY (hex or text),
else the file TRACETAP_KEY_FILE, else `pseudonym.key` in the user data directory, created 0600
with 32 random bytes on first use. A team shares one file so its contributors' pseudonyms agree.
The key is never stored with data.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from platformdirs import user_data_dir

__all__ = ["default_key_file", "keyed_hash", "load_key"]


def default_key_file() -> Path:
    return Path(
        os.environ.get("TRACETAP_KEY_FILE") or Path(user_data_dir("tracetap")) / "pseudonym.key"
    )


def load_key(path: str | Path | None = None) -> bytes:
    """The key bytes; creates the key file (0600) when it does not exist yet."""
    if path is None and os.environ.get("TRACETAP_KEY"):
        value = os.environ["TRACETAP_KEY"].strip()
        try:
            return bytes.fromhex(value)
        except ValueError:
            return value.encode()
    file = Path(path) if path is not None else default_key_file()
    if file.exists():
        data = file.read_bytes().strip()
        if len(data) < 16:
            raise ValueError(f"pseudonym key {file} is too short (need at least 16 bytes)")
        return data
    file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def keyed_hash(key: bytes, kind: str, value: str, length: int = 6) -> str:
    """Hex HMAC of (kind, value): stable across rounds and sessions, not reversible."""
    mac = hmac.new(
        key, kind.encode() + b"\0" + value.encode("utf-8", "surrogatepass"), hashlib.sha256
    )
    return mac.hexdigest()[:length]
