"""``output: ndjson``: the answer as newline-delimited JSON, for a frontend with no SSE parser.

The hand-written Express interceptor this replaces splits each network read on "\\n" and
``JSON.parse``s the pieces, so a line cut across two reads throws or is lost, and a fault
in the middle leaves the frontend waiting.  Here the proxy decodes the stream event by
event (a line is written only whole) and every way a stream can end badly ends in one
``{"event":"error",...}`` line::

    {"event":"analyzing"}                                   status.start, when the answer begins
    {"event":"reasoning","content":"..."}                   with ndjson_reasoning: true
    {"event":"answering","content":"..."}                   each text delta
    {"event":"tool_call","id":"...","name":"...","arguments":{...}}   a call, once complete
    {"event":"completed","finish_reason":"stop","usage":{...}}        status.end + the finish
    {"event":"error","code":"...","message":"..."}          instead of completed, on any fault

A tool call whose arguments do not parse as JSON is sent with ``"arguments": null`` and the
text in ``raw_arguments``.  The usage is the client endpoint's own object.  Upstream silence
gets ``{"event":"keepalive"}`` lines (an SSE comment would break a line reader).
"""

from __future__ import annotations

import orjson

from .events import Reading

CONTENT_TYPE = "application/x-ndjson"


def line(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


class NDJSONWriter:
    """The writer stage of an NDJSON answer (last in the transform: returns bytes)."""

    __slots__ = ("ctx", "reading", "start", "end_status", "reasoning", "ended")

    content_type = CONTENT_TYPE
    http_headers = {"Content-Type": CONTENT_TYPE}
    keepalive = b'{"event":"keepalive"}\n'   # upstream silence: a line a frontend can skip by its event

    def __init__(self, ctx, endpoint: str, status_start: dict | None, status_end: dict | None,
                 reasoning: bool = False):
        self.ctx = ctx
        self.reading = Reading(endpoint)
        self.start = status_start
        self.end_status = status_end if status_end is not None else {"event": "completed"}
        self.reasoning = reasoning
        self.ended = False

    def head(self) -> bytes:
        """Written as soon as the response starts, before the model's first token."""
        return line(self.start) if self.start else b""

    def push(self, events) -> bytes:
        out = []
        read = self.reading.read
        for ev in events:
            for step in read(ev):
                piece = self._step(step)
                if piece:
                    out.append(piece)
        return b"".join(out)

    def _step(self, step) -> bytes | None:
        if self.ended:
            return None
        kind = step[0]
        if kind == "text":
            return line({"event": "answering", "content": step[1]})
        if kind == "reasoning":
            return line({"event": "reasoning", "content": step[1]}) if self.reasoning else None
        if kind == "tool_done":
            call = self.reading.calls[step[1]]
            args = call.parsed()
            obj = {"event": "tool_call", "id": call.id, "name": call.name, "arguments": args}
            if args is None:
                obj["raw_arguments"] = call.arguments
            return line(obj)
        if kind == "done":
            return self._completed()
        if kind == "error":
            return self._error(step[1], step[2])
        return None

    def _completed(self) -> bytes:
        self.ended = True
        r = self.reading
        return line({**self.end_status, "finish_reason": r.finish, "usage": r.usage})

    def _error(self, code, message) -> bytes:
        self.ended = True
        return line({"event": "error", "code": code, "message": message})

    def end(self) -> bytes:
        if self.ended:
            return b""
        fault = self.ctx.fault
        if fault is not None:
            return self._error(fault.code, fault.message)
        r = self.reading
        tools = b"".join(self._step(("tool_done", k)) for k in r.close_calls())
        return tools + self._completed()


def error_body(code: str, message: str) -> bytes:
    """An answer the proxy gives itself (a refused request, an unreachable backend)."""
    return line({"event": "error", "code": code, "message": message})
