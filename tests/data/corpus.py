"""A corpus of realistic secrets and PII, generated (seeded) in the providers' real formats.

Generated at test time so no live-looking credential is committed; `corpus()` returns
(label, value) pairs and `contexts()` embeds them in prompts, tool outputs, JSON inputs and headers.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Item", "corpus", "corpus_specs"]

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B32 = string.ascii_uppercase + "234567"
LOWER_HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Item:
    label: str
    value: str  # what must never reach disk
    text: str  # how it appears in the traffic
    where: str  # prompt | tool_output | tool_input | header | system
    forms: tuple[str, ...] = ()  # encoded forms that must not reach disk either


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _secrets(rng: random.Random) -> list[tuple[str, str, str]]:
    """(label, value, how it is written) for each credential type."""
    out: list[tuple[str, str, str]] = []
    u = ALNUM + "_-"
    for _ in range(8):
        v = "sk-ant-api03-" + _r(rng, u, 93) + "AA"
        out.append(("anthropic-api03", v, f"ANTHROPIC_API_KEY={v}"))
    for _ in range(8):
        v = "sk-ant-oat01-" + _r(rng, u, 95) + "AA"
        out.append(("anthropic-oat01", v, f'"accessToken": "{v}"'))
    for _ in range(8):
        v = "sk-proj-" + _r(rng, u, 74) + "T3BlbkFJ" + _r(rng, u, 74)
        out.append(("openai", v, f"export OPENAI_API_KEY='{v}'"))
    for _ in range(8):
        v = "ghp_" + _r(rng, ALNUM, 36)
        out.append(("github-pat", v, f"git clone https://x-access-token:{v}@github.com/acme/app"))
    for _ in range(5):
        v = "github_pat_" + _r(rng, ALNUM + "_", 82)
        out.append(("github-fine-grained", v, f"token: {v}"))
    for _ in range(5):
        v = "gho_" + _r(rng, ALNUM, 36)
        out.append(("github-oauth", v, f"oauth_token={v}"))
    for _ in range(8):
        v = "glpat-" + _r(rng, ALNUM + "_-", 20)
        out.append(("gitlab-pat", v, f"PRIVATE-TOKEN: {v}"))
    for _ in range(8):
        v = "AKIA" + _r(rng, B32, 16)
        out.append(("aws-access-key", v, f"aws_access_key_id = {v}"))
    for _ in range(8):
        v = _r(rng, ALNUM + "/+", 40)
        out.append(("aws-secret-key", v, f"aws_secret_access_key = {v}"))
    for _ in range(8):
        v = "AIza" + _r(rng, ALNUM + "_-", 35)
        out.append(("gcp-api-key", v, f'const key = "{v}";'))
    for _ in range(5):
        v = _r(rng, ALNUM, 3) + str(rng.randint(0, 9)) + "Q~" + _r(rng, ALNUM + "_~.-", 34)
        out.append(("azure-client-secret", v, f"AZURE_CLIENT_SECRET={v}"))
    for _ in range(8):
        v = f"xoxb-{rng.randint(10**10, 10**12)}-{rng.randint(10**10, 10**12)}-" + _r(
            rng, ALNUM, 24
        )
        out.append(("slack-bot", v, f"slack token {v} expired"))
    for _ in range(8):
        v = "sk_live_" + _r(rng, ALNUM, 32)
        out.append(("stripe", v, f'Stripe.api_key = "{v}"'))
    for _ in range(8):
        v = "hf_" + _r(rng, string.ascii_letters, 34)
        out.append(("huggingface", v, f"HF_TOKEN={v}"))
    for _ in range(5):
        v = "npm_" + _r(rng, ALNUM, 36)
        out.append(("npm", v, f"//registry.npmjs.org/:_authToken={v}"))
    for _ in range(5):
        v = "pypi-AgEIcHlwaS5vcmc" + _r(rng, ALNUM + "_-", 70)
        out.append(("pypi", v, f"password = {v}"))
    for _ in range(5):
        body = "\n".join(_r(rng, ALNUM + "+/", 64) for _ in range(6))
        v = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
        out.append(("private-key", body.splitlines()[2], v))
    for _ in range(8):
        head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
        claims = (
            base64.urlsafe_b64encode(
                json.dumps(
                    {"sub": str(rng.randint(1, 10**9)), "name": _r(rng, string.ascii_lowercase, 8)}
                ).encode()
            )
            .rstrip(b"=")
            .decode()
        )
        v = f"{head}.{claims}.{_r(rng, ALNUM + '_-', 43)}"
        out.append(("jwt", v, f"Authorization: Bearer {v}"))
    for scheme in (
        "postgres",
        "postgresql",
        "mysql",
        "mongodb+srv",
        "redis",
        "amqp",
        "postgres",
        "mysql",
    ):
        pw = _r(rng, ALNUM, 14) + "!" + _r(rng, ALNUM, 3)
        out.append(
            (
                "connection-string",
                pw,
                f"{scheme}://svc_user:{pw}@db{rng.randint(1, 9)}.prod.example.com:5432/app",
            )
        )
    for name in (
        "DB_PASSWORD",
        "REDIS_PASSWORD",
        "SMTP_PASS",
        "ADMIN_PASSWORD",
        "API_TOKEN",
        "SESSION_SECRET",
        "JWT_SECRET",
        "GRAFANA_TOKEN",
        "VAULT_TOKEN",
        "MYSQL_PWD",
    ):
        v = _r(rng, string.ascii_lowercase, 5) + _r(rng, string.digits, 3) + _r(rng, ALNUM, 4)
        out.append(("env-assignment", v, f"{name}={v}"))
    return out


def _pii(rng: random.Random) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    first = [
        "amelie",
        "bartosz",
        "chiamaka",
        "dmitri",
        "eleanor",
        "fumiko",
        "giovanni",
        "hyunwoo",
        "ingrid",
        "jaroslav",
        "kwabena",
        "ludmila",
        "mateus",
        "nadezhda",
        "oluwaseun",
    ]
    for name in first:
        domain = rng.choice(["acme-corp.io", "globex.de", "initech.co.uk"])
        v = f"{name}.{_r(rng, string.ascii_lowercase, 6)}@{domain}"
        out.append(("email", v, f"Author: {name.title()} <{v}>"))
    for _ in range(10):
        octets = (
            rng.randint(11, 223),
            rng.randint(0, 255),
            rng.randint(0, 255),
            rng.randint(1, 254),
        )
        v = ".".join(map(str, octets))
        out.append(("ipv4", v, f"Connection from {v} port 22"))
    for _ in range(3):
        v = ":".join(f"{rng.randint(0x1000, 0xFFFF):x}" for _ in range(8))
        out.append(("ipv6", v, f"inet6 {v}/64 scope global"))
    for _ in range(10):
        v = f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        out.append(("phone", v, f"call me at {v} tomorrow"))
    for i in range(15):
        user = _r(rng, string.ascii_lowercase, 7) + str(i)
        path = rng.choice(
            [
                f"/home/{user}/src/app/main.py",
                f"/Users/{user}/Projects/app",
                f"C:\\Users\\{user}\\repo\\setup.py",
            ]
        )
        out.append(("home-user", user, f'Traceback: File "{path}", line 3'))
    for _ in range(5):
        v = f"{_r(rng, string.ascii_lowercase, 6)}-{rng.randint(1, 99)}.corp.internal"
        out.append(("hostname", v, f"ssh deploy@{v}"))
    return out


def corpus(seed: int = 20261125) -> list[Item]:
    """At least 200 secrets and PII values, each in a context; some base64 or URL-encoded."""
    rng = random.Random(seed)
    wheres = ["prompt", "tool_output", "tool_input", "header", "system"]
    items: list[Item] = []
    for i, (label, value, text) in enumerate(_secrets(rng) + _pii(rng)):
        where = wheres[i % len(wheres)]
        forms: tuple[str, ...] = ()
        if i % 11 == 3:  # base64 of the whole line, as in a Kubernetes secret or a data URL
            encoded = base64.b64encode(text.encode()).decode()
            text, forms = f"data: {encoded}", (encoded,)
        elif i % 11 == 7 and label not in ("private-key",):  # URL-encoded in a query string
            param = rng.choice(["q", "access_token", "text", "api_key"])
            text = f"GET /search?state=1&{param}={quote(text, safe='')}&next=%2Fhome"
            encoded = quote(value, safe="")
            forms = (encoded,) if encoded != value else ()
        elif i % 5 == 1:  # a partial line: no separators around it
            text = f"...{text};echo done"
        items.append(Item(label, value, text, where, forms))
    return items


def corpus_specs(items: list[Item], per_round: int = 12) -> list[dict]:
    """The corpus spread over rounds of a scripted session (tests.support.scripted's specs):
    each item in the part of the exchange its `where` names."""
    specs: list[dict] = []
    for start in range(0, len(items), per_round):
        chunk = items[start : start + per_round]
        spec: dict = {}
        for field in ("prompt", "tool_output", "tool_input", "system"):
            texts = [it.text for it in chunk if it.where == field]
            if texts:
                spec[field] = "\n".join(texts) if field != "tool_input" else "; ".join(texts)
        spec["headers"] = [
            ("x-codex-turn-metadata", json.dumps({"note": it.text}))
            for it in chunk
            if it.where == "header"
        ]
        specs.append(spec)
    return specs
