"""Status events in the SSE dialects: "analyzing" before the model starts, "completed" at
the end, for a frontend that shows progress while the backend reads a long prompt.

Off by default (``status.sse: off``).  ``comment`` writes ``: status analyzing`` - an SSE
comment, which every SSE parser must ignore (WHATWG: a line starting with ":"), so no
client can break on it; tested with openai-python and the AI SDK (current and 3.0.41).
``data`` writes ``data: {"event":"analyzing"}`` (chat) or ``event: status`` + data
(Responses): visible to any reader, but an event strict clients do not expect - the
README's table says which tolerate it.

The writer is the plain ``SSEWriter`` with a head and a tail, so the transform's fast path
(whole reads forwarded undecoded) still holds.
"""

from __future__ import annotations

import orjson

from ..transform import SSEWriter


def status_bytes(payload: dict, form: str, named: bool) -> bytes:
    if form == "comment":
        word = payload.get("event") if isinstance(payload.get("event"), str) and len(payload) == 1 \
            else orjson.dumps(payload).decode()
        return b": status " + word.replace("\n", " ").replace("\r", " ").encode() + b"\n\n"
    head = b"event: status\n" if named else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


class StatusSSEWriter(SSEWriter):
    """SSE out, with a status before the first event and after the last."""

    __slots__ = ("_head", "_tail")

    def __init__(self, named: bool, form: str, start: dict | None, end: dict | None):
        super().__init__(named)
        self._head = status_bytes(start, form, named) if start else b""
        self._tail = status_bytes(end, form, named) if end else b""

    def head(self) -> bytes:
        return self._head

    def end(self) -> bytes:
        tail, self._tail = self._tail, b""
        return (b"\n\n" + tail if self._open and tail else tail)
