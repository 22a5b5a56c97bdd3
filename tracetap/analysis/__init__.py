"""tracetap.analysis: the TraceLab analysis suite and four optimization studies over a trace.

`analyze(source)` loads any input as DuckDB tables (`load`) and runs the analyses (`run`).
"""

from __future__ import annotations

from tracetap.analysis.load import Dataset, InputError, load
from tracetap.analysis.run import Analysis, analyze, public, run

__all__ = ["Analysis", "Dataset", "InputError", "analyze", "load", "public", "run"]
