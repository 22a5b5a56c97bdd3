"""Admin HTTP endpoints of a running proxy: /healthz for probes, /metrics for Prometheus.

Served by aiohttp on the proxy's own event loop, on a separate port.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tracetap.ingest.sink import IngestSink

__all__ = ["start_admin"]


class _PipelineCollector:
    def __init__(self, pipeline: IngestSink) -> None:
        self.pipeline = pipeline

    def collect(self) -> Iterator[Metric]:
        st = self.pipeline.stats
        rounds = CounterMetricFamily(
            "tracetap_rounds_recorded", "Rounds written to the store", labels=["kind"]
        )
        for kind, n in sorted(st.by_kind.items()):
            rounds.add_metric([kind], n)
        yield rounds
        yield CounterMetricFamily(
            "tracetap_side_requests_recorded",
            "count_tokens and unrecognized exchanges written",
            value=st.side_recorded,
        )
        yield CounterMetricFamily(
            "tracetap_upstream_errors",
            "Rounds that ended in an upstream or connection error",
            value=st.upstream_errors,
        )
        yield CounterMetricFamily(
            "tracetap_adapter_errors",
            "Exchanges an adapter could not parse (kept as side records)",
            value=st.adapter_errors,
        )
        unknown = CounterMetricFamily(
            "tracetap_unknown_stream_events",
            "Stream events of a type the API does not document (kept raw in the round)",
            labels=["api", "type"],
        )
        for (api, kind), n in sorted(st.unknown_events.items()):
            unknown.add_metric([api, kind], n)
        yield unknown
        yield GaugeMetricFamily(
            "tracetap_queue_depth",
            "Exchanges waiting for the writer",
            value=self.pipeline.queue_depth,
        )
        yield GaugeMetricFamily(
            "tracetap_journal_backlog_bytes",
            "Journaled bytes not yet in the database",
            value=self.pipeline.backlog_bytes,
        )
        yield GaugeMetricFamily(
            "tracetap_db_healthy",
            "1 when the last database write worked",
            value=1 if st.db_healthy else 0,
        )
        yield CounterMetricFamily(
            "tracetap_write_seconds", "Time spent in database writes", value=st.write_seconds_total
        )
        yield CounterMetricFamily("tracetap_writes", "Database write batches", value=st.writes)
        yield GaugeMetricFamily(
            "tracetap_last_write_seconds",
            "Latency of the last batch write",
            value=st.last_write_seconds,
        )


async def start_admin(host: str, port: int, pipeline: IngestSink) -> web.AppRunner:
    registry = CollectorRegistry()
    registry.register(_PipelineCollector(pipeline))

    async def healthz(_request: web.Request) -> web.Response:
        """200 while the proxy records what it captures (the spool and journal keep it while
        the database is down or ingest restarts: then the status is "degraded", with the
        reason); 503 with the reason when captured exchanges cannot be kept."""
        st = pipeline.stats
        alive = pipeline.alive
        reason = pipeline.reason
        if not alive:
            status = "dead"
        elif reason or not st.db_healthy:
            status = "degraded"
        else:
            status = "ok"
        body = {
            "status": status,
            "reason": reason or st.last_db_error,
            "writer_alive": alive,
            "db_healthy": st.db_healthy,
            "queue_depth": pipeline.queue_depth,
            "journal_backlog_bytes": pipeline.backlog_bytes,
            "last_db_error": st.last_db_error,
        }
        return web.json_response(body, status=200 if alive else 503)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
