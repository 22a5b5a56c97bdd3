"""Round identity from content: the system prompt's key and the project its working directory
names, worked out once per distinct prompt but right for every round."""

from __future__ import annotations

from tracetap.content import digest
from tracetap.identity import assign_identity, normalize_system
from tracetap.model import Round


def _round(system: object, messages: list | None = None) -> Round:
    return Round(
        uid="u",
        provider="claude",
        api="anthropic_messages",
        transport="sse",
        endpoint="/v1/messages",
        request_at=0.0,
        system=system,
        messages=messages or [{"role": "user", "content": "hi"}],
    )


def _billing(i: int) -> dict:
    return {"type": "text", "text": f"x-anthropic-billing-header: cch={i:05x};"}


def test_system_key_and_project_for_alternating_prompts() -> None:
    """Rounds of two agents alternate, each prompt re-sent with a new billing line: each
    round gets its own prompt's key and project, equal to the key of its text."""
    a = {"type": "text", "text": "You are Claude Code.\nPrimary working directory: /home/a/app"}
    b = {"type": "text", "text": "You are a subagent.\nWorking directory: /srv/other-repo"}
    for i in range(6):
        sys_a, sys_b = [_billing(i), a], [_billing(i + 100), dict(b)]  # b: a new dict each time
        ra, rb = _round(sys_a), _round(sys_b)
        assign_identity(ra)
        assign_identity(rb)
        assert (
            ra.system_key
            == digest(("\n" + a["text"]).encode())
            == digest(normalize_system(sys_a).encode())
        )
        assert rb.system_key == digest(normalize_system(sys_b).encode()) != ra.system_key
        assert (ra.project, rb.project) == ("app", "other-repo")


def test_project_from_the_first_messages_when_the_prompt_names_none() -> None:
    rnd = _round(
        "You are Codex.",
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "<environment_context><cwd>/w/tool</cwd>"}],
            }
        ],
    )
    assign_identity(rnd)
    assert rnd.project == "tool" and rnd.system_key == digest(b"You are Codex.")
    bare = _round([_billing(1)])  # nothing but noise: no working directory anywhere
    assign_identity(bare)
    assert bare.project is None


def test_a_system_block_whose_text_is_not_a_string_still_has_an_identity() -> None:
    rnd = _round([{"type": "text", "text": True}, {"type": "text", "text": "You are Claude."}])
    assign_identity(rnd)
    assert normalize_system(rnd.system) == "True\nYou are Claude."
