"""What one request came to, for the LLM metrics and the access log: times, usage, finish.

A ``Tally`` is filled while the answer is written - from the bytes the client gets, so it
speaks the client's dialect whatever the backend spoke - and read once when the answer
ends (``Metrics.answer_done``, the access log).  Per write it costs an addition and a
list append, plus, until the first token, one regex search (the first text, reasoning or
tool-call delta: time to first token).  The ``usage`` object and the finish reason (chat)
or terminal status (Responses) come at a stream's end, so they are looked for once, in
the last few writes.
"""

from __future__ import annotations

import re
import time

import orjson

# chat: a delta with text, reasoning or a tool call (not the role-only first chunk)
_CHAT_TOKEN = re.compile(rb'"(?:content|reasoning_content|reasoning)": ?"[^"]|"tool_calls": ?\[')
# Responses: any delta event of the answer (text, reasoning, summary, arguments, refusal)
_RESP_TOKEN = re.compile(rb'"type": ?"response\.[a-z_.]*delta"')
_FINISH = re.compile(rb'"finish_reason": ?"([a-z_]+)"')
# the app-frontend dialects (sse_fixup/dialects): NDJSON lines, the AI SDK UI message stream
_NDJSON_TOKEN = re.compile(rb'"event": ?"(?:answering|reasoning|tool_call)"')
_UI_TOKEN = re.compile(rb'"type": ?"(?:text-delta|reasoning-delta|tool-input-start)"')
_UI_FINISH = re.compile(rb'"finishReason": ?"([a-z-]+)"')
_STATUS = re.compile(rb'"type": ?"response\.(completed|incomplete|failed)"')
USAGE_NEEDLES = (b'"usage":{', b'"usage": {')
TAIL = 4          # writes kept (by reference) for the end: terminal event, usage, [DONE]


class Tally:
    __slots__ = ("endpoint", "model", "stream", "started", "sent_at", "first_byte_at",
                 "first_token_at", "ended_at", "bytes_out", "usage", "finish", "fault", "ctx",
                 "route", "tail", "output", "_token")

    def __init__(self, endpoint: str | None, model: str | None, stream: bool, output: str = "sse"):
        self.endpoint = endpoint
        self.output = output                     # the dialect the client reads
        self._token = {"ndjson": _NDJSON_TOKEN, "ui-message-stream": _UI_TOKEN}.get(
            output, _CHAT_TOKEN if endpoint == "chat" else _RESP_TOKEN)
        self.model = model
        self.stream = stream
        self.started = time.monotonic()          # the request arrived
        self.sent_at: float | None = None        # it went upstream
        self.first_byte_at: float | None = None  # the upstream's first body byte (streams) or headers
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.bytes_out = 0
        self.usage: dict | None = None
        self.finish: str | None = None           # chat finish_reason / Responses status / "error"
        self.fault: str | None = None
        self.ctx = None                          # the transform's StreamContext, when there was one
        self.route: int | None = None
        self.tail: list[bytes] = []              # the last writes of a stream

    # -- while the answer is written ----------------------------------------------------

    def wrote(self, out: bytes) -> None:
        """A piece of a stream, as the client gets it (whole events).  Per write: its size,
        and a reference to it among the last few (the usage and the finish are at the end:
        they are looked for once, in ``end``); the token search only until the first."""
        self.bytes_out += len(out)
        tail = self.tail
        tail.append(out)
        if len(tail) > TAIL:
            del tail[0]
        if self.first_token_at is None and self._token.search(out):
            self.first_token_at = time.monotonic()

    def _scan_tail(self) -> None:
        buf = b"".join(self.tail)
        self.tail = []
        for needle in USAGE_NEEDLES:
            pos = buf.rfind(needle)
            if pos >= 0:
                obj = _event_at(buf, pos)
                usage = _usage_of(obj) if obj is not None else None
                if usage:
                    self.usage = usage
                break
        if self.output == "ui-message-stream":
            found = _UI_FINISH.findall(buf)
            if found:
                self.finish = found[-1].decode()
            elif b'"type":"error"' in buf:
                self.finish = "error"
        elif self.endpoint == "chat" or self.output == "ndjson":
            found = _FINISH.findall(buf)
            if found:
                self.finish = found[-1].decode()
            elif b'"error":' in buf or b'"event":"error"' in buf:
                self.finish = "error"
        else:
            found = _STATUS.findall(buf)
            if found:
                self.finish = found[-1].decode()

    def body(self, out: bytes, status: int) -> None:
        """A whole JSON answer (made by the proxy or passed on)."""
        self.bytes_out += len(out)
        try:
            obj = orjson.loads(out)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        if status >= 400 or "error" in obj and obj.get("error"):
            self.finish = "error"
        usage = _usage_of(obj)
        if usage:
            self.usage = usage
        if self.endpoint == "chat":
            for choice in obj.get("choices") or ():
                if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                    self.finish = choice["finish_reason"]
                    break
        elif isinstance(obj.get("status"), str):
            self.finish = obj["status"]

    def end(self, ctx=None) -> None:
        self.ended_at = time.monotonic()
        if self.tail:
            self._scan_tail()
        if ctx is not None:
            self.ctx = ctx
            if ctx.fault is not None:
                self.fault = ctx.fault.code

    # -- read at the end ----------------------------------------------------------------

    def tokens(self) -> dict[str, int]:
        """input/output/cached/reasoning from either dialect's usage (absent ones left out)."""
        u = self.usage or {}
        out = {}
        for kind, keys in (("input", ("prompt_tokens", "input_tokens")),
                           ("output", ("completion_tokens", "output_tokens"))):
            for k in keys:
                if isinstance(u.get(k), int):
                    out[kind] = u[k]
                    break
        for kind, details, key in (("cached", ("prompt_tokens_details", "input_tokens_details"), "cached_tokens"),
                                   ("reasoning", ("completion_tokens_details", "output_tokens_details"),
                                    "reasoning_tokens")):
            for d in details:
                v = u.get(d)
                if isinstance(v, dict) and isinstance(v.get(key), int):
                    out[kind] = v[key]
                    break
        return out

    def seconds(self, since: float | None, until: float | None) -> float | None:
        return None if since is None or until is None else max(until - since, 0.0)


def _event_at(buf: bytes, pos: int) -> dict | None:
    """The JSON of the SSE event (or the body) around ``pos``."""
    start = max(buf.rfind(b"\n\n", 0, pos), buf.rfind(b"\r\n\r\n", 0, pos))
    start = 0 if start < 0 else start
    end = buf.find(b"\n\n", pos)
    event = buf[start:end if end >= 0 else len(buf)]
    data = [line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    try:
        obj = orjson.loads(b"\n".join(data) if data else event)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _usage_of(obj: dict) -> dict | None:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        resp = obj.get("response")
        usage = resp.get("usage") if isinstance(resp, dict) else None
    return usage if isinstance(usage, dict) else None
