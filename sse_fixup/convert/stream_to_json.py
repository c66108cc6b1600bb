"""SSE → JSON: the client asked ``stream: false``, the upstream streamed.

The stage runs after the stream rule chain, so it reads a valid stream (ids, indexes,
finish reason and terminal events in place) and only has to add it up.  Nothing is sent
before the stream has ended: ``push`` returns nothing, ``end`` the one body - the exact
non-stream body of the endpoint, or, when the stream carried an error, the OpenAI-shaped
``{"error": {...}}`` with ``status`` the HTTP status for it.
"""

from __future__ import annotations

import orjson

from ..rules.base import StreamContext, choices_of, mint_id
from ..rules.responses import TERMINAL
from ..rules.terminal import INCOMPLETE, error_fields
from ..sse import Event

# the HTTP status of a stream that ended in an error without a numeric code of its own
# (the proxy's faults: the upstream was too slow, or the proxy shut down)
FAULT_STATUS = {"upstream_timeout": 504, "upstream_idle_timeout": 504, "proxy_shutdown": 503}


def error_object(err) -> dict:
    """``err`` (an upstream or proxy error) as OpenAI's error object: a string ``message``,
    ``type``, ``code``, ``param``; its other fields kept (they may be all the client learns)."""
    if not isinstance(err, dict):
        err = {"message": err if isinstance(err, str) else orjson.dumps(err).decode()}
    out = dict(err)
    if not isinstance(out.get("message"), str):
        out["message"] = orjson.dumps(err).decode() if err else "upstream error"
    if not isinstance(out.get("type"), str):
        out["type"] = "server_error"
    out.setdefault("code", None)
    out.setdefault("param", None)
    return out


def http_status(code) -> int:
    """The status for an error with ``code``: the upstream's own when it is an HTTP error
    status (llama-server puts 400/500 there), else 504/503 for the proxy's faults, else 502."""
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return FAULT_STATUS.get(code, 502) if isinstance(code, str) else 502


class _StreamToJSON:
    __slots__ = ("ctx", "status")

    def __init__(self, ctx: StreamContext):
        self.ctx = ctx
        # the HTTP status for the body ``end`` returns: 200, or the error's (``http_status``)
        self.status = 200

    def push(self, events: list[Event]) -> list[Event]:
        for ev in events:
            obj = ev.json                   # None for [DONE], comments, non-JSON lines
            if obj is not None:
                self.read(obj)
        return []

    def failed(self, err) -> list[Event]:
        body = {"error": error_object(err)}
        self.status = self.ctx.status = http_status(body["error"]["code"])
        return [Event.new(body, None)]


class ChatStreamToJSON(_StreamToJSON):
    """``chat.completion.chunk``s → one ``chat.completion``: a client that asked for no stream
    (openai-python ``create()``, the AI SDK's ``generateText``) behind a route that streams
    upstream.  Deltas are concatenated per choice and tool-call index as openai-python's
    ``ChatCompletionStreamState`` does; usage comes from the usage chunk."""

    __slots__ = ("envelope", "extras", "choices", "usage", "error")

    ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")
    TEXT = ("content", "refusal", "reasoning_content", "reasoning")     # concatenated delta strings
    # every other top-level field (llama-server's "timings") is kept on the body
    NOT_EXTRA = frozenset(ENVELOPE) | {"object", "choices", "usage", "obfuscation", "error"}

    def __init__(self, ctx: StreamContext):
        super().__init__(ctx)
        self.envelope: dict = {}
        self.extras: dict = {}
        # choice index -> {"text": {key: [parts]}, "tools", "finish_reason", "logprobs"}
        self.choices: dict = {}
        self.usage = None
        self.error = None

    def read(self, obj: dict) -> None:
        if obj.get("error"):
            self.error = self.error or obj["error"]
            return
        for key in self.ENVELOPE:
            if obj.get(key) is not None:
                self.envelope.setdefault(key, obj[key])
        for key, value in obj.items():
            if key not in self.NOT_EXTRA and value is not None:
                self.extras[key] = value
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        for pos, choice in enumerate(choices_of(obj)):
            if isinstance(choice, dict):
                index = choice.get("index")
                self._choice(choice, self.choices.setdefault(
                    index if isinstance(index, int) else pos,
                    {"text": {}, "tools": {}, "finish_reason": None, "logprobs": None}))

    def _choice(self, choice: dict, st: dict) -> None:
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        for key in self.TEXT:
            if isinstance(delta.get(key), str):
                st["text"].setdefault(key, []).append(delta[key])
        calls = delta.get("tool_calls")
        for pos, call in enumerate(calls if isinstance(calls, list) else ()):
            if not isinstance(call, dict):
                continue
            index = call.get("index") if isinstance(call.get("index"), int) else pos
            tc = st["tools"].setdefault(index, {"id": None, "name": None, "args": []})
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            # identity comes with the first delta of a call; arguments arrive in pieces
            if tc["id"] is None and isinstance(call.get("id"), str):
                tc["id"] = call["id"]
            if tc["name"] is None and isinstance(fn.get("name"), str):
                tc["name"] = fn["name"]
            if isinstance(fn.get("arguments"), str):
                tc["args"].append(fn["arguments"])
        if choice.get("finish_reason"):
            st["finish_reason"] = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            acc = st["logprobs"] = st["logprobs"] or {}
            for key in ("content", "refusal"):
                if isinstance(logprobs.get(key), list):
                    acc.setdefault(key, []).extend(logprobs[key])

    def end(self) -> list[Event]:
        if self.error is not None:
            return self.failed(self.error)
        if not self.choices and self.usage is None:
            # nothing that says the answer was complete (without chat.terminal in the chain)
            return self.failed(error_fields(INCOMPLETE)["error"])
        env, ctx = self.envelope, self.ctx
        body = {"id": env.get("id") or mint_id("chatcmpl-"), "object": "chat.completion",
                "created": env.get("created", ctx.started),
                "model": env.get("model") or ctx.request.model or "unknown"}
        for key in ("system_fingerprint", "service_tier"):
            if key in env:
                body[key] = env[key]
        body["choices"] = [self._message(i, st) for i, st in sorted(self.choices.items())]
        if self.usage is not None:
            body["usage"] = self.usage
        body.update(self.extras)
        return [Event.new(body, None)]

    @staticmethod
    def _message(index: int, st: dict) -> dict:
        text = st["text"]
        # content stays null when no delta carried a string (a tool-call-only answer)
        msg = {"role": "assistant", "content": "".join(text["content"]) if "content" in text else None}
        for key in ChatStreamToJSON.TEXT[1:]:
            if key in text:
                msg[key] = "".join(text[key])
        tools = [{"id": tc["id"] or mint_id("call_"), "type": "function",
                  "function": {"name": tc["name"] or "", "arguments": "".join(tc["args"])}}
                 for _, tc in sorted(st["tools"].items())]
        if tools:
            msg["tool_calls"] = tools
        reason = st["finish_reason"] or ("tool_calls" if tools else "stop")
        return {"index": index, "message": msg, "finish_reason": reason, "logprobs": st["logprobs"]}


class ResponsesStreamToJSON(_StreamToJSON):
    """A ``/v1/responses`` event stream → the ``response`` object: a client that asked for no
    stream behind a route that streams upstream.  The body is the terminal event's response
    (``response.completed``/``incomplete``), its ``output`` assembled from the
    ``output_item.done`` items when the terminal event listed none."""

    __slots__ = ("items", "terminal", "error")

    def __init__(self, ctx: StreamContext):
        super().__init__(ctx)
        self.items: dict = {}          # output_index -> the item of its output_item.done
        self.terminal: dict | None = None
        self.error: dict | None = None

    def read(self, obj: dict) -> None:
        typ = obj.get("type")
        if typ == "response.output_item.done" and isinstance(obj.get("item"), dict):
            index = obj.get("output_index")
            self.items[index if isinstance(index, int) else len(self.items)] = obj["item"]
        elif typ == "error" or typ is None and obj.get("error"):
            self.error = self.error or obj      # the first error says what went wrong
        elif typ in TERMINAL and isinstance(obj.get("response"), dict):
            self.terminal = self.terminal or obj

    def end(self) -> list[Event]:
        term = self.terminal
        if self.error is not None:
            nested = self.error.get("error")
            return self.failed(nested if isinstance(nested, dict) else
                               {k: self.error.get(k) for k in ("message", "code", "param")})
        if term is None:
            return self.failed(error_fields(INCOMPLETE)["error"])
        body = dict(term["response"])
        if term["type"] == "response.failed":
            err = body.get("error")
            return self.failed(err if isinstance(err, dict) else "the upstream response failed")
        if not body.get("output"):
            body["output"] = [item for _, item in sorted(self.items.items())]
        return [Event.new(body, None)]
