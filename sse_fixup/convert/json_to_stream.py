"""JSON → SSE: the client asked ``stream: true``, the upstream answered one JSON body.

A JSON body is complete only at its end, so ``push`` keeps it (``BodyReader`` gives it as
one event at the close of the body) and ``end`` sends the whole stream at once: the
endpoint's full event sequence, the content of each part as a single delta.

The events are made as if the upstream had sent them - bytes and all - because the
stream rule chain after this stage reads only events with ``data`` (those of
``Event.new`` have none and would pass it unseen; ``responses.terminal`` would then end
the stream in an error), and an event no rule changes goes out as these bytes.

The body first gets what the body rules guarantee (``chat.body`` / ``responses.body``:
ids the events refer to, the fields the event types require).  A body that is not the
endpoint's answer becomes the dialect's terminal error, the upstream's own error when it
sent one, else ``upstream_not_convertible`` quoting the start of the body.
"""

from __future__ import annotations

import itertools

import orjson

from ..rules.base import Fault, StreamContext, mint_id
from ..rules.bodies import ChatBody, ResponsesBody
from ..rules.responses import response_defaults
from ..rules.terminal import error_fields
from ..sse import Event, encode
from .stream_to_json import error_object

EXCERPT = 200           # characters of an unconvertible body quoted in the error message


def upstream_event(obj: dict, name: str | None = None) -> Event:
    """A new event that reads like an upstream one (see the module docstring)."""
    data = orjson.dumps(obj)
    return Event(encode(data, name), name, data)


def done_event() -> Event:
    return Event(b"data: [DONE]\n\n", None, b"[DONE]")


class _JSONToStream:
    __slots__ = ("ctx", "bodies")

    WHAT = ""                           # the body this endpoint answers with, for the message

    def __init__(self, ctx: StreamContext):
        self.ctx = ctx
        self.bodies: list[Event] = []

    def push(self, events: list[Event]) -> list[Event]:
        self.bodies.extend(events)
        return []

    def end(self) -> list[Event]:
        if self.ctx.fault is not None:      # the body never came whole (reset, timeout, shutdown)
            return self.failure(error_fields(self.ctx.fault)["error"])
        raw = b"".join(ev.raw or b"" for ev in self.bodies)
        obj = self.bodies[0].json if len(self.bodies) == 1 else None
        if obj is not None and self.convertible(obj):
            return self.stream(obj)
        if obj is not None and obj.get("error"):
            return self.failure(error_object(obj["error"]))       # the upstream's own error
        excerpt = raw[:EXCERPT].decode("utf-8", "replace") + ("…" if len(raw) > EXCERPT else "")
        fault = Fault("upstream_not_convertible",
                      f"the upstream answered a stream request with a body that is not {self.WHAT}: "
                      + (repr(excerpt) if raw else "an empty body"))
        return self.failure(error_fields(fault)["error"])


class ChatJSONToStream(_JSONToStream):
    """One ``chat.completion`` → its ``chat.completion.chunk`` stream: a streaming client
    (the AI SDK's ``streamText``, openai-python ``stream=True``, voice platforms) in front of a
    backend or route that answered without streaming.  Per choice: the role chunk, reasoning,
    content, refusal, one delta per tool call (id, type, name and all its arguments), the
    finish chunk; then the usage chunk if the request asked for it; then ``[DONE]``."""

    __slots__ = ()

    WHAT = "a chat.completion"
    REASONING = ("reasoning_content", "reasoning")      # llama.cpp/DeepSeek, vLLM/Ollama
    ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")
    NOT_EXTRA = frozenset(ENVELOPE) | {"object", "choices", "usage"}

    @staticmethod
    def convertible(obj: dict) -> bool:
        return isinstance(obj.get("choices"), list) and not obj.get("error")

    def stream(self, body: dict) -> list[Event]:
        ChatBody().apply(body, self.ctx)
        env = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
               "model": body["model"]}
        env.update((k, body[k]) for k in self.ENVELOPE[3:] if body.get(k) is not None)
        chunks = []
        for choice in body["choices"]:
            if isinstance(choice, dict):
                chunks += [{**env, "choices": [c]} for c in self._choice(choice)]
        opts = self.ctx.request.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage") is True and isinstance(body.get("usage"), dict):
            chunks.append({**env, "choices": [], "usage": body["usage"]})
        if chunks:              # other fields (llama-server's timings) where llama-server puts them
            chunks[-1].update((k, v) for k, v in body.items() if k not in self.NOT_EXTRA and v is not None)
        return [upstream_event(c) for c in chunks] + [done_event()]

    def _choice(self, choice: dict) -> list[dict]:
        index = choice["index"]
        msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = msg.get("content")
        # content "" on the role chunk as OpenAI sends it; null when the answer's is null
        deltas = [{"role": "assistant", "content": "" if isinstance(content, str) else None}]
        deltas += [{key: msg[key]} for key in self.REASONING if isinstance(msg.get(key), str)]
        if isinstance(content, str) and content:
            deltas.append({"content": content})
        if isinstance(msg.get("refusal"), str):
            deltas.append({"refusal": msg["refusal"]})
        calls = msg.get("tool_calls")
        for k, call in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(call, dict):
                deltas.append({"tool_calls": [self._call(k, call)]})
        out = [{"index": index, "delta": d, "finish_reason": None} for d in deltas]
        finish = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        if choice.get("logprobs") is not None:
            finish["logprobs"] = choice["logprobs"]
        return out + [finish]

    @staticmethod
    def _call(index: int, call: dict) -> dict:
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        function = {"name": fn.get("name"),
                    "arguments": fn["arguments"] if isinstance(fn.get("arguments"), str) else ""}
        return {"index": index, "id": call["id"], "type": "function",
                "function": {k: v for k, v in function.items() if v is not None}}

    def failure(self, err: dict) -> list[Event]:
        return [upstream_event({"error": err}), done_event()]


# per part type: the prefix of its part events, of its text events, and its text field
PARTS = {
    "output_text": ("response.content_part", "response.output_text", "text"),
    "refusal": ("response.content_part", "response.refusal", "refusal"),
    "reasoning_text": ("response.content_part", "response.reasoning_text", "text"),
    "summary_text": ("response.reasoning_summary_part", "response.reasoning_summary_text", "text"),
}
TERMINAL_EVENT = {"incomplete": "response.incomplete", "failed": "response.failed",
                  "cancelled": "response.failed"}


class ResponsesJSONToStream(_JSONToStream):
    """One ``response`` body → its ``/v1/responses`` event stream: a streaming client (the AI
    SDK's ``.responses()``, openai-python ``responses.stream``, Codex) in front of a backend
    or route that answered without streaming.  response.created, .in_progress, every item
    (added, its parts or arguments, done) in output order, then response.completed
    (.incomplete, .failed, as the body's status says) carrying the whole body."""

    __slots__ = ("seq",)

    WHAT = "a Responses response"

    def __init__(self, ctx: StreamContext):
        super().__init__(ctx)
        self.seq = itertools.count()

    @staticmethod
    def convertible(obj: dict) -> bool:
        return isinstance(obj.get("output"), list) or obj.get("object") == "response"

    def event(self, typ: str, **fields) -> Event:
        return upstream_event({"type": typ, **fields, "sequence_number": next(self.seq)}, typ)

    def stream(self, body: dict) -> list[Event]:
        # an output entry that is no object can be no item of a stream
        output = body.get("output")
        body["output"] = [item for item in output if isinstance(item, dict)] if isinstance(output, list) else []
        ResponsesBody().apply(body, self.ctx)
        output = body["output"]
        start = {**body, "status": "in_progress", "output": [], "usage": None}
        for key in ("completed_at", "error", "incomplete_details"):
            if key in start:
                start[key] = None
        out = [self.event("response.created", response=start),
               self.event("response.in_progress", response=start)]
        for n, item in enumerate(output):
            out += self._item(n, item)
        out.append(self.event(TERMINAL_EVENT.get(body["status"], "response.completed"), response=body))
        return out

    def _item(self, n: int, item: dict) -> list[Event]:
        typ = item.get("type")
        # added: the item as it starts, in progress and with nothing streamed yet
        added = dict(item)
        if "status" in added:
            added["status"] = "in_progress"
        empty = {"message": {"content": []}, "function_call": {"arguments": ""},
                 "reasoning": {"summary": [], **({"content": []} if "content" in item else {})}}
        added.update(empty.get(typ, {}))
        out = [self.event("response.output_item.added", output_index=n, item=added)]
        at = {"item_id": item.get("id"), "output_index": n}
        if typ == "message":
            for k, part in enumerate(item.get("content") or ()):
                out += self._part({**at, "content_index": k}, part)
        elif typ == "function_call":
            args = item["arguments"]
            if args:
                out.append(self.event("response.function_call_arguments.delta", **at, delta=args))
            out.append(self.event("response.function_call_arguments.done", **at,
                                  name=item.get("name") or "", arguments=args))
        elif typ == "reasoning":
            for s, part in enumerate(item.get("summary") or ()):
                out += self._part({**at, "summary_index": s}, part)
            for k, part in enumerate(item.get("content") or ()):
                out += self._part({**at, "content_index": k}, part)
        out.append(self.event("response.output_item.done", output_index=n, item=item))
        return out

    def _part(self, at: dict, part) -> list[Event]:
        """One content (or summary) part: added empty, its text as one delta, done."""
        if not isinstance(part, dict):
            return []
        kind = part.get("type")
        if kind not in PARTS:           # a part with no text events of its own
            return [self.event("response.content_part.added", **at, part=part),
                    self.event("response.content_part.done", **at, part=part)]
        parts, texts, field = PARTS[kind]
        text = part[field] if isinstance(part.get(field), str) else ""
        empty = {**part, field: ""}
        extra = {}
        if kind == "output_text":
            empty["annotations"] = []
            extra["logprobs"] = part.get("logprobs") or []
        out = [self.event(parts + ".added", **at, part=empty)]
        if text:
            out.append(self.event(texts + ".delta", **at, delta=text, **extra))
        annotations = part.get("annotations") if kind == "output_text" else None
        for a, annotation in enumerate(annotations if isinstance(annotations, list) else ()):
            out.append(self.event("response.output_text.annotation.added", **at,
                                  annotation_index=a, annotation=annotation))
        out.append(self.event(texts + ".done", **at, **{field: text}, **extra))
        out.append(self.event(parts + ".done", **at, part=part))
        return out

    def failure(self, err: dict) -> list[Event]:
        code = err.get("code")
        code = None if code is None else str(code)
        param = err["param"] if isinstance(err.get("param"), str) else None
        error = {"type": "error", "code": code, "message": err["message"], "param": param,
                 "error": {"type": err["type"], "code": code, "message": err["message"], "param": param}}
        # response.error.code is an enum in openai-python's Response: the specific code is
        # on the error event (the one clients raise on), the failed response says server_error
        response = {"id": mint_id("resp_"), **response_defaults(self.ctx), "status": "failed",
                    "output": [], "usage": None, "incomplete_details": None,
                    "error": {"code": "server_error", "message": err["message"]}}
        return [self.event("error", **error), self.event("response.failed", response=response)]
