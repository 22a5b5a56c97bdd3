"""An addon that overrides where upstream connections go (`host:port=addr:port`), like curl's
--resolve: for staging upstreams and tests of forward mode. The TLS SNI stays the original host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.proxy import server_hooks

__all__ = ["Resolve", "parse_rules"]


def parse_rules(rules: list[str]) -> dict[tuple[str, int], tuple[str, int]]:
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for rule in rules:
        try:
            src, dst = rule.split("=", 1)
            shost, sport = src.rsplit(":", 1)
            dhost, dport = dst.rsplit(":", 1)
            out[(shost.lower(), int(sport))] = (dhost, int(dport))
        except ValueError:
            raise exceptions.OptionsError(
                f"bad resolve rule {rule!r}: expected host:port=address:port"
            ) from None
    return out


class Resolve:
    def __init__(self) -> None:
        self.rules: dict[tuple[str, int], tuple[str, int]] = {}

    def load(self, loader: Any) -> None:
        loader.add_option(
            "tracetap_resolve",
            Sequence[str],
            [],
            "Send connections for host:port to address:port instead (host:port=address:port).",
        )

    def configure(self, updated: set[str]) -> None:
        if "tracetap_resolve" in updated:
            self.rules = parse_rules(list(ctx.options.tracetap_resolve))

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if not self.rules or data.server.address is None:
            return
        host, port = data.server.address[0], data.server.address[1]
        target = self.rules.get((str(host).lower(), int(port)))
        if target is not None:
            if data.server.sni is None:
                data.server.sni = str(host)
            data.server.address = target
