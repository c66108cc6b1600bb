"""One emulated Realtime response: a streaming chat completion, mapped to Realtime events.

The chat request is built from the conversation (``chat_messages``) and the session's
settings with the response's overrides; its chunks run through ``sse.Decoder`` and the
route's chat stream rules first (llama-server's chat defects fixed: missing tool-call ids,
finish reasons, ...), then ``Mapper`` turns each chunk into events as it comes:

    response.created
    text        response.output_item.added, conversation.item.added, response.content_part.added,
                response.output_text.delta ..., response.output_text.done,
                response.content_part.done, response.output_item.done, conversation.item.done
    tool call   response.output_item.added, conversation.item.added,
                response.function_call_arguments.delta ..., response.function_call_arguments.done,
                response.output_item.done, conversation.item.done
    response.done (status, status_details, output, usage)

(beta names with ``OpenAI-Beta: realtime=v1``: ``response.text.*``, ``conversation.item.created``).
"""

from __future__ import annotations

import orjson

from ..rules.base import mint_id
from ..rules.realtime import realtime_usage
from . import events as ev


def chat_messages(items: list[dict], instructions: str | None) -> list[dict]:
    """The conversation as chat messages; consecutive function calls make one assistant turn."""
    out: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        typ = item.get("type")
        if typ == "message":
            role = item.get("role")
            parts = [p for p in item.get("content") or () if isinstance(p, dict)]
            images = [p for p in parts if p.get("type") == "input_image"]
            text = "".join(p.get("text") or p.get("transcript") or "" for p in parts
                           if p.get("type") != "input_image")
            if images and role == "user":
                content = [{"type": "text", "text": text}] if text else []
                content += [{"type": "image_url", "image_url": {"url": p.get("image_url")}} for p in images]
                out.append({"role": "user", "content": content})
            else:
                out.append({"role": role, "content": text})
        elif typ == "function_call":
            call = {"id": item.get("call_id") or item.get("id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}}
            last = out[-1] if out else None
            if last and last["role"] == "assistant" and last.get("tool_calls") is not None:
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif typ == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output") or ""})
    return out


def chat_tools(tools: list) -> list[dict]:
    return [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
            for t in tools if isinstance(t, dict) and t.get("type", "function") == "function"]


def chat_tool_choice(choice):
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice if choice in ("auto", "none", "required") else None


def chat_body(settings: dict, items: list[dict], model: str | None) -> dict:
    body: dict = {"model": model or "default", "stream": True, "stream_options": {"include_usage": True},
                  "messages": chat_messages(items, settings.get("instructions"))}
    tools = chat_tools(settings.get("tools") or [])
    if tools:
        body["tools"] = tools
        choice = chat_tool_choice(settings.get("tool_choice"))
        if choice is not None:
            body["tool_choice"] = choice
    limit = settings.get("max_output_tokens")
    if isinstance(limit, int):
        body["max_tokens"] = limit
    if isinstance(settings.get("temperature"), (int, float)):
        body["temperature"] = settings["temperature"]
    return body


def chat_usage(usage) -> dict:
    """A chat ``usage`` as a Realtime one (text tokens; zeros for what the backend omits)."""
    u = usage if isinstance(usage, dict) else {}
    inp, out = u.get("prompt_tokens"), u.get("completion_tokens")
    inp = inp if isinstance(inp, int) else 0
    out = out if isinstance(out, int) else 0
    ptd = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
    cached = ptd.get("cached_tokens") if isinstance(ptd.get("cached_tokens"), int) else 0
    return realtime_usage({"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out,
                           "input_token_details": {"text_tokens": inp, "cached_tokens": cached,
                                                   "cached_tokens_details": {"text_tokens": cached}},
                           "output_token_details": {"text_tokens": out}})[0]


class Mapper:
    """Chat chunks in, Realtime server events out, for one response."""

    def __init__(self, names: ev.Names, response: dict, conversation: list | None, previous_id):
        self.names = names
        self.response = response                # the response object (response.created's)
        self.conversation = conversation        # the items list output goes to (None: out of band)
        self.previous_id = previous_id          # the item the next output item follows
        self.text_item: dict | None = None
        self.calls: dict[int, dict] = {}        # chat tool_call index -> its open function_call item
        self.index: dict[str, int] = {}        # item id -> output_index
        self.finish: str | None = None
        self.usage = None
        self.error: dict | None = None

    def _base(self, item: dict) -> dict:
        return {"response_id": self.response["id"], "item_id": item["id"],
                "output_index": self.index[item["id"]]}

    def _open(self, item: dict) -> list[dict]:
        self.index[item["id"]] = len(self.response["output"])
        self.response["output"].append(item)
        out = [ev.event("response.output_item.added", response_id=self.response["id"],
                        output_index=len(self.response["output"]) - 1, item=dict(item))]
        if self.conversation is not None:
            self.conversation.append(item)
            out.append(ev.event(self.names.item_added, previous_item_id=self.previous_id, item=dict(item)))
            self.previous_id = item["id"]
        return out

    def _close(self, item: dict, status: str) -> list[dict]:
        item["status"] = status
        base = self._base(item)
        out = []
        if item["type"] == "message":
            text = item["content"][0]["text"]
            out += [ev.event(self.names.text_done, **base, content_index=0, text=text),
                    ev.event("response.content_part.done", **base, content_index=0,
                             part={"type": "text", "text": text})]
        else:
            out.append(ev.event("response.function_call_arguments.done", **base, call_id=item["call_id"],
                                name=item["name"], arguments=item["arguments"]))
        out.append(ev.event("response.output_item.done", response_id=base["response_id"],
                            output_index=base["output_index"], item=_copy(item)))
        if self.conversation is not None and self.names.item_done:
            out.append(ev.event(self.names.item_done, previous_item_id=None, item=_copy(item)))
        return out

    def _close_text(self, status: str = "completed") -> list[dict]:
        item, self.text_item = self.text_item, None
        return self._close(item, status) if item else []

    def chunk(self, obj: dict) -> list[dict]:
        if isinstance(obj.get("error"), dict) or isinstance(obj.get("error"), str):
            err = obj["error"] if isinstance(obj["error"], dict) else {"message": obj["error"]}
            self.error = err
            return []
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        out: list[dict] = []
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.text_item is None:
                    self.text_item = {"id": mint_id("item_"), "object": "realtime.item", "type": "message",
                                      "role": "assistant", "status": "in_progress", "content": []}
                    out += self._open(self.text_item)
                    self.text_item["content"].append({"type": self.names.output_text, "text": ""})
                    out.append(ev.event("response.content_part.added", **self._base(self.text_item),
                                        content_index=0, part={"type": "text", "text": ""}))
                self.text_item["content"][0]["text"] += text
                out.append(ev.event(self.names.text_delta, **self._base(self.text_item),
                                    content_index=0, delta=text))
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                index = call.get("index", 0)
                item = self.calls.get(index)
                if item is None:
                    out += self._close_text()
                    item = self.calls[index] = {
                        "id": mint_id("item_"), "object": "realtime.item", "type": "function_call",
                        "status": "in_progress", "name": fn.get("name") or "",
                        "call_id": call.get("id") or mint_id("call_"), "arguments": ""}
                    out += self._open(item)
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    item["arguments"] += args
                    out.append(ev.event("response.function_call_arguments.delta", **self._base(item),
                                        call_id=item["call_id"], delta=args))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def end(self, status: str | None = None, details: dict | None = None) -> list[dict]:
        """The closing events: the open items, then ``response.done``.  ``status`` when the
        response did not end by itself (cancelled, failed)."""
        if status is None:
            if self.error is not None:
                status, details = "failed", {"type": "failed", "error": _error(self.error)}
            elif self.finish == "length":
                status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
            elif self.finish == "content_filter":
                status, details = "incomplete", {"type": "incomplete", "reason": "content_filter"}
            else:
                status = "completed"
        item_status = "completed" if status == "completed" else "incomplete"
        out = self._close_text(item_status)
        for item in self.calls.values():
            out += self._close(item, item_status)
        self.calls = {}
        resp = self.response
        resp.update(status=status, status_details=details, usage=chat_usage(self.usage),
                    output=[_copy(i) for i in resp["output"]])
        out.append(ev.event("response.done", response=resp))
        return out


def _copy(item: dict) -> dict:
    return orjson.loads(orjson.dumps(item))


def _error(err: dict) -> dict:
    return {"type": str(err.get("type") or "server_error"), "code": err.get("code"),
            "message": str(err.get("message") or "the upstream reported an error")}
