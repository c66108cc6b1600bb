"""upstream_api: chat - Responses API clients in front of a chat-completions-only backend.

Codex CLI speaks only the Responses API (``wire_api = "chat"`` is gone), as do newer agent
SDKs, while many backends and gateways serve only ``/v1/chat/completions``.  The request
goes through ``responses_request.chat_request``; the answer comes back through a stage made
here.  The bridges that exist get three things wrong, and this one is built around them:

* ``output_index`` collisions: every item (reasoning, message, each function call) gets the
  next index when it is announced and keeps it on every event that names it;
* unannounced items: nothing is streamed for an item before its ``output_item.added``,
  nothing for a part before its ``content_part.added``; every item ends in its ``.done``;
* missing terminal events: a finished chat stream always ends in ``response.completed``
  (``response.incomplete`` with ``incomplete_details`` for ``finish_reason`` length or
  content_filter) carrying the whole output and the usage; an upstream error chunk ends it
  in ``error`` + ``response.failed``.  A stream cut short (``ctx.fault``) or one that ends
  without any evidence of completion gets no completion claimed: ``responses.terminal``
  ends it in its error.

Each Responses event leaves as soon as the chat chunk that completes it has come: deltas
with their chunk, an item's ``.done`` when the next kind of output starts or the finish
reason comes, ``response.completed`` with the usage chunk (or ``[DONE]``).
"""

from __future__ import annotations

import itertools

import orjson

from ..rules import base as rules_base
from ..rules.base import StreamContext, mint_id
from ..rules.responses import response_defaults
from ..sse import Event
from . import BodyConverter, Translation
from .json_to_stream import upstream_event
from .responses_request import chat_request
from .stream_to_json import error_object

REASONING = ("reasoning_content", "reasoning")        # llama.cpp/DeepSeek, vLLM/Ollama
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# part kind -> (its events' prefix, its text field)
TEXTS = {"output_text": ("response.output_text", "text"), "refusal": ("response.refusal", "refusal"),
         "reasoning_text": ("response.reasoning_text", "text")}


def usage_of(usage) -> dict | None:
    """Chat usage (prompt/completion tokens) as Responses usage (input/output tokens)."""
    if not isinstance(usage, dict):
        return None
    ints = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    inp, out = ints.get("prompt_tokens", 0), ints.get("completion_tokens", 0)

    def detail(key, inner):
        d = usage.get(key)
        return d.get(inner) if isinstance(d, dict) and isinstance(d.get(inner), int) else 0
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": detail("prompt_tokens_details", "cached_tokens")},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": detail("completion_tokens_details", "reasoning_tokens")},
            "total_tokens": ints.get("total_tokens", inp + out)}


def base_response(ctx: StreamContext, model=None, created=None) -> dict:
    """The response object as the request made it (echoed fields), in progress."""
    req = ctx.request
    resp = {"id": ctx.response_id, **response_defaults(ctx), "status": "in_progress", "output": [],
            "usage": None, "error": None, "incomplete_details": None}
    if isinstance(model, str) and model:
        resp["model"] = model
    if isinstance(created, int):
        resp["created_at"] = created
    for key in ("max_output_tokens", "temperature", "top_p", "reasoning", "text", "metadata", "user"):
        if req.get(key) is not None:
            resp[key] = req.get(key)
    return resp


class _Item:
    """One output item while it streams: its index, the item, its open part (if any)."""

    __slots__ = ("n", "item", "part", "pieces", "args")

    def __init__(self, n: int, item: dict):
        self.n, self.item = n, item
        self.part: dict | None = None       # the content part being streamed
        self.pieces: list[str] = []         # its text so far
        self.args: list[str] = []           # function_call: arguments so far


class ChatStreamToResponses:
    """``chat.completion.chunk`` SSE → the ``/v1/responses`` event stream (module docstring).
    Only choice 0 is read: a Responses client asks for one answer (the request sends no n)."""

    __slots__ = ("ctx", "seq", "resp", "output", "item", "calls", "by_index", "finish", "usage",
                 "closed", "next")

    def __init__(self, ctx: StreamContext):
        self.ctx = ctx
        self.seq = itertools.count()
        self.resp: dict | None = None       # the response object once created
        self.output: list[dict] = []        # items done, in output order
        self.item: _Item | None = None      # the open reasoning or message item
        self.calls: dict[int, _Item] = {}   # the open function calls, by chat tool-call index
        self.by_index: list[int] = []       # chat tool-call indexes seen, in order
        self.finish: str | None = None
        self.usage = None
        self.closed = False                 # terminal sent: nothing more goes out
        self.next = 0                       # the next output_index

    def event(self, typ: str, **fields) -> Event:
        return upstream_event({"type": typ, **fields, "sequence_number": next(self.seq)}, typ)

    # -- input ------------------------------------------------------------------------------

    def push(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if self.closed:
                continue
            obj = ev.json
            if obj is None:
                if ev.data is None:
                    out.append(ev)                  # a comment or keep-alive: harmless as it is
                elif ev.data.strip() == b"[DONE]":
                    self.ctx.done_seen = True
                    out += self._complete()
                else:
                    self.ctx.non_json += 1          # not JSON: no Responses client could read it
                continue
            if obj.get("error") is not None and not obj.get("choices"):
                out += self._failed(error_object(obj["error"]), obj)
                continue
            if self.resp is None:
                out += self._start(obj)
            if isinstance(obj.get("usage"), dict):
                self.usage = obj["usage"]
            choices = obj.get("choices")
            choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
            if choice is not None:
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    out += self._delta(delta)
                if choice.get("finish_reason"):
                    self.finish = choice["finish_reason"]
                    out += self._close_all()
            if self.finish is not None and self.usage is not None:
                out += self._complete()             # the usage came: no need to wait for [DONE]
        return out

    def end(self) -> list[Event]:
        if self.closed or self.ctx.fault is not None:
            return []                               # responses.terminal ends a cut stream
        if self.finish is not None or self.ctx.done_seen:
            return self._complete()
        return []                                   # no evidence of completion: the same

    # -- output -----------------------------------------------------------------------------

    def _start(self, chunk: dict) -> list[Event]:
        if self.ctx.response_id is None:
            self.ctx.response_id = mint_id("resp_")
        self.resp = base_response(self.ctx, chunk.get("model"), chunk.get("created"))
        return [self.event("response.created", response=self.resp),
                self.event("response.in_progress", response=self.resp)]

    def _delta(self, delta: dict) -> list[Event]:
        out = []
        for key in REASONING:
            if isinstance(delta.get(key), str) and delta[key]:
                out += self._text("reasoning", "reasoning_text", delta[key])
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text("message", "output_text", delta["content"])
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            out += self._text("message", "refusal", delta["refusal"])
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                out += self._call(call)
        return out

    def _add(self, item: dict) -> _Item:
        it = _Item(self.next, item)
        self.next += 1
        return it

    def _text(self, kind: str, part_type: str, text: str) -> list[Event]:
        out = []
        it = self.item
        if it is None or it.item["type"] != kind or self.calls:
            out += self._close_all()
            if kind == "message":
                item = {"id": mint_id("msg_"), "type": "message", "role": "assistant",
                        "status": "in_progress", "content": []}
            else:
                item = {"id": mint_id("rs_"), "type": "reasoning", "summary": [], "content": []}
            it = self.item = self._add(item)
            out.append(self.event("response.output_item.added", output_index=it.n, item=item))
        at = {"item_id": it.item["id"], "output_index": it.n}
        if it.part is not None and it.part["type"] != part_type:
            out += self._close_part(it)
        prefix, field = TEXTS[part_type]
        extra = {"logprobs": []} if part_type == "output_text" else {}
        if it.part is None:
            it.part = {"type": part_type, field: ""}
            if part_type == "output_text":
                it.part["annotations"] = []
            out.append(self.event("response.content_part.added", **at,
                                  content_index=len(it.item["content"]), part=dict(it.part)))
        it.pieces.append(text)
        out.append(self.event(prefix + ".delta", **at, content_index=len(it.item["content"]),
                              delta=text, **extra))
        return out

    def _close_part(self, it: _Item) -> list[Event]:
        part, it.part = it.part, None
        prefix, field = TEXTS[part["type"]]
        part[field] = "".join(it.pieces)
        it.pieces = []
        at = {"item_id": it.item["id"], "output_index": it.n, "content_index": len(it.item["content"])}
        extra = {"logprobs": []} if part["type"] == "output_text" else {}
        it.item["content"].append(part)
        return [self.event(prefix + ".done", **at, **{field: part[field]}, **extra),
                self.event("response.content_part.done", **at, part=part)]

    def _call(self, call: dict) -> list[Event]:
        index = call.get("index")
        if not isinstance(index, int):      # some backends leave it out: a new id starts a call
            known = self.by_index[-1] if self.by_index else None
            index = len(self.by_index) if call.get("id") or known is None else known
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        out = []
        it = self.calls.get(index)
        if it is None:
            if index in self.by_index:
                return []                   # a call already done: cannot be reopened
            if self.item is not None:
                out += self._close_item(self.item)
                self.item = None
            call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
            item = {"id": mint_id("fc_"), "type": "function_call", "status": "in_progress",
                    "call_id": call_id or mint_id("call_"),
                    "name": fn.get("name") if isinstance(fn.get("name"), str) else "", "arguments": ""}
            it = self.calls[index] = self._add(item)
            self.by_index.append(index)
            out.append(self.event("response.output_item.added", output_index=it.n, item=dict(item)))
        elif isinstance(fn.get("name"), str) and not it.item["name"]:
            it.item["name"] = fn["name"]
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            it.args.append(args)
            out.append(self.event("response.function_call_arguments.delta", item_id=it.item["id"],
                                  output_index=it.n, delta=args))
        return out

    def _close_item(self, it: _Item) -> list[Event]:
        out = self._close_part(it) if it.part is not None else []
        item = it.item
        at = {"item_id": item["id"], "output_index": it.n}
        if item["type"] == "function_call":
            item["arguments"] = "".join(it.args)
            out.append(self.event("response.function_call_arguments.done", **at,
                                  name=item["name"], arguments=item["arguments"]))
        if "status" in item:
            item["status"] = "incomplete" if self.finish in INCOMPLETE else "completed"
        self.output.append(item)
        out.append(self.event("response.output_item.done", output_index=it.n, item=item))
        return out

    def _close_all(self) -> list[Event]:
        out = []
        if self.item is not None:
            out += self._close_item(self.item)
            self.item = None
        for index in list(self.calls):
            out += self._close_item(self.calls.pop(index))
        return out

    def _complete(self) -> list[Event]:
        if self.closed:
            return []
        out = [] if self.resp is not None else self._start({})
        out += self._close_all()
        self.closed = True
        resp = {**self.resp, "output": self.output, "usage": usage_of(self.usage)}
        if "completed_at" in resp:
            resp["completed_at"] = rules_base.now()     # through the module: tests fix the clock
        reason = INCOMPLETE.get(self.finish)
        resp["status"] = "incomplete" if reason else "completed"
        resp["incomplete_details"] = {"reason": reason} if reason else None
        out.append(self.event("response.incomplete" if reason else "response.completed", response=resp))
        return out

    def _failed(self, err: dict, chunk: dict) -> list[Event]:
        """The backend's error chunk: the error event clients raise on, then response.failed."""
        out = [] if self.resp is not None else self._start(chunk)
        self.closed = True
        code = None if err.get("code") is None else str(err["code"])
        param = err["param"] if isinstance(err.get("param"), str) else None
        fields = {"code": code, "message": err["message"], "param": param}
        out.append(self.event("error", **fields, error={"type": err["type"], **fields}))
        # response.error.code is an enum in openai-python: the backend's code is on the event
        resp = {**self.resp, "status": "failed", "output": self.output,
                "error": {"code": "server_error", "message": err["message"]}}
        out.append(self.event("response.failed", response=resp))
        return out


class ChatBodyToResponse(BodyConverter):
    """One ``chat.completion`` body → one ``response`` body (a client that asked no stream,
    or a backend that ignored ``stream``).  Anything else passes as it came."""

    __slots__ = ()

    def convert(self, ev: Event) -> Event:
        body = ev.json
        choices = body.get("choices") if body is not None else None
        if not isinstance(choices, list) or body.get("error") is not None:
            return ev
        if self.ctx.response_id is None:
            self.ctx.response_id = mint_id("resp_")
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        finish = choice.get("finish_reason")
        reason = INCOMPLETE.get(finish)
        status = "incomplete" if reason else "completed"
        output = []
        reasoning = "".join(msg[k] for k in REASONING if isinstance(msg.get(k), str))
        if reasoning:
            output.append({"id": mint_id("rs_"), "type": "reasoning", "summary": [],
                           "content": [{"type": "reasoning_text", "text": reasoning}]})
        parts = []
        if isinstance(msg.get("content"), str) and msg["content"]:
            parts.append({"type": "output_text", "text": msg["content"], "annotations": [], "logprobs": []})
        if isinstance(msg.get("refusal"), str) and msg["refusal"]:
            parts.append({"type": "refusal", "refusal": msg["refusal"]})
        if parts:
            output.append({"id": mint_id("msg_"), "type": "message", "role": "assistant",
                           "status": status, "content": parts})
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else None
            if fn is None:
                continue
            args = fn.get("arguments")
            output.append({"id": mint_id("fc_"), "type": "function_call", "status": status,
                           "call_id": call.get("id") or mint_id("call_"), "name": fn.get("name") or "",
                           "arguments": args if isinstance(args, str) else orjson.dumps(args or {}).decode()})
        resp = {**base_response(self.ctx, body.get("model"), body.get("created")), "status": status,
                "output": output, "usage": usage_of(body.get("usage")),
                "incomplete_details": {"reason": reason} if reason else None}
        data = orjson.dumps(resp)
        return Event(data, None, data)


class ChatTranslation(Translation):
    """Responses requests to a chat-completions backend: request, path, answer, errors."""

    upstream_api = "chat"

    def request(self, body: dict) -> dict:
        return chat_request(body, drop_unsupported_tools=self.keys.drop_unsupported_tools,
                            upstream_stream=self.keys.upstream_stream)

    def path(self, path: str) -> str:
        # any base path before /v1 (a gateway's /openai/v1/responses) stays
        return path.rstrip("/").removesuffix("/responses") + "/chat/completions"

    def stream_stage(self, ctx: StreamContext):
        return ChatStreamToResponses(ctx)

    def body_stage(self, ctx: StreamContext):
        return ChatBodyToResponse(ctx)

    def error(self, status: int, data: bytes) -> bytes:
        """The backend's error body as the OpenAI error body Responses clients read
        (``{"error": {"message", "type", "code", "param"}}``); a body that is no JSON error
        is quoted in the message."""
        try:
            obj = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and obj.get("error") is not None:
            return orjson.dumps({"error": error_object(obj["error"])})
        text = data[:200].decode("utf-8", "replace")
        return orjson.dumps({"error": {"message": f"the chat backend answered HTTP {status}: {text!r}",
                                       "type": "upstream_error", "code": str(status), "param": None}})
