"""`tracetap ui`: a local web UI on the store, live while agents run; it only reads.

Pages: sessions (live), one session's waterfall, rounds and prompt diffs, interactive analysis.
"""

from __future__ import annotations

from tracetap.ui.app import create_app, is_loopback, read_only, serve

__all__ = ["create_app", "is_loopback", "read_only", "serve"]
