"""``output: ui-message-stream``: the AI SDK's UI message stream, so ``useChat`` can talk to
llama-server (or any chat or Responses backend) through the proxy with no JS backend.

The protocol (``ai``'s ``uiMessageChunkSchema``; the response carries
``x-vercel-ai-ui-message-stream: v1``) is SSE whose data lines are typed chunks::

    start, start-step,
    text-start / text-delta / text-end,  reasoning-start / -delta / -end   (parts, by id)
    tool-input-start / tool-input-delta / tool-input-available              (by toolCallId)
    finish-step, finish {finishReason}, then data: [DONE]
    error {errorText} on any fault (then finish with finishReason "error" and [DONE])

A part is closed before another begins, so the assembled message keeps the order the
model produced.  Arguments that do not parse become ``tool-input-error`` (the SDK then
shows the call as failed instead of throwing).
"""

from __future__ import annotations

import orjson

from ..rules import base
from .events import Reading

HEADERS = {"Content-Type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1"}

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool-calls", "function_call": "tool-calls",
           "content_filter": "content-filter", "error": "error"}


def chunk(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class UIStreamWriter:
    """The writer stage of a UI message stream answer."""

    __slots__ = ("ctx", "reading", "open", "parts", "ended", "message_id", "status")

    content_type = "text/event-stream"
    http_headers = HEADERS

    def __init__(self, ctx, endpoint: str, message_id: str | None = None, status: dict | None = None):
        self.ctx = ctx
        self.reading = Reading(endpoint)
        self.open: tuple[str, str] | None = None     # (kind, id) of the text/reasoning part open
        self.parts = 0
        self.ended = False
        self.message_id = message_id or f"msg_{base.token()}"
        self.status = status

    def head(self) -> bytes:
        out = [chunk({"type": "start", "messageId": self.message_id})]
        if self.status:                  # a transient data part: useChat's onData sees it
            out.append(chunk({"type": "data-status", "data": self.status, "transient": True}))
        out.append(chunk({"type": "start-step"}))
        return b"".join(out)

    def push(self, events) -> bytes:
        out: list[bytes] = []
        read = self.reading.read
        for ev in events:
            for step in read(ev):
                if not self.ended:
                    self._step(step, out)
        return b"".join(out)

    def _part(self, kind: str, out: list) -> str:
        """The id of the open ``kind`` part, closing another one and opening it if needed."""
        if self.open is not None and self.open[0] == kind:
            return self.open[1]
        self._close(out)
        self.parts += 1
        pid = f"{kind}-{self.parts}"
        self.open = (kind, pid)
        out.append(chunk({"type": f"{kind}-start", "id": pid}))
        return pid

    def _close(self, out: list) -> None:
        if self.open is not None:
            out.append(chunk({"type": f"{self.open[0]}-end", "id": self.open[1]}))
            self.open = None

    def _step(self, step, out: list) -> None:
        kind = step[0]
        if kind == "text" or kind == "reasoning":
            pid = self._part(kind, out)
            out.append(chunk({"type": f"{kind}-delta", "id": pid, "delta": step[1]}))
        elif kind == "tool_start":
            self._close(out)
            call = self.reading.calls[step[1]]
            out.append(chunk({"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name}))
        elif kind == "tool_args":
            call = self.reading.calls[step[1]]
            out.append(chunk({"type": "tool-input-delta", "toolCallId": call.id, "inputTextDelta": step[2]}))
        elif kind == "tool_done":
            call = self.reading.calls[step[1]]
            args = call.parsed()
            if isinstance(args, dict):
                out.append(chunk({"type": "tool-input-available", "toolCallId": call.id,
                                  "toolName": call.name, "input": args}))
            else:
                out.append(chunk({"type": "tool-input-error", "toolCallId": call.id, "toolName": call.name,
                                  "input": call.arguments, "errorText": "the tool call's arguments are "
                                  "not a JSON object"}))
        elif kind == "done":
            self._finish(out)
        elif kind == "error":
            self._error(step[2], out)

    def _finish(self, out: list) -> None:
        self._close(out)
        self.ended = True
        reason = _FINISH.get(self.reading.finish, "other") if self.reading.finish else "stop"
        out += [chunk({"type": "finish-step"}), chunk({"type": "finish", "finishReason": reason}), DONE]

    def _error(self, message: str, out: list) -> None:
        self._close(out)
        self.ended = True
        out += [chunk({"type": "error", "errorText": message}),
                chunk({"type": "finish", "finishReason": "error"}), DONE]

    def end(self) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        fault = self.ctx.fault
        if fault is not None:
            self._error(f"{fault.code}: {fault.message}", out)
        else:
            for key in self.reading.close_calls():
                self._step(("tool_done", key), out)
            self._finish(out)
        return b"".join(out)

