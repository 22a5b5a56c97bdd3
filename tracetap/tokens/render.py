"""The measured prompt: one canonical rendering per API of what the model conditions on.

The tokenizer enricher tokenizes and block-hashes this rendering, so `tracetap cache`/`show`,
the TraceLab export's measured prefix and the Mooncake export's `hash_ids` all follow it. Two
requests that put the same tokens in front of the model render identically, whatever wire
spelling the client chose; a change the model sees changes the rendering at that element.

The prompt is a list of elements (a tool, a system block, a message or input item), each
rendered on its own: the enricher caches token ids per element (by identity, then by text), so
an element's rendering depends only on the element and, where the API says so, on a flag fixed
by its position (`Stripped`), never on its neighbours.

Rules (each has a test in tests/tokens/test_render.py):

1. Transport-only fields never enter the rendering. They steer caching, storage or response
   verification, not the model's input:
   - Anthropic: `cache_control` (a caching directive, anywhere: tool, system block, content
     block, message), a thinking block's `signature` (verifies the thinking text; the model
     reads the text), `defer_loading` tools are not rendered at all (the API keeps them out of
     the context until a tool search loads them).
   - OpenAI Responses: input items' `id` (`msg_…`, `fc_…`, `rs_…`, `fco_…`: storage
     references; the model-visible link between a call and its output is `call_id`, which is
     kept), `status`, an output text's `annotations`/`logprobs`. The request's `store` only
     says whether the response is kept server-side; it changes nothing the model reads.
   - Chat Completions: `cache_control` on content parts (OpenRouter-style hints).
2. `"content": "x"` and `[{"type": "text", "text": "x"}]` render identically (Anthropic
   messages, system blocks and tool_result content; Responses `input_text`/`output_text`
   parts; Chat `text` parts): a text part renders as its text.
3. A `system`-role message inside `messages` (Claude Code's per-turn environment block) is
   rendered where it is sent, like any message, with its role; it counts in the history or
   new-input segment it sits in, not in the top-level system segment.
4. Anthropic thinking: a `thinking` block renders as its text, a `redacted_thinking` block by
   the size and hash of its encrypted `data`. The API drops the thinking blocks of assistant
   turns before the turn in progress (the turn that began with the last user message holding
   more than tool results) from the context; the measured prompt drops them too (`Stripped`),
   unless the request keeps them (`context_management` edit `clear_thinking_20251015` with
   `keep: "all"`, as Claude Code sends). The turn in progress (a tool-use loop) keeps its
   thinking.
5. Tool-call ids are model-visible and kept: Anthropic `tool_use.id` / `tool_result.
   tool_use_id`, Responses `call_id`, Chat `tool_calls[].id` / `tool_call_id`.
6. Images, documents, audio and files render as media type, size and content hash
   (`[image image/png 1234B sha256:…]`), never as base64 text; a URL or file id renders as
   itself.
7. Responses `reasoning` items render their summary and content text, and their
   `encrypted_content` by size and hash (the model reads the decrypted reasoning; its exact
   token count is unknown, so the hash keeps identity and the size keeps scale).
8. Responses `previous_response_id`: the referenced response's prompt (its own input, after
   its own chain), then its output items, then this request's input: that is the context the
   API continues (instructions and tools are this request's: the API does not carry earlier
   `instructions` over). The enricher keeps recent responses' conversations to resolve it;
   when the referenced response was not seen, only what the request sent is measured and the
   round says so (`normalized` holds `previous_response_id-unresolved`).
9. Segment order is the provider's cache order: Anthropic tools → system → messages; OpenAI
   tools → instructions (or leading system/developer messages) → input items as sent.
10. The Claude Code billing line (`x-anthropic-billing-header: …`, different per request) is
    normalized to a stub, as before, and noted in `normalized`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from tracetap.content import canonical
from tracetap.model import Round

__all__ = [
    "ANTHROPIC",
    "CHAT",
    "RESPONSES",
    "Stripped",
    "carries_breakpoint",
    "element_text",
    "is_assistant",
    "keeps_thinking",
    "normalize_text",
    "prompt_parts",
    "renderer",
]

ANTHROPIC = "anthropic_messages"
RESPONSES = "openai_responses"
CHAT = "openai_chat"

_BILLING = re.compile(r"^x-anthropic-billing-header:.*$", re.MULTILINE)
_BILLING_STUB = "x-anthropic-billing-header: <normalized>"
_ASSISTANT_TYPES = frozenset(
    {
        "function_call",
        "reasoning",
        "custom_tool_call",
        "local_shell_call",
        "web_search_call",
        "compaction",
    }
)
_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "summary_text", "reasoning_text"})
_MEDIA_PARTS = frozenset({"image", "document", "input_image", "input_file", "input_audio"})

Render = Callable[[Any], str]


class Stripped:
    """An Anthropic assistant message of an earlier turn, as the model sees it: without its
    thinking blocks. The enricher treats two of them around the same message as the same
    element."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def normalize_text(text: str, notes: set[str]) -> str:
    """Per-request noise that is not part of the cacheable prefix, replaced by a stub."""
    if "x-anthropic-billing-header:" in text:
        notes.add("x-anthropic-billing-header")
        return _BILLING.sub(_BILLING_STUB, text)
    return text


def _json(obj: Any) -> str:
    return canonical(obj).decode()


def _drop(obj: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def _media(kind: str, media_type: Any, data: Any) -> str:
    """A binary payload by media type, size and content hash (base64 decoded when it is)."""
    if isinstance(data, str):
        raw: bytes
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raw = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, bytes):
        raw = data
    else:
        raw = canonical(data)
    h = hashlib.sha256(raw).hexdigest()[:16]
    return f"[{kind} {media_type or '?'} {len(raw)}B sha256:{h}]"


def _data_url(kind: str, url: str) -> str:
    """A `data:` URL by media type, size and hash; any other URL as itself."""
    if url.startswith("data:") and "," in url:
        head, _, data = url.partition(",")
        media_type = head[5:].split(";")[0] or None
        return _media(kind, media_type, data if ";base64" in head else data.encode())
    return f"[{kind} {url}]"


# -- Anthropic Messages -----------------------------------------------------------------------

_A_BLOCK_SKIP = ("type", "cache_control")


def _a_source(kind: str, block: dict[str, Any]) -> str:
    src = block.get("source")
    extra = _drop(block, ("type", "source", "cache_control"))
    tail = f" {_json(extra)}" if extra else ""
    if isinstance(src, dict):
        st = src.get("type")
        if st == "base64":
            return _media(kind, src.get("media_type"), src.get("data")) + tail
        if st == "url":
            return f"[{kind} {src.get('url')}]{tail}"
        if st == "file":
            return f"[{kind} file {src.get('file_id')}]{tail}"
        if st == "text":
            return f"[{kind} {src.get('media_type') or 'text'}]\n{src.get('data')}{tail}"
        if st == "content":
            return f"[{kind}]\n{_a_content(src.get('content'))}{tail}"
    return f"[{kind}] {_json(_drop(block, _A_BLOCK_SKIP))}"


def _a_block(block: Any, strip_thinking: bool) -> str | None:
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return _json(block)
    typ = block.get("type")
    if typ == "text" and isinstance(block.get("text"), str):
        rest = _drop(block, ("type", "text", "cache_control"))
        return block["text"] + (_json(rest) if rest else "")
    if typ == "thinking":
        if strip_thinking:
            return None
        return f"[thinking]\n{block.get('thinking', '')}"
    if typ == "redacted_thinking":
        if strip_thinking:
            return None
        return _media("redacted_thinking", None, block.get("data"))
    if typ in ("tool_use", "server_tool_use"):
        return f"[{typ} {block.get('id')} {block.get('name')}]\n{_json(block.get('input'))}"
    if typ == "tool_result" or (isinstance(typ, str) and typ.endswith("_tool_result")):
        ref = block.get("tool_use_id")
        err = " error" if block.get("is_error") else ""
        return f"[{typ} {ref}{err}]\n{_a_content(block.get('content'))}"
    if typ in ("image", "document"):
        return _a_source(typ, block)
    return _json(_drop(block, ("cache_control",)))


def _a_content(content: Any, strip_thinking: bool = False) -> str:
    """A message's (or tool_result's) content: a string is one text block."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (_a_block(b, strip_thinking) for b in content)
        return "\n".join(p for p in parts if p is not None)
    return _json(content)


def _a_message(msg: Any, strip_thinking: bool = False) -> str:
    if not isinstance(msg, dict):
        return _json(msg)
    rest = _drop(msg, ("role", "content", "cache_control"))
    head = f"[{msg.get('role')}]" + (f" {_json(rest)}" if rest else "")
    return f"{head}\n{_a_content(msg.get('content'), strip_thinking)}"


def _a_element(obj: Any) -> str:
    """A tool, a system block or a message of the Messages API."""
    if isinstance(obj, Stripped):
        return _a_message(obj.obj, strip_thinking=True)
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        if "role" in obj:
            return _a_message(obj)
        if obj.get("type") == "text" and isinstance(obj.get("text"), str):  # system block
            return _a_block(obj, False) or ""
        if obj.get("defer_loading") is True:  # a deferred tool: outside the context
            return ""
        if "name" in obj:  # a tool definition
            return f"[tool]\n{_json(_drop(obj, ('cache_control',)))}"
    return _json(_drop(obj, ("cache_control",)) if isinstance(obj, dict) else obj)


# -- OpenAI Responses -------------------------------------------------------------------------

_R_ITEM_SKIP = ("id", "status", "type")


def _r_part(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return _json(part)
    typ = part.get("type")
    if typ in _TEXT_PARTS and isinstance(part.get("text"), str):
        return part["text"]
    if typ == "refusal":
        return f"[refusal]\n{part.get('refusal', '')}"
    if typ == "input_image":
        if isinstance(part.get("image_url"), str):
            return _data_url("image", part["image_url"])
        return f"[image file {part.get('file_id')}]"
    if typ == "input_file":
        if part.get("file_data") is not None:
            data = part["file_data"]
            if isinstance(data, str) and data.startswith("data:"):
                return _data_url("file", data)
            return _media("file", part.get("filename"), data)
        return f"[file {part.get('file_id') or part.get('file_url')}]"
    if typ == "input_audio":
        audio = part.get("input_audio") or {}
        return _media("audio", audio.get("format"), audio.get("data"))
    return _json(_drop(part, ("annotations", "logprobs")))


def _r_content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_r_part(p) for p in content)
    return _json(content)


def _r_element(obj: Any) -> str:
    """A tool, the instructions, or an input/output item of the Responses API."""
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict):
        return _json(obj)
    typ = obj.get("type")
    if typ == "message" or (typ is None and "role" in obj):
        rest = _drop(obj, (*_R_ITEM_SKIP, "role", "content"))
        head = f"[{obj.get('role')}]" + (f" {_json(rest)}" if rest else "")
        return f"{head}\n{_r_content(obj.get('content'))}"
    if typ in ("function_call", "custom_tool_call"):
        args = obj.get("arguments") if typ == "function_call" else obj.get("input")
        ns = f" {obj['namespace']}" if obj.get("namespace") else ""
        return f"[{typ} {obj.get('call_id')}{ns} {obj.get('name')}]\n{_r_content(args)}"
    if typ in ("function_call_output", "custom_tool_call_output"):
        return f"[{typ} {obj.get('call_id')}]\n{_r_content(obj.get('output'))}"
    if typ == "reasoning":
        out = ["[reasoning]"]
        for key in ("summary", "content"):
            if obj.get(key):
                out.append(_r_content(obj[key]))
        if obj.get("encrypted_content") is not None:
            out.append(_media("encrypted_reasoning", None, obj["encrypted_content"]))
        return "\n".join(out)
    if typ is not None and "name" in obj and ("parameters" in obj or "tools" in obj):
        return f"[tool]\n{_json(obj)}"  # a tool definition (function, namespace)
    return _json(_drop(obj, ("id", "status")))


# -- Chat Completions -------------------------------------------------------------------------


def _c_part(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return _json(part)
    typ = part.get("type")
    if typ == "text" and isinstance(part.get("text"), str):
        return part["text"]
    if typ == "image_url":
        img = part.get("image_url")
        url = img.get("url") if isinstance(img, dict) else img
        return _data_url("image", url) if isinstance(url, str) else _json(part)
    if typ == "input_audio":
        audio = part.get("input_audio") or {}
        return _media("audio", audio.get("format"), audio.get("data"))
    if typ == "file":
        f = part.get("file") or {}
        if f.get("file_data") is not None:
            data = f["file_data"]
            if isinstance(data, str) and data.startswith("data:"):
                return _data_url("file", data)
            return _media("file", f.get("filename"), data)
        return f"[file {f.get('file_id')}]"
    return _json(_drop(part, ("cache_control",)))


def _c_content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_c_part(p) for p in content)
    return _json(content)


def _c_element(obj: Any) -> str:
    """A tool or a message of Chat Completions."""
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict):
        return _json(obj)
    if "role" not in obj:
        return f"[tool]\n{_json(obj)}"
    role = obj.get("role")
    name = f" {obj['name']}" if obj.get("name") else ""
    ref = f" {obj['tool_call_id']}" if obj.get("tool_call_id") else ""
    out = [f"[{role}{name}{ref}]"]
    for key in ("reasoning_content", "reasoning"):
        if isinstance(obj.get(key), str) and obj[key]:
            out.append(f"[reasoning]\n{obj[key]}")
    out.append(_c_content(obj.get("content")))
    for call in obj.get("tool_calls") or []:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            fn = call["function"]
            out.append(f"[tool_call {call.get('id')} {fn.get('name')}]\n{fn.get('arguments')}")
        else:
            out.append(_json(call))
    rest = _drop(
        obj,
        (
            "role",
            "name",
            "tool_call_id",
            "content",
            "tool_calls",
            "reasoning_content",
            "reasoning",
            "cache_control",
        ),
    )
    if rest:
        out.append(_json(rest))
    return "\n".join(out)


def _generic(obj: Any) -> str:
    if isinstance(obj, Stripped):
        return _a_element(obj)
    if isinstance(obj, str):
        return obj
    return _json(_drop(obj, ("cache_control",)) if isinstance(obj, dict) else obj)


_RENDERERS: dict[str, Render] = {ANTHROPIC: _a_element, RESPONSES: _r_element, CHAT: _c_element}


def renderer(api: str | None) -> Render:
    """The element rendering of an API (unknown APIs: canonical JSON without cache_control)."""
    return _RENDERERS.get(api or "", _generic)


def element_text(api: str | None, obj: Any, notes: set[str]) -> str:
    """One element's rendering, with the per-request noise normalized (noted in `notes`)."""
    return normalize_text(renderer(api)(obj), notes)


# -- the prompt's elements ---------------------------------------------------------------------


def is_assistant(msg: object) -> bool:
    """A model-produced message or item."""
    if isinstance(msg, Stripped):
        return True
    if not isinstance(msg, dict):
        return False
    return msg.get("role") == "assistant" or msg.get("type") in _ASSISTANT_TYPES


def keeps_thinking(envelope: dict[str, Any]) -> bool:
    """Whether an Anthropic request keeps earlier turns' thinking in the context."""
    cm = envelope.get("context_management")
    edits = cm.get("edits") if isinstance(cm, dict) else None
    for edit in edits if isinstance(edits, list) else ():
        if (
            isinstance(edit, dict)
            and str(edit.get("type", "")).startswith("clear_thinking")
            and edit.get("keep") == "all"
        ):
            return True
    return False


def _only_tool_results(msg: Any) -> bool:
    content = msg.get("content") if isinstance(msg, dict) else None
    return (
        isinstance(content, list)
        and bool(content)
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def _has_thinking(msg: Any) -> bool:
    content = msg.get("content") if isinstance(msg, dict) else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking") for b in content
    )


def _strip_earlier_thinking(messages: list[Any]) -> list[Any]:
    """Assistant messages before the turn in progress, wrapped to render without thinking."""
    turn = 0  # the turn in progress starts at the last user message that is not tool results
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user" and not _only_tool_results(m):
            turn = i
            break
    out = list(messages)
    for i in range(turn):
        m = out[i]
        if isinstance(m, dict) and m.get("role") == "assistant" and _has_thinking(m):
            out[i] = Stripped(m)
    return out


def carries_breakpoint(obj: Any) -> bool:
    """Whether an Anthropic element (or one of its blocks) carries `cache_control`."""
    if isinstance(obj, Stripped):
        obj = obj.obj
    if not isinstance(obj, dict):
        return False
    if obj.get("cache_control") is not None:
        return True
    content = obj.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("cache_control") is not None for b in content
    )


def prompt_parts(rnd: Round, earlier: list[Any] | None = None) -> dict[str, list[Any]]:
    """The prompt's elements in the provider's cache order: tools, system, history, new input.

    `earlier`: the conversation a Responses `previous_response_id` continues (its input and
    output items), put before this request's input.
    """
    messages = list(rnd.messages or [])
    if earlier:
        messages = [*earlier, *messages]
    if rnd.api == ANTHROPIC and not keeps_thinking(rnd.envelope or {}):
        messages = _strip_earlier_thinking(messages)
    system = rnd.system
    if (system is None or system == "") and rnd.api != ANTHROPIC:
        # OpenAI: leading system/developer messages (an Anthropic system-role message stays
        # where it is sent)
        lead = 0
        while (
            lead < len(messages)
            and isinstance(messages[lead], dict)
            and messages[lead].get("role") in ("system", "developer")
        ):
            lead += 1
        system, messages = messages[:lead] or None, messages[lead:]
    last = next((i for i in range(len(messages) - 1, -1, -1) if is_assistant(messages[i])), -1)
    if system is None or system == "":
        system_parts: list[Any] = []
    elif isinstance(system, list):
        system_parts = list(system)
    else:
        system_parts = [system]
    return {
        "tools": list(rnd.tools or []),
        "system": system_parts,
        "history": messages[: last + 1],
        "new_input": messages[last + 1 :],
    }
