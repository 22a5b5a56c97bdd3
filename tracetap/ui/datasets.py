"""Dataset folders made by `tracetap contribute`, as the UI's Datasets page shows them: each
one's manifest figures and its privacy review (REVIEW.md) rendered as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from tracetap.contribute.package import MANIFEST, read_manifest

__all__ = ["REVIEW", "check_dataset", "dataset_summary", "render_review"]

REVIEW = "REVIEW.md"
ROW_COUNTS = ("rounds", "tool_calls", "timing_events", "sessions", "projects", "contributors")


def check_dataset(folder: Path) -> None:
    """Raises ValueError naming `folder` when it is not a dataset made by `tracetap contribute`
    (no REVIEW.md, no readable manifest.json)."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    if not (folder / REVIEW).is_file():
        raise ValueError(f"{folder} has no {REVIEW}: not a folder made by `tracetap contribute`")
    try:
        read_manifest(folder)
    except FileNotFoundError:
        raise ValueError(
            f"{folder} has no {MANIFEST}: not a folder made by `tracetap contribute`"
        ) from None
    except (OSError, ValueError) as exc:  # a JSON error is a ValueError
        raise ValueError(f"{folder / MANIFEST} cannot be read: {exc}") from None


def render_review(text: str) -> str:
    """Markdown as HTML, tables included; raw HTML in the text is escaped, not passed on."""
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def dataset_summary(folder: Path) -> dict[str, Any]:
    """What the Datasets page shows of `folder`: its name, row counts, content level,
    residual-hit count and creation time from manifest.json, and REVIEW.md as HTML."""
    manifest = read_manifest(folder)
    rows = manifest.get("rows") or {}
    return {
        "name": folder.name,
        "created": manifest.get("created"),
        "kind": manifest.get("kind"),
        "content_level": manifest.get("content_level"),
        "residual_hits": manifest.get("residual_hits"),
        "rows": {k: rows.get(k) for k in ROW_COUNTS},
        "review_html": render_review((folder / REVIEW).read_text(encoding="utf-8")),
    }
