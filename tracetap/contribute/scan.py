"""The second, independent scan of a dataset's files before they are shared: every string value
of every JSONL row and Parquet column through the detector, the gate rules and the recorded names.

Each residual hit says where it is (file, row, field) and which rule found it; never the value.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tracetap.exporters.public import privacy_problems
from tracetap.privacy.detect import Detector

__all__ = ["GateRules", "Hit", "Scanner", "load_gate_rules"]

_TOKEN_SPLIT = re.compile(r"[^\w.\-]+")
# A value that is only a UTC timestamp or a number holds nothing to find.
_PLAIN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z|-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Hit:
    """A residual finding: where (file relative to the dataset, 1-based row, field) and what."""

    file: str
    row: int
    field: str
    rule: str
    hint: str  # a masked glimpse of the value: its first characters and its length

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "row": self.row,
            "field": self.field,
            "rule": self.rule,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class GateRules:
    values: tuple[tuple[str, str, re.Pattern[str]], ...]  # (id, description, regex)
    shapes: dict[str, re.Pattern[str]]  # field -> the pseudonym shape its values must have


def load_gate_rules() -> GateRules:
    cfg = tomllib.loads(resources.files("tracetap.contribute").joinpath("gate.toml").read_text())
    return GateRules(
        tuple((r["id"], r["description"], re.compile(r["regex"])) for r in cfg["rules"]),
        {s["field"]: re.compile(s["regex"]) for s in cfg.get("shapes", [])},
    )


def _mask(value: str) -> str:
    head = value[:2] if len(value) > 8 else ""
    return f"{head}… ({len(value)} chars)"


def _leaf(field: str) -> str:
    """`tools[3].tool_name` -> `tool_name`: the name a shape rule is written for."""
    return re.sub(r"\[\d+\]", "", field).rpartition(".")[2]


class Scanner:
    """Checks values against the detector, the gate rules and what was recorded: `identifiers`
    (session and round ids: a value's whole tokens) and `names` (projects, working directories,
    user and host names: anywhere in a value, between non-alphanumerics)."""

    def __init__(
        self,
        identifiers: Iterable[str] = (),
        names: Iterable[str] = (),
        *,
        detector: Detector | None = None,
        rules: GateRules | None = None,
    ) -> None:
        self.detector = detector or Detector()
        self.rules = rules or load_gate_rules()
        self._tokens = {v for v in identifiers if len(v) >= 10}  # shorter ones are not unique
        inside = sorted({v for v in names if len(v) >= 4}, key=len, reverse=True)
        self._inside = (
            re.compile(
                "(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, inside)) + ")(?![A-Za-z0-9])"
            )
            if inside
            else None
        )
        self._checked: dict[str, list[str]] = {}

    def value_rules(self, value: str) -> list[str]:
        """The rules one string value breaks (memoized: datasets repeat values a lot)."""
        hit = self._checked.get(value)
        if hit is not None:
            return hit
        if _PLAIN.fullmatch(value):
            return []
        found: list[str] = []
        for f in self.detector.find(value):
            found.append(
                f"detector:{f.kind}:{f.label}" if f.kind == "secret" else f"detector:{f.kind}"
            )
        for rule_id, _, pattern in self.rules.values:
            if pattern.search(value):
                found.append(f"gate:{rule_id}")
        if (self._inside is not None and self._inside.search(value)) or any(
            t in self._tokens for t in _TOKEN_SPLIT.split(value) if t
        ):
            found.append("recorded-name")
        if len(self._checked) < 200_000:
            self._checked[value] = found
        return found

    def check(self, file: str, row: int, field: str, value: str) -> Iterator[Hit]:
        rules = self.value_rules(value)
        shape = self.rules.shapes.get(_leaf(field))
        if shape is not None and not shape.match(value):
            rules = [*rules, "gate:not-a-pseudonym"]
        for rule in rules:
            yield Hit(file, row, field, rule, _mask(value))

    def _walk(self, obj: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(obj, str):
            yield where, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from self._walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from self._walk(v, f"{where}[{i}]")

    def jsonl(self, path: Path, name: str) -> Iterator[Hit]:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                row = json.loads(line)
                for problem in privacy_problems(row):
                    field, _, why = problem.removeprefix("row.").partition(": ")
                    yield Hit(name, n, field, f"gate:{why.replace(' ', '-')}", "")
                for field, value in self._walk(row, ""):
                    yield from self.check(name, n, field, value)

    def parquet(self, path: Path, name: str) -> Iterator[Hit]:
        table = pq.read_table(path)  # every page decompressed
        for column in table.column_names:
            values = table.column(column).to_pylist()
            # TraceLab's layout has home/user/session_file columns: null, they share nothing
            if privacy_problems({column: None}) and any(v is not None for v in values):
                yield Hit(name, 0, column, "gate:private-key", "")
            for i, value in enumerate(values, start=1):
                for field, text in self._walk(value, column):
                    yield from self.check(name, i, field, text)

    def folder(
        self, root: Path, progress: Callable[[str, int, int | None], None] | None = None
    ) -> list[Hit]:
        """Every hit in the dataset files under `root` (.jsonl and .parquet), in file order."""
        files = sorted(p for p in root.rglob("*") if p.suffix in (".jsonl", ".parquet"))
        hits: list[Hit] = []
        for i, path in enumerate(files):
            name = path.relative_to(root).as_posix()
            scan = self.jsonl if path.suffix == ".jsonl" else self.parquet
            hits.extend(scan(path, name))
            if progress is not None:
                progress("scanning the dataset", i + 1, len(files))
        return hits
