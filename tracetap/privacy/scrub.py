"""The content policy transform: scrub secrets and PII (`redacted`) or drop all text (`none`).

Runs in the ingest pipeline before the journal, so nothing it removes ever reaches disk.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tracetap.memo import MISS, Recent, session_key
from tracetap.model import Round
from tracetap.privacy.detect import Detector
from tracetap.privacy.keys import keyed_hash

__all__ = ["POLICIES", "ContentPolicy", "Scrubber"]

POLICIES = ("full", "redacted", "none")

# Header values replaced whole whatever they hold (names contain one of these).
_SECRET_HEADER_PARTS = (
    "token",
    "secret",
    "password",
    "api-key",
    "apikey",
    "auth",
    "cookie",
    "session-key",
    "signature",
)
# JSON keys whose string values are structure, kept under the `none` policy.
_STRUCTURAL_KEYS = frozenset(
    {
        "type",
        "role",
        "id",
        "tool_use_id",
        "call_id",
        "tool_call_id",
        "name",
        "model",
        "status",
        "stop_reason",
        "finish_reason",
        "object",
        "phase",
        "media_type",
        "format",
        "effort",
        "tool_choice",
        "service_tier",
        "cache_control",
        "ttl",
        "stop_sequence",
        "index",
    }
)


def _opaque(parent: dict[str, Any], key: str, value: Any) -> bool:
    """Provider-encrypted blobs and inline media: not text a person wrote, and altering them
    breaks replay (reasoning signatures) or the media itself."""
    if not isinstance(value, str):
        return False
    if key in ("encrypted_content", "signature"):
        return True
    if key == "data" and parent.get("type") in ("base64", "redacted_thinking"):
        return True
    return key in ("image_url", "url") and value.startswith("data:image/")


class Scrubber:
    """Replaces each secret by <secret:RULE:HMAC6> and each PII value by a stable pseudonym."""

    def __init__(
        self,
        key: bytes,
        detector: Detector | None = None,
        *,
        cache_size: int = 50_000,
        cache_chars: int = 32_000_000,
    ) -> None:
        self.key = key
        self.detector = detector or Detector()
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size
        self._cache_chars = cache_chars
        self._cached_chars = 0
        self.findings = 0
        # an agent sends the same headers every round: each (name, value) scrubbed once
        self.header = functools.lru_cache(maxsize=4096)(self._header)

    def _token(self, kind: str, label: str, value: str) -> str:
        h = keyed_hash(self.key, kind, value)
        if kind == "secret":
            return f"<secret:{label}:{h}>"
        if kind == "home":
            return f"user-{h}"
        if kind == "email":
            return f"user-{h}@email.invalid"
        return f"<{kind}:{h}>"

    def text(self, text: str) -> str:
        """Scrubbed text (cached: a session re-sends the same history every round)."""
        if len(text) < 6:
            return text
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        findings = self.detector.find(text)
        out = text
        if findings:
            self.findings += len(findings)
            parts: list[str] = []
            pos = 0
            for f in findings:
                parts.append(text[pos : f.start])
                parts.append(self._token(f.kind, f.label, text[f.start : f.end]))
                pos = f.end
            parts.append(text[pos:])
            out = "".join(parts)
        self._cache[text] = out
        self._cached_chars += len(text) + len(out)
        while self._cache and (
            len(self._cache) > self._cache_size or self._cached_chars > self._cache_chars
        ):
            old_in, old_out = self._cache.popitem(last=False)
            self._cached_chars -= len(old_in) + len(old_out)
        return out

    def obj(self, obj: Any) -> Any:
        """A JSON-like value with every string scrubbed (keys kept)."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, list):
            return [self.obj(v) for v in obj]
        if isinstance(obj, dict):
            return {k: v if _opaque(obj, k, v) else self.obj(v) for k, v in obj.items()}
        return obj

    def json_text(self, text: str) -> str:
        """A JSON document given as text (tool arguments): scrubbed value by value."""
        try:
            value = json.loads(text)
        except (ValueError, TypeError):
            return self.text(text)
        if isinstance(value, str | int | float | bool) or value is None:
            return self.text(text)
        return json.dumps(self.obj(value), ensure_ascii=False, separators=(",", ":"))

    def _header(self, name: str, value: str) -> str:
        """A request header's value scrubbed (through `header`, which remembers the last 4,096)."""
        low = name.lower()
        if any(part in low for part in _SECRET_HEADER_PARTS):
            return f"<secret:header:{keyed_hash(self.key, 'secret', value)}>"
        if value[:1] in "{[":
            return self.json_text(value)
        return self.text(value)


class ContentPolicy:
    """Pipeline transform applying `full`, `redacted` or `none` and recording it on the round."""

    def __init__(
        self, policy: str, key: bytes, scrubber: Scrubber | None = None, *, reuse: bool = True
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown content policy {policy!r}; use one of {', '.join(POLICIES)}")
        self.policy = policy
        self.key = key
        self.scrubber = scrubber or (Scrubber(key) if policy == "redacted" else None)
        # Each session's last rounds: a re-sent element (the same object, see ingest.reuse) takes
        # its earlier output instead of a walk over all its text. False: walk everything.
        self._recent = (
            {part: Recent() for part in ("system", "tools", "messages")} if reuse else None
        )
        # a session sends the same metadata.user_id every round; its pseudonyms are keyed hashes
        self._user_id = functools.lru_cache(maxsize=1024)(self._pseudonymize_user_id)

    def _each(self, rnd: Round, part: str, items: Any, fn: Callable[[Any], Any]) -> Any:
        """`fn` applied to each element of a list part (the earlier output where there is one)."""
        if not isinstance(items, list):
            return fn(items)
        if self._recent is None:
            return [fn(v) for v in items]
        recent, key = self._recent[part], session_key(rnd)
        done = recent.match(key, items)
        out = [fn(v) if r is MISS else r for v, r in zip(items, done)]
        recent.keep(key, items, out)
        return out

    def __call__(self, rnd: Round) -> Round:
        rnd.content_policy = self.policy
        if self.policy == "redacted":
            try:
                rnd.envelope = self._pseudonymous(rnd.envelope)
                self._redact(rnd)  # changes the round only once everything is scrubbed
            except Exception as exc:  # fail closed: keep no text rather than risk a secret
                rnd.content_policy = "none"
                rnd.annotations["privacy_error"] = type(exc).__name__
                self._strip(rnd)
        elif self.policy == "none":
            self._strip(rnd)
        return rnd

    # -- redacted ---------------------------------------------------------------------------
    def _pseudonymous(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """The envelope with metadata.user_id pseudonymized (a copy: the parsed one is kept)."""
        meta = envelope.get("metadata") if isinstance(envelope, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
            user_id = self._user_id(meta["user_id"])
            return {**envelope, "metadata": {**meta, "user_id": user_id}}
        return envelope

    def _redact(self, rnd: Round) -> None:
        s = self.scrubber
        assert s is not None
        envelope = s.obj(rnd.envelope)
        system = self._each(rnd, "system", rnd.system, s.obj)
        tools = self._each(rnd, "tools", rnd.tools, s.obj)
        messages = self._each(rnd, "messages", rnd.messages, s.obj)
        response = s.obj(rnd.response)
        headers = [(k, s.header(k, v)) for k, v in rnd.request_headers]
        arguments = [s.json_text(call.arguments) for call in rnd.tool_calls]
        error = s.text(rnd.error_message) if rnd.error_message else rnd.error_message
        project = s.text(rnd.project) if rnd.project else rnd.project
        rnd.envelope, rnd.system, rnd.tools, rnd.messages = envelope, system, tools, messages
        rnd.response, rnd.request_headers = response, headers
        for call, args in zip(rnd.tool_calls, arguments):
            call.arguments = args
        rnd.error_message, rnd.project = error, project

    def _pseudonymize_user_id(self, value: str) -> str:
        """Claude Code's metadata.user_id: pseudonymize the user and account, keep the session
        (through `_user_id`, which remembers the last 1,024 values)."""
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return json.dumps(
                {
                    k: (
                        v
                        if k == "session_id" or not isinstance(v, str)
                        else f"user-{keyed_hash(self.key, 'user_id', v, 12)}"
                    )
                    for k, v in data.items()
                },
                separators=(",", ":"),
            )
        head, sep, session = value.partition("_session_")
        return f"user-{keyed_hash(self.key, 'user_id', head, 12)}{sep}{session}"

    # -- none -------------------------------------------------------------------------------
    def _stub(self, text: str) -> str:
        return f"<text chars={len(text)} hmac={keyed_hash(self.key, 'text', text, 12)}>"

    def _strip_obj(self, obj: Any, key: str | None = None) -> Any:
        if isinstance(obj, str):
            return obj if key in _STRUCTURAL_KEYS else self._stub(obj)
        if isinstance(obj, list):
            return [self._strip_obj(v, key) for v in obj]
        if isinstance(obj, dict):
            return {k: self._strip_obj(v, k) for k, v in obj.items()}
        return obj

    def _strip(self, rnd: Round) -> None:
        rnd.envelope = self._strip_obj(rnd.envelope)
        rnd.system = self._each(rnd, "system", rnd.system, self._strip_obj)
        rnd.tools = self._each(rnd, "tools", rnd.tools, self._strip_obj)
        rnd.messages = self._each(rnd, "messages", rnd.messages, self._strip_obj)
        rnd.response = self._strip_obj(rnd.response)
        rnd.request_headers = [(k, self._stub(v)) for k, v in rnd.request_headers]
        for call in rnd.tool_calls:
            call.arguments = self._stub(call.arguments)
        if rnd.error_message:
            rnd.error_message = self._stub(rnd.error_message)
        if rnd.project:
            rnd.project = self._stub(rnd.project)
