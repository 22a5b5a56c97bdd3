"""`tracetap contribute`: a store -> a dataset folder a team can review, sign off and publish.

collect reads the store, shape makes public rows, scan and review check them, package writes them.
"""

from __future__ import annotations

__all__: list[str] = []
