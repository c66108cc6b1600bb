"""upstream_api: anthropic - OpenAI chat clients in front of an Anthropic Messages backend.

A client that only speaks ``/v1/chat/completions`` (a voice platform that plays
``chat.completion.chunk`` SSE, the AI SDK's chat providers, openai-python) gets Claude-style
backends: Anthropic itself, or llama-server's ``/v1/messages``.  The request is rewritten in
``anthropic_request.py``; here the answer comes back:

    stream   message_start              → the role chunk (id, model kept)
             text_delta                 → delta.content
             thinking_delta             → delta.reasoning_content (chat.drop_reasoning drops it)
             tool_use start             → the tool call's first delta (index, id, name)
             input_json_delta           → delta.tool_calls[].function.arguments, as split
             message_delta              → the finish chunk (stop_reason → finish_reason), then
                                          the usage chunk (when the client asked for usage)
             message_stop               → data: [DONE]
             ping                       → the keepalive comment
             error (overloaded_error)   → the chat error chunk (chat.done adds [DONE])
    body     a Message                  → a chat.completion
    error    a non-2xx body             → {"error": {...}} in OpenAI's shape, status kept

Each event leaves as soon as the upstream event it comes from is complete; the chat rules
(envelope, tool-call deltas, finish reason, terminal) run after this stage as on any chat
stream.  Events with no chat meaning (content_block_stop, signature_delta, citations) are
dropped; comments and non-JSON lines pass as they came.
"""

from __future__ import annotations

import orjson

from ..rules.base import StreamContext, mint_id
from ..sse import Event
from . import BodyConverter, Translation
from .anthropic_request import translate
from .json_to_stream import done_event, upstream_event
from .stream_to_json import error_object

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
KEEPALIVE = b": keepalive\n\n"
ANTHROPIC_VERSION = "2023-06-01"          # the Messages API's one stable version
EXCERPT = 200


class AnthropicTranslation(Translation):
    upstream_api = "anthropic"

    def request(self, body: dict) -> dict:
        return translate(body, self.keys.default_max_tokens)

    def path(self, path: str) -> str:
        base = path.rstrip("/")
        return base[:-len("/chat/completions")] + "/messages" if base.endswith("/chat/completions") else path

    def headers(self, headers):
        """The Messages API's headers: ``anthropic-version`` (Anthropic refuses a request
        without it), and the client's ``Authorization: Bearer KEY`` (all an OpenAI SDK
        sends) as ``x-api-key: KEY``, where Anthropic reads keys (llama-server reads both)."""
        if "anthropic-version" not in headers:
            headers["anthropic-version"] = ANTHROPIC_VERSION
        scheme, _, key = headers.get("Authorization", "").partition(" ")
        if "x-api-key" not in headers and scheme.lower() == "bearer" and key.strip():
            del headers["Authorization"]
            headers["x-api-key"] = key.strip()
        return headers

    def stream_stage(self, ctx: StreamContext):
        return MessagesStream(ctx, self.keys.include_usage)

    def body_stage(self, ctx: StreamContext):
        return MessagesBody(ctx)

    def error(self, status: int, data: bytes) -> bytes:
        return orjson.dumps({"error": upstream_error(status, data)})


def upstream_error(status: int, data: bytes) -> dict:
    """A backend error body - Anthropic's ``{"type": "error", "error": {type, message}}``,
    llama-server's ``{"error": {code, message, type}}``, or anything else - as OpenAI's
    error object; the Anthropic error type is the code (``overloaded_error``)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        return _error(err)
    text = data[:EXCERPT].decode("utf-8", "replace") + ("…" if len(data) > EXCERPT else "")
    return {"message": f"the backend answered HTTP {status}: {text or 'an empty body'}",
            "type": "upstream_error", "code": str(status), "param": None}


def _error(err: dict) -> dict:
    out = error_object(err)
    if out.get("code") is None and isinstance(err.get("type"), str):
        out["code"] = err["type"]
    return out


def _usage(u: dict) -> dict:
    """Anthropic usage → OpenAI's: input_tokens excludes the cached and cache-written ones."""
    def n(key):
        v = u.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0
    cached = n("cache_read_input_tokens")
    prompt = n("input_tokens") + cached + n("cache_creation_input_tokens")
    out = {"prompt_tokens": prompt, "completion_tokens": n("output_tokens"),
           "total_tokens": prompt + n("output_tokens"), "prompt_tokens_details": {"cached_tokens": cached}}
    return out


class MessagesStream:
    """Anthropic stream events → ``chat.completion.chunk`` events, one upstream event at a time."""

    __slots__ = ("ctx", "with_usage", "id", "model", "blocks", "calls", "usage", "ended")

    def __init__(self, ctx: StreamContext, include_usage: bool = False):
        self.ctx = ctx
        opts = ctx.request.get("stream_options")
        # the usage chunk: asked for, the route's include_usage (chat.hide_usage then hides
        # it from a client that did not ask), or a client that gets one body (it carries usage)
        self.with_usage = include_usage or not ctx.request.stream or \
            (isinstance(opts, dict) and opts.get("include_usage") is True)
        self.id: str | None = None
        self.model: str | None = None
        self.blocks: dict = {}       # content block index -> [kind, tool index, arguments sent, input]
        self.calls = 0
        self.usage: dict = {}
        self.ended = False           # message_stop or error: nothing more to translate

    def push(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            obj = ev.json
            if obj is None:
                if ev.data is not None and ev.data.strip():
                    self.ctx.non_json += 1
                out.append(ev)        # comments (llama-server's ":" ping), stray lines: as they came
                continue
            # the event name first: llama-server's error event carries {"type": "server_error"}
            typ = ev.event or obj.get("type")
            if self.ended:
                continue
            handler = getattr(self, "_" + typ, None) if typ in HANDLED else None
            if handler is not None:
                out += handler(obj)
        return out

    def end(self) -> list[Event]:
        # a stream cut short, or one that stopped before message_delta, ends in chat.terminal's error
        return []

    def chunk(self, delta: dict | None = None, finish: str | None = None, **extra) -> Event:
        body = {"id": self.id or self._mint(), "object": "chat.completion.chunk", "created": self.ctx.started,
                "model": self.model or self.ctx.request.model or "unknown",
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return upstream_event(body)

    def _mint(self) -> str:
        self.id = mint_id("chatcmpl-")
        return self.id

    def _message_start(self, obj: dict) -> list[Event]:
        msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        if isinstance(msg.get("id"), str):
            self.id = msg["id"]
        if isinstance(msg.get("model"), str):
            self.model = msg["model"]
        if isinstance(msg.get("usage"), dict):
            self.usage.update(msg["usage"])
        return [self.chunk({"role": "assistant", "content": ""})]

    def _content_block_start(self, obj: dict) -> list[Event]:
        block = obj.get("content_block") if isinstance(obj.get("content_block"), dict) else {}
        kind = block.get("type")
        index = obj.get("index")
        if kind == "tool_use":
            k = self.calls
            self.calls += 1
            self.blocks[index] = ["tool_use", k, False, block.get("input")]
            return [self.chunk({"tool_calls": [{"index": k, "id": block.get("id") or mint_id("call_"),
                                                "type": "function",
                                                "function": {"name": block.get("name") or "", "arguments": ""}}]})]
        self.blocks[index] = [kind, None, False, None]
        text = block.get(kind) if kind in ("text", "thinking") else None
        if isinstance(text, str) and text:
            return [self.chunk({"content" if kind == "text" else "reasoning_content": text})]
        return []

    def _content_block_delta(self, obj: dict) -> list[Event]:
        delta = obj.get("delta") if isinstance(obj.get("delta"), dict) else {}
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self.chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str) and delta["thinking"]:
            return [self.chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta":
            block = self.blocks.get(obj.get("index"))
            part = delta.get("partial_json")
            if block is None or block[0] != "tool_use" or not isinstance(part, str) or not part:
                return []
            block[2] = True
            return [self.chunk({"tool_calls": [{"index": block[1], "function": {"arguments": part}}]})]
        return []           # signature_delta, citations_delta: nothing a chat client can hold

    def _content_block_stop(self, obj: dict) -> list[Event]:
        block = self.blocks.get(obj.get("index"))
        if block is None or block[0] != "tool_use" or block[2]:
            return []
        # a call that streamed no arguments: its input as given at the start ({} for none),
        # since clients parse arguments as JSON and "" is none
        args = orjson.dumps(block[3] if isinstance(block[3], dict) else {}).decode()
        block[2] = True
        return [self.chunk({"tool_calls": [{"index": block[1], "function": {"arguments": args}}]})]

    def _message_delta(self, obj: dict) -> list[Event]:
        if isinstance(obj.get("usage"), dict):
            self.usage.update(obj["usage"])      # cumulative counts
        delta = obj.get("delta") if isinstance(obj.get("delta"), dict) else {}
        reason = delta.get("stop_reason")
        if reason is None:
            return []
        out = [self.chunk({}, FINISH.get(reason, "tool_calls" if self.calls else "stop"))]
        if self.with_usage:
            out.append(self.chunk(None, usage=_usage(self.usage)))
        return out

    def _message_stop(self, obj: dict) -> list[Event]:
        self.ended = True
        return [done_event()]

    def _ping(self, obj: dict) -> list[Event]:
        return [Event(KEEPALIVE, None, None)]

    def _error(self, obj: dict) -> list[Event]:
        # Anthropic nests the error; llama-server sends its error object itself
        nested = obj.get("error")
        err = nested if isinstance(nested, dict) else \
            {k: v for k, v in obj.items() if (k, v) != ("type", "error")}
        self.ended = True
        return [upstream_event({"error": _error(err)})]


HANDLED = frozenset({"message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop", "ping", "error"})


class MessagesBody(BodyConverter):
    """An Anthropic ``message`` body → a ``chat.completion`` (an error body → OpenAI's error)."""

    __slots__ = ()

    def convert(self, ev: Event) -> Event:
        obj = ev.json
        if obj is None:
            return ev                          # not JSON: the body rules see it as it came
        if obj.get("type") == "error" or obj.get("error"):
            return Event.new({"error": _error(obj["error"] if isinstance(obj.get("error"), dict)
                                              else {"message": str(obj.get("error"))})})
        if not isinstance(obj.get("content"), list):
            return ev
        texts, thinking, calls = [], [], []
        for block in obj["content"]:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                thinking.append(block["thinking"])
            elif kind == "tool_use":
                calls.append({"id": block.get("id") or mint_id("call_"), "type": "function",
                              "function": {"name": block.get("name") or "",
                                           "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        msg: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if thinking:
            msg["reasoning_content"] = "".join(thinking)
        if calls:
            msg["tool_calls"] = calls
        reason = obj.get("stop_reason")
        body = {"id": obj["id"] if isinstance(obj.get("id"), str) else mint_id("chatcmpl-"),
                "object": "chat.completion", "created": self.ctx.started,
                "model": obj["model"] if isinstance(obj.get("model"), str) else (self.ctx.request.model or "unknown"),
                "choices": [{"index": 0, "message": msg, "logprobs": None,
                             "finish_reason": FINISH.get(reason, "tool_calls" if calls else "stop")}]}
        if isinstance(obj.get("usage"), dict):
            body["usage"] = _usage(obj["usage"])
        return Event.new(body)
