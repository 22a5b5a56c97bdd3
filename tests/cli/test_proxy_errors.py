"""`tracetap proxy` on a PostgreSQL port where nothing listens: one warning line (no traceback),
and it keeps recording into its journal until the server is there (the durability contract)."""

from __future__ import annotations

from pathlib import Path

from tests.support.proxy import free_port, start_proxy


def test_an_unreachable_postgresql_is_one_line_and_the_proxy_runs(
    tmp_path: Path, mitm_confdir: Path
) -> None:
    url = f"postgresql://tracetap@127.0.0.1:{free_port()}/nothing_listens"
    proxy = start_proxy(
        tmp_path, confdir=mitm_confdir, anthropic_upstream="http://127.0.0.1:9", db_url=url
    )
    try:
        assert proxy.proc.poll() is None  # listening: start_proxy waited for its port
    finally:
        assert proxy.stop() == 0, proxy.log.read_text()
    log = proxy.log.read_text()
    assert "Traceback" not in log
    [warning] = [line for line in log.splitlines() if "cannot be reached" in line]
    assert url in warning and "recording to the journal" in warning
