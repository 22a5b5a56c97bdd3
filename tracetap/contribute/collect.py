"""What a contribution reads from the store: the sessions a filter selects minus the excluded
ones, their private TraceLab rows, the identifiers to keep out, and a census of recorded text.

The census counts the placeholders the ingest scrubber left and what the detector still finds;
none of that text is shared, the counts tell a reviewer what the recording held.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession

from tracetap.content import load_json
from tracetap.exporters.tracelab import KINDS, rows_from_engine
from tracetap.privacy.detect import Detector
from tracetap.privacy.keys import keyed_hash
from tracetap.storage import models as m
from tracetap.storage.filters import Filter
from tracetap.storage.reconstruct import request_parts

__all__ = [
    "IGNORE_FILE",
    "Census",
    "Progress",
    "Selection",
    "PLACEHOLDERS",
    "count_placeholders",
    "environment_names",
    "identifying",
    "placeholder_identity",
    "select",
    "store_rows",
    "text_census",
]

IGNORE_FILE = ".tracetapignore"

# (label, done, total or None): how far a long step is; the CLI draws it.
Progress = Callable[[str, int, int | None], None]

# The placeholders privacy/scrub.py writes, by type (the scrubber's `_token` formats).
_HEX6 = r"[0-9a-f]{6}"
PLACEHOLDERS: dict[str, re.Pattern[str]] = {
    "secret": re.compile(r"<secret:([^<>\s]+):" + _HEX6 + ">"),
    "email": re.compile(r"user-" + _HEX6 + r"@email\.invalid"),
    "ip": re.compile(r"<ip:" + _HEX6 + ">"),
    "phone": re.compile(r"<phone:" + _HEX6 + ">"),
    "host": re.compile(r"<host:" + _HEX6 + ">"),
    "home": re.compile(
        r"(?:/home/|/Users/|[A-Za-z]:(?:\\\\|\\|/)Users(?:\\\\|\\|/))(user-" + _HEX6 + r")(?![\w-])"
    ),
    "account": re.compile(r"user-[0-9a-f]{12}(?![\w-])"),  # metadata.user_id pseudonyms
}
_ANY_PLACEHOLDER = re.compile("|".join(f"(?:{p.pattern})" for p in PLACEHOLDERS.values()))
_STUB = re.compile(r"<text chars=\d+ hmac=[0-9a-f]{12}>")  # the `none` policy's stand-in
_CWD = re.compile(r"(?:Primary working directory|Working directory|<cwd>)\s*:?\s*([^\s<]+)")


@dataclass
class Selection:
    """The sessions a contribution covers and what is left out, with why."""

    sessions: dict[int, str]  # session pk -> "provider:agent session id"
    projects: dict[int, str | None]  # session pk -> recorded project name
    excluded: dict[str, list[str]] = field(default_factory=dict)  # project -> reasons
    working_dirs: dict[int, str] = field(default_factory=dict)  # session pk -> cwd, when known
    rounds: int = 0  # rounds of the selected sessions that pass the filter (for progress)

    def session_ids(self) -> set[str]:
        """The agents' own session ids (what a public row replaces by pseudonyms)."""
        return {sid.partition(":")[2] or sid for sid in self.sessions.values()}

    def names(self) -> set[str]:
        """Recorded project names and working directories: identifying wherever they appear."""
        out = {p for p in self.projects.values() if p}
        out.update(self.working_dirs.values())
        return out


@dataclass
class Census:
    """What the selected rounds' recorded text holds: scrubber placeholders by (type, label),
    distinct values and occurrences, and detector findings left in the text by (kind, label)."""

    placeholders: Counter[tuple[str, str]] = field(default_factory=Counter)
    occurrences: Counter[tuple[str, str]] = field(default_factory=Counter)
    unscrubbed: Counter[tuple[str, str]] = field(default_factory=Counter)
    policies: Counter[str] = field(default_factory=Counter)
    texts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "placeholders": [
                {
                    "type": t,
                    "label": label,
                    "distinct": n,
                    "occurrences": self.occurrences[t, label],
                }
                for (t, label), n in sorted(self.placeholders.items())
            ],
            "unscrubbed": [
                {"type": t, "label": label, "distinct": n}
                for (t, label), n in sorted(self.unscrubbed.items())
            ],
            "content_policies": dict(sorted(self.policies.items())),
            "texts_scanned": self.texts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Census:
        c = cls()
        for p in data.get("placeholders", []):
            c.placeholders[p["type"], p["label"]] += p["distinct"]
            c.occurrences[p["type"], p["label"]] += p["occurrences"]
        for p in data.get("unscrubbed", []):
            c.unscrubbed[p["type"], p["label"]] += p["distinct"]
        c.policies.update(data.get("content_policies", {}))
        c.texts = data.get("texts_scanned", 0)
        return c

    def merge(self, other: Census) -> None:
        self.placeholders.update(other.placeholders)
        self.occurrences.update(other.occurrences)
        self.unscrubbed.update(other.unscrubbed)
        self.policies.update(other.policies)
        self.texts += other.texts


def _ignored(project: str | None, cwd: str | None, workspaces: Iterable[Path]) -> Path | None:
    """The .tracetapignore that excludes a project: in its recorded working directory, or in
    `<workspace>/<project>` (or a workspace that is the project's folder itself)."""
    candidates: list[Path] = []
    if cwd:
        candidates.append(Path(cwd))
    if project:
        for root in workspaces:
            candidates += [root / project, root] if root.name == project else [root / project]
    for folder in candidates:
        marker = folder / IGNORE_FILE
        try:
            if marker.is_file():
                return marker
        except OSError:  # an unreadable folder excludes nothing
            continue
    return None


def _local_path(path: str, key: bytes) -> str:
    """A recorded working directory with the home pseudonym put back when it is this user's
    (the scrubber wrote /home/user-HASH for /home/NAME)."""
    home = Path.home()
    hit = PLACEHOLDERS["home"].search(path)
    if hit and hit.group(1) == f"user-{keyed_hash(key, 'home', home.name)}":
        return str(home) + path[hit.end(1) :].replace("\\", "/")
    return path


def _session_cwd(db: OrmSession, session_pk: int) -> str | None:
    first = db.scalar(
        sa.select(m.Round)
        .where(m.Round.session_pk == session_pk)
        .order_by(m.Round.request_at, m.Round.id)
        .limit(1)
    )
    if first is None:
        return None
    try:
        parts = request_parts(db, first)
    except LookupError:
        return None
    for text in _strings([parts["system"], parts["messages"][:4]]):
        hit = _CWD.search(text) if "orking directory" in text or "<cwd>" in text else None
        if hit:
            return hit.group(1)
    return None


def select(
    engine: Engine,
    flt: Filter,
    key: bytes,
    *,
    kind: str = "agent",
    exclude_projects: Iterable[str] = (),
    workspaces: Iterable[Path] = (),
) -> Selection:
    """The sessions `flt` selects, minus projects named by `exclude_projects` (a part of the
    name, as --project) and projects whose working directory holds a .tracetapignore."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    excludes = [p for p in exclude_projects if p]
    roots = [Path(w).expanduser() for w in workspaces]
    sel = Selection({}, {})
    with OrmSession(engine) as db:
        q = (
            sa.select(m.Session)
            .join(m.Round, m.Round.session_pk == m.Session.id)
            .where(m.Round.kind.in_(KINDS[kind]), *flt.conditions())
            .group_by(m.Session.id)
            .order_by(m.Session.id)
        )
        for s in db.scalars(q):
            cwd = _session_cwd(db, s.id)
            local = _local_path(cwd, key) if cwd else None
            reasons = [f"--exclude-project {p}" for p in excludes if s.project and p in s.project]
            marker = _ignored(s.project, local, roots)
            if marker is not None:
                reasons.append(f"{IGNORE_FILE} in {marker.parent}")
            if reasons:
                name = s.project or "(no project)"
                sel.excluded.setdefault(name, [])
                sel.excluded[name] += [r for r in reasons if r not in sel.excluded[name]]
                continue
            sel.sessions[s.id] = f"{s.provider}:{s.agent_session_id}"
            sel.projects[s.id] = s.project
            if cwd:
                sel.working_dirs[s.id] = cwd
        pks = list(sel.sessions)
        for i in range(0, len(pks), 500):
            sel.rounds += (
                db.scalar(
                    sa.select(sa.func.count(m.Round.id))
                    .join(m.Session, m.Round.session_pk == m.Session.id)
                    .where(m.Round.session_pk.in_(pks[i : i + 500]), m.Round.kind.in_(KINDS[kind]))
                    .where(*flt.conditions())
                )
                or 0
            )
    return sel


def store_rows(
    engine: Engine, flt: Filter, sel: Selection, *, kind: str = "agent"
) -> Iterator[dict[str, Any]]:
    """Private TraceLab rows of the selected sessions that pass `flt`."""
    wanted = set(sel.sessions.values())
    for row in rows_from_engine(engine, flt=flt, kind=kind):
        if row["session_id"] in wanted:
            yield row


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)


_HASH = re.compile(r"[0-9a-f]{6,12}(?=>|@|$)")


def placeholder_identity(kind: str, placeholder: str) -> str:
    """The value a placeholder stands for, as far as it shows: its type and keyed hash (the
    same secret found by two rules is one secret)."""
    hit = _HASH.search(placeholder)
    return f"{kind}:{hit.group(0) if hit else placeholder}"


def count_placeholders(text: str, census: Census, seen: set[str]) -> None:
    """Add the placeholders in `text` to `census`; each distinct value is counted once, under
    the first rule seen (`seen` holds their identities)."""
    for kind, pattern in PLACEHOLDERS.items():
        if kind == "account" and "user-" not in text:
            continue
        for hit in pattern.finditer(text):
            label = hit.group(1) if kind == "secret" else kind
            census.occurrences[kind, label] += 1
            identity = placeholder_identity(kind, hit.group(0))
            if identity not in seen:
                seen.add(identity)
                census.placeholders[kind, label] += 1


def text_census(
    engine: Engine,
    round_uids: Iterable[str],
    *,
    detector: Detector | None = None,
    progress: Progress | None = None,
) -> Census:
    """Scan the recorded text of the rounds `round_uids` (each stored text once)."""
    det = detector or Detector()
    census = Census()
    seen_placeholders: set[str] = set()
    seen_findings: set[tuple[str, str]] = set()
    uids = list(dict.fromkeys(round_uids))

    def scan(text: str) -> None:
        if len(text) < 6:
            return
        census.texts += 1
        if "%" in text:  # placeholders inside URL-encoded text (query strings)
            text = unquote(text)
        count_placeholders(text, census, seen_placeholders)
        clean = _STUB.sub("<redacted>", _ANY_PLACEHOLDER.sub("<redacted>", text))
        for f in det.find(clean):
            value = clean[f.start : f.end]
            if (f.kind, value) not in seen_findings:
                seen_findings.add((f.kind, value))
                census.unscrubbed[f.kind, f.label] += 1

    done_blobs: set[str] = set()
    with OrmSession(engine) as db:
        for start in range(0, len(uids), 500):
            part = uids[start : start + 500]
            rounds = list(db.scalars(sa.select(m.Round).where(m.Round.uid.in_(part))))
            hashes: set[str] = set()
            for r in rounds:
                census.policies[r.content_policy] += 1
                hashes.update(
                    h for h in (r.envelope_hash, r.system_hash, r.tools_hash, r.response_hash) if h
                )
                hashes.update(r.system_blocks or [])
                hashes.update(r.msg_new or [])
                for text in _strings([r.headers, r.error_message]):
                    scan(text)
            pks = [r.id for r in rounds]
            hashes.update(
                h
                for h in db.scalars(
                    sa.select(m.ToolCall.input_hash).where(m.ToolCall.round_pk.in_(pks))
                )
                if h
            )
            todo = sorted(hashes - done_blobs)
            done_blobs.update(todo)
            for i in range(0, len(todo), 200):
                for b in db.scalars(sa.select(m.Blob).where(m.Blob.hash.in_(todo[i : i + 200]))):
                    for text in _strings(load_json(b.codec, b.data)):
                        scan(text)
            if progress is not None:
                progress("scanning recorded text", start + len(part), len(uids))
    return census


# Account and host names that name nobody, or are words a dataset's values hold anyway.
_COMMON_NAMES = frozenset(
    {
        "root",
        "runner",
        "user",
        "admin",
        "ubuntu",
        "debian",
        "localhost",
        "claude",
        "codex",
        "openai",
        "tracetap",
        "main",
        "text",
        "tool",
        "agent",
        "unknown",
    }
)


def identifying(names: Iterable[str]) -> set[str]:
    """The names worth searching a dataset for: 4 characters or more, and not a common word."""
    return {n for n in names if len(n) >= 4 and n.lower() not in _COMMON_NAMES}


def environment_names() -> set[str]:
    """This machine's user and host names: identifying wherever they turn up in a dataset."""
    names = {Path.home().name, os.environ.get("USER", ""), os.environ.get("LOGNAME", "")}
    try:
        names.add(os.uname().nodename.split(".")[0])
    except AttributeError:  # not POSIX
        pass
    return identifying(names)
