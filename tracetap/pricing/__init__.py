"""What a round cost in US dollars: a dated price table (prices.toml) and the arithmetic.

`cost(model, usage)` prices one round (None for a model the table does not know, never 0);
`costs_by(rows, key)` totals rounds per model, project or any key; TRACETAP_PRICES adds a file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "ENV",
    "CostTotal",
    "Price",
    "PriceFileError",
    "PriceTable",
    "Rates",
    "Usage",
    "cost",
    "costs_by",
    "load_table",
    "usage_of",
]

ENV = "TRACETAP_PRICES"  # a TOML file whose entries replace or extend the built-in table
_BUILT_IN = Path(__file__).with_name("prices.toml")
_MILLION = 1_000_000
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")
_RATE_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")


class PriceFileError(ValueError):
    """A price file that cannot be read or does not have the layout of prices.toml."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens. A cache price left out bills those tokens at `input`."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None


@dataclass(frozen=True)
class Price:
    """One model's rates; `long` applies to a request whose prompt exceeds `long_above`
    tokens (every token of it, output included)."""

    model: str
    provider: str
    rates: Rates
    long_above: int | None = None
    long: Rates | None = None

    def rates_for(self, prompt_tokens: int) -> Rates:
        if self.long is not None and self.long_above is not None:
            if prompt_tokens > self.long_above:
                return self.long
        return self.rates


@dataclass(frozen=True)
class Usage:
    """A round's token usage as tracetap stores it (storage.models.Round's columns)."""

    input_tokens_total: int | None = None
    cached_tokens: int | None = None
    uncached_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_creation_5m_tokens: int | None = None
    cache_creation_1h_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens: int | None = None

    def parts(self) -> tuple[int, int, int, int, int] | None:
        """(uncached input, cache reads, 5m writes, 1h writes, output) tokens; None when the
        round reported no usage at all.

        Cache reads are Anthropic's cache_read_input_tokens, else the cached tokens (OpenAI's
        cached input). Cache writes without the 5m/1h split count as 5-minute writes. The
        uncached input is Anthropic's input_tokens, else the total less reads and writes.
        """
        if self.input_tokens_total is None and self.output_tokens is None:
            if self.uncached_input_tokens is None:
                return None
        read = self.cache_read_input_tokens
        if read is None:
            read = self.cached_tokens or 0
        w1h = self.cache_creation_1h_tokens or 0
        w5m = self.cache_creation_5m_tokens or 0
        written = self.cache_creation_input_tokens or 0
        if written > w5m + w1h:  # a write the split did not cover
            w5m = written - w1h
        uncached = self.uncached_input_tokens
        if uncached is None:
            uncached = max(0, (self.input_tokens_total or 0) - read - w5m - w1h)
        return uncached, read, w5m, w1h, self.output_tokens or 0


def _strip(model: str) -> str:
    name = model.strip().lower().rpartition("/")[2]  # "anthropic/claude-..." -> "claude-..."
    return _DATE_SUFFIX.sub("", name)


def _covers(key: str, name: str) -> bool:
    """Whether table entry `key` prices model `name`: the whole name, or a prefix followed by
    "-" and a non-digit (a "-6" would be another version)."""
    if name == key:
        return True
    rest = name[len(key) :] if name.startswith(key) else ""
    return len(rest) >= 2 and rest[0] == "-" and not rest[1].isdigit()


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, and per provider the page they were read from and the day."""

    prices: Mapping[str, Price]
    sources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def lookup(self, model: str | None) -> Price | None:
        """The price of `model`: an exact entry, else the longest entry that covers the name
        with its date suffix stripped. None for a model the table does not know.

        Example: table.lookup("claude-sonnet-4-5-20250929").model -> "claude-sonnet-4-5"
        """
        if not model:
            return None
        raw = model.strip().lower().rpartition("/")[2]
        if raw in self.prices:
            return self.prices[raw]
        name = _strip(model)
        best = None
        for key in self.prices:
            if _covers(key, name) and (best is None or len(key) > len(best)):
                best = key
        return None if best is None else self.prices[best]

    def cost(self, model: str | None, usage: Usage) -> float | None:
        """USD for one round; None when the model is unknown or the round has no usage."""
        price = self.lookup(model)
        parts = usage.parts()
        if price is None or parts is None:
            return None
        uncached, read, w5m, w1h, output = parts
        r = price.rates_for(uncached + read + w5m + w1h)
        dollars = (
            uncached * r.input
            + read * _or(r.cache_read, r.input)
            + w5m * _or(r.cache_write_5m, r.input)
            + w1h * _or(r.cache_write_1h, r.input)
            + output * r.output
        )
        return dollars / _MILLION

    def with_file(self, path: Path) -> PriceTable:
        """This table with the models and providers of the TOML file at `path` replacing and
        extending its own. Raises PriceFileError naming the file."""
        extra = _read(path)
        return PriceTable({**self.prices, **extra.prices}, {**self.sources, **extra.sources})


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _rates(where: str, data: Mapping[str, Any]) -> Rates:
    values: dict[str, float] = {}
    for name in _RATE_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PriceFileError(f"{where}.{name} must be a price in USD per million tokens")
        values[name] = float(value)
    for name in ("input", "output"):
        if name not in values:
            raise PriceFileError(f"{where} has no {name} price")
    unknown = set(data) - set(_RATE_FIELDS) - {"provider", "long", "above"}
    if unknown:
        raise PriceFileError(f"{where} has an unknown field {sorted(unknown)[0]!r}")
    return Rates(**values)


def _parse(data: Mapping[str, Any]) -> PriceTable:
    models = data.get("models", {})
    providers = data.get("providers", {})
    if not isinstance(models, dict) or not isinstance(providers, dict):
        raise PriceFileError("[models] and [providers] must be tables")
    unknown = set(data) - {"models", "providers"}
    if unknown:
        raise PriceFileError(f'unknown table [{sorted(unknown)[0]}]: use [models."NAME"]')
    prices: dict[str, Price] = {}
    for name, entry in models.items():
        where = f'models."{name}"'
        if not isinstance(entry, dict):
            raise PriceFileError(f"{where} must be a table of prices")
        long = entry.get("long")
        long_rates = long_above = None
        if long is not None:
            if not isinstance(long, dict) or not isinstance(long.get("above"), int):
                raise PriceFileError(f"{where}.long needs `above`, a number of prompt tokens")
            long_rates, long_above = _rates(f"{where}.long", long), long["above"]
        key = name.strip().lower()
        prices[key] = Price(
            key, str(entry.get("provider", "")), _rates(where, entry), long_above, long_rates
        )
    sources = {
        str(k): {str(f): str(v) for f, v in dict(s).items()}
        for k, s in providers.items()
        if isinstance(s, dict)
    }
    return PriceTable(prices, sources)


def _read(path: Path) -> PriceTable:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise PriceFileError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _parse(data)
    except PriceFileError as exc:
        raise PriceFileError(f"{path}: {exc}") from None


@cache
def _built_in() -> PriceTable:
    return _read(_BUILT_IN)


def load_table(path: Path | None = None) -> PriceTable:
    """The built-in table, extended by the file at `path`, else by the file TRACETAP_PRICES
    names. Raises PriceFileError (one line naming the file) for a file that is not a table.

    Example: load_table().lookup("gpt-5-codex").rates.cache_read -> 0.125
    """
    table = _built_in()
    if path is None and os.environ.get(ENV):
        path = Path(os.environ[ENV])
    return table if path is None else table.with_file(path)


# Where a usage figure is found: tracetap's own names, then a TraceLab row's.
_ROW_NAMES: dict[str, tuple[str, ...]] = {
    "input_tokens_total": ("input_tokens_total",),
    "cached_tokens": ("cached_tokens", "prefix_tokens"),
    "uncached_input_tokens": ("uncached_input_tokens", "claude_uncached_input_tokens"),
    "cache_creation_input_tokens": (
        "cache_creation_input_tokens",
        "claude_cache_creation_input_tokens",
    ),
    "cache_creation_5m_tokens": ("cache_creation_5m_tokens", "tt_cache_creation_5m_tokens"),
    "cache_creation_1h_tokens": ("cache_creation_1h_tokens", "tt_cache_creation_1h_tokens"),
    "cache_read_input_tokens": ("cache_read_input_tokens", "claude_cache_read_input_tokens"),
    "output_tokens": ("output_tokens",),
}


def usage_of(row: Any) -> Usage:
    """The usage of a round given as a mapping (a TraceLab row or a dict of Round columns) or
    an object with Round's attributes (storage.models.Round, model.Usage).

    Example: usage_of({"input_tokens_total": 1200, "prefix_tokens": 1000, "output_tokens": 50})
    """
    get: Callable[[str], Any]
    if isinstance(row, Mapping):
        get = row.get
    else:

        def get(name: str) -> Any:
            return getattr(row, name, None)

    values: dict[str, int | None] = {}
    for name, sources in _ROW_NAMES.items():
        for source in sources:
            value = get(source)
            if value is not None:
                values[name] = int(value)
                break
    return Usage(**values)


def cost(model: str | None, usage: Usage | Any, table: PriceTable | None = None) -> float | None:
    """USD for one round of `model` with `usage` (a Usage, or anything usage_of reads); None
    for a model the price table does not know or a round with no usage.

    Example: cost("claude-sonnet-4-5", Usage(uncached_input_tokens=10, output_tokens=50))
    """
    table = table or load_table()
    return table.cost(model, usage if isinstance(usage, Usage) else usage_of(usage))


@dataclass
class CostTotal:
    """The cost of a group of rounds: `usd` over the priced ones, and how many were not."""

    usd: float = 0.0
    rounds: int = 0
    unpriced: int = 0

    @property
    def priced(self) -> bool:
        """Whether any round of the group has a price."""
        return self.rounds > self.unpriced

    def add(self, usd: float | None) -> None:
        self.rounds += 1
        if usd is None:
            self.unpriced += 1
        else:
            self.usd += usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "cost_usd": round(self.usd, 6) if self.priced else None,
            "rounds": self.rounds,
            "unpriced_rounds": self.unpriced,
        }


def costs_by(
    rows: Iterable[Any],
    key: str | Callable[[Any], Any] = "model",
    table: PriceTable | None = None,
) -> dict[Any, CostTotal]:
    """Total cost per group of rounds: `key` is a field name ("model", "project", ...) or a
    function of the row. Rows are TraceLab rows, dicts of Round columns or Round objects;
    each needs its "model". Groups come in order of first appearance.

    Example: costs_by(read_rows(path), "project")["my-repo"].usd
    """
    table = table or load_table()
    key_of: Callable[[Any], Any]
    if isinstance(key, str):
        name = key

        def key_of(row: Any) -> Any:
            return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)

    else:
        key_of = key
    out: dict[Any, CostTotal] = {}
    for row in rows:
        model = row.get("model") if isinstance(row, Mapping) else getattr(row, "model", None)
        out.setdefault(key_of(row), CostTotal()).add(table.cost(model, usage_of(row)))
    return out
