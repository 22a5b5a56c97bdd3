"""Privacy at ingest: secrets and PII scrubbed, or all text dropped, before anything reaches disk.

`scrub.ContentPolicy` is the ingest step; `detect` finds secrets and PII; `keys` makes pseudonyms.
"""

from __future__ import annotations

__all__: list[str] = []
