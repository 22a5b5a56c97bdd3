"""Finding secrets and PII in text: the gitleaks rule set plus a few context rules and PII patterns.

`Detector.find(text)` returns non-overlapping spans (start, end, kind, label) to replace.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import quote, quote_plus, unquote

import regex

from tracetap.privacy.prefilter import KeywordSet, b64_runs, may_have_phone

__all__ = ["Detector", "Finding", "Rule", "load_gitleaks_rules", "shannon_entropy"]


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    kind: str  # "secret" | "email" | "ip" | "phone" | "home" | "host"
    label: str  # rule id for secrets


@dataclass(slots=True)
class Rule:
    id: str
    pattern: regex.Pattern[str]
    keywords: tuple[str, ...] = ()
    entropy: float | None = None
    secret_group: int | None = None
    allow: list[tuple[str, regex.Pattern[str]]] = field(default_factory=list)  # (target, re)
    stopwords: tuple[str, ...] = ()
    line_based: bool = False  # matched line by line, only on lines holding a keyword


def shannon_entropy(text: str) -> float:
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def load_gitleaks_rules() -> tuple[list[Rule], list[regex.Pattern[str]], tuple[str, ...]]:
    """(rules, global allow regexes, global stopwords) from the vendored gitleaks config."""
    text = resources.files("tracetap.privacy").joinpath("rules/gitleaks.toml").read_text()
    cfg = tomllib.loads(text)
    rules: list[Rule] = []
    for r in cfg["rules"]:
        if "regex" not in r or "path" in r:  # file-path rules do not apply to traffic
            continue
        allow: list[tuple[str, regex.Pattern[str]]] = []
        stop: list[str] = []
        for al in r.get("allowlists", []):
            if "paths" in al:  # path-conditioned allowlists do not apply either
                continue
            target = al.get("regexTarget", "secret")
            allow += [(target, regex.compile(p)) for p in al.get("regexes", [])]
            stop += [s.lower() for s in al.get("stopwords", [])]
        rules.append(
            Rule(
                r["id"],
                regex.compile(r["regex"]),
                tuple(k.lower() for k in r.get("keywords", [])),
                r.get("entropy"),
                r.get("secretGroup"),
                allow,
                tuple(stop),
            )
        )
    glob = cfg.get("allowlist", {})
    return (
        rules,
        [regex.compile(p) for p in glob.get("regexes", [])],
        tuple(s.lower() for s in glob.get("stopwords", [])),
    )


# Context rules gitleaks does not cover (traffic, not repositories): Claude OAuth tokens and
# shorter Anthropic keys, passwords in connection strings, .env assignments, bearer tokens.
_PLACEHOLDER = (
    r"(?!(?:\$|\{\{|<|\*{3}|x{4}|changeme|password\b|your[_-]|example|redacted|"
    r"none\b|null\b|true\b|false\b))"
)
_EXTRA_RULES = [
    Rule(
        "anthropic-key",
        regex.compile(r"\b(sk-ant-(?:api\d\d|oat\d\d|admin\d\d|sid\d\d)-[A-Za-z0-9_\-]{20,})"),
        ("sk-ant-",),
    ),
    Rule(
        "openai-key",
        regex.compile(r"\b(sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,})"),
        ("sk-",),
    ),
    Rule(
        "connection-string-password",
        regex.compile(
            r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s:/@'\"<>]{1,100}:"
            + _PLACEHOLDER
            + r"([^\s@/'\"<>]{3,200})@[^\s'\"<>]"
        ),
        ("://",),
    ),
    Rule(
        "env-assignment",
        regex.compile(
            r"(?i)(?<![A-Za-z0-9])[A-Z0-9_]{0,40}(?:PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|API_?KEY|"
            r"PRIVATE_KEY|ACCESS_KEY|CREDENTIALS?)[A-Z0-9_]{0,20}[ \t]{0,3}(?::=|=|:)[ \t]{0,3}"
            r"['\"]?" + _PLACEHOLDER + r"([^\s'\"#;,`()\[\]{}]{6,300})"
        ),
        ("pass", "pwd", "secret", "token", "key", "credential"),
    ),
    Rule(
        "aws-secret-key",
        regex.compile(
            r"(?i)aws_?secret_?(?:access_?)?key[\s'\"]{0,3}(?:=|:|=>)\s{0,3}['\"]?"
            r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        ("aws",),
    ),
    Rule(
        "url-credential-param",
        regex.compile(
            r"(?i)[?&](?:access_token|id_token|refresh_token|token|api_key|apikey|key|password|passwd|"
            r"secret|client_secret|sig|signature|auth)=" + _PLACEHOLDER + r"([^&\s#'\"<>]{8,})"
        ),
        ("=",),
    ),
    Rule(
        "cli-password-flag",
        regex.compile(
            r"(?i)\b(?:sshpass|mysql\w*|mariadb\w*|docker|podman|helm|redis-cli|psql|htpasswd|curl|"
            r"wget)\b[^\n|;&]{0,80}?[ \t](?:-p|-a|--password|--pass|--token|--api-key)"
            r"(?:[ \t=]|(?=\w))"
            r"['\"]?" + _PLACEHOLDER + r"([^\s'\"]{6,200})"
        ),
        ("-p", "-a", "--pass", "--token", "--api-key"),
    ),
    Rule(
        "password-assignment",
        regex.compile(
            r"(?i)(?<![\w-])(?:password|passwd|passphrase|secret|api_?key|token)['\"]?[ \t]{0,3}"
            r"(?::|=)[ \t]{0,3}"
            r"['\"]?" + _PLACEHOLDER + r"([^\s'\"()\[\]{},;]{6,200})"
        ),
        ("pass", "secret", "key", "token"),
    ),
    Rule(
        "bearer-token",
        regex.compile(r"(?i)\b(?:bearer|token|basic)[ \t]+([A-Za-z0-9._~+/\-]{20,}=*)"),
        ("bearer", "token", "basic"),
    ),
]
# The env rule needs the assignment's key in capitals (`DB_PASSWORD=`), not code like `pwd = ...`.
_ENV_KEY = regex.compile(r"[A-Z0-9_]*[A-Z][A-Z0-9_]*")

# A value that looks like a password: letters with digits or symbols, not an identifier or path.
_PASSWORDISH = regex.compile(
    r"^(?![A-Za-z_][\w.]*$)(?![./~$<{%])(?=.*[A-Za-z])(?=.*[\d#!@$%^&*+?~])"
)
_CONSTANT = regex.compile(r"[A-Z_][A-Z_]*")
_DOTTED = regex.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_GENERIC = frozenset(
    {
        "generic-api-key",
        "env-assignment",
        "bearer-token",
        "url-credential-param",
        "password-assignment",
        "cli-password-flag",
    }
)
_LINE_RULES = frozenset(
    {"generic-api-key", "env-assignment", "password-assignment", "cli-password-flag"}
)

_EMAIL = regex.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.)+[A-Za-z]{2,24}\b"
)
_IPV4 = regex.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"
)
_IPV6 = regex.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::?[0-9A-Fa-f]{1,4}|:)(?![\w:])")
_PHONE = regex.compile(
    r"(?<![\w+.\-/])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?|\d{2,4}[ .\-])"
    r"\d{3,4}[ .\-]\d{3,4}(?![\w.\-/])|(?<![\w+])\+\d{10,14}(?!\w)"
)
_HOME = regex.compile(
    r"(?:/home/|/Users/|[A-Za-z]:(?:\\\\|\\|/)Users(?:\\\\|\\|/))"
    r"(?!(?:Shared|Public|Default|All Users|runner)\b)([A-Za-z0-9._\-]{1,64})"
)
_HOST = regex.compile(
    r"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+"
    r"(?:internal|lan|corp|intranet|intra|localdomain|home\.arpa)\b"
)
_B64 = regex.compile(
    r"(?<![A-Za-z0-9+/_\-])(?:[A-Za-z0-9+/]{4}){6,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
    r"|(?<![A-Za-z0-9+/_\-])(?:[A-Za-z0-9_\-]{4}){6,}(?:[A-Za-z0-9_\-]{2,3})?(?![A-Za-z0-9+/_\-])"
)
_DOC_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "0.0.0.0/8")
)
_DOC_NET6 = ipaddress.ip_network("2001:db8::/32")
_SECTION = regex.compile(r"(?i)(?:sections?|§|chapter|version|v)[\s\-]*(?:\"|')?$")
_URLISH = regex.compile(r"[^\s\"'<>`]*%[0-9A-Fa-f]{2}[^\s\"'<>`]*")
_SAFE_EMAIL_DOMAINS = (
    "example.com",
    "example.org",
    "example.net",
    "users.noreply.github.com",
    "anthropic.com",
    "openai.com",
)


def _b64_matches(text: str) -> Iterator[regex.Match[str]]:
    """_B64.finditer(text), reading only the runs it can match: each match starts a maximal run
    of base64/base64url characters at least 24 long (its look-behind) and ends within it or up
    to two "=" after it."""
    for start, end in b64_runs(text):
        yield from _B64.finditer(text, start, min(len(text), end + 2))


def _phone_ok(s: str) -> bool:
    digits = sum(ch.isdigit() for ch in s)
    return 9 <= digits <= 15


class Detector:
    """Compiled rules; stateless and thread-safe."""

    def __init__(self, *, pii: bool = True) -> None:
        rules, self._global_allow, self._global_stop = load_gitleaks_rules()
        self.rules = rules + _EXTRA_RULES
        for rule in self.rules:
            rule.line_based = rule.id in _LINE_RULES
        self.pii = pii
        self._keywords = KeywordSet(k for rule in self.rules for k in rule.keywords)
        self._unkeyed = [i for i, rule in enumerate(self.rules) if not rule.keywords]
        self._by_keyword: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            for k in rule.keywords:
                self._by_keyword.setdefault(k, []).append(i)

    # -- secrets --------------------------------------------------------------------------
    def _allowed(self, rule: Rule, secret: str, match: str, line: str) -> bool:
        low = secret.lower()
        if any(p.search(secret) for p in self._global_allow):
            return True
        if any(s in low for s in self._global_stop) or any(s in low for s in rule.stopwords):
            return True
        for target, p in rule.allow:
            subject = {"secret": secret, "match": match, "line": line}.get(target, secret)
            if p.search(subject):
                return True
        return False

    @staticmethod
    def _matches(rule: Rule, text: str, low: str) -> Iterator[regex.Match[str]]:
        if not rule.line_based:
            yield from rule.pattern.finditer(text)
            return
        lines: set[tuple[int, int]] = set()
        for kw in rule.keywords:  # only the lines that hold a keyword
            idx = low.find(kw)
            while idx >= 0:
                start = text.rfind("\n", 0, idx) + 1
                end = text.find("\n", idx)
                end = len(text) if end < 0 else end
                lines.add((start, end))
                idx = low.find(kw, end)
        for start, end in sorted(lines):
            yield from rule.pattern.finditer(text, start, end)

    def secrets(self, text: str) -> list[Finding]:
        low = text.lower()
        run = set(self._unkeyed)  # rules without keywords, and those with one in the text
        for k in self._keywords.present(low):
            run.update(self._by_keyword[k])
        found: list[Finding] = []
        for rule in [self.rules[i] for i in sorted(run)]:
            for m in self._matches(rule, text, low):
                g = rule.secret_group
                if g is None:
                    g = next((i for i in range(1, (m.re.groups or 0) + 1) if m.group(i)), 0)
                secret = m.group(g)
                if not secret:
                    continue
                if rule.entropy and shannon_entropy(secret) < rule.entropy:
                    continue
                if rule.id == "password-assignment" and not _PASSWORDISH.search(secret):
                    continue
                if rule.id == "env-assignment":
                    if _DOTTED.fullmatch(secret) or _CONSTANT.fullmatch(secret):
                        continue  # ERRORTOKEN = token.ERRORTOKEN, TOKEN_ENDS = TSPECIALS
                    key = regex.match(r"[A-Za-z0-9_]+", m.group(0))
                    if (
                        not key
                        or not _ENV_KEY.fullmatch(key.group(0))
                        or secret.isalpha()
                        and secret.islower()
                    ):
                        continue
                ls, le = text.rfind("\n", 0, m.start()) + 1, text.find("\n", m.end())
                line = text[ls : le if le >= 0 else len(text)]
                if self._allowed(rule, secret, m.group(0), line):
                    continue
                found.append(Finding(m.start(g), m.end(g), "secret", rule.id))
        return found

    def _encoded(self, text: str) -> list[Finding]:
        """Secrets inside base64 runs (the whole run goes) and URL-encoded text."""
        found: list[Finding] = []
        for m in _b64_matches(text):
            run = m.group(0)
            try:
                raw = (
                    base64.urlsafe_b64decode if ("-" in run or "_" in run) else base64.b64decode
                )(run + "=" * (-len(run) % 4))
                decoded = raw.decode("utf-8")
            except (binascii.Error, ValueError):
                continue
            if sum(ch.isprintable() or ch in "\n\t" for ch in decoded) < 0.9 * len(decoded):
                continue
            inner = self.secrets(decoded) or (self._pii(decoded) if self.pii else [])
            if inner:
                found.append(Finding(m.start(), m.end(), "secret", "base64:" + inner[0].label))
        for run in _URLISH.finditer(text) if "%" in text else ():
            decoded = unquote(run.group(0)).replace("&", "\n")  # parameters end like lines
            for f in self.secrets(decoded) + (self._pii(decoded) if self.pii else []):
                value = decoded[f.start : f.end]
                for form in {value, quote(value, safe=""), quote(value), quote_plus(value)}:
                    start = text.find(form)
                    while start >= 0:
                        found.append(Finding(start, start + len(form), f.kind, f.label))
                        start = text.find(form, start + 1)
        return found

    # -- PII ------------------------------------------------------------------------------
    def _pii(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        if "@" in text:
            for m in _EMAIL.finditer(text):
                domain = m.group(0).rsplit("@", 1)[1].lower()
                if not domain.endswith(_SAFE_EMAIL_DOMAINS) and not m.group(0).startswith("git@"):
                    found.append(Finding(m.start(), m.end(), "email", "email"))
        if "." in text:
            for m in _IPV4.finditer(text):
                if _SECTION.search(text, max(0, m.start() - 12), m.start()):
                    continue  # "section 8.2.4.44", "rfc7231#section-7.1.1.1"
                ip = ipaddress.ip_address(m.group(0))
                if not (
                    ip.is_loopback
                    or ip.is_unspecified
                    or ip.is_multicast
                    or ip.is_reserved
                    or any(ip in net for net in _DOC_NETS)
                    or m.group(0).startswith("255.")
                ):
                    found.append(Finding(m.start(), m.end(), "ip", "ip"))
            for m in _HOST.finditer(text):
                found.append(Finding(m.start(), m.end(), "host", "host"))
        if text.count(":") >= 3:
            for m in _IPV6.finditer(text):
                try:
                    ip6 = ipaddress.ip_address(m.group(0))
                except ValueError:
                    continue
                if (
                    not (ip6.is_loopback or ip6.is_unspecified or ip6 in _DOC_NET6)
                    and m.group(0).count(":") >= 3
                ):
                    found.append(Finding(m.start(), m.end(), "ip", "ip"))
        for m in _PHONE.finditer(text) if may_have_phone(text) else ():
            if _phone_ok(m.group(0)):
                found.append(Finding(m.start(), m.end(), "phone", "phone"))
        if "Users" in text or "/home/" in text:
            for m in _HOME.finditer(text):
                found.append(Finding(m.start(1), m.end(1), "home", "home"))
        return found

    # -- all ------------------------------------------------------------------------------
    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings, earliest first: secrets before PII, longer spans first."""
        out = _merge([], self.secrets(text) + self._encoded(text))
        if self.pii:
            out = _merge(out, self._pii(text))
        return out


def _merge(kept: list[Finding], more: list[Finding]) -> list[Finding]:
    """Add findings that do not overlap kept ones (longer first; partial overlaps widen)."""
    spans = sorted(kept, key=lambda f: f.start)
    for f in sorted(more, key=lambda f: (-(f.end - f.start), f.start, f.label in _GENERIC)):
        hit = [k for k in spans if f.start < k.end and k.start < f.end]
        if not hit:
            spans.append(f)
        elif f.kind == "secret" and all(k.kind == "secret" for k in hit):
            for k in hit:
                spans.remove(k)
            start = min([f.start] + [k.start for k in hit])
            end = max([f.end] + [k.end for k in hit])
            spans.append(Finding(start, end, hit[0].kind, hit[0].label))
        spans.sort(key=lambda f: f.start)
    return spans
