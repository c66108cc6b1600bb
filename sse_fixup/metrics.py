"""Prometheus metrics.  The proxy counts per stream in plain ints and reports here once,
when the stream ends, so the per-event hot path never touches a metric object."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .rules.base import StreamContext


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sse_fixup_requests", "Requests proxied",
                                ["endpoint", "kind", "status"], registry=r)
        self.events = Counter("sse_fixup_events", "SSE events seen by the rule chain",
                              ["endpoint", "outcome"], registry=r)
        self.rule_applied = Counter("sse_fixup_rule_applied", "Events (or bodies) a rule changed",
                                    ["rule"], registry=r)
        self.rule_failures = Counter("sse_fixup_rule_failures",
                                     "Streams in which a rule raised (the event passed unchanged)",
                                     ["rule"], registry=r)
        self.upstream_errors = Counter("sse_fixup_upstream_errors", "Upstream failures",
                                       ["kind"], registry=r)
        self.upstream_retries = Counter("sse_fixup_upstream_retries",
                                        "Requests sent again on a new connection after a pooled "
                                        "one was closed by the upstream", registry=r)
        self.client_disconnects = Counter("sse_fixup_client_disconnects",
                                          "Streams the client left early (upstream cancelled)",
                                          registry=r)
        self.active_streams = Gauge("sse_fixup_active_streams", "Streams in flight", registry=r,
                                    multiprocess_mode="livesum")

    def stream_done(self, endpoint: str, ctx: StreamContext) -> None:
        events, patched = ctx.events, ctx.patched
        self.events.labels(endpoint, "passed").inc(events - patched - ctx.non_json)
        if patched:
            self.events.labels(endpoint, "patched").inc(patched)
        if ctx.non_json:
            self.events.labels(endpoint, "non_json").inc(ctx.non_json)
        self.rules_done(ctx)

    def rules_done(self, ctx: StreamContext) -> None:
        for name, n in ctx.applied.items():
            self.rule_applied.labels(name).inc(n)
        for name in ctx.failures:
            self.rule_failures.labels(name).inc()

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):      # --workers N: the sum of all
            from prometheus_client import multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
