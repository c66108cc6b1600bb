"""Prometheus metrics.  The proxy counts per stream in plain ints and reports here once,
when the stream ends, so the per-event hot path never touches a metric object."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .rules.base import StreamContext


LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
DURATION = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
RATE = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 5000)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_models: int = 32) -> None:
        self.max_models = max_models
        self._models: set[str] = set()
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
        # LLM metrics, once per response; model = the requested model (capped, then "other")
        llm = ["endpoint", "model"]
        self.ttfb = Histogram("sse_fixup_upstream_ttfb_seconds", "Request sent upstream -> first "
                              "byte of the answer", llm, buckets=LATENCY, registry=r)
        self.ttft = Histogram("sse_fixup_ttft_seconds", "Request sent upstream -> first text, "
                              "reasoning or tool-call delta", llm, buckets=LATENCY, registry=r)
        self.duration = Histogram("sse_fixup_stream_duration_seconds", "Request sent upstream -> "
                                  "the answer's end", llm, buckets=DURATION, registry=r)
        self.tokens_per_second = Histogram("sse_fixup_output_tokens_per_second", "Output tokens "
                                           "over the time from first token to the end", llm,
                                           buckets=RATE, registry=r)
        self.tokens = Counter("sse_fixup_tokens", "Tokens by the usage the answers carried",
                              ["model", "kind"], registry=r)
        self.finish = Counter("sse_fixup_finish", "Answers by finish reason (chat) or status "
                              "(Responses)", ["endpoint", "model", "reason"], registry=r)
        self.stream_faults = Counter("sse_fixup_stream_faults", "Answers ended by a fault",
                                     ["code"], registry=r)
        self.config_reloads = Counter("sse_fixup_config_reloads", "Config reloads",
                                      ["result"], registry=r)
        self.captures = Counter("sse_fixup_captures", "Responses captured", ["trigger"], registry=r)
        self.captures_skipped = Counter("sse_fixup_captures_skipped", "Captures not written",
                                        ["reason"], registry=r)
        self.conformance = Counter("sse_fixup_conformance_violations", "Findings of the live "
                                   "validator after the rules", ["defect", "route"], registry=r)
        self.realtime_connections = Counter("sse_fixup_realtime_connections", "Realtime WebSocket "
                                            "sessions", ["mode"], registry=r)
        self.realtime_responses = Counter("sse_fixup_realtime_responses", "Realtime responses by "
                                          "status", ["mode", "status"], registry=r)

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

    def model_label(self, model: str | None) -> str:
        """The requested model, while fewer than ``max_models`` have been seen; then "other"
        (a client choosing model names must not grow the metrics without bound)."""
        if not model:
            return "none"
        if model in self._models:
            return model
        if len(self._models) < self.max_models:
            self._models.add(model)
            return model
        return "other"

    def answer_done(self, tally) -> None:
        """The LLM metrics of one answer, once, at its end."""
        endpoint = tally.endpoint
        if endpoint is None:
            return
        model = self.model_label(tally.model)
        labels = (endpoint, model)
        ttfb = tally.seconds(tally.sent_at, tally.first_byte_at)
        if ttfb is not None:
            self.ttfb.labels(*labels).observe(ttfb)
        ttft = tally.seconds(tally.sent_at, tally.first_token_at)
        if ttft is not None:
            self.ttft.labels(*labels).observe(ttft)
        duration = tally.seconds(tally.sent_at, tally.ended_at)
        if duration is not None:
            self.duration.labels(*labels).observe(duration)
        tokens = tally.tokens()
        for kind, n in tokens.items():
            if n:
                self.tokens.labels(model, kind).inc(n)
        out = tokens.get("output")
        span = tally.seconds(tally.first_token_at or tally.sent_at, tally.ended_at)
        if out and span:
            self.tokens_per_second.labels(*labels).observe(out / span)
        if tally.fault:
            self.stream_faults.labels(tally.fault).inc()
        self.finish.labels(endpoint, model, tally.finish or ("error" if tally.fault else "unknown")).inc()

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):      # --workers N: the sum of all
            from prometheus_client import multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
