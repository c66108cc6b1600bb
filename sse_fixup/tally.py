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
FINISH_WINDOW = 8192   # the finish reason is in the last events: the last bytes are enough
USAGE_WINDOW = 65536   # chat, NDJSON, UI stream: the usage is in the last events too


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
        """Usage and finish from the end of a stream.  Under load a read (so a write) holds
        hundreds of events: the finish is looked for in the last bytes only, and the usage
        object is taken out by itself, not its whole event (a Responses ``completed``
        carries the whole output)."""
        tail = self.tail[::-1]                  # the last write first; writes are whole events
        self.tail = []
        # chat's usage is a small last chunk: the last bytes; a Responses terminal event may
        # be large (it carries the output), but it is whole in one write: the last writes
        where = tail if self.endpoint == "responses" and self.output == "sse" else \
            [b"".join(w[-USAGE_WINDOW:] for w in reversed(tail))[-USAGE_WINDOW:]]
        usage = next(((w, p + len(n) - 1) for w in where for n in USAGE_NEEDLES
                      if (p := w.rfind(n)) >= 0), None)
        if usage is not None:
            self.usage = _object_at(*usage) or self.usage
        end = b"".join(w[-FINISH_WINDOW:] for w in reversed(tail))[-FINISH_WINDOW:]
        if self.output == "ui-message-stream":
            found = _UI_FINISH.findall(end)
            if found:
                self.finish = found[-1].decode()
            elif b'"type":"error"' in end:
                self.finish = "error"
        elif self.endpoint == "chat" or self.output == "ndjson":
            found = _FINISH.findall(end)
            if found:
                self.finish = found[-1].decode()
            elif b'"error":' in end or b'"event":"error"' in end:
                self.finish = "error"
        else:
            # the terminal event's type is at its start, which may be far from the end
            for w in tail:
                at = {status: w.rfind(b'"type":"response.%s"' % status.encode())
                      for status in ("completed", "incomplete", "failed")}
                status, pos = max(at.items(), key=lambda kv: kv[1])
                if pos >= 0:
                    self.finish = status
                    break
            else:
                found = _STATUS.findall(end)          # spaced JSON
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


def _object_at(buf: bytes, start: int) -> dict | None:
    """The JSON object that opens at ``buf[start]`` (a usage object: small, no strings with
    braces), by counting braces over at most 4 KiB."""
    depth = 0
    for i in range(start, min(len(buf), start + 4096)):
        c = buf[i]
        if c == 123:          # {
            depth += 1
        elif c == 125:        # }
            depth -= 1
            if depth == 0:
                try:
                    obj = orjson.loads(buf[start:i + 1])
                except orjson.JSONDecodeError:
                    return None
                return obj if isinstance(obj, dict) else None
    return None


def _usage_of(obj: dict) -> dict | None:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        resp = obj.get("response")
        usage = resp.get("usage") if isinstance(resp, dict) else None
    return usage if isinstance(usage, dict) else None
