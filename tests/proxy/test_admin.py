"""Admin endpoints of a running proxy: /healthz for probes, /metrics for Prometheus."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


def test_healthz_and_metrics(tracetap_proxy) -> None:
    proxy = tracetap_proxy(anthropic_upstream="http://127.0.0.1:9", admin=True)
    base = f"http://127.0.0.1:{proxy.admin_port}"
    health = httpx.get(base + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["db_healthy"] is True
    # an upstream that refuses connections: the client gets a 502, the round is an error
    resp = httpx.post(
        proxy.anthropic_url + "/v1/messages",
        timeout=10,
        json={"model": "m", "max_tokens": 5, "messages": []},
    )
    assert resp.status_code == 502
    metrics = {}
    for _ in range(50):
        text = httpx.get(base + "/metrics", timeout=10).text
        metrics = {
            s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
        }
        if metrics.get("tracetap_upstream_errors_total"):
            break
        import time

        time.sleep(0.1)
    assert metrics["tracetap_upstream_errors_total"] == 1
    assert metrics["tracetap_queue_depth"] == 0
    assert metrics["tracetap_db_healthy"] == 1
    assert "tracetap_journal_backlog_bytes" in metrics


def _niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_ingest_process_yields_the_cpu_to_the_proxy(tracetap_proxy) -> None:
    """Scrubbing and tokenizing run at the lowest priority, so on a busy machine the proxy's
    streams come first (the work waits in the queue and the journal)."""
    proxy = tracetap_proxy(anthropic_upstream="http://127.0.0.1:9", admin=True)
    pid = proxy.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    ingest = [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert len(ingest) == 1, children
    assert _niceness(ingest[0]) == min(19, _niceness(pid) + 19)
    # and under SCHED_IDLE: a waking proxy thread takes its core at once
    assert os.sched_getscheduler(ingest[0]) == os.SCHED_IDLE
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER
