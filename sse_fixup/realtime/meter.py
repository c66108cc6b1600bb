"""Metrics of one Realtime connection, from the server events it carried (both modes).

Like the HTTP streams: per response its status, the time from ``response.create`` to the
first text, audio or tool-call delta (``sse_fixup_ttft_seconds{endpoint="realtime"}``),
and the tokens its ``response.done`` usage reports.  It also knows whether a response is
open, so that a connection lost in the middle of one can end it (``fail``).
"""

from __future__ import annotations

import time

from ..rules.base import Fault, StreamContext
from . import events as ev

DELTAS = frozenset({"response.output_text.delta", "response.text.delta", "response.output_audio.delta",
                    "response.audio.delta", "response.output_audio_transcript.delta",
                    "response.audio_transcript.delta", "response.function_call_arguments.delta"})


class Meter:
    def __init__(self, metrics, mode: str, model: str | None):
        self.metrics = metrics
        self.mode = mode
        label = getattr(metrics, "model_label", None)
        self.model = label(model) if label else (model or "none")
        self.requested_at: float | None = None
        self.started_at: float | None = None
        self.first_token = False
        self.open_response: dict | None = None     # the response.created's response, until done

    def client_event(self, text: str) -> None:
        if '"response.create"' in text:
            self.requested_at = time.monotonic()

    def server_event(self, obj: dict) -> None:
        typ = obj.get("type")
        if typ == "response.created":
            resp = obj.get("response")
            self.open_response = resp if isinstance(resp, dict) else {}
            self.started_at = self.requested_at or time.monotonic()
            self.requested_at = None
            self.first_token = False
        elif typ in DELTAS and not self.first_token and self.started_at is not None:
            self.first_token = True
            self.metrics.ttft.labels("realtime", self.model).observe(time.monotonic() - self.started_at)
        elif typ == "response.done":
            self.open_response = None
            resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
            self.metrics.realtime_responses.labels(self.mode, str(resp.get("status"))).inc()
            usage = resp.get("usage") if isinstance(resp.get("usage"), dict) else {}
            details = usage.get("input_token_details") if isinstance(usage.get("input_token_details"), dict) else {}
            for kind, n in (("input", usage.get("input_tokens")), ("output", usage.get("output_tokens")),
                            ("cached", details.get("cached_tokens"))):
                if isinstance(n, int) and n > 0:
                    self.metrics.tokens.labels(self.model, kind).inc(n)

    def fail(self, fault: Fault, response_id: str | None) -> list[dict]:
        """The events that end the open response: ``error``, ``response.done`` failed."""
        self.metrics.stream_faults.labels(fault.code).inc()
        resp = dict(self.open_response or {})
        error = ev.error(fault.message, code=fault.code, etype="server_error")
        resp.update(id=resp.get("id") or response_id, object="realtime.response", status="failed",
                    status_details={"type": "failed", "error": {"type": "server_error", "code": fault.code,
                                                                "message": f"sse-fixup: {fault.message}"}})
        from ..rules.realtime import realtime_usage
        resp["usage"] = realtime_usage(resp.get("usage"))[0]
        resp.setdefault("output", [])
        done = ev.event("response.done", response=resp)
        self.server_event(done)
        return [error, done]

    def connection_done(self, ctx: StreamContext | None) -> None:
        if ctx is not None:
            self.metrics.stream_done("realtime", ctx)
